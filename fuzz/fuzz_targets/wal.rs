//! WAL segments: header, record frames, record payloads; commit logs.
#![no_main]
use kstone_core::wal::record::{read_frame, Frame, Record};
use kstone_core::wal::segment::{scan_bytes, Header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let p = std::path::Path::new("fuzz.wal");
    let _ = scan_bytes(data, p);
    let _ = kstone_core::wal::commit_log::scan_bytes(data, p);
    let _ = Header::decode(data, p);
    if let Frame::Ok(payload, _) = read_frame(data) {
        let _ = Record::decode_payload(payload);
    }
    let _ = Record::decode_payload(data);
});
