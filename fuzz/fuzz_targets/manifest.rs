//! The database MANIFEST and the shared framing.
#![no_main]
use kstone_core::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = std::path::Path::new("MANIFEST");
    let _ = Manifest::decode(data, p);
    let _ = kstone_core::framed::decode(data, b"KSTNMANI", p);
});
