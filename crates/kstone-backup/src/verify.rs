//! Verification: every object's size and SHA-256 against the manifest, and
//! (`deep`) a test restore into a temporary directory that is opened, has
//! every SST block checked, and its items counted against the manifest.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use sha2::{Digest, Sha256};

use crate::chunk_map;
use crate::chunk_store;
use crate::chunking::ChunkId;
use crate::error::{Error, Result};
use crate::index::{ChunkIndex, PackInfo};
use crate::layout;
use crate::manifest::{BackupManifest, REPO_FORMAT_V2};
use crate::repository::Repository;

/// How archive problems name what they are about (instead of a backup id).
const ARCHIVE_LABEL: &str = "WAL archive of ";

/// One thing found wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub backup: String,
    pub what: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.backup.starts_with(ARCHIVE_LABEL) {
            write!(f, "{}: {}", self.backup, self.what)
        } else {
            write!(f, "backup {}: {}", self.backup, self.what)
        }
    }
}

/// `status/damaged-packs`: JSON `{at_us, packs}`.
#[derive(serde::Serialize, serde::Deserialize)]
struct DamagedPacks {
    at_us: u64,
    packs: Vec<String>,
}

impl Repository {
    /// Check one backup; an empty list means it is sound.
    pub fn verify(&self, id: &str, deep: bool) -> Result<Vec<Problem>> {
        self.verify_subset(id, deep, 1.0)
    }

    /// [`Repository::verify`] that reads the contents of only about
    /// `fraction` (0..=1) of a format-2 backup's packs, picked at random
    /// per run: every chunk is still checked to be indexed and every pack
    /// to be present at its size, so that repeated runs cover a large
    /// repository cheaply (`verify --read-data-subset`). Format-1 backups
    /// are read whole.
    pub fn verify_subset(&self, id: &str, deep: bool, fraction: f64) -> Result<Vec<Problem>> {
        let _lock = self.lock_for_read("a verify")?;
        let id = self.resolve(id)?;
        let problem = |what: String| Problem {
            backup: id.clone(),
            what,
        };
        let m = match self.manifest(&id) {
            Ok(m) => m,
            Err(e @ (Error::Corrupt { .. } | Error::NoSuchBackup(_))) => {
                return Ok(vec![problem(e.to_string())])
            }
            Err(e) => return Err(e),
        };
        let mut problems = Vec::new();
        // Without the identity an encrypted backup's contents cannot be
        // read; its stored bytes still can, against their own digest.
        let contents = self.storage.keys().is_none_or(|k| k.can_open());
        if deep && !contents {
            return Err(Error::CannotDecrypt(
                "verify --deep restores the backup: the repository is encrypted, pass --identity FILE (or set KSTONE_IDENTITY_FILE)".into(),
            ));
        }
        if m.format_version >= REPO_FORMAT_V2 {
            problems.extend(
                self.verify_chunks(&m, contents, fraction)?
                    .into_iter()
                    .map(problem),
            );
        }
        for f in m.files.iter().filter(|_| m.format_version < REPO_FORMAT_V2) {
            if !contents {
                match (self.storage.stored_digest(&f.object), &f.stored_sha256) {
                    (Ok((n, sha)), Some(want)) if n == f.stored_size && &sha == want => {}
                    (Ok((n, _)), _) if n != f.stored_size => problems.push(problem(format!(
                        "{} ({}): {n} stored bytes, expected {} (truncated or damaged)",
                        f.name, f.object, f.stored_size
                    ))),
                    (Ok(_), Some(_)) => problems.push(problem(format!(
                        "{} ({}): SHA-256 of the stored bytes does not match (damaged)",
                        f.name, f.object
                    ))),
                    (Ok(_), None) => {}
                    (Err(Error::Corrupt { detail, .. }), _) => {
                        problems.push(problem(format!("{} ({}): {detail}", f.name, f.object)))
                    }
                    (Err(e), _) => return Err(e),
                }
                continue;
            }
            match self
                .storage
                .download(&f.object, f.codec, &mut std::io::sink())
            {
                Ok((n, sha)) if n == f.size && sha == f.sha256 => {}
                Ok((n, _)) if n != f.size => problems.push(problem(format!(
                    "{} ({}): {n} bytes, expected {} (truncated or damaged)",
                    f.name, f.object, f.size
                ))),
                Ok(_) => problems.push(problem(format!(
                    "{} ({}): SHA-256 mismatch (damaged)",
                    f.name, f.object
                ))),
                Err(Error::Corrupt { detail, .. }) => {
                    problems.push(problem(format!("{} ({}): {detail}", f.name, f.object)))
                }
                Err(e) => return Err(e),
            }
        }
        if deep && problems.is_empty() {
            let tmp = tempfile::tempdir().map_err(|e| Error::Io {
                path: std::env::temp_dir(),
                source: e,
            })?;
            let dir = tmp.path().join("restore-test.keystone");
            let result = self
                .materialize(&m, &dir)
                .and_then(|_| crate::restore::check_database(&dir));
            match result {
                Ok(n) if n == m.item_count => {}
                Ok(n) => problems.push(problem(format!(
                    "test restore has {n} items, the manifest says {}",
                    m.item_count
                ))),
                Err(e) => problems.push(problem(format!("test restore failed: {e}"))),
            }
        }
        Ok(problems)
    }
}

impl Repository {
    /// Format 2: the chunk map is readable and describes the manifest's
    /// files; every chunk is in an index; every pack holding one is present
    /// at its size; then each chosen pack is read: its stored bytes against
    /// their SHA-256 (without the identity), or every wanted chunk decoded
    /// and checked against its keyed id.
    fn verify_chunks(
        &self,
        m: &BackupManifest,
        contents: bool,
        fraction: f64,
    ) -> Result<Vec<String>> {
        let obj = layout::chunk_map(&m.id);
        let map = match chunk_map::read_for(&self.storage, m) {
            Ok(map) => map,
            Err(Error::Corrupt { object, detail }) => {
                return Ok(vec![format!("{object}: {detail}")])
            }
            Err(e) => return Err(e),
        };
        let (mut index, damaged) = ChunkIndex::load(&self.storage)?;
        let present: HashMap<String, u64> = self.storage.list(layout::PACKS)?.into_iter().collect();
        // Where the full index puts each chunk: named when that pack is gone.
        let first_home: HashMap<ChunkId, String> = map
            .files
            .iter()
            .flat_map(|f| f.chunks.iter())
            .filter_map(|(id, _)| index.locate(id).map(|(p, _)| (*id, p.key.clone())))
            .collect();
        index.retain_present(&present);
        // A sound copy of a chunk is checked before one in a pack an
        // earlier verify found damaged; such a pack, when a chunk has no
        // other copy, is always read again (also by a subset run), so that
        // it is reported until it is gone or found sound.
        let bad = self.damaged_packs()?;
        index.prefer_not(|p| bad.contains(&p.key));
        let mut problems: Vec<String> = Vec::new();
        let mut packs: BTreeMap<&str, &PackInfo> = BTreeMap::new();
        // One line per pack that is gone (it may hold thousands of chunks).
        let mut gone: BTreeMap<&str, (usize, BTreeSet<&str>)> = BTreeMap::new();
        for f in &map.files {
            let mut unindexed = 0;
            for (id, _) in &f.chunks {
                match (index.locate(id), first_home.get(id)) {
                    (Some((p, _)), _) => {
                        packs.insert(p.key.as_str(), p);
                    }
                    (None, Some(k)) => {
                        let g = gone.entry(k.as_str()).or_default();
                        g.0 += 1;
                        g.1.insert(f.name.as_str());
                    }
                    (None, None) => unindexed += 1,
                }
            }
            if unindexed > 0 {
                problems.push(format!("{}: {unindexed} chunk(s) in no index", f.name));
            }
        }
        for (k, (chunks, files)) in &gone {
            let what = match present.get(*k) {
                None => "the pack is missing".to_string(),
                Some(n) => format!("{n} stored bytes, not the indexed size (truncated or damaged)"),
            };
            problems.push(format!(
                "{k}: {what}; it holds {chunks} chunk(s) of {} file(s), e.g. {}",
                files.len(),
                files.iter().next().copied().unwrap_or("")
            ));
        }
        if !problems.is_empty() {
            problems.extend(damaged.iter().map(|(k, e)| format!("{k}: {e}")));
            return Ok(problems);
        }
        let mut seed = [0u8; 16];
        getrandom::fill(&mut seed).map_err(|e| Error::Invalid(format!("random: {e}")))?;
        let chosen = |p: &PackInfo| {
            if fraction >= 1.0 {
                return true;
            }
            let h = Sha256::new()
                .chain_update(seed)
                .chain_update(&p.key)
                .finalize();
            let x = u64::from_le_bytes([h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7]]);
            (x as f64) < fraction * u64::MAX as f64
        };
        let read: Vec<&PackInfo> = packs
            .values()
            .copied()
            .filter(|p| chosen(p) || bad.contains(&p.key))
            .collect();
        let found = if contents {
            let keys: HashSet<&str> = read.iter().map(|p| p.key.as_str()).collect();
            match chunk_store::check(
                &self.storage,
                &index,
                &map,
                &obj,
                4,
                |p| keys.contains(p.key.as_str()),
                &self.config.repository_id,
            ) {
                Err(Error::Corrupt { object, detail }) => {
                    // Not the packs' fault (the chunk key): nothing learned of them.
                    return Ok(vec![format!("{object}: {detail}")]);
                }
                r => r?,
            }
        } else {
            let found = kstone_core::parallel::try_map(&read, 4, |p| {
                Ok::<_, Error>(match self.storage.stored_digest(&p.key) {
                    Ok((_, sha)) if sha == p.stored_sha256_hex() => None,
                    Ok(_) => Some(format!(
                        "{}: SHA-256 of the stored bytes does not match (damaged)",
                        p.key
                    )),
                    Err(Error::Corrupt { object, detail }) => Some(format!("{object}: {detail}")),
                    Err(e) => return Err(e),
                })
            })?;
            found.into_iter().flatten().collect()
        };
        // Every pack read is now known damaged or sound (lines name their pack first).
        let (damaged, sound): (Vec<String>, Vec<String>) = read
            .iter()
            .map(|p| p.key.clone())
            .partition(|k| found.iter().any(|l| l.starts_with(&format!("{k}:"))));
        self.note_packs(&damaged, &sound, &present)?;
        Ok(found)
    }

    /// Check the WAL archive of every database history that has backups:
    /// a hole between archive objects (one missing or deleted) is a
    /// problem naming the LSNs no restore can reach; every object is also
    /// read and decoded (checksums, record order, count) — in an encrypted
    /// repository only with the identity (`deep` then requires it).
    pub fn verify_archive(&self, deep: bool) -> Result<Vec<Problem>> {
        let _lock = self.lock_for_read("a verify")?;
        let mut problems = self.archive_holes()?;
        // A deleted tail leaves no hole: only the archiver knows it wrote it.
        for (id, hb) in self.heartbeats()? {
            if let Ok(h) = hb {
                if let Some(what) = h.claims_beyond(self.reachable_lsn(&h.history)) {
                    problems.push(Problem {
                        backup: format!("{ARCHIVE_LABEL}{id}/{}", h.history),
                        what,
                    });
                }
            }
        }
        // Reading needs the identity in an encrypted repository.
        if deep || self.storage.keys().is_none_or(|k| k.can_open()) {
            for (db, history, oldest) in archived_histories(&self.list()?) {
                for (key, r) in self.archive_ranges(&db, &history)? {
                    if r.last_lsn <= oldest {
                        continue;
                    }
                    match self.archive_records(&key) {
                        Ok(_) => {}
                        Err(Error::Corrupt { detail, .. }) => problems.push(Problem {
                            backup: format!("{ARCHIVE_LABEL}{db}/{history}"),
                            what: format!("{key}: {detail}"),
                        }),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Ok(problems)
    }

    /// Holes between archive objects after a history's oldest backup, and
    /// damaged or missing lineage objects (from the listing and the small
    /// lineage objects: cheap enough for `status`).
    pub fn archive_holes(&self) -> Result<Vec<Problem>> {
        let backups = self.list()?;
        let mut problems = self.lineage_problems(&backups)?;
        for (db, history, oldest) in archived_histories(&backups) {
            let mut pos: Option<u64> = None;
            for (key, r) in self.archive_ranges(&db, &history)? {
                if r.last_lsn <= oldest {
                    continue;
                }
                if let Some(p) = pos {
                    if r.first_lsn > p + 1 {
                        problems.push(Problem {
                            backup: format!("{ARCHIVE_LABEL}{db}/{history}"),
                            what: format!(
                                "LSNs {}..={} are missing (no object holds them; next is {key}): \
                                 points in them cannot be restored",
                                p + 1,
                                r.first_lsn - 1
                            ),
                        });
                    }
                }
                pos = Some(pos.map_or(r.last_lsn, |p| p.max(r.last_lsn)));
            }
        }
        Ok(problems)
    }

    /// A lineage object that does not decode, or one a restored history's
    /// backups say should exist (its archive is here) but that is gone:
    /// points through the lineage are lost, which is damage to report.
    fn lineage_problems(&self, backups: &[BackupManifest]) -> Result<Vec<Problem>> {
        let mut problems = Vec::new();
        let label = |db: &str, h: &str| format!("{ARCHIVE_LABEL}{db}/{h}");
        let mut seen = std::collections::BTreeSet::new();
        for (k, _) in self.storage.list(crate::layout::ARCHIVE)? {
            let parts: Vec<&str> = k.split('/').collect();
            if parts.len() != 4 {
                continue;
            }
            let (db, h) = (parts[1], parts[2]);
            if parts[3] == "lineage" {
                if let Err(Error::Corrupt { detail, .. }) = self.lineage(db, h) {
                    problems.push(Problem {
                        backup: label(db, h),
                        what: format!(
                            "{k}: {detail} (points reached through it cannot be restored)"
                        ),
                    });
                }
            } else {
                seen.insert((db.to_string(), h.to_string()));
            }
        }
        for m in backups {
            let Some(o) = &m.db_manifest.origin else {
                continue;
            };
            let forked = o.parent_history.as_deref().is_some_and(|p| p != m.history);
            if forked
                && o.repository_id == self.config.repository_id
                && seen.remove(&(m.db_id.clone(), m.history.clone()))
                && self
                    .storage
                    .head(&crate::layout::lineage(&m.db_id, &m.history))?
                    .is_none()
            {
                problems.push(Problem {
                    backup: label(&m.db_id, &m.history),
                    what: "its lineage object is missing (points before this history's first \
                           backup cannot be restored)"
                        .into(),
                });
            }
        }
        Ok(problems)
    }
}

/// (db, history, oldest backup LSN) of every history with backups.
fn archived_histories(backups: &[BackupManifest]) -> Vec<(String, String, u64)> {
    let mut histories: Vec<(String, String, u64)> = Vec::new();
    for m in backups {
        match histories
            .iter_mut()
            .find(|(d, h, _)| *d == m.db_id && *h == m.history)
        {
            Some(e) => e.2 = e.2.min(m.snapshot_lsn),
            None => histories.push((m.db_id.clone(), m.history.clone(), m.snapshot_lsn)),
        }
    }
    histories
}

/// The outcome of the last `verify` run, kept in the repository
/// (`status/last-verify`) so monitoring can see it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct VerifyRecord {
    pub at_us: u64,
    pub ok: bool,
    pub deep: bool,
    pub problems: Vec<String>,
}

impl Repository {
    /// Remember a verification's outcome.
    pub fn record_verify(&self, problems: &[Problem], deep: bool) -> Result<()> {
        let rec = VerifyRecord {
            at_us: kstone_core::fsio::now_micros(),
            ok: problems.is_empty(),
            deep,
            problems: problems.iter().map(|p| p.to_string()).collect(),
        };
        self.storage.put(
            crate::layout::LAST_VERIFY,
            serde_json::to_vec(&rec).unwrap_or_default(),
        )
    }

    /// Packs a `verify` found damaged and has not found sound since: new
    /// backups store their chunks again rather than name them, restores
    /// read another copy where there is one, prune lets a good copy own
    /// the chunks. An unreadable record is an empty one (it only ever
    /// makes backups store more).
    pub fn damaged_packs(&self) -> Result<HashSet<String>> {
        Ok(self
            .storage
            .get(crate::layout::DAMAGED_PACKS)?
            .and_then(|b| serde_json::from_slice::<DamagedPacks>(&b).ok())
            .map(|d| d.packs.into_iter().collect())
            .unwrap_or_default())
    }

    /// Record what a verify found: `damaged` packs added, `sound` ones
    /// (read whole and found good) removed.
    fn note_packs(
        &self,
        damaged: &[String],
        sound: &[String],
        present: &HashMap<String, u64>,
    ) -> Result<()> {
        let mut set = self.damaged_packs()?;
        let before = set.clone();
        set.extend(damaged.iter().cloned());
        for k in sound {
            set.remove(k);
        }
        // Packs a prune deleted are no longer anyone's concern.
        set.retain(|k| present.contains_key(k));
        if set == before {
            return Ok(());
        }
        let mut packs: Vec<String> = set.into_iter().collect();
        packs.sort();
        let rec = DamagedPacks {
            at_us: kstone_core::fsio::now_micros(),
            packs,
        };
        self.storage.put(
            crate::layout::DAMAGED_PACKS,
            serde_json::to_vec(&rec).unwrap_or_default(),
        )
    }

    /// The last recorded verification, if any.
    pub fn last_verify(&self) -> Result<Option<VerifyRecord>> {
        Ok(self
            .storage
            .get(crate::layout::LAST_VERIFY)?
            .and_then(|b| serde_json::from_slice(&b).ok()))
    }
}
