//! SSTs: blocks, footer, properties, and whole files opened, verified and read.
#![no_main]
use std::sync::Arc;

use kstone_core::sst::block;
use kstone_core::sst::footer::{Footer, Props};
use kstone_core::sst::reader::TableReader;
use kstone_core::Key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = block::open(data);
    let _ = Footer::decode(data, std::path::Path::new("fuzz.sst"), 0);
    let _ = Props::decode(data);
    let Ok(dir) = tempfile::tempdir() else { return };
    let p = dir.path().join("x.sst");
    if std::fs::write(&p, data).is_err() {
        return;
    }
    if let Ok(t) = TableReader::open(&p) {
        let t = Arc::new(t);
        let _ = t.verify();
        if let Ok(k) = Key::new(b"pk", Some(&7u32.to_be_bytes())) {
            let _ = t.get(&k);
        }
    }
});
