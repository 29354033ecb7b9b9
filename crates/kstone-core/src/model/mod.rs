//! The data model: keys, values, numbers, and their binary and JSON forms.

pub mod json;
pub mod key;
pub mod key_attr;
pub mod key_schema;
pub mod lines;
pub mod number;
pub mod value;
pub mod varint;
