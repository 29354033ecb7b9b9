//! The exact number of live items in a snapshot, mostly from table
//! metadata rather than a scan.
//!
//! A table holds one version per key, so its live count is `entries -
//! tombstones` (its properties block). Tables whose key ranges do not
//! overlap cannot shadow each other, so a stripe whose tables are pairwise
//! disjoint and which has no unflushed WAL writes is counted without
//! reading a data block. Otherwise the stripe is split into a *base* — the
//! oldest tables, as many as are pairwise disjoint — counted from
//! properties, and an *overlay* — the newer tables and the WAL writes —
//! merged key by key; each overlay key is looked up in the base table whose
//! range holds it (bloom filter, then one block), so the count stays exact
//! and the cost follows the overlay, not the stripe.

use std::cmp::Ordering;
use std::path::Path;
use std::sync::Arc;

use super::Snapshot;
use crate::entry::Entry;
use crate::error::{Error, Result};
use crate::model::key::Key;
use crate::model::varint::Reader;
use crate::read::range::{KeyRange, Merge};
use crate::sst::reader::TableReader;

/// An open table and its key range (`None`: it holds no entry).
struct Table {
    reader: Arc<TableReader>,
    range: Option<(Key, Key)>,
}

impl Table {
    fn open(path: &Path) -> Result<Table> {
        let reader = Arc::new(TableReader::open(path)?);
        let p = reader.props();
        let range = if p.entries == 0 {
            None
        } else {
            let key = |b: &[u8]| {
                Key::decode(&mut Reader::new(b)).map_err(|e| Error::Corruption {
                    path: path.to_path_buf(),
                    offset: 0,
                    detail: format!("bad key range in the properties block: {e}"),
                })
            };
            Some((key(&p.first_key)?, key(&p.last_key)?))
        };
        Ok(Table { reader, range })
    }

    /// Live items by the properties: one version per key in a table.
    fn live(&self) -> u64 {
        let p = self.reader.props();
        p.entries.saturating_sub(p.tombstones)
    }

    fn holds(&self, key: &Key) -> bool {
        self.range
            .as_ref()
            .is_some_and(|(lo, hi)| lo <= key && key <= hi)
    }
}

/// Whether no two of `tables` have overlapping key ranges.
fn disjoint(tables: &[Table]) -> bool {
    let mut ranges: Vec<&(Key, Key)> = tables.iter().filter_map(|t| t.range.as_ref()).collect();
    ranges.sort_by(|a, b| a.0.cmp(&b.0));
    ranges
        .windows(2)
        .all(|w| w[0].1.cmp(&w[1].0) == Ordering::Less)
}

/// Whether `key` is live in the base (at most one base table can hold it).
fn live_in(base: &[Table], key: &Key) -> Result<bool> {
    let Some(t) = base.iter().find(|t| t.holds(key)) else {
        return Ok(false);
    };
    let mut enc = Vec::with_capacity(key.encoded_len());
    key.encode(&mut enc);
    Ok(t.reader
        .find(key.as_key_ref(), &enc)?
        .is_some_and(|f| f.value().is_some()))
}

impl Snapshot {
    /// Count the live items of the snapshot, reading its files under `dir`
    /// (the database directory, or a copy of the snapshot). Exact: restore
    /// and `verify --deep` compare a restored database's count with it.
    pub fn count_items(&self, dir: &Path) -> Result<u64> {
        let mut count = 0u64;
        for (stripe, (ssts, wals)) in self.per_stripe() {
            // Newest first, as the stripe reads them.
            let tables = ssts
                .iter()
                .map(|name| Table::open(&dir.join(name)))
                .collect::<Result<Vec<_>>>()?;
            let mut split = tables.len();
            while split > 0 && disjoint(&tables[split - 1..]) {
                split -= 1;
            }
            let (overlay, base) = tables.split_at(split);
            let mem = self.memtable(dir, stripe, &wals)?;
            let live: u64 = base.iter().map(Table::live).sum();
            if overlay.is_empty() && mem.is_empty() {
                count += live;
                continue;
            }
            let all = KeyRange::all();
            let mut sources: Vec<Box<dyn Iterator<Item = Result<Entry>>>> =
                vec![Box::new(mem.range(&all, false).into_iter().map(Ok))];
            for t in overlay {
                sources.push(Box::new(t.reader.range(&all, false)));
            }
            // The overlay's newest version of each key replaces whatever
            // the base holds for it.
            let (mut added, mut shadowed) = (0u64, 0u64);
            for e in Merge::new(sources, false) {
                let e = e?;
                added += u64::from(e.value.is_some());
                shadowed += u64::from(live_in(base, &e.key)?);
            }
            // Each shadowed key is a distinct live key of the base.
            count += (live + added).checked_sub(shadowed).ok_or_else(|| {
                Error::Malformed(format!(
                    "stripe {stripe}: table properties count fewer live items than its keys"
                ))
            })?;
        }
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use crate::{item_from_plain_json, Database, Options};

    type Model = BTreeMap<(Vec<u8>, Vec<u8>), bool>;

    fn put(db: &Database, m: &mut Model, pk: &str, sk: &str) {
        let item = item_from_plain_json(&format!("{{\"v\":\"{pk}{sk}\"}}")).unwrap();
        db.put(pk.as_bytes(), Some(sk.as_bytes()), &item).unwrap();
        m.insert((pk.into(), sk.into()), true);
    }

    fn del(db: &Database, m: &mut Model, pk: &str, sk: &str) {
        db.delete(pk.as_bytes(), Some(sk.as_bytes())).unwrap();
        m.insert((pk.into(), sk.into()), false);
    }

    /// The snapshot's count, checked against the model and a full scan.
    fn check(db: &Database, m: &Model) {
        let want = m.values().filter(|&&live| live).count() as u64;
        let pin = db.pin().unwrap();
        assert_eq!(pin.snapshot().count_items(db.path()).unwrap(), want);
        assert_eq!(
            db.for_each_item(|_, _| Ok::<(), crate::Error>(())).unwrap(),
            want
        );
    }

    fn db() -> (tempfile::TempDir, Database) {
        let tmp = tempfile::tempdir().unwrap();
        let db = Database::create(tmp.path().join("db"), Options::default()).unwrap();
        (tmp, db)
    }

    /// Two tables of one stripe holding the same keys: the properties
    /// alone would count the overwritten keys twice.
    #[test]
    fn overwrites_across_tables_are_counted_once() {
        let (_t, db) = db();
        let mut m = Model::new();
        for i in 0..100 {
            put(&db, &mut m, "p", &format!("{i:03}"));
        }
        db.flush().unwrap();
        for i in 50..150 {
            put(&db, &mut m, "p", &format!("{i:03}"));
        }
        db.flush().unwrap();
        check(&db, &m);
    }

    /// Tombstones in a newer table or in the WAL hide live keys of older
    /// tables; a delete of a missing key hides nothing.
    #[test]
    fn deletes_in_tables_and_in_the_wal_are_subtracted_once() {
        let (_t, db) = db();
        let mut m = Model::new();
        for i in 0..100 {
            put(&db, &mut m, "p", &format!("{i:03}"));
        }
        db.flush().unwrap();
        for i in 0..30 {
            del(&db, &mut m, "p", &format!("{i:03}"));
        }
        del(&db, &mut m, "p", "missing-1");
        db.flush().unwrap();
        check(&db, &m);
        for i in 25..40 {
            del(&db, &mut m, "p", &format!("{i:03}"));
        }
        del(&db, &mut m, "p", "missing-2");
        check(&db, &m);
    }

    /// Unflushed writes (new keys, overwrites, a delete then a re-put) are
    /// read from the WAL and merged with the tables.
    #[test]
    fn writes_still_in_the_wal_are_counted() {
        let (_t, db) = db();
        let mut m = Model::new();
        for i in 0..100 {
            put(&db, &mut m, "p", &format!("{i:03}"));
            put(&db, &mut m, &format!("q{i}"), "s");
        }
        db.flush().unwrap();
        for i in 90..120 {
            put(&db, &mut m, "p", &format!("{i:03}"));
        }
        del(&db, &mut m, "q1", "s");
        put(&db, &mut m, "q1", "s");
        del(&db, &mut m, "q2", "s");
        check(&db, &m);
    }

    /// Disjoint tables of one stripe are counted from their properties;
    /// a newer table overlapping one of them is merged on top.
    #[test]
    fn disjoint_tables_and_an_overlay_on_one_of_them() {
        let (_t, db) = db();
        let mut m = Model::new();
        for lo in [0, 100, 200] {
            for i in lo..lo + 100 {
                put(&db, &mut m, "p", &format!("{i:03}"));
            }
            db.flush().unwrap();
        }
        check(&db, &m);
        del(&db, &mut m, "p", "150");
        put(&db, &mut m, "p", "150x");
        db.flush().unwrap();
        del(&db, &mut m, "p", "250");
        check(&db, &m);
        db.compact().unwrap();
        check(&db, &m);
    }

    /// Random puts, deletes, flushes and compactions over a few partitions:
    /// the count always matches the model.
    #[test]
    fn random_histories_count_exactly() {
        let (_t, db) = db();
        let mut m = Model::new();
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for round in 0..40 {
            for _ in 0..next(120) {
                let pk = format!("p{}", next(3));
                let sk = format!("{:03}", next(200));
                if next(4) == 0 {
                    del(&db, &mut m, &pk, &sk);
                } else {
                    put(&db, &mut m, &pk, &sk);
                }
            }
            match next(6) {
                0 => db.compact().unwrap(),
                1 | 2 => db.flush().unwrap(),
                _ => {}
            }
            if round % 4 == 3 {
                check(&db, &m);
            }
        }
        check(&db, &m);
    }
}
