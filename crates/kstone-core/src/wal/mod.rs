//! The write-ahead log: per-stripe segments of checksummed records, and the
//! group commit that makes them durable.

pub mod archive_mark;
pub mod record;
pub mod segment;
pub mod sync;
