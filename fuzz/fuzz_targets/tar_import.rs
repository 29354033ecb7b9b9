//! `kstone restore --archive`: any bytes as a .tar.gz. Never writes outside
//! the target (checked), never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let arch = dir.path().join("x.tar.gz");
    if std::fs::write(&arch, data).is_err() {
        return;
    }
    let box_dir = dir.path().join("box");
    let target = box_dir.join("t.keystone");
    if std::fs::create_dir(&box_dir).is_err() {
        return;
    }
    let _ = kstone_backup::restore_archive(&arch, &target);
    for e in std::fs::read_dir(dir.path())
        .into_iter()
        .flatten()
        .flatten()
    {
        let n = e.file_name();
        assert!(
            n == "x.tar.gz" || n == "box",
            "wrote outside the target: {n:?}"
        );
    }
});
