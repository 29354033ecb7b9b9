//! Stored items and keys (bytes and typed), typed and plain JSON, export
//! lines, numbers and their order-preserving form.
#![no_main]
use kstone_core::model::value::decode_item;
use kstone_core::model::varint::Reader;
use kstone_core::{
    item_from_plain_json, item_from_typed_json, parse_export_line, Key, KeyAttr, KeySchema,
    KeyType, SortKeyRule,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_item(data);
    let _ = Key::decode(&mut Reader::new(data));
    let text = String::from_utf8_lossy(data);
    let _ = item_from_typed_json(&text);
    let _ = item_from_plain_json(&text);
    let _ = parse_export_line(&KeySchema::bytes(), &text);
    let typed = KeySchema::typed(Some(KeyType::S), SortKeyRule::Required(KeyType::N));
    let _ = parse_export_line(&typed, &text);
    let _ = kstone_core::Number::parse(&text);
    // A stored key part that decodes re-encodes to the same bytes.
    if let Ok(a) = KeyAttr::from_stored(data) {
        assert_eq!(a.to_stored(), data);
    }
    let _ = typed.check_put(data, Some(data));
});
