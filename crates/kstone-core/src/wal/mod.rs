//! The write-ahead log: per-stripe segments of checksummed records, the
//! commit log that makes `Sync` mode's records durable in one file, and the
//! group commit that fsyncs them.

pub mod archive_mark;
pub mod commit_log;
pub(crate) mod log;
pub mod record;
pub mod segment;
pub(crate) mod spares;
pub mod sync;
pub mod tail;
