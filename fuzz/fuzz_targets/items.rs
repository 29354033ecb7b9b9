//! Stored items and keys, typed and plain JSON, export lines, numbers.
#![no_main]
use kstone_core::model::value::decode_item;
use kstone_core::model::varint::Reader;
use kstone_core::{item_from_plain_json, item_from_typed_json, parse_export_line, Key};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_item(data);
    let _ = Key::decode(&mut Reader::new(data));
    let text = String::from_utf8_lossy(data);
    let _ = item_from_typed_json(&text);
    let _ = item_from_plain_json(&text);
    let _ = parse_export_line(&text);
    let _ = kstone_core::Number::parse(&text);
});
