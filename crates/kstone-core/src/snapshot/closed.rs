//! The snapshot of a database nobody has open, read from its files without
//! changing any of them: the manifest's SSTs plus every live WAL segment up
//! to its last whole record. `open` would replay the same records, so the
//! snapshot holds exactly what the database holds.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::{FileKind, Snapshot, SnapshotFile};
use crate::error::{Error, IoContext, Result};
use crate::manifest::Manifest;
use crate::wal::segment;

/// A closed database's snapshot, and the valid length of the WAL segments
/// read (with `every_segment`, obsolete ones too: the WAL archiver reads
/// those).
pub struct ClosedSnapshot {
    pub snapshot: Snapshot,
    pub wal_lens: HashMap<String, u64>,
}

/// Read the snapshot of the closed database at `dir`. A damaged or
/// inconsistent file is an error (`open` would refuse it too, or repair it
/// first). The caller makes sure nobody opens the database meanwhile, or
/// checks afterwards that nobody did.
pub fn read(dir: &Path, every_segment: bool) -> Result<ClosedSnapshot> {
    let manifest = Manifest::load(dir)?;
    let mut files = Vec::new();
    let mut approximate_items = 0;
    let (mut lsn, mut ts) = (0, 0);
    for (&s, sm) in &manifest.stripes {
        lsn = lsn.max(sm.flushed_lsn);
        ts = ts.max(sm.max_ts);
        for t in &sm.ssts {
            let name = format!("sst/{}", crate::sst::file_name(s as usize, t.id));
            // A missing or damaged SST is found by whoever reads it; the
            // WAL archiver must go on without it.
            let len = t.size;
            files.push(SnapshotFile {
                name,
                kind: FileKind::Sst,
                len,
            });
            approximate_items += t.entries;
        }
    }
    let wal_dir = dir.join("wal");
    let mut segs: BTreeMap<(usize, u64), String> = BTreeMap::new();
    for e in std::fs::read_dir(&wal_dir).ctx(&wal_dir)? {
        let name = e.ctx(&wal_dir)?.file_name().to_string_lossy().into_owned();
        if let Some(k) = segment::parse_name(&name) {
            segs.insert(k, name);
        }
    }
    let mut wal_lens = HashMap::new();
    // (stripe, previous live segment id, whether it was torn)
    let mut prev: Option<(usize, u64, bool)> = None;
    for ((s, id), name) in segs {
        let meta = manifest.stripe(s);
        if id < meta.log_start && !every_segment {
            continue; // obsolete, kept only until archived
        }
        let path = wal_dir.join(&name);
        let scan = segment::scan(&path)?;
        let rel = format!("wal/{name}");
        wal_lens.insert(rel.clone(), scan.valid_len);
        let Some(h) = scan.header else { continue };
        for r in &scan.records {
            if r.lsn > lsn {
                lsn = r.lsn;
            }
            ts = ts.max(r.ts);
        }
        if id < meta.log_start {
            continue;
        }
        let corrupt = |detail: String| Error::Corruption {
            path: path.clone(),
            offset: 0,
            detail,
        };
        if h.stripe as usize != s || h.id != id {
            return Err(corrupt("the header does not match the file name".into()));
        }
        let expect = match prev {
            Some((ps, _, true)) if ps == s => {
                return Err(corrupt(
                    "damaged record in a WAL segment that is not the last".into(),
                ))
            }
            Some((ps, pid, _)) if ps == s => Some(pid),
            _ => None,
        };
        let missing = match expect {
            Some(p) => h.prev != p,
            None => h.prev >= meta.log_start && h.prev != 0,
        };
        if missing {
            return Err(corrupt(format!(
                "WAL segment {} of stripe {s} is missing",
                h.prev
            )));
        }
        prev = Some((s, id, scan.is_torn()));
        approximate_items += scan
            .records
            .iter()
            .filter(|r| r.lsn > meta.flushed_lsn)
            .count() as u64;
        files.push(SnapshotFile {
            name: rel,
            kind: FileKind::Wal,
            len: scan.valid_len,
        });
    }
    let mut manifest = manifest;
    let next_id = files
        .iter()
        .filter_map(|f| {
            let base = f.name.rsplit('/').next()?;
            match f.kind {
                FileKind::Sst => crate::sst::parse_name(base),
                FileKind::Wal => segment::parse_name(base),
            }
        })
        .map(|(_, id)| id + 1)
        .max()
        .unwrap_or(0);
    manifest.next_file_id = manifest.next_file_id.max(next_id);
    Ok(ClosedSnapshot {
        snapshot: Snapshot {
            db_id: manifest.db_id.clone(),
            lsn,
            commit_ts: ts,
            taken_at_us: crate::fsio::now_micros(),
            manifest,
            files,
            approximate_items,
        },
        wal_lens,
    })
}
