//! The five engines behind one small interface, each opened the way its
//! documentation recommends, with the same block-cache size.

use std::path::Path;

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

pub const ENGINES: [&str; 5] = ["kstone", "rocksdb", "fjall", "redb", "sled"];

/// Open (creating if needed) `engine`'s database under `dir`.
pub fn open(engine: &str, dir: &Path, cache_bytes: usize, sync: bool) -> Res<Box<dyn Engine>> {
    Ok(match engine {
        "kstone" => Box::new(Kstone::open(dir, cache_bytes, sync)?),
        "rocksdb" => Box::new(Rocks::open(dir, cache_bytes)?),
        "fjall" => Box::new(Fjall::open(dir, cache_bytes)?),
        "redb" => Box::new(Redb::open(dir, cache_bytes)?),
        "sled" => Box::new(Sled::open(dir, cache_bytes)?),
        other => return Err(format!("unknown engine {other}").into()),
    })
}

/// KeystoneDB: the 16-byte key is an 8-byte partition key and an 8-byte sort
/// key; the value is an item with one binary attribute.
struct Kstone(kstone_core::Database, /* sync mode */ bool);

impl Kstone {
    fn open(dir: &Path, cache_bytes: usize, sync: bool) -> Res<Kstone> {
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
        Ok(Kstone(db, sync))
    }

    /// Lend `f` an item holding `value`: one item per thread, refilled for
    /// each write (the API borrows it), as RocksDB's callers lend a slice.
    fn with_item<R>(value: &[u8], f: impl FnOnce(&kstone_core::Item) -> R) -> R {
        thread_local! {
            static ITEM: std::cell::RefCell<kstone_core::Item> =
                const { std::cell::RefCell::new(kstone_core::Item::new()) };
        }
        ITEM.with_borrow_mut(|item| {
            match item.get_mut("v") {
                Some(kstone_core::Value::B(b)) => {
                    b.clear();
                    b.extend_from_slice(value);
                }
                _ => {
                    item.insert("v".into(), kstone_core::Value::B(value.to_vec()));
                }
            }
            f(item)
        })
    }
}

impl Engine for Kstone {
    fn put(&self, key: &[u8], value: &[u8], _sync: bool) -> Res<()> {
        // Durability is the database's mode (Sync for the fillsync workloads).
        Kstone::with_item(value, |item| self.0.put(&key[..8], Some(&key[8..]), item))?;
        Ok(())
    }
    fn batch(&self, kvs: &[([u8; 16], Vec<u8>)]) -> Res<()> {
        let mut b = kstone_core::WriteBatch::with_capacity(kvs.len());
        for (k, v) in kvs {
            Kstone::with_item(v, |item| b.put(&k[..8], Some(&k[8..]), item))?;
        }
        self.0.write(b)?;
        Ok(())
    }
    fn get(&self, key: &[u8]) -> Res<Option<usize>> {
        Ok(self
            .0
            .get(&key[..8], Some(&key[8..]))?
            .map(|i| match i.get("v") {
                Some(kstone_core::Value::B(b)) => b.len(),
                _ => 0,
            }))
    }
    fn scan(&self) -> Res<u64> {
        // Like the peers' iterators, lend each item's stored bytes (no typed
        // decode; `for_each_item` would add it).
        Ok(self
            .0
            .for_each_encoded(|_, _| Ok::<(), kstone_core::Error>(()))?)
    }
    fn durable(&self) -> Res<()> {
        Ok(self.0.sync()?)
    }
    fn mapped_written(&self) -> Res<u64> {
        // `Buffered` mode copies WAL records into mapped segments; the
        // engine counts them (segment headers go through write(2)).
        Ok(if self.1 {
            0
        } else {
            self.0.stats()?.written_since_open.wal
        })
    }
}

/// RocksDB with its default options, a 64 MiB write buffer and an LRU block cache.
struct Rocks(rocksdb::DB);

impl Rocks {
    fn open(dir: &Path, cache_bytes: usize) -> Res<Rocks> {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.set_write_buffer_size(64 << 20);
        let mut table = rocksdb::BlockBasedOptions::default();
        table.set_block_cache(&rocksdb::Cache::new_lru_cache(cache_bytes));
        opts.set_block_based_table_factory(&table);
        Ok(Rocks(rocksdb::DB::open(&opts, dir)?))
    }
}

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

/// fjall: one keyspace, one partition, default options but the cache.
struct Fjall {
    ks: fjall::Keyspace,
    part: fjall::PartitionHandle,
}

impl Fjall {
    fn open(dir: &Path, cache_bytes: usize) -> Res<Fjall> {
        let ks = fjall::Config::new(dir)
            .cache_size(cache_bytes as u64)
            .open()?;
        let part = ks.open_partition("default", fjall::PartitionCreateOptions::default())?;
        Ok(Fjall { ks, part })
    }
}

impl Engine for Fjall {
    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Res<()> {
        self.part.insert(key, value)?;
        if sync {
            self.ks.persist(fjall::PersistMode::SyncAll)?;
        }
        Ok(())
    }
    fn batch(&self, kvs: &[([u8; 16], Vec<u8>)]) -> Res<()> {
        let mut b = self.ks.batch();
        for (k, v) in kvs {
            b.insert(&self.part, k.as_slice(), v.as_slice());
        }
        Ok(b.commit()?)
    }
    fn get(&self, key: &[u8]) -> Res<Option<usize>> {
        Ok(self.part.get(key)?.map(|v| v.len()))
    }
    fn scan(&self) -> Res<u64> {
        let mut n = 0;
        for kv in self.part.iter() {
            kv?;
            n += 1;
        }
        Ok(n)
    }
    fn durable(&self) -> Res<()> {
        Ok(self.ks.persist(fjall::PersistMode::SyncAll)?)
    }
}

const REDB_TABLE: redb::TableDefinition<&[u8], &[u8]> = redb::TableDefinition::new("kv");

/// redb: one table; every put is its own transaction, a batch is one
/// transaction. Unsynced commits use `Durability::None`, with every 1000th
/// made `Immediate`: redb frees pages only in durable commits, so without
/// them its file grows by pages per commit (2 GiB for 20,000 puts).
struct Redb(redb::Database, std::sync::atomic::AtomicU64);

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
            tx.set_durability(redb::Durability::None);
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

impl Engine for Redb {
    fn put(&self, key: &[u8], value: &[u8], sync: bool) -> Res<()> {
        self.write(&[(key, value)], sync)
    }
    fn batch(&self, kvs: &[([u8; 16], Vec<u8>)]) -> Res<()> {
        let kvs: Vec<(&[u8], &[u8])> = kvs.iter().map(|(k, v)| (&k[..], &v[..])).collect();
        self.write(&kvs, false)
    }
    fn get(&self, key: &[u8]) -> Res<Option<usize>> {
        let tx = self.0.begin_read()?;
        let t = match tx.open_table(REDB_TABLE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        Ok(t.get(key)?.map(|v| v.value().len()))
    }
    fn scan(&self) -> Res<u64> {
        use redb::ReadableTable;
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
struct Sled(sled::Db);

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
