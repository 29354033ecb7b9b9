//! The read side beyond point lookups: key ranges, merging, query and scan.

pub mod query;
pub mod range;
pub mod stream;
