//! The data model: keys, values, numbers, and their binary and JSON forms.

pub mod json;
pub mod key;
pub mod lines;
pub mod number;
pub mod value;
pub mod varint;
