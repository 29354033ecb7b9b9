//! `check`: a full integrity check of a database — every checksum, manifest ↔
//! files consistency, key order, stripe ownership and the key schema in every
//! SST, WAL chains and LSN order — collecting every problem instead of
//! stopping at the first.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::error::{Error, IoContext, Result};
use crate::manifest::Manifest;
use crate::snapshot::remote::Access;
use crate::sst::reader::TableReader;
use crate::wal::{commit_log, segment};

/// What `check` found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CheckReport {
    /// Damage or inconsistency: the database cannot be trusted as is.
    pub problems: Vec<String>,
    /// Harmless findings (e.g. leftovers of a crash that `open` removes).
    pub notes: Vec<String>,
    pub sst_files: u64,
    pub sst_entries: u64,
    pub wal_segments: u64,
    pub wal_records: u64,
    pub last_lsn: u64,
}

/// Check the database at `dir`. The check reads a pinned snapshot: the
/// one the process that has the database open pins, or, if nobody has, one
/// held on disk (`LOCK` is taken only while it is read), so the application
/// can open meanwhile. A database that needs recovery (a commit log left by
/// a crash) or whose files cannot be read as a snapshot is checked under
/// `LOCK`, to report every problem and every leftover.
pub fn check(dir: &Path) -> Result<CheckReport> {
    if !dir.join(crate::manifest::FILE_NAME).exists() {
        return Err(Error::NotADatabase(dir.to_path_buf()));
    }
    let mut r = CheckReport::default();
    let lock = match crate::snapshot::remote::pin_or_lock(dir)? {
        Access::Locked(l) => l,
        Access::Pinned(pin) => {
            r.notes.push(format!(
                "read from a live snapshot at lsn {} (process {} has the database open)",
                pin.snapshot().lsn,
                crate::lock::holder(dir).map_or("?".into(), |p| p.to_string())
            ));
            // The owner's commit log is live; its pin's WAL lengths are durable.
            check_snapshot(dir, pin.snapshot(), &mut r)?;
            return Ok(r);
        }
    };
    if commit_log::list(dir)?.is_empty() {
        if let Ok(closed) = crate::snapshot::closed::read(dir, false) {
            // Leftovers are noted while nobody can change the directory.
            orphan_notes(dir, &closed.snapshot.manifest, &mut r)?;
            tail_notes(dir, &closed, &mut r)?;
            let hold = crate::snapshot::hold::Hold::new(dir, closed.snapshot, lock);
            check_snapshot(dir, hold.snapshot(), &mut r)?;
            check_against_archive(dir, &mut r)?;
            return Ok(r);
        }
    }
    let manifest = match Manifest::load(dir) {
        Ok(m) => m,
        Err(e) => {
            r.problems.push(e.to_string());
            return Ok(r);
        }
    };
    check_manifest_files(dir, &manifest, &mut r)?;
    orphan_notes(dir, &manifest, &mut r)?;
    let redo = check_commit_logs(dir, &manifest, &mut r)?;
    check_wal(dir, &manifest, None, &redo, &mut r)?;
    check_against_archive(dir, &mut r)?;
    drop(lock);
    Ok(r)
}

/// Check a pinned snapshot's files: its SSTs whole, its WAL segments up to
/// their pinned lengths.
fn check_snapshot(dir: &Path, s: &crate::snapshot::Snapshot, r: &mut CheckReport) -> Result<()> {
    let lens = s
        .files
        .iter()
        .filter(|f| f.kind == crate::snapshot::FileKind::Wal)
        .map(|f| (f.name.clone(), f.len))
        .collect();
    check_manifest_files(dir, &s.manifest, r)?;
    check_wal(dir, &s.manifest, Some(&lens), &Redo::new(), r)
}

/// Notes on what a crash left at the end of a closed database's WAL
/// (a torn last record, an empty last segment): harmless, `open` repairs
/// them, and a snapshot's pinned lengths leave them out.
fn tail_notes(
    dir: &Path,
    closed: &crate::snapshot::closed::ClosedSnapshot,
    r: &mut CheckReport,
) -> Result<()> {
    let mut names: Vec<&String> = closed.wal_lens.keys().collect();
    names.sort();
    for name in names {
        let valid = closed.wal_lens[name];
        let path = dir.join(name);
        let data = std::fs::read(&path).ctx(&path)?;
        let in_snapshot = closed.snapshot.files.iter().any(|f| &f.name == name);
        if !in_snapshot && valid == 0 {
            r.notes.push(format!(
                "{}: empty segment left by a crash (open removes it)",
                path.display()
            ));
        } else if in_snapshot
            && data
                .get(valid as usize..)
                .is_some_and(|t| t.iter().any(|&b| b != 0))
        {
            r.notes.push(format!(
                "{}: torn record at offset {valid} (a crash mid-write; open truncates it)",
                path.display()
            ));
        }
    }
    Ok(())
}

/// A repository that archived writes the database no longer has means the
/// WAL lost acknowledged writes (a damaged or unsynced tail): `open` keeps
/// LSNs above them, but the loss is damage to report, not a torn write.
fn check_against_archive(dir: &Path, r: &mut CheckReport) -> Result<()> {
    for (id, reg) in crate::wal::archive_mark::registrations(dir)? {
        if reg.started && reg.archived_lsn > r.last_lsn {
            r.problems.push(format!(
                "the database ends at LSN {} but repository {} ({id}) archived writes through LSN {}: \
                 writes after LSN {} were lost from the WAL (restore them from the archive)",
                r.last_lsn,
                if reg.location.is_empty() { "?" } else { &reg.location },
                reg.archived_lsn,
                r.last_lsn
            ));
        }
    }
    Ok(())
}

use commit_log::Redo;

/// Check the commit logs a crash left and return their entries (an open
/// database writes them back into the WAL, so the WAL is checked as open
/// will see it).
fn check_commit_logs(dir: &Path, m: &Manifest, r: &mut CheckReport) -> Result<Redo> {
    match commit_log::read_all(dir, m) {
        Ok((logs, redo)) => {
            for path in logs {
                r.notes.push(format!(
                    "{}: left by a crash (open writes its entries back into the WAL)",
                    path.display()
                ));
            }
            Ok(redo)
        }
        Err(e) => {
            r.problems.push(e.to_string());
            Ok(Redo::new())
        }
    }
}

fn check_manifest_files(dir: &Path, m: &Manifest, r: &mut CheckReport) -> Result<()> {
    for (&s, sm) in &m.stripes {
        let s = s as usize;
        if s >= crate::model::key::STRIPES {
            r.problems
                .push(format!("MANIFEST names stripe {s}, beyond 255"));
            continue;
        }
        for t in &sm.ssts {
            let name = crate::sst::file_name(s, t.id);
            let path = dir.join("sst").join(&name);
            if !path.exists() {
                r.problems.push(format!(
                    "{}: listed in the MANIFEST but missing",
                    path.display()
                ));
                continue;
            }
            let table = match TableReader::open(&path) {
                Ok(t) => Arc::new(t),
                Err(e) => {
                    r.problems.push(e.to_string());
                    continue;
                }
            };
            r.sst_files += 1;
            if table.size() != t.size {
                r.problems.push(format!(
                    "{}: {} bytes, the MANIFEST says {}",
                    path.display(),
                    table.size(),
                    t.size
                ));
            }
            let props = table.props().clone();
            if props.stripe as usize != s {
                r.problems.push(format!(
                    "{}: belongs to stripe {}, listed under {s}",
                    path.display(),
                    props.stripe
                ));
            }
            let mut n = 0u64;
            let mut bad = None;
            for e in table.iter() {
                match e {
                    Ok(e) => {
                        n += 1;
                        if e.key.stripe() != s {
                            bad.get_or_insert_with(|| {
                                format!(
                                    "{}: key of stripe {} in stripe {s}",
                                    path.display(),
                                    e.key.stripe()
                                )
                            });
                        }
                        if let Err(err) = m.key_schema.check_key(&e.key.pk, e.key.sk.as_deref()) {
                            bad.get_or_insert_with(|| {
                                format!(
                                    "{}: a key that does not fit the key schema ({}): {err}",
                                    path.display(),
                                    m.key_schema
                                )
                            });
                        }
                        if e.lsn > sm.flushed_lsn || e.lsn < props.min_lsn || e.lsn > props.max_lsn
                        {
                            bad.get_or_insert_with(|| {
                                format!(
                                    "{}: entry LSN {} outside its bounds",
                                    path.display(),
                                    e.lsn
                                )
                            });
                        }
                    }
                    Err(e) => {
                        bad.get_or_insert(e.to_string());
                        break;
                    }
                }
            }
            if let Err(e) = table.verify() {
                bad.get_or_insert(e.to_string());
            }
            if let Some(b) = bad {
                r.problems.push(b);
            } else if n != props.entries || n != t.entries {
                r.problems.push(format!(
                    "{}: {n} entries, its properties say {} and the MANIFEST {}",
                    path.display(),
                    props.entries,
                    t.entries
                ));
            }
            r.sst_entries += n;
        }
        r.last_lsn = r.last_lsn.max(sm.flushed_lsn);
    }
    Ok(())
}

/// Notes on SSTs the manifest does not list (left by an interrupted flush
/// or compaction). Only meaningful while nobody has the database open.
fn orphan_notes(dir: &Path, m: &Manifest, r: &mut CheckReport) -> Result<()> {
    let listed: HashSet<String> = m
        .stripes
        .iter()
        .flat_map(|(&s, sm)| {
            sm.ssts
                .iter()
                .map(move |t| crate::sst::file_name(s as usize, t.id))
        })
        .collect();
    let holds = crate::snapshot::hold::live(dir);
    let held: HashSet<std::path::PathBuf> = holds.files.into_values().flatten().collect();
    let sst_dir = dir.join("sst");
    let (mut kept, mut left) = (0, Vec::new());
    for e in std::fs::read_dir(&sst_dir).ctx(&sst_dir)? {
        let name = e.ctx(&sst_dir)?.file_name().to_string_lossy().into_owned();
        if listed.contains(&name) {
            continue;
        }
        if holds.unreadable || held.contains(&Path::new("sst").join(&name)) {
            kept += 1;
        } else {
            left.push(format!("sst/{name}"));
        }
    }
    if kept > 0 {
        r.notes.push(format!(
            "{kept} SST file(s) not in the MANIFEST are kept for a snapshot another process is reading (deleted once it is done)"
        ));
    }
    left.sort();
    match left.len() {
        0 => {}
        1..=5 => r.notes.extend(left.iter().map(|f| format!("{f} is not in the MANIFEST (left by an interrupted flush or compaction, or kept for a snapshot that ended; open removes it)"))),
        n => r.notes.push(format!(
            "{n} SST files are not in the MANIFEST (left by an interrupted flush or compaction, or kept for a snapshot that ended; open removes them): {}, …",
            left[..3].join(", ")
        )),
    }
    Ok(())
}

fn check_wal(
    dir: &Path,
    m: &Manifest,
    lens: Option<&BTreeMap<String, u64>>,
    redo: &Redo,
    r: &mut CheckReport,
) -> Result<()> {
    let wal_dir = dir.join("wal");
    let mut by_stripe: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    for &(s, id) in redo.keys() {
        by_stripe.entry(s).or_default().push(id);
    }
    for e in std::fs::read_dir(&wal_dir).ctx(&wal_dir)? {
        let name = e.ctx(&wal_dir)?.file_name().to_string_lossy().into_owned();
        if let Some((s, id)) = segment::parse_name(&name) {
            by_stripe.entry(s).or_default().push(id);
        }
    }
    for (s, mut ids) in by_stripe {
        ids.sort_unstable();
        ids.dedup();
        let meta = m.stripe(s);
        let live: Vec<u64> = ids.into_iter().filter(|&id| id >= meta.log_start).collect();
        let mut prev_id: Option<u64> = None;
        let mut prev_lsn = 0u64;
        for (i, id) in live.iter().enumerate() {
            let rel = format!("wal/{}", segment::file_name(s, *id));
            let path = dir.join(&rel);
            let len = match lens {
                Some(l) => match l.get(&rel) {
                    Some(&len) => len,
                    None => continue, // created after the snapshot
                },
                None => u64::MAX,
            };
            let mut buf = Vec::new();
            let entries = redo.get(&(s, *id)).map(Vec::as_slice).unwrap_or_default();
            match segment::open_for_read(&path) {
                // Recreated from the commit log by open.
                Err(_) if !entries.is_empty() && std::fs::symlink_metadata(&path).is_err() => {}
                // Not a regular file (a FIFO would block a plain open).
                Err(e @ Error::Corruption { .. }) => {
                    r.problems.push(e.to_string());
                    continue;
                }
                f => {
                    f?.take(len).read_to_end(&mut buf).ctx(&path)?;
                }
            }
            if let Some(first) = entries.first() {
                if (buf.len() as u64) < first.offset {
                    r.problems.push(format!(
                        "{}: ends at {}, before the commit log's first entry for it at {}",
                        path.display(),
                        buf.len(),
                        first.offset
                    ));
                    continue;
                }
            }
            for e in entries {
                let (at, end) = (e.offset as usize, e.offset as usize + e.bytes.len());
                if buf.len() < end {
                    buf.resize(end, 0);
                }
                buf[at..end].copy_from_slice(&e.bytes);
            }
            r.wal_segments += 1;
            let scan = match segment::scan_bytes(&buf, &path) {
                Ok(s) => s,
                Err(e) => {
                    r.problems.push(e.to_string());
                    continue;
                }
            };
            let Some(h) = scan.header else {
                if i + 1 == live.len() {
                    r.notes.push(format!(
                        "{}: empty segment left by a crash (open removes it)",
                        path.display()
                    ));
                } else {
                    r.problems.push(format!(
                        "{}: no header, yet later segments exist",
                        path.display()
                    ));
                }
                continue;
            };
            if h.stripe as usize != s || h.id != *id {
                r.problems.push(format!(
                    "{}: header names stripe {} segment {}",
                    path.display(),
                    h.stripe,
                    h.id
                ));
            }
            if let Some(p) = prev_id {
                if h.prev != p {
                    r.problems.push(format!(
                        "{}: follows segment {}, but segment {p} precedes it (one is missing)",
                        path.display(),
                        h.prev
                    ));
                }
            }
            // A last segment may end in zeros allocated ahead (`Buffered` mode).
            if scan.is_torn() && !(i + 1 == live.len() && scan.zero_tail) {
                if i + 1 == live.len() {
                    r.notes.push(format!(
                        "{}: torn record at offset {} (a crash mid-write; open truncates it)",
                        path.display(),
                        scan.valid_len
                    ));
                } else {
                    r.problems.push(format!(
                        "{}: damaged record at offset {} in a segment that is not the last",
                        path.display(),
                        scan.valid_len
                    ));
                }
            }
            for rec in &scan.records {
                r.wal_records += 1;
                if rec.lsn <= prev_lsn {
                    r.problems.push(format!(
                        "{}: LSN {} does not increase (after {prev_lsn})",
                        path.display(),
                        rec.lsn
                    ));
                    break;
                }
                prev_lsn = rec.lsn;
                if rec.key().is_some_and(|k| k.stripe() != s) {
                    r.problems.push(format!(
                        "{}: record LSN {} belongs to another stripe",
                        path.display(),
                        rec.lsn
                    ));
                }
            }
            r.last_lsn = r.last_lsn.max(prev_lsn);
            prev_id = Some(*id);
        }
    }
    Ok(())
}
