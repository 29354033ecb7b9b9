//! Putting a restored database in place: it is built in a hidden staging
//! directory beside the target (`.NAME.restore-TIME-PID`), verified, and
//! swapped in with an atomic exchange, so that `target` is at every instant
//! either the old or the new database. The old one then goes to
//! `NAME.before-restore-TIME`, never deleted.
//!
//! Between the exchange and that rename the old database sits in the
//! staging directory. An intent file (`.NAME.restore-intent-PID`, JSON:
//! staging, aside, and the new database's history id) written before the
//! exchange lets the next restore of the same target, or `kstone check`,
//! tell the two cases apart after a kill and finish the move: a staging
//! directory holding the new database was never swapped in and is removed;
//! one holding anything else is the old database and goes to its aside name.
//!
//! While it is being built, a staging directory holds a `.restore-building`
//! marker. A killed (or, from a format-2 repository, failed) build's
//! directory is continued by the next restore of the target: see
//! [`Leftovers`] and `staged.rs`.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use kstone_core::DbLock;
use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::restore::RestoreReport;

#[derive(Debug, Serialize, Deserialize)]
struct Intent {
    staging: PathBuf,
    aside: PathBuf,
    /// History id of the database being swapped in.
    new_history: String,
}

/// What [`recover`] did with the leftovers of killed restores.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    /// Old databases moved to their aside names.
    pub moved_aside: Vec<PathBuf>,
    /// Staging directories of restores that never swapped, removed.
    pub removed: Vec<PathBuf>,
    /// Leftovers that could not be removed (another user's, say), with
    /// why: reported, never in the way of a new restore.
    pub stuck: Vec<(PathBuf, String)>,
}

/// `db1/`, `./db1` and `db1` are the same target: normalize, so the
/// aside and staging names land beside it, never inside it. A path with no
/// name of its own (`.`, `..`, `db1/..`) is resolved to the directory's real
/// path when it exists.
pub fn normalize(target: &Path) -> PathBuf {
    let p: PathBuf = target
        .components()
        .filter(|c| !matches!(c, Component::CurDir))
        .collect();
    let p = if p.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        p
    };
    if p.file_name().is_none() {
        if let Ok(real) = std::fs::canonicalize(&p) {
            return real;
        }
    }
    p
}

fn name_of(target: &Path) -> Result<String> {
    target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::Invalid(format!("bad restore target {}", target.display())))
}

/// In a staging directory while a restore builds it; removed (durably)
/// once the intent naming the finished build is written, before the swap.
/// Only a directory holding it is ever continued. The previous database,
/// which the exchange puts at the staging name, never holds it: without an
/// intent (lost), such a directory is moved aside, never built into.
pub(crate) const BUILDING: &str = ".restore-building";

/// A killed restore's staging directory that another restore may continue:
/// a real directory (not a link to one) of this user, marked [`BUILDING`],
/// whose subdirectories are real directories of this user too (so that
/// whatever is in them can be removed or rewritten).
fn continuable(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    let own_dir = |d: &Path| fs::symlink_metadata(d).is_ok_and(|m| m.is_dir() && m.uid() == me);
    own_dir(dir)
        && fs::symlink_metadata(dir.join(BUILDING)).is_ok_and(|m| m.is_file())
        && ["wal", "sst", "pins"]
            .iter()
            .all(|s| fs::symlink_metadata(dir.join(s)).is_err() || own_dir(&dir.join(s)))
}

/// A write failed for want of space.
fn disk_full(e: &Error) -> bool {
    let source = match e {
        Error::Io { source, .. } => source,
        Error::Core(kstone_core::Error::Io { source, .. }) => source,
        _ => return false,
    };
    source.raw_os_error() == Some(libc::ENOSPC)
}

/// Whether a build wrote any table or WAL bytes into `dir` (its files are
/// preallocated sparse: one never written to has no blocks). A failure
/// before that (a wrong identity, say) leaves nothing worth keeping.
fn holds_data(dir: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    ["sst", "wal"].iter().any(|s| {
        fs::read_dir(dir.join(s)).is_ok_and(|rd| {
            rd.flatten()
                .any(|e| e.metadata().is_ok_and(|m| m.is_file() && m.blocks() > 0))
        })
    })
}

/// Make a directory of this user searchable and writable for it again (a
/// leftover someone ran `chmod 000` on), so that it can be judged and
/// removed; another user's is left alone.
fn unlock_own(dir: &Path) {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    for d in [
        dir.to_path_buf(),
        dir.join("wal"),
        dir.join("sst"),
        dir.join("pins"),
    ] {
        if let Ok(m) = fs::symlink_metadata(&d) {
            if m.is_dir() && m.uid() == me && m.mode() & 0o700 != 0o700 {
                let _ = fs::set_permissions(&d, fs::Permissions::from_mode(0o700));
            }
        }
    }
}

fn staging_path(target: &Path) -> Result<PathBuf> {
    let parent = kstone_core::fsio::parent(target);
    Ok(parent.join(format!(
        ".{}.restore-{}-{}",
        name_of(target)?,
        kstone_core::fsio::now_micros(),
        std::process::id()
    )))
}

fn intent_path(target: &Path, pid: u32) -> Result<PathBuf> {
    Ok(kstone_core::fsio::parent(target)
        .join(format!(".{}.restore-intent-{pid}", name_of(target)?)))
}

fn alive(pid: u32) -> bool {
    pid == std::process::id() || Path::new("/proc").join(pid.to_string()).exists()
}

fn history_of(dir: &Path) -> Option<String> {
    kstone_core::Manifest::load(dir).ok().map(|m| m.history)
}

/// Finish or clean up what killed restores of `target` left beside it.
/// Only leftovers of processes that are gone are touched.
pub fn recover(target: &Path) -> Result<Recovered> {
    sweep(target, false).map(|(r, _)| r)
}

/// [`recover`]; with `keep_building`, the staging directories of restores
/// killed while building (no intent: nothing was swapped) are kept and
/// returned, newest first, for a restore to continue in.
fn sweep(target: &Path, keep_building: bool) -> Result<(Recovered, Vec<PathBuf>)> {
    let target = normalize(target);
    let parent = kstone_core::fsio::parent(&target).to_path_buf();
    let name = name_of(&target)?;
    let mut out = Recovered::default();
    let entries = match fs::read_dir(&parent) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok((out, Vec::new())),
        Err(e) => return Err(e).ctx(&parent),
    };
    let intent_prefix = format!(".{name}.restore-intent-");
    let staging_prefix = format!(".{name}.restore-");
    let mut intents = Vec::new();
    let mut stagings = Vec::new();
    for e in entries {
        let e = e.ctx(&parent)?;
        let f = e.file_name().to_string_lossy().into_owned();
        // Exactly `.NAME.restore-intent-PID` and `.NAME.restore-TIME-PID`:
        // a target named `NAME.restore-x` has leftovers of its own.
        let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
        if let Some(pid) = f.strip_prefix(&intent_prefix) {
            if let (true, Ok(pid)) = (digits(pid), pid.parse::<u32>()) {
                intents.push((pid, e.path()));
            } else if let Some(Ok(pid)) = pid
                .strip_suffix(".tmp")
                .filter(|p| digits(p))
                .map(str::parse::<u32>)
            {
                // An intent a kill caught while it was being written: no
                // swap had begun.
                if !alive(pid) {
                    fs::remove_file(e.path()).ctx(&e.path())?;
                }
            }
        } else if let Some(rest) = f.strip_prefix(&staging_prefix) {
            if let Some((time, pid)) = rest.split_once('-') {
                if let (true, true, Ok(pid)) = (digits(time), digits(pid), pid.parse::<u32>()) {
                    stagings.push((pid, e.path()));
                }
            }
        }
    }
    let mut done = Vec::new();
    for (pid, path) in intents {
        if alive(pid) {
            continue;
        }
        let bytes = fs::read(&path).ctx(&path)?;
        // A torn intent was written before any exchange (it is fsynced
        // first): nothing was swapped.
        if let Ok(i) = serde_json::from_slice::<Intent>(&bytes) {
            if i.staging.exists() {
                // Whether the swap happened is read off the target first:
                // the staging's own MANIFEST may be gone, a removal of the
                // never-swapped build having been killed half-way.
                let new = Some(i.new_history.as_str());
                let target_history = history_of(&target);
                // Not swapped: the target is not the new database, and it
                // is readable (the old one) or absent (a new target), or
                // the staging says it is the new one itself.
                let never_swapped = target_history.as_deref() != new
                    && (target_history.is_some()
                        || !target.exists()
                        || history_of(&i.staging).as_deref() == new);
                if never_swapped {
                    fs::remove_dir_all(&i.staging).ctx(&i.staging)?;
                    out.removed.push(i.staging.clone());
                } else {
                    let aside = unique(i.aside.clone());
                    fs::rename(&i.staging, &aside).ctx(&aside)?;
                    out.moved_aside.push(aside);
                }
            }
            done.push(i.staging);
        }
        fs::remove_file(&path).ctx(&path)?;
    }
    let mut kept = Vec::new();
    for (pid, path) in stagings {
        if alive(pid) || done.contains(&path) || fs::symlink_metadata(&path).is_err() {
            continue;
        }
        unlock_own(&path);
        // No intent: killed while building, before any swap.
        if keep_building && continuable(&path) {
            kept.push(path);
            continue;
        }
        let is_link = fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink());
        if !is_link && !path.join(BUILDING).exists() && path.join("MANIFEST").exists() {
            // A database no build marks: the previous one, if a swap's
            // intent was lost. Never deleted: moved aside like one.
            let aside = unique(aside_name(&target));
            match fs::rename(&path, &aside) {
                Ok(()) => out.moved_aside.push(aside),
                Err(e) => out.stuck.push((path, e.to_string())),
            }
            continue;
        }
        // Not followed if it is a link: only the link goes.
        match fs::remove_dir_all(&path) {
            Ok(()) => out.removed.push(path),
            Err(e) => out.stuck.push((path, e.to_string())),
        }
    }
    if out != Recovered::default() {
        kstone_core::fsio::sync_dir(&parent)?;
    }
    // `.NAME.restore-TIME-PID`: the TIME (µs) orders them.
    kept.sort_by_key(|p| {
        p.file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.rsplit('-').nth(1))
            .and_then(|t| t.parse::<u64>().ok())
            .unwrap_or(0)
    });
    kept.reverse();
    Ok((out, kept))
}

/// How [`restore_with`] treats what a killed restore of the same target
/// was building.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Leftovers {
    /// Removed; the build starts from nothing.
    Remove,
    /// The newest is taken over as this restore's staging directory (it
    /// exists when `build` is called) for `build` to check and reuse what it
    /// holds; older ones are removed.
    Continue,
}

impl Leftovers {
    /// What a restore from a backup of repository format `version` does:
    /// format 2 checks chunks in place, so it can continue; format 1 cannot.
    pub(crate) fn for_format(version: u32) -> Leftovers {
        if version >= crate::manifest::REPO_FORMAT_V2 {
            Leftovers::Continue
        } else {
            Leftovers::Remove
        }
    }
}

/// Build into staging with `build` (which also verifies), then swap into
/// place. Shared by backup restores, point-in-time restores and archive
/// restores.
pub(crate) fn restore_with(
    target: &Path,
    leftovers: Leftovers,
    build: impl FnOnce(&Path) -> Result<u64>,
) -> Result<RestoreReport> {
    let target = &normalize(target);
    let parent = kstone_core::fsio::parent(target).to_path_buf();
    fs::create_dir_all(&parent).ctx(&parent)?;
    // Refuse early what we will refuse later anyway.
    let _lock = check_target(target)?;
    let (_, kept) = sweep(target, leftovers == Leftovers::Continue)?;
    let staging = staging_path(target)?;
    let mut kept = kept.into_iter();
    // Taking a leftover over is a rename to a name carrying our pid: of two
    // restores started at once, one gets it and the other starts afresh.
    let adopted = kept
        .next()
        .is_some_and(|old| fs::rename(old, &staging).is_ok());
    for old in kept {
        // Best effort: an older leftover never stops this restore.
        let _ = fs::remove_dir_all(&old);
    }
    if adopted {
        kstone_core::fsio::sync_dir(&parent)?;
    }
    let items = match build(&staging) {
        Ok(n) => n,
        Err(e) => {
            // The staging directory is ours alone; the target was never
            // touched. What a continuable build wrote is kept for the next
            // restore (a storage outage should not cost the progress made).
            // A full disk is the exception: keeping the staging would keep
            // the disk full and fail the next attempt the same way.
            if leftovers == Leftovers::Remove
                || !continuable(&staging)
                || !holds_data(&staging)
                || disk_full(&e)
            {
                let _ = fs::remove_dir_all(&staging);
            }
            return Err(e);
        }
    };
    // Built. The intent names it before its build marker goes, so that a
    // directory with neither is never a finished restore that was not
    // swapped in (it can only be a previous database, kept).
    let aside = unique(aside_name(target));
    let intent = intent_path(target, std::process::id())?;
    let body = serde_json::to_vec(&Intent {
        staging: staging.clone(),
        aside: aside.clone(),
        new_history: history_of(&staging).unwrap_or_default(),
    })
    .unwrap_or_default();
    kstone_core::fsio::write_atomic(&intent, &body)?;
    let marker = staging.join(BUILDING);
    if fs::symlink_metadata(&marker).is_ok() {
        fs::remove_file(&marker).ctx(&marker)?;
        kstone_core::fsio::sync_dir(&staging)?;
    }
    fault_point("KSTONE_TEST_KILL_AFTER_BUILD");
    let moved_aside = if target.exists() {
        // Atomic exchange: at every instant `target` is either the old or the
        // new database, never missing.
        exchange(&staging, target)?;
        fault_point("KSTONE_TEST_KILL_AFTER_EXCHANGE");
        fs::rename(&staging, &aside).ctx(&aside)?;
        Some(aside)
    } else {
        fs::rename(&staging, target).ctx(target)?;
        None
    };
    kstone_core::fsio::sync_dir(&parent)?;
    fs::remove_file(&intent).ctx(&intent)?;
    kstone_core::fsio::sync_dir(&parent)?;
    Ok(RestoreReport {
        target: target.to_path_buf(),
        moved_aside,
        items,
        bytes: 0,
        snapshot_lsn: 0,
        transfer: Default::default(),
    })
}

/// Tests kill the process here (a real SIGKILL of itself) to leave the
/// state a crash at this point leaves.
pub(crate) fn fault_point(var: &str) {
    fault_point_at(var, None);
}

/// [`fault_point`] when `var` is set to `n` (a count of steps done), or to
/// anything when `n` is `None`.
pub(crate) fn fault_point_at(var: &str, n: Option<usize>) {
    let Some(v) = std::env::var_os(var) else {
        return;
    };
    if n.is_some_and(|n| v.to_str().and_then(|v| v.parse().ok()) != Some(n)) {
        return;
    }
    // SAFETY: raising a signal on ourselves has no memory-safety effects.
    unsafe {
        libc::raise(libc::SIGKILL);
    }
}

/// `NAME.before-restore-TIME` for now (before [`unique`]).
fn aside_name(target: &Path) -> PathBuf {
    PathBuf::from(format!(
        "{}.before-restore-{}",
        target.display(),
        crate::manifest::rfc3339(kstone_core::fsio::now_micros()).replace(':', "")
    ))
}

/// A database a restore moved aside (`NAME.before-restore-TIME[-N]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsideCopy {
    pub path: PathBuf,
    /// When it was moved aside (the TIME in its name), µs.
    pub moved_at_us: u64,
    /// Bytes of its files.
    pub bytes: u64,
}

/// The TIME of a `before-restore-` suffix (`2026-12-06T085054Z`, maybe
/// followed by `-N`), in µs.
fn aside_time(suffix: &str) -> Option<u64> {
    let stamp = suffix.split_once('Z')?;
    if !(stamp.1.is_empty() || stamp.1.strip_prefix('-')?.parse::<u32>().is_ok()) {
        return None;
    }
    let t = chrono::NaiveDateTime::parse_from_str(stamp.0, "%Y-%m-%dT%H%M%S").ok()?;
    u64::try_from(t.and_utc().timestamp())
        .ok()
        .map(|s| s * 1_000_000)
}

/// The copies restores moved aside from `target`, oldest first: only
/// directories named as a restore names them that hold a database.
pub fn aside_copies(target: &Path) -> Result<Vec<AsideCopy>> {
    let target = normalize(target);
    let parent = kstone_core::fsio::parent(&target).to_path_buf();
    let prefix = format!("{}.before-restore-", name_of(&target)?);
    let entries = match fs::read_dir(&parent) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).ctx(&parent),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.ctx(&parent)?;
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(moved_at_us) = name.strip_prefix(&prefix).and_then(aside_time) else {
            continue;
        };
        let path = e.path();
        let is_db = fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir())
            && kstone_core::Manifest::present(&path);
        if is_db {
            out.push(AsideCopy {
                bytes: kstone_core::fsio::tree_bytes(&path),
                path,
                moved_at_us,
            });
        }
    }
    out.sort_by_key(|c| (c.moved_at_us, c.path.clone()));
    Ok(out)
}

/// A process using `dir`: one with a file below it open, or its working
/// directory there (read from `/proc`), other than this one.
pub fn user_of(dir: &Path) -> Option<u32> {
    let dir = fs::canonicalize(dir).ok()?;
    let me = std::process::id();
    for p in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let inside = |l: PathBuf| l.starts_with(&dir);
        if fs::read_link(p.path().join("cwd")).is_ok_and(inside) {
            return Some(pid);
        }
        if let Ok(fds) = fs::read_dir(p.path().join("fd")) {
            if fds
                .flatten()
                .any(|fd| fs::read_link(fd.path()).is_ok_and(inside))
            {
                return Some(pid);
            }
        }
    }
    None
}

/// Why a copy must be kept (a process uses it), if it must.
pub fn aside_copy_in_use(copy: &AsideCopy) -> Option<String> {
    user_of(&copy.path).map(|pid| format!("in use by process {pid}"))
}

/// Delete a copy `aside_copies` listed, unless a process uses it (checked
/// again under its lock).
pub fn drop_aside_copy(copy: &AsideCopy) -> Result<()> {
    let _lock = match DbLock::acquire(&copy.path) {
        Ok(l) => l,
        Err(kstone_core::Error::Locked { .. }) => {
            return Err(Error::Busy(format!(
                "{} is open by another process",
                copy.path.display()
            )))
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(why) = aside_copy_in_use(copy) {
        return Err(Error::Refused(format!("{}: {why}", copy.path.display())));
    }
    fs::remove_dir_all(&copy.path).ctx(&copy.path)?;
    kstone_core::fsio::sync_dir(kstone_core::fsio::parent(&copy.path))?;
    Ok(())
}

fn unique(p: PathBuf) -> PathBuf {
    if !p.exists() {
        return p;
    }
    (1..)
        .map(|i| PathBuf::from(format!("{}-{i}", p.display())))
        .find(|c| !c.exists())
        .unwrap_or(p)
}

/// Refuse targets that are open, or that are something other than a
/// database or an empty directory; hold the target's lock while we work.
fn check_target(target: &Path) -> Result<Option<DbLock>> {
    if let Ok(to) = fs::read_link(target) {
        // Swapping would replace the link with a directory on the link's
        // file system, not restore where it points.
        return Err(Error::Refused(format!(
            "{} is a symbolic link (to {}); restore to the directory it points to",
            target.display(),
            to.display()
        )));
    }
    if !target.exists() {
        return Ok(None);
    }
    if !target.is_dir() {
        return Err(Error::Refused(format!(
            "{} exists and is not a directory",
            target.display()
        )));
    }
    let is_db = kstone_core::Manifest::present(target);
    let empty = fs::read_dir(target).ctx(target)?.next().is_none();
    if !is_db && !empty {
        return Err(Error::Refused(format!(
            "{} exists and is not a KeystoneDB database; choose another target",
            target.display()
        )));
    }
    if !is_db {
        return Ok(None);
    }
    match DbLock::acquire(target) {
        Ok(l) => Ok(Some(l)),
        Err(kstone_core::Error::Locked { pid, .. }) => Err(Error::Busy(format!(
            "{} is open by process {pid}; stop it first",
            target.display()
        ))),
        Err(e) => Err(e.into()),
    }
}

/// `renameat2(RENAME_EXCHANGE)`: swap two paths atomically.
fn exchange(a: &Path, b: &Path) -> Result<()> {
    let ca = CString::new(a.as_os_str().as_bytes()).map_err(|e| Error::Invalid(e.to_string()))?;
    let cb = CString::new(b.as_os_str().as_bytes()).map_err(|e| Error::Invalid(e.to_string()))?;
    // SAFETY: both pointers are valid NUL-terminated strings for the call.
    let r = unsafe {
        libc::renameat2(
            libc::AT_FDCWD,
            ca.as_ptr(),
            libc::AT_FDCWD,
            cb.as_ptr(),
            libc::RENAME_EXCHANGE,
        )
    };
    if r != 0 {
        return Err(Error::Io {
            path: b.to_path_buf(),
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_slashes_and_dots_name_the_same_target() {
        assert_eq!(normalize(Path::new("db1/")), PathBuf::from("db1"));
        assert_eq!(normalize(Path::new("./db1//")), PathBuf::from("db1"));
        assert_eq!(normalize(Path::new("/a/b/")), PathBuf::from("/a/b"));
    }

    #[test]
    fn a_half_removed_unswapped_build_is_removed_not_moved_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("t");
        let opts = kstone_core::Options::default();
        kstone_core::Database::create(&target, opts.clone())
            .unwrap()
            .close()
            .unwrap();
        let old_history = history_of(&target).unwrap();
        // A build whose MANIFEST a killed removal already took.
        let staging = tmp.path().join(".t.restore-1796610000000000-4194400");
        fs::create_dir_all(staging.join("sst")).unwrap();
        fs::write(staging.join("sst/1.sst"), b"x").unwrap();
        let intent = Intent {
            staging: staging.clone(),
            aside: tmp.path().join("t.before-restore-x"),
            new_history: format!("{old_history}-new"),
        };
        let write_intent = |i: &Intent| {
            fs::write(
                tmp.path().join(".t.restore-intent-4194400"),
                serde_json::to_vec(i).unwrap(),
            )
            .unwrap()
        };
        write_intent(&intent);
        let r = recover(&target).unwrap();
        assert_eq!(r.removed, vec![staging.clone()]);
        assert!(r.moved_aside.is_empty());
        assert_eq!(history_of(&target).unwrap(), old_history);
        // After the exchange (the target is the new database), what the
        // staging name holds is the old one: moved aside, whatever it holds.
        fs::create_dir_all(staging.join("sst")).unwrap();
        write_intent(&Intent {
            new_history: old_history,
            ..intent
        });
        let r = recover(&target).unwrap();
        assert_eq!(r.moved_aside, vec![tmp.path().join("t.before-restore-x")]);
        assert!(r.removed.is_empty());
    }

    #[test]
    fn only_the_targets_own_leftovers_are_swept() {
        let tmp = tempfile::tempdir().unwrap();
        let leftover = |name: &str| {
            let d = tmp.path().join(name);
            fs::create_dir_all(d.join("sst")).unwrap();
            fs::write(d.join(BUILDING), b"").unwrap();
            d
        };
        // Dead pids (above the kernel's limit), targets `shop` and `shop.restore-test`.
        let own = leftover(".shop.restore-1796610000000000-4194400");
        let other = leftover(".shop.restore-test.restore-1796610000000000-4194401");
        let odd = leftover(".shop.restore-x-4194402");
        let r = recover(&tmp.path().join("shop")).unwrap();
        assert_eq!(r.removed, vec![own.clone()]);
        assert!(!own.exists() && other.exists() && odd.exists());
        let (_, kept) = sweep(&tmp.path().join("shop.restore-test"), true).unwrap();
        assert_eq!(kept, vec![other]);
    }
}
