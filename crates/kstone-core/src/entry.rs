//! The newest known version of a key: its LSN and value, or a tombstone.

use std::sync::Arc;

use crate::model::key::Key;

/// One version of one key, as held by the memtable and stored in SSTs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Key,
    pub lsn: u64,
    /// The encoded item, or `None` for a delete (tombstone).
    pub value: Option<Arc<[u8]>>,
}
