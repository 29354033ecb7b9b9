//! The five engines behind one small interface, each opened the way its
//! documentation recommends, with the same block-cache size.

use std::path::Path;

use crate::workload::{Keys, KEY_LEN};

pub type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// What every workload needs from an engine.
pub trait Engine: Sync {
    /// Write one key; `sync` = durable before returning.
    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Res<()>;
    /// Write many keys in one batch (not synced).
    fn batch(&self, kvs: &[([u8; 16], Vec<u8>)]) -> Res<()>;
    /// Length of the value at `key`, if any.
    fn get(&self, key: &[u8]) -> Res<Option<usize>>;
    /// Visit every item; returns how many there are.
    fn scan(&self) -> Res<u64>;
    /// Make every write so far durable.
    fn durable(&self) -> Res<()>;
    /// Bytes written to files without `write(2)` (through a memory map), which
    /// the process's `wchar` misses.
    fn mapped_written(&self) -> Res<u64> {
        Ok(0)
    }
}

/// Every engine this build can run (peers are cargo features, all on by
/// default). `kstone` stores the whole key as the partition key; `kstone-sk`
/// splits it into partition + sort key (`Keys::partition_len`).
pub const ENGINES: &[&str] = &[
    "kstone",
    "kstone-sk",
    #[cfg(feature = "rocksdb")]
    "rocksdb",
    #[cfg(feature = "rocksdb")]
    "rocksdb-bloom",
    #[cfg(feature = "fjall")]
    "fjall",
    #[cfg(feature = "redb")]
    "redb",
    #[cfg(feature = "sled")]
    "sled",
];

/// Open (creating if needed) `engine`'s database under `dir`.
pub fn open(
    engine: &str,
    dir: &Path,
    cache_bytes: usize,
    sync: bool,
    keys: Keys,
) -> Res<Box<dyn Engine>> {
    Ok(match engine {
        "kstone" => Box::new(Kstone::open(dir, cache_bytes, sync, KEY_LEN)?),
        "kstone-sk" => Box::new(Kstone::open(dir, cache_bytes, sync, keys.partition_len())?),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => Box::new(Rocks::open(dir, cache_bytes, false)?),
        #[cfg(feature = "rocksdb")]
        "rocksdb-bloom" => Box::new(Rocks::open(dir, cache_bytes, true)?),
        #[cfg(feature = "fjall")]
        "fjall" => Box::new(Fjall::open(dir, cache_bytes)?),
        #[cfg(feature = "redb")]
        "redb" => Box::new(Redb::open(dir, cache_bytes)?),
        #[cfg(feature = "sled")]
        "sled" => Box::new(Sled::open(dir, cache_bytes)?),
        other => return Err(format!("engine {other} is not in this build").into()),
    })
}

/// KeystoneDB: the first `pk_len` bytes of the key are the partition key,
/// the rest (if any) the sort key; the value is an item with one binary
/// attribute, built for each write as an application builds it.
struct Kstone {
    db: kstone_core::Database,
    pk_len: usize,
}

impl Kstone {
    fn open(dir: &Path, cache_bytes: usize, sync: bool, pk_len: usize) -> Res<Kstone> {
        let opts = kstone_core::Options {
            durability: if sync {
                kstone_core::Durability::Sync
            } else {
                kstone_core::Durability::Buffered
            },
            block_cache_bytes: cache_bytes,
            ..Default::default()
        };
        let db = if dir.exists() {
            kstone_core::Database::open(dir, opts)?
        } else {
            kstone_core::Database::create(dir, opts)?
        };
        Ok(Kstone { db, pk_len })
    }

    fn split<'k>(&self, key: &'k [u8]) -> (&'k [u8], Option<&'k [u8]>) {
        let (pk, sk) = key.split_at(self.pk_len.min(key.len()));
        (pk, (!sk.is_empty()).then_some(sk))
    }

    fn item(value: &[u8]) -> kstone_core::Item {
        let mut item = kstone_core::Item::new();
        item.insert("v".into(), kstone_core::Value::B(value.to_vec()));
        item
    }
}

impl Engine for Kstone {
    fn put(&self, key: &[u8], value: &[u8], _sync: bool) -> Res<()> {
        // Durability is the database's mode (Sync for the fillsync workloads).
        let (pk, sk) = self.split(key);
        self.db.put(pk, sk, &Kstone::item(value))?;
        Ok(())
    }
    fn batch(&self, kvs: &[([u8; 16], Vec<u8>)]) -> Res<()> {
        let mut b = kstone_core::WriteBatch::with_capacity(kvs.len());
        for (k, v) in kvs {
            let (pk, sk) = self.split(k);
            b.put(pk, sk, &Kstone::item(v))?;
        }
        self.db.write(b)?;
        Ok(())
    }
    fn get(&self, key: &[u8]) -> Res<Option<usize>> {
        let (pk, sk) = self.split(key);
        Ok(self.db.get(pk, sk)?.map(|i| match i.get("v") {
            Some(kstone_core::Value::B(b)) => b.len(),
            _ => 0,
        }))
    }
    fn scan(&self) -> Res<u64> {
        // Like the peers' iterators, lend each item's stored bytes (no typed
        // decode; `for_each_item` would add it).
        Ok(self
            .db
            .for_each_encoded(|_, _| Ok::<(), kstone_core::Error>(()))?)
    }
    fn durable(&self) -> Res<()> {
        Ok(self.db.sync()?)
    }
    fn mapped_written(&self) -> Res<u64> {
        // `Buffered` mode copies small WAL appends into mapped segments;
        // the engine counts them (larger appends and segment headers go
        // through write(2), which `wchar` counts).
        Ok(self.db.stats()?.written_since_open.wal_mapped)
    }
}

/// RocksDB with a 64 MiB write buffer and an LRU block cache: with its
/// defaults otherwise, or (`bloom`) as its tuning guide ("Setup Options and
/// Basic Tuning") recommends for point lookups: a 10-bit-per-key bloom
/// filter, 16 KiB blocks, index and filter blocks in the block cache with
/// level-0's pinned, and 1 MiB `bytes_per_sync`.
#[cfg(feature = "rocksdb")]
struct Rocks(rocksdb::DB);

#[cfg(feature = "rocksdb")]
impl Rocks {
    fn open(dir: &Path, cache_bytes: usize, bloom: bool) -> Res<Rocks> {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.set_write_buffer_size(64 << 20);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&rocksdb::Cache::new_lru_cache(cache_bytes));
        if bloom {
            table.set_bloom_filter(10.0, false);
            table.set_block_size(16 << 10);
            table.set_cache_index_and_filter_blocks(true);
            table.set_pin_l0_filter_and_index_blocks_in_cache(true);
            opts.set_bytes_per_sync(1 << 20);
        }
        opts.set_block_based_table_factory(&table);
        Ok(Rocks(rocksdb::DB::open(&opts, dir)?))
    }
}

#[cfg(feature = "rocksdb")]
impl Engine for Rocks {
    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Res<()> {
        let mut w = rocksdb::WriteOptions::default();
        w.set_sync(sync);
        Ok(self.0.put_opt(key, value, &w)?)
    }
    fn batch(&self, kvs: &[([u8; 16], Vec<u8>)]) -> Res<()> {
        let mut b = rocksdb::WriteBatch::default();
        for (k, v) in kvs {
            b.put(k, v);
        }
        Ok(self.0.write(b)?)
    }
    fn get(&self, key: &[u8]) -> Res<Option<usize>> {
        Ok(self.0.get_pinned(key)?.map(|v| v.len()))
    }
    fn scan(&self) -> Res<u64> {
        let mut n = 0;
        for kv in self.0.iterator(rocksdb::IteratorMode::Start) {
            kv?;
            n += 1;
        }
        Ok(n)
    }
    fn durable(&self) -> Res<()> {
        Ok(self.0.flush_wal(true)?)
    }
}

/// fjall: one keyspace, default options but the cache.
#[cfg(feature = "fjall")]
struct Fjall {
    db: fjall::Database,
    ks: fjall::Keyspace,
}

#[cfg(feature = "fjall")]
impl Fjall {
    fn open(dir: &Path, cache_bytes: usize) -> Res<Fjall> {
        let db = fjall::Database::builder(dir)
            .cache_size(cache_bytes as u64)
            .open()?;
        let ks = db.keyspace("default", fjall::KeyspaceCreateOptions::default)?;
        Ok(Fjall { db, ks })
    }
}

#[cfg(feature = "fjall")]
impl Engine for Fjall {
    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Res<()> {
        self.ks.insert(key, value)?;
        if sync {
            self.db.persist(fjall::PersistMode::SyncAll)?;
        }
        Ok(())
    }
    fn batch(&self, kvs: &[([u8; 16], Vec<u8>)]) -> Res<()> {
        let mut b = self.db.batch();
        for (k, v) in kvs {
            b.insert(&self.ks, k.as_slice(), v.as_slice());
        }
        Ok(b.commit()?)
    }
    fn get(&self, key: &[u8]) -> Res<Option<usize>> {
        Ok(self.ks.get(key)?.map(|v| v.len()))
    }
    fn scan(&self) -> Res<u64> {
        let mut n = 0;
        for kv in self.ks.iter() {
            kv.into_inner()?;
            n += 1;
        }
        Ok(n)
    }
    fn durable(&self) -> Res<()> {
        Ok(self.db.persist(fjall::PersistMode::SyncAll)?)
    }
}

#[cfg(feature = "redb")]
const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("kv");

/// redb: one table; every put is its own transaction, a batch is one
/// transaction. Unsynced commits use `Durability::None`, with every 1000th
/// made `Immediate`: redb frees pages only in durable commits, so without
/// them its file grows by pages per commit (2 GiB for 20,000 puts).
#[cfg(feature = "redb")]
struct Redb(redb::Database, std::sync::atomic::AtomicU64);

#[cfg(feature = "redb")]
impl Redb {
    fn open(dir: &Path, cache_bytes: usize) -> Res<Redb> {
        std::fs::create_dir_all(dir)?;
        let db = redb::Database::builder()
            .set_cache_size(cache_bytes)
            .create(dir.join("data.redb"))?;
        Ok(Redb(db, Default::default()))
    }

    fn write(&self, kvs: &[(&[u8], &[u8])], sync: bool) -> Res<()> {
        let mut tx = self.0.begin_write()?;
        let n = self.1.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if !sync && n % 1000 != 999 {
            tx.set_durability(redb::Durability::None)?;
        }
        {
            let mut t = tx.open_table(REDB_TABLE)?;
            for (k, v) in kvs {
                t.insert(*k, *v)?;
            }
        }
        Ok(tx.commit()?)
    }
}

#[cfg(feature = "redb")]
impl Engine for Redb {
    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Res<()> {
        self.write(&[(key, value)], sync)
    }
    fn batch(&self, kvs: &[([u8; 16], Vec<u8>)]) -> Res<()> {
        let kvs: Vec<(&[u8], &[u8])> = kvs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        self.write(&kvs, false)
    }
    fn get(&self, key: &[u8]) -> Res<Option<usize>> {
        use redb::{ReadableDatabase, ReadableTable};
        let tx = self.0.begin_read()?;
        let t = match tx.open_table(REDB_TABLE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let len = t.get(key)?.map(|v| v.value().len());
        Ok(len)
    }
    fn scan(&self) -> Res<u64> {
        use redb::{ReadableDatabase, ReadableTable};
        let tx = self.0.begin_read()?;
        let t = tx.open_table(REDB_TABLE)?;
        let mut n = 0;
        for kv in t.iter()? {
            kv?;
            n += 1;
        }
        Ok(n)
    }
    fn durable(&self) -> Res<()> {
        // A durable empty commit makes every earlier non-durable one durable.
        self.write(&[], true)
    }
}

/// sled with its default options but the cache.
#[cfg(feature = "sled")]
struct Sled(sled::Db);

#[cfg(feature = "sled")]
impl Sled {
    fn open(dir: &Path, cache_bytes: usize) -> Res<Sled> {
        Ok(Sled(
            sled::Config::new()
                .path(dir)
                .cache_capacity(cache_bytes as u64)
                .open()?,
        ))
    }
}

#[cfg(feature = "sled")]
impl Engine for Sled {
    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Res<()> {
        self.0.insert(key, value)?;
        if sync {
            self.0.flush()?;
        }
        Ok(())
    }
    fn batch(&self, kvs: &[([u8; 16], Vec<u8>)]) -> Res<()> {
        let mut b = sled::Batch::default();
        for (k, v) in kvs {
            b.insert(k.as_slice(), v.as_slice());
        }
        Ok(self.0.apply_batch(b)?)
    }
    fn get(&self, key: &[u8]) -> Res<Option<usize>> {
        Ok(self.0.get(key)?.map(|v| v.len()))
    }
    fn scan(&self) -> Res<u64> {
        let mut n = 0;
        for kv in self.0.iter() {
            kv?;
            n += 1;
        }
        Ok(n)
    }
    fn durable(&self) -> Res<()> {
        self.0.flush()?;
        Ok(())
    }
}
