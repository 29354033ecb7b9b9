//! `Database`: create, open (with recovery), put / get / delete, stats, close.
//!
//! The façade, and the only module that names the whole engine: it builds
//! the components — the [version set](crate::versions) (manifest and file
//! ids), the [memory budget](crate::memory), the [WAL](crate::wal::log), the
//! [pins](crate::snapshot::registry::Pins), the [background](crate::background)
//! queue — and hands each flush, compaction and snapshot the ones it needs.

mod ingest;
mod write_path;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;

use crate::background::Background;
use crate::closing::Closing;
use crate::error::{Error, IoContext, Result};
use crate::fsio::{now_micros, sync_dir};
use crate::lock::DbLock;
use crate::manifest::Manifest;
use crate::memory::MemoryBudget;
use crate::memtable::MemEntry;
use crate::model::key::{Key, KeyRef, STRIPES};
use crate::model::key_attr::KeyAttr;
use crate::model::key_schema::KeySchema;
use crate::model::value::{decode_item, Item};
use crate::mutex::lock;
use crate::options::{Durability, Options};
use crate::snapshot::registry::Pins;
use crate::snapshot::Pin;
use crate::stats::Stats;
use crate::stripe::{FlushCtx, StripeState};
use crate::versions::VersionSet;
use crate::wal::log::{Clock, Wal};
use crate::write::{prepare, Pending, WriteBatch, WriteOp};

/// The engine's parts, private to this module: other modules get the
/// component they need, never the whole.
pub(crate) struct Shared {
    dir: PathBuf,
    opts: Options,
    stripes: Vec<Mutex<StripeState>>,
    wal: Wal,
    versions: VersionSet,
    memory: MemoryBudget,
    pins: Arc<Pins>,
    closing: Closing,
    /// Per-stripe job lock: one flush or compaction per stripe at a time.
    jobs: Vec<Mutex<()>>,
    bg: Background,
    cache: Option<Arc<crate::sst::cache::BlockCache>>,
    written: crate::stats::WriteCounters,
    access: Access,
}

/// How this process may use the database: as its owner (holding `LOCK`),
/// or reading a pinned snapshot (writes refused).
pub(crate) enum Access {
    Owner(#[allow(dead_code)] DbLock),
    Snapshot(Box<crate::snapshot::remote::HeldSnapshot>),
}

/// An open KeystoneDB database. Cheap to share across threads (`&Database` is
/// `Sync`); closed by [`Database::close`] or on drop.
///
/// ```
/// use kstone_core::{Database, Options, item_from_plain_json};
/// let dir = tempfile::tempdir().unwrap();
/// let db = Database::create(dir.path().join("app.keystone"), Options::default()).unwrap();
/// db.put(b"user#1", Some(b"profile"), &item_from_plain_json(r#"{"name":"Ada"}"#).unwrap()).unwrap();
/// assert!(db.get(b"user#1", Some(b"profile")).unwrap().is_some());
/// db.close().unwrap();
/// ```
pub struct Database {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

/// The writes a snapshot holds, as a point of the database's group commit
/// ([`Database::pin_unsynced`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurableMark(u64);

impl Database {
    /// Create a new database in `dir` (which must not exist or be empty)
    /// whose keys are plain bytes ([`KeySchema::bytes`]); see
    /// [`Database::create_with_keys`] for typed keys.
    pub fn create(dir: impl AsRef<Path>, opts: Options) -> Result<Database> {
        Database::create_with_keys(dir, opts, KeySchema::bytes())
    }

    /// Create a new database with the given key schema, enforced on every
    /// write from then on.
    ///
    /// ```
    /// use kstone_core::*;
    /// let dir = tempfile::tempdir().unwrap();
    /// let schema = KeySchema::typed(Some(KeyType::S), SortKeyRule::Required(KeyType::N));
    /// let db = Database::create_with_keys(dir.path().join("t"), Options::default(), schema).unwrap();
    /// let item = item_from_plain_json("{}").unwrap();
    /// for n in ["10", "-2", "1.5"] {
    ///     let k = db.key(&KeyAttr::S("p".into()), Some(&KeyAttr::N(Number::parse(n).unwrap()))).unwrap();
    ///     db.put(&k.pk, k.sk.as_deref(), &item).unwrap();
    /// }
    /// let page = db.query(&Query::new(b"p")).unwrap();
    /// let sks: Vec<String> = page.items.iter()
    ///     .map(|(k, _)| db.key_schema().decode(k.sk.as_deref().unwrap()).unwrap().to_string())
    ///     .collect();
    /// assert_eq!(sks, ["-2", "1.5", "10"]);
    /// assert!(db.put(b"p", Some(b"x"), &item).is_err()); // an S sort key
    /// ```
    pub fn create_with_keys(
        dir: impl AsRef<Path>,
        opts: Options,
        key_schema: KeySchema,
    ) -> Result<Database> {
        let dir = dir.as_ref();
        match fs::read_dir(dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(Error::AlreadyExists(dir.to_path_buf()));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir_all(dir).ctx(dir)?;
                sync_dir(crate::fsio::parent(dir))?;
            }
            Err(e) => return Err(e).ctx(dir),
        }
        for sub in ["wal", "sst", crate::snapshot::remote::DIR] {
            let p = dir.join(sub);
            fs::create_dir(&p).ctx(&p)?;
        }
        sync_dir(dir)?;
        let db_id = crate::fsio::random_hex(16)?;
        Manifest::new(db_id, now_micros(), key_schema).store(dir)?;
        Database::open(dir, opts)
    }

    /// Open an existing database, recovering unflushed writes from the WAL.
    pub fn open(dir: impl AsRef<Path>, opts: Options) -> Result<Database> {
        let dir = dir.as_ref().to_path_buf();
        if !dir.is_dir() {
            return Err(Error::NotADatabase(dir));
        }
        let db_lock = DbLock::acquire(&dir)?;
        let cache = crate::sst::cache::BlockCache::new(opts.block_cache_bytes);
        // A WAL that fits the memory a writer may hold (twice the budget,
        // where writers are held) is replayed into memtables, which the
        // background flushes after open, as it would have before the crash:
        // open does not wait for SSTs. A larger one (an older version, a
        // bigger budget) is written to SSTs as it is replayed, stripes above
        // 64 KiB at once, so at most 16 MiB of it stays in memory.
        let wal_bytes = crate::wal::segment::total_bytes(&dir.join("wal"))?;
        let flush_at = if wal_bytes <= 2 * opts.memtable_budget as u64 {
            opts.memtable_stripe_bytes
        } else {
            opts.memtable_stripe_bytes.min(64 << 10)
        };
        let rec = crate::recovery::recover(
            &dir,
            cache.as_ref(),
            flush_at,
            opts.compression,
            opts.durability == Durability::Buffered,
        )?;
        // LSNs never go back: a repository may already hold writes this
        // database lost (a damaged or unsynced WAL tail), and a reused LSN
        // would make the archive and the database disagree silently.
        let lsn_floor = crate::wal::archive_mark::highest(&dir)?;
        let mut rec = rec;
        rec.last_lsn = rec.last_lsn.max(lsn_floor);
        let shared = Shared::assemble(dir, opts, rec, cache, Access::Owner(db_lock))?;
        let mut threads = Vec::new();
        if shared.opts.durability == Durability::Buffered {
            let s = Arc::clone(&shared);
            threads.push(std::thread::spawn(move || buffered_sync_loop(&s)));
        }
        let s = Arc::clone(&shared);
        threads.push(std::thread::spawn(move || housekeeping_loop(&s)));
        let s = Arc::clone(&shared);
        threads.push(std::thread::spawn(move || s.wal.refill_spares(&s.closing)));
        for _ in 0..shared.opts.background_threads.max(1) {
            let s = Arc::clone(&shared);
            threads.push(std::thread::spawn(move || {
                crate::background::worker(
                    &s.bg,
                    &s.closing,
                    |stripe| s.background_job(stripe),
                    |why| s.wal.poison(why),
                )
            }));
        }
        let db = Database { shared, threads };
        // Replayed memtables that are over the limit are flushed, and
        // stripes left with more tables than the compaction bound (by an
        // older version, or a crash before a compaction) compacted, in the
        // background: open does not wait for either.
        for s in 0..STRIPES {
            let mut st = lock(&db.shared.stripes[s]);
            if db.shared.memory.stripe_over(st.mem.bytes(), st.wal_bytes) {
                db.shared.seal(s, &mut st)?;
            } else if st.tables.len() > db.shared.opts.compaction_trigger.max(1) {
                db.shared.bg.schedule(s);
            }
        }
        Ok(db)
    }

    /// Open a pinned snapshot for reading: every read works as on the
    /// database at the snapshot's LSN; writes, flushes and compactions are
    /// refused. Nothing in the database directory is changed, and `LOCK` is
    /// not taken (the snapshot's files stay while `held` lives).
    ///
    /// ```
    /// use kstone_core::{Database, HeldSnapshot, Options, item_from_plain_json};
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("p");
    /// let db = Database::create(&path, Options::default()).unwrap();
    /// db.put(b"k", None, &item_from_plain_json("{}").unwrap()).unwrap();
    /// db.close().unwrap();
    /// let held = HeldSnapshot::acquire(&path, Options::default()).unwrap();
    /// let view = Database::open_snapshot(held, Options::default()).unwrap();
    /// assert!(view.get(b"k", None).unwrap().is_some());
    /// assert!(view.put(b"k", None, &item_from_plain_json("{}").unwrap()).is_err());
    /// ```
    pub fn open_snapshot(
        held: crate::snapshot::remote::HeldSnapshot,
        opts: Options,
    ) -> Result<Database> {
        let cache = crate::sst::cache::BlockCache::new(opts.block_cache_bytes);
        let rec = crate::snapshot::view::recovered(held.snapshot(), held.dir(), cache.as_ref())?;
        let dir = held.dir().to_path_buf();
        let shared = Shared::assemble(dir, opts, rec, cache, Access::Snapshot(Box::new(held)))?;
        Ok(Database {
            shared,
            threads: Vec::new(),
        })
    }

    /// Open the database at `dir` for reading, without ever taking `LOCK`
    /// for longer than it takes to pin a snapshot: the snapshot comes from
    /// the process that has the database open, or is held on disk if nobody
    /// has. See [`Database::open_snapshot`].
    pub fn open_read_only(dir: impl AsRef<Path>, opts: Options) -> Result<Database> {
        let held = crate::snapshot::remote::HeldSnapshot::acquire(dir.as_ref(), opts.clone())?;
        Database::open_snapshot(held, opts)
    }

    /// The snapshot this database was opened on ([`Database::open_snapshot`]),
    /// with the pid of the process that pinned it if another process has the
    /// database open; `None` for a database opened for writing.
    pub fn snapshot_source(&self) -> Option<(&crate::snapshot::Snapshot, Option<u32>)> {
        match &self.shared.access {
            Access::Owner(_) => None,
            Access::Snapshot(h) => Some((h.snapshot(), h.owner())),
        }
    }

    /// Pin a consistent snapshot. Writers are paused only while every
    /// stripe's state is read (no I/O beyond `stat` of sealed WAL segments).
    ///
    /// ```
    /// use kstone_core::{Database, Options, item_from_plain_json};
    /// let dir = tempfile::tempdir().unwrap();
    /// let db = Database::create(dir.path().join("p"), Options::default()).unwrap();
    /// db.put(b"k", None, &item_from_plain_json("{}").unwrap()).unwrap();
    /// let pin = db.pin().unwrap();
    /// assert_eq!(pin.snapshot().lsn, 1);
    /// assert!(pin.snapshot().files.iter().any(|f| f.name.starts_with("wal/")));
    /// ```
    pub fn pin(&self) -> Result<Pin> {
        self.shared.pin()
    }

    /// [`Database::pin`] without waiting for the snapshot's writes to reach
    /// stable storage (a `Buffered` database syncs within its sync
    /// interval). Whoever copies them anywhere must first wait for the
    /// returned mark with [`Database::wait_durable`]: a backup or archive
    /// must never hold a write that a power cut could still undo. Lets a
    /// WAL archiver read while the fsyncs run.
    pub fn pin_unsynced(&self) -> Result<(Pin, DurableMark)> {
        let db: Arc<dyn Send + Sync> = Arc::clone(&self.shared) as Arc<dyn Send + Sync>;
        let sh = &self.shared;
        crate::snapshot::take_unsynced(&sh.stripes, &sh.wal, &sh.versions, &sh.pins, db)
            .map(|(pin, seq)| (pin, DurableMark(seq)))
    }

    /// Return once every write of a [`Database::pin_unsynced`] snapshot is
    /// on stable storage.
    pub fn wait_durable(&self, w: DurableMark) -> Result<()> {
        self.shared.wal.wait_synced(w.0)
    }

    #[cfg(test)]
    pub(crate) fn background(&self) -> &Background {
        &self.shared.bg
    }

    pub(crate) fn stripe_state(&self, s: usize) -> MutexGuard<'_, StripeState> {
        lock(&self.shared.stripes[s])
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.shared.dir
    }

    /// The key schema of the database at `dir`, read from its `MANIFEST`
    /// without opening it (no `LOCK`, nothing changed).
    pub fn key_schema_of(dir: impl AsRef<Path>) -> Result<KeySchema> {
        Ok(Manifest::load(dir.as_ref())?.key_schema)
    }

    /// The database's key schema (how key bytes read, what writes must meet).
    pub fn key_schema(&self) -> &KeySchema {
        self.shared.versions.key_schema()
    }

    /// The stored key of typed key parts, checked against the schema (types,
    /// sizes; an empty sort key is left to `put` to refuse, so that an item
    /// a format-1 database holds under one can still be read and deleted).
    pub fn key(&self, pk: &KeyAttr, sk: Option<&KeyAttr>) -> Result<Key> {
        let s = self.shared.versions.key_schema();
        s.check_values(pk, sk)?;
        let key = Key::new(
            &s.encode(pk)?,
            sk.map(|a| s.encode(a)).transpose()?.as_deref(),
        )?;
        s.check_key(&key.pk, key.sk.as_deref())?;
        Ok(key)
    }

    /// Store `item` under (pk, sk), replacing any previous item. Returns the
    /// write's LSN. In `Sync` mode the write is durable when this returns.
    /// The key is checked against the [key schema](Database::key_schema).
    pub fn put(&self, pk: &[u8], sk: Option<&[u8]>, item: &Item) -> Result<u64> {
        // One operation: no batch, stamp or result vectors to allocate.
        let e = crate::write::prepare_entry(pk, sk, item)?;
        self.write_one(e)
    }

    /// Delete the item at (pk, sk) (a no-op if absent, but still logged).
    pub fn delete(&self, pk: &[u8], sk: Option<&[u8]>) -> Result<u64> {
        self.write_one(MemEntry::new(KeyRef::new(pk, sk)?, 0, None))
    }

    /// Check one validated operation against the key schema, then log and
    /// apply it alone.
    fn write_one(&self, e: MemEntry) -> Result<u64> {
        self.check_schema(&e)?;
        self.shared
            .write_one((Pending::Data(e), None))
            .map(|(lsn, _)| lsn)
    }

    /// The key schema's rule for a put or a delete.
    fn check_schema(&self, e: &MemEntry) -> Result<()> {
        let schema = self.shared.versions.key_schema();
        let k = e.key_ref();
        match e.value() {
            Some(_) => schema.check_put(k.pk, k.sk),
            None => schema.check_key(k.pk, k.sk),
        }
    }

    /// Apply a [`WriteBatch`] with one group commit: each touched stripe's
    /// WAL gets one write and (in `Sync` mode) the whole batch shares one
    /// fsync round. Returns each operation's LSN, in the order added.
    ///
    /// **A batch is not atomic**: each item is, and once this returns `Ok`
    /// all of them are durable, but a crash during the call, or an error it
    /// returns (a full disk, say), can leave any subset of the batch
    /// applied. Later operations on the same key win.
    pub fn write(&self, batch: WriteBatch) -> Result<Vec<u64>> {
        for (op, _) in &batch.ops {
            if let Pending::Data(e) = op {
                self.check_schema(e)?;
            }
        }
        Ok(self
            .shared
            .write_prepared(batch.ops)?
            .into_iter()
            .map(|(l, _)| l)
            .collect())
    }

    /// [`Database::write`] of a slice of operations. Every operation is
    /// validated before anything is written, so a bad item rejects the whole
    /// batch.
    pub fn write_batch(&self, ops: &[WriteOp]) -> Result<Vec<u64>> {
        let prepared = ops
            .iter()
            .map(|op| prepare(op).map(|e| (Pending::Data(e), None)))
            .collect::<Result<Vec<_>>>()?;
        self.write(WriteBatch { ops: prepared })
    }

    /// Record a named restore point in the WAL (durably, whatever the
    /// durability mode). Point-in-time restore can stop exactly here.
    /// Returns its LSN and commit timestamp.
    pub fn create_restore_point(&self, name: &str) -> Result<(u64, u64)> {
        self.shared.restore_point(name)
    }

    /// Look up many keys; results in input order.
    pub fn batch_get(&self, keys: &[(Vec<u8>, Option<Vec<u8>>)]) -> Result<Vec<Option<Item>>> {
        keys.iter()
            .map(|(pk, sk)| self.get(pk, sk.as_deref()))
            .collect()
    }

    /// Flush every stripe and merge each stripe's SSTs into one, dropping
    /// overwritten versions and tombstones. Reads and writes go on meanwhile.
    pub fn compact(&self) -> Result<()> {
        self.flush_each(crate::compaction::compact_full)
    }

    /// Flush every stripe's memtable to SSTs (and retire their WAL segments),
    /// waiting for any background flush of the same stripe; then compact the
    /// stripes that have too many tables, as the background would.
    pub fn flush(&self) -> Result<()> {
        let trigger = self.shared.opts.compaction_trigger;
        self.flush_each(|cx, stripe| crate::compaction::compact_if_needed(cx, stripe, trigger))
    }

    /// Write every stripe's memtables to SSTs on this thread, after any
    /// background job of the stripe, then run `then` on the stripe.
    fn flush_each(
        &self,
        then: impl Fn(&FlushCtx<'_>, &Mutex<StripeState>) -> Result<()>,
    ) -> Result<()> {
        self.shared.check_writable()?;
        for s in 0..STRIPES {
            let _job = lock(&self.shared.jobs[s]);
            self.shared.seal_now(s)?;
            self.shared.flush_ctx(s, |cx| {
                let stripe = &self.shared.stripes[s];
                crate::flush::flush_sealed(cx, stripe, &self.shared.memory, &self.shared.bg)?;
                then(cx, stripe)
            })?;
        }
        Ok(())
    }

    /// The item at (pk, sk), or `None`.
    pub fn get(&self, pk: &[u8], sk: Option<&[u8]>) -> Result<Option<Item>> {
        self.lookup(KeyRef::new(pk, sk)?, decode_item)
    }

    /// `f` of the newest stored bytes of `key`: lent from the cached (or
    /// just read) block, or copied out of the memtable so the stripe lock is
    /// not held while `f` runs; `None` if absent or deleted.
    fn lookup<R>(&self, key: KeyRef<'_>, f: impl FnOnce(&[u8]) -> Result<R>) -> Result<Option<R>> {
        let tables = {
            let st = lock(&self.shared.stripes[crate::model::key::stripe_of(key.pk)]);
            if let Some(e) = st.mem_get_ref(key) {
                // Copied out, so `f` (an item decode) runs without the stripe lock.
                let value = e.value().map(<[u8]>::to_vec);
                drop(st);
                return value.map(|v| f(&v)).transpose();
            }
            st.tables.clone()
        };
        let mut enc = Vec::with_capacity(key.encoded_len());
        key.encode(&mut enc);
        for t in &tables {
            if let Some(found) = t.find(key, &enc)? {
                return found.value().map(f).transpose();
            }
        }
        Ok(None)
    }

    /// Read and check every block of every live SST (checksums, key order).
    /// Returns the number of entries read.
    pub fn verify_tables(&self) -> Result<u64> {
        let mut n = 0;
        for s in 0..STRIPES {
            let tables = lock(&self.shared.stripes[s]).tables.clone();
            for t in &tables {
                n += t.verify()?;
            }
        }
        Ok(n)
    }

    /// Read every block of every table (checksums) and decode every live
    /// item, stripes on up to four threads; returns the number of items.
    /// What a restore checks before it swaps a database in.
    pub fn check_items(&self) -> Result<u64> {
        let stripes: Vec<usize> = (0..STRIPES).collect();
        let counts = crate::parallel::try_map(&stripes, crate::parallel::cpu_threads(), |&s| {
            let tables = lock(&self.shared.stripes[s]).tables.clone();
            for t in &tables {
                t.verify()?;
            }
            let mut items = 0u64;
            self.stream_stripe(s, |e| {
                decode_item(e.value.unwrap_or_default())?;
                items += 1;
                Ok::<(), Error>(())
            })?;
            Ok::<u64, Error>(items)
        })?;
        Ok(counts.into_iter().sum())
    }

    /// Make every acknowledged write durable now (useful in `Buffered` mode).
    pub fn sync(&self) -> Result<()> {
        self.shared.wal.sync_all_written()
    }

    /// Sizes, counts and position of the database.
    pub fn stats(&self) -> Result<Stats> {
        let sh = &*self.shared;
        let mut st = Stats {
            stripes: STRIPES,
            key_schema: *sh.versions.key_schema(),
            ..Stats::default()
        };
        (st.last_lsn, st.last_commit_us) = sh.wal.last_stamp();
        let id = sh.versions.identity();
        st.db_id = id.db_id;
        st.history = id.history;
        st.restored_from = id.origin;
        st.written_since_open = sh.written.snapshot();
        st.background_error = sh.bg.error();
        for s in &sh.stripes {
            let s = lock(s);
            let (bytes, entries) = s.mem_usage();
            if s.tables.is_empty() && s.wal_ids.is_empty() && entries == 0 {
                continue;
            }
            st.active_stripes += 1;
            st.sst_files += s.tables.len();
            st.max_tables_per_stripe = st.max_tables_per_stripe.max(s.tables.len());
            st.sst_bytes += s.tables.iter().map(|t| t.size()).sum::<u64>();
            st.approximate_items += s.tables.iter().map(|t| t.props().entries).sum::<u64>();
            st.memtable_bytes += bytes as u64;
            st.memtable_entries += entries as u64;
            st.sealed_memtables += s.sealed.len();
            st.approximate_items += entries as u64;
        }
        if st.active_stripes > 0 {
            st.mean_tables_per_stripe = st.sst_files as f64 / st.active_stripes as f64;
        }
        if let Some((snap, owner)) = self.snapshot_source() {
            st.snapshot_lsn = Some(snap.lsn);
            st.owner_pid = owner;
            // The directory's WAL has moved on since: count the snapshot's.
            for f in snap
                .files
                .iter()
                .filter(|f| f.kind == crate::snapshot::FileKind::Wal)
            {
                st.wal_segments += 1;
                st.wal_bytes += f.len;
            }
            return Ok(st);
        }
        let wal = sh.dir.join("wal");
        for e in fs::read_dir(&wal).ctx(&wal)? {
            let e = e.ctx(&wal)?;
            if crate::wal::segment::parse_name(&e.file_name().to_string_lossy()).is_some() {
                // A background flush may retire a segment while we look.
                match e.metadata() {
                    Ok(m) => {
                        st.wal_segments += 1;
                        st.wal_bytes += m.len();
                    }
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                    Err(err) => return Err(err).ctx(&e.path()),
                }
            }
        }
        Ok(st)
    }

    /// Sync the WAL and release the database. Errors are reported here rather
    /// than lost in `Drop`.
    pub fn close(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if self.threads.is_empty() {
            return Ok(()); // already shut down (close, then drop)
        }
        // The WAL holds every write, so a failed flush loses nothing: it is
        // reported, and the next open replays the log instead.
        let sh = &self.shared;
        let flushed = if sh.opts.flush_on_close
            && sh.memory.held() > sh.opts.memtable_budget / 16
            && sh.wal.check().is_ok()
        {
            self.flush_each(|_, _| Ok(()))
        } else {
            Ok(())
        };
        self.shared.closing.close();
        self.shared.bg.wake_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // A short-lived writer's compactions never get their turn in the
        // background: pay that debt here, so no stripe is left with more
        // tables than the bound reads rely on, however short the process.
        let compacted = if flushed.is_ok() && sh.wal.check().is_ok() {
            self.compact_over_trigger()
        } else {
            Ok(())
        };
        self.shared.wal.close()?;
        flushed.and(compacted)
    }

    /// Compact every stripe that has more tables than the trigger.
    fn compact_over_trigger(&self) -> Result<()> {
        let trigger = self.shared.opts.compaction_trigger.max(1);
        for s in 0..STRIPES {
            if lock(&self.shared.stripes[s]).tables.len() > trigger {
                let _job = lock(&self.shared.jobs[s]);
                self.shared.flush_ctx(s, |cx| {
                    crate::compaction::compact_if_needed(cx, &self.shared.stripes[s], trigger)
                })?;
            }
        }
        Ok(())
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl Shared {
    /// The one place a `Shared` is put together from recovered state.
    fn assemble(
        dir: PathBuf,
        opts: Options,
        rec: crate::recovery::Recovered,
        cache: Option<Arc<crate::sst::cache::BlockCache>>,
        access: Access,
    ) -> Result<Arc<Shared>> {
        let owner = matches!(access, Access::Owner(_));
        let last = Clock {
            lsn: rec.last_lsn,
            ts: rec.last_ts,
        };
        let wal = Wal::open(&dir, &opts, owner, last)?;
        let held = rec.stripes.iter().map(|s| s.mem.bytes()).sum();
        Ok(Arc::new(Shared {
            stripes: rec.stripes.into_iter().map(Mutex::new).collect(),
            wal,
            versions: VersionSet::new(dir.clone(), rec.manifest, rec.next_file_id),
            memory: MemoryBudget::new(&opts, held),
            pins: Arc::new(Pins::new(dir.clone(), rec.registry)),
            closing: Closing::default(),
            jobs: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            bg: Background::default(),
            cache,
            written: Default::default(),
            access,
            dir,
            opts,
        }))
    }

    /// Refuse anything that would change the database through a snapshot.
    pub(crate) fn check_writable(&self) -> Result<()> {
        match &self.access {
            Access::Owner(_) => Ok(()),
            Access::Snapshot(h) => Err(Error::ReadOnly {
                path: self.dir.clone(),
                lsn: h.snapshot().lsn,
            }),
        }
    }

    fn pin(self: &Arc<Self>) -> Result<Pin> {
        let db: Arc<dyn Send + Sync> = Arc::clone(self) as Arc<dyn Send + Sync>;
        crate::snapshot::take(&self.stripes, &self.wal, &self.versions, &self.pins, db)
    }

    /// The components a flush or compaction of stripe `s` works with.
    fn flush_ctx<R>(&self, s: usize, f: impl FnOnce(&FlushCtx<'_>) -> R) -> R {
        f(&FlushCtx {
            stripe: s,
            compression: self.opts.compression,
            cache: self.cache.as_ref(),
            written: &self.written,
            versions: &self.versions,
            pins: &self.pins,
        })
    }

    /// A background worker's job for stripe `s`: flush its sealed
    /// memtables, then compact it if it has too many tables.
    fn background_job(&self, s: usize) -> Result<()> {
        let _job = lock(&self.jobs[s]);
        let stripe = &self.stripes[s];
        self.flush_ctx(s, |cx| {
            crate::flush::flush_sealed(cx, stripe, &self.memory, &self.bg)?;
            crate::compaction::compact_if_needed(cx, stripe, self.opts.compaction_trigger)
        })
    }

    /// Seal the stripe's memtable (caller holds the stripe lock) and hand it
    /// to the background.
    fn seal(&self, s: usize, st: &mut StripeState) -> Result<()> {
        if self.seal_locked(st)? {
            self.bg.schedule(s);
        }
        Ok(())
    }

    /// Seal the stripe's memtable now, without scheduling (an explicit
    /// flush does the work itself).
    fn seal_now(&self, s: usize) -> Result<()> {
        self.seal_locked(&mut lock(&self.stripes[s])).map(|_| ())
    }

    /// Make the active segment durable and seal the memtable; false if it
    /// was empty.
    fn seal_locked(&self, st: &mut StripeState) -> Result<bool> {
        if st.mem.is_empty() {
            return Ok(false);
        }
        if let Some(seg) = st.wal.as_mut() {
            self.wal.seal_segment(seg)?;
        }
        let bytes = st.mem.bytes();
        let sealed = st.seal();
        if sealed {
            self.memory.sealed(bytes);
        }
        Ok(sealed)
    }
}

/// Every `remote::POLL`: let go of files nobody needs any more (WAL
/// segments the archivers have, files whose on-disk holder is done), and
/// answer other processes' snapshot and restore-point requests.
fn housekeeping_loop(sh: &Arc<Shared>) {
    let mut server = crate::snapshot::remote::Server::new(&sh.dir);
    loop {
        sh.pins.tidy();
        server.round(&sh.pins, || sh.pin(), |name| sh.restore_point(name));
        if !sh.closing.sleep(crate::snapshot::remote::POLL) {
            break;
        }
    }
    server.finish(&sh.pins);
}

fn buffered_sync_loop(sh: &Shared) {
    loop {
        let open = sh.closing.sleep(sh.opts.sync_interval);
        // An fsync failure poisons the group commit; writers then see it.
        let _ = sh.wal.sync_all_written();
        if !open {
            break;
        }
    }
}
