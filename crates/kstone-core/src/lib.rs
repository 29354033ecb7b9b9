//! KeystoneDB storage engine: a DynamoDB-style item store (partition key +
//! optional sort key) on a 256-stripe LSM tree with a per-stripe write-ahead
//! log, immutable SSTs and an atomically replaced manifest.
//!
//! On-disk formats are documented in `docs/formats.md`.

pub mod archiving;
pub mod checksum;
pub mod error;
pub mod framed;
pub mod fsio;
pub mod model;
pub mod options;
pub mod read;
pub mod snapshot;
pub mod stats;

// The engine's internals: public only for the fuzz targets, the decoder
// tests and `kstone check`'s file-level reports; not an API. What other
// crates use is re-exported below or lives in `archiving`.
#[doc(hidden)]
pub mod entry;
#[doc(hidden)]
pub mod lock;
#[doc(hidden)]
pub mod manifest;
#[doc(hidden)]
pub mod memtable;
#[doc(hidden)]
pub mod sst;
#[doc(hidden)]
pub mod wal;

mod background;
pub mod check;
mod closing;
mod compaction;
mod db;
mod flush;
mod memory;
mod mutex;
pub mod parallel;
mod recovery;
mod slab_region;
mod stripe;
mod versions;
mod write;

pub use db::{Database, DurableMark};
pub use error::{Error, Result};
pub use lock::DbLock;
pub use manifest::{Manifest, Origin};
pub use model::json::{
    item_from_plain_json, item_from_typed_json, item_to_plain_json, item_to_typed_json,
    typed_json_to_item,
};
pub use model::key::{stripe_of, Key, KeyRef, STRIPES};
pub use model::key_attr::{KeyAttr, KeyType};
pub use model::key_schema::{KeyEncoding, KeySchema, SortKeyRule, TypedCondition};
pub use model::lines::{export_line, key_from_json, key_json, parse_export_line, plain_line};
pub use model::number::Number;
pub use model::value::{decode_item, Item, Value};
pub use options::{Compression, Durability, Options};
pub use read::query::{Page, Query, Scan, SortKeyCondition};
pub use snapshot::remote::{HeldSnapshot, RemotePin};
pub use snapshot::{FileKind, Pin, Snapshot, SnapshotFile};
pub use stats::Stats;
pub use wal::record::{Op, Record};
pub use write::{check_put, WriteBatch, WriteOp};
