//! Ingesting logged records straight into tables: what a point-in-time
//! restore does with an archive. The write path logs every record to the WAL
//! and inserts it into a memtable that is flushed later, one manifest commit
//! per stripe; here each stripe's records are sorted in a memtable of their
//! own and written as one SST, stripes on parallel threads, and one manifest
//! commit adds every table. Nothing is written to the WAL: the tables are
//! the records' only copy once the commit is durable, and before it nothing
//! refers to them.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::fsio::sync_dir;
use crate::manifest::SstMeta;
use crate::memtable::{MemEntry, Memtable};
use crate::model::key::STRIPES;
use crate::mutex::lock;
use crate::sst::reader::TableReader;
use crate::wal::record::{Op, Record};

use super::{Database, Shared};

/// One stripe's records to ingest: its versions and their newest commit time.
type Group = (Vec<MemEntry>, u64);

/// One stripe's new table, built and fsynced but not yet committed.
struct StripeTable {
    stripe: usize,
    meta: SstMeta,
    table: Arc<TableReader>,
    path: PathBuf,
    max_lsn: u64,
    max_ts: u64,
}

impl Database {
    /// Add `records` (in LSN order, all after this database's last write) as
    /// new tables, one per touched stripe, built on up to four threads and
    /// committed together. Later versions of a key win; a restore point
    /// (marker) only advances the clock.
    ///
    /// For a database no one else writes to, such as a restore's staging
    /// copy: earlier writes are flushed first, and a write that arrives while
    /// the tables are built fails the ingest (nothing of it is committed).
    pub fn ingest_logged(&self, records: Vec<Record>) -> Result<()> {
        let sh = &self.shared;
        sh.check_writable()?;
        let (mut prev, _) = sh.wal.last_stamp();
        for r in &records {
            if r.lsn <= prev {
                return Err(Error::InvalidInput(format!(
                    "replayed LSN {} does not follow {prev}",
                    r.lsn
                )));
            }
            prev = r.lsn;
        }
        let Some(&Record {
            lsn: last_lsn,
            ts: last_ts,
            ..
        }) = records.last()
        else {
            return Ok(());
        };
        // The new tables go above every table of their stripes, so no older
        // write may stay in a memtable (which reads consult first).
        self.flush_each(|_, _| Ok(()))?;
        let _jobs: Vec<_> = sh.jobs.iter().map(lock).collect();
        sh.check_quiet()?;
        sh.wal.stamp(|clock| clock.follow(last_lsn, last_ts));

        let mut groups: Vec<Group> = (0..STRIPES).map(|_| Default::default()).collect();
        for r in records {
            let e = match r.op {
                Op::Put { key, value } => MemEntry::new(key.as_key_ref(), r.lsn, Some(&value)),
                Op::Delete { key } => MemEntry::new(key.as_key_ref(), r.lsn, None),
                Op::Marker { .. } => continue,
            };
            let (versions, max_ts) = &mut groups[e.stripe()];
            versions.push(e);
            *max_ts = (*max_ts).max(r.ts);
        }
        let built = sh.build_tables(groups)?;
        let committed = sync_dir(&sh.dir.join("sst"))
            .and_then(|()| sh.check_quiet())
            .and_then(|()| {
                sh.versions.commit(|next| {
                    for t in &built {
                        let sm = next.stripes.entry(t.stripe as u16).or_default();
                        sm.ssts.insert(0, t.meta.clone());
                        sm.flushed_lsn = sm.flushed_lsn.max(t.max_lsn);
                        sm.max_ts = sm.max_ts.max(t.max_ts);
                    }
                    Ok(())
                })
            });
        if let Err(e) = committed {
            // Nothing refers to the tables: they go.
            for t in &built {
                let _ = std::fs::remove_file(&t.path);
            }
            return Err(e);
        }
        for t in built {
            lock(&sh.stripes[t.stripe]).tables.insert(0, t.table);
        }
        Ok(())
    }
}

impl Shared {
    /// Fails if any stripe holds unflushed writes: an ingest needs a
    /// database no one else writes to.
    fn check_quiet(&self) -> Result<()> {
        for st in &self.stripes {
            let st = lock(st);
            if !st.mem.is_empty() || !st.sealed.is_empty() {
                return Err(Error::InvalidInput(
                    "writes arrived while records were ingested: ingest into a database no one else writes to".into(),
                ));
            }
        }
        Ok(())
    }

    /// Build one table per non-empty group (indexed by stripe: its
    /// versions and their newest commit time) on up to four threads. On an
    /// error, every table built so far is removed.
    fn build_tables(&self, groups: Vec<Group>) -> Result<Vec<StripeTable>> {
        let jobs: Vec<(usize, Mutex<Group>)> = groups
            .into_iter()
            .enumerate()
            .filter(|(_, (g, _))| !g.is_empty())
            .map(|(s, g)| (s, Mutex::new(g)))
            .collect();
        let build = |(s, group): &(usize, Mutex<Group>)| -> Result<StripeTable> {
            let (versions, max_ts) = std::mem::take(&mut *lock(group));
            let mem = Memtable::from_versions(versions, max_ts);
            let (meta, table) =
                self.flush_ctx(*s, |cx| crate::flush::write_table(cx, &mem, false))?;
            let path = self
                .dir
                .join("sst")
                .join(crate::sst::file_name(*s, meta.id));
            Ok(StripeTable {
                stripe: *s,
                meta,
                table,
                path,
                max_lsn: mem.max_lsn(),
                max_ts: mem.max_ts(),
            })
        };
        let results =
            crate::parallel::map(&jobs, crate::parallel::cpu_threads(), build, Result::is_err);
        let mut done = Vec::with_capacity(results.len());
        let mut failed = None;
        for r in results {
            match r {
                Some(Ok(t)) => done.push(t),
                Some(Err(e)) => failed = failed.or(Some(e)),
                None => {
                    failed = failed.or(Some(Error::Internal("a table builder panicked".into())))
                }
            }
        }
        if let Some(e) = failed {
            for t in &done {
                let _ = std::fs::remove_file(&t.path);
            }
            return Err(e);
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::key::Key;
    use crate::model::value::{encode_item, Item, Value};
    use crate::options::Options;

    fn item(v: u64) -> Vec<u8> {
        let mut it = Item::new();
        it.insert("v".into(), Value::S(v.to_string()));
        let mut out = Vec::new();
        encode_item(&it, &mut out);
        out
    }

    fn put(lsn: u64, pk: &str, v: u64) -> Record {
        Record {
            lsn,
            ts: lsn * 10,
            op: Op::Put {
                key: Key::new(pk.as_bytes(), None).unwrap(),
                value: item(v),
            },
        }
    }

    fn read(db: &Database, pk: &str) -> Option<String> {
        let item = db.get(pk.as_bytes(), None).unwrap()?;
        match item.get("v") {
            Some(Value::S(s)) => Some(s.clone()),
            other => panic!("unexpected {other:?}"),
        }
    }

    /// Ingested records land above earlier writes (flushed or not), later
    /// versions win within the batch, deletes delete, markers move the clock,
    /// and everything survives a reopen.
    #[test]
    fn ingested_records_are_newest_and_durable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = Database::create(&path, Options::default()).unwrap();
        let mut batch = crate::WriteBatch::new();
        for i in 0..300u64 {
            let mut it = Item::new();
            it.insert("v".into(), Value::S("0".into()));
            batch.put(format!("k{i}").as_bytes(), None, &it).unwrap();
        }
        db.write(batch).unwrap();
        db.flush().unwrap();
        let mut it = Item::new();
        it.insert("v".into(), Value::S("1".into()));
        db.put(b"k0", None, &it).unwrap(); // in a memtable
        let (last, _) = db.shared.wal.last_stamp();

        let mut recs = Vec::new();
        let mut lsn = last;
        for i in 0..200u64 {
            lsn += 1;
            recs.push(put(lsn, &format!("k{i}"), 100 + i));
        }
        lsn += 1;
        recs.push(put(lsn, "k1", 7)); // a later version in the same batch
        lsn += 1;
        recs.push(Record {
            lsn,
            ts: lsn * 10,
            op: Op::Delete {
                key: Key::new(b"k2", None).unwrap(),
            },
        });
        lsn += 1;
        recs.push(Record {
            lsn,
            ts: lsn * 10,
            op: Op::Marker {
                name: "after".into(),
            },
        });
        db.ingest_logged(recs).unwrap();

        let check = |db: &Database, items: u64| {
            assert_eq!(read(db, "k0").as_deref(), Some("100"));
            assert_eq!(read(db, "k1").as_deref(), Some("7"));
            assert_eq!(read(db, "k2"), None);
            assert_eq!(read(db, "k199").as_deref(), Some("299"));
            assert_eq!(read(db, "k250").as_deref(), Some("0"));
            let n = db.for_each_encoded(|_, _| Ok::<(), Error>(())).unwrap();
            assert_eq!(n, items);
        };
        check(&db, 299);
        // The marker's LSN is taken: the next write follows it.
        let next = db.put(b"new", None, &Item::new()).unwrap();
        assert_eq!(next, lsn + 1);
        db.close().unwrap();
        let db = Database::open(&path, Options::default()).unwrap();
        check(&db, 300);
        assert!(db.get(b"new", None).unwrap().is_some());
    }

    #[test]
    fn out_of_order_records_are_refused_and_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let db = Database::create(&path, Options::default()).unwrap();
        db.put(b"a", None, &Item::new()).unwrap();
        let (last, _) = db.shared.wal.last_stamp();
        // At or below the last write, or going back.
        for recs in [
            vec![put(last, "x", 1)],
            vec![put(last + 2, "x", 1), put(last + 1, "y", 1)],
        ] {
            let err = db.ingest_logged(recs).unwrap_err();
            assert!(err.to_string().contains("does not follow"), "{err}");
        }
        assert!(db.get(b"x", None).unwrap().is_none());
        assert_eq!(db.shared.wal.last_stamp().0, last);
        let tables: usize = db.shared.stripes.iter().map(|s| lock(s).tables.len()).sum();
        assert_eq!(tables, 0);
    }
}
