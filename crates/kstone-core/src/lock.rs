//! The `LOCK` file: held exclusively (`flock`) while a process has the
//! database open; it also records the holder's pid for the error message.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, IoContext, Result};

pub const FILE_NAME: &str = "LOCK";

/// Held for as long as the database is open; dropping it releases the lock.
#[derive(Debug)]
pub struct DbLock {
    _file: File,
}

impl DbLock {
    pub fn acquire(dir: &Path) -> Result<DbLock> {
        let path = dir.join(FILE_NAME);
        let mut f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .ctx(&path)?;
        // A process that forks while we close and reopen keeps our lock for
        // the instant before its exec; a few short retries ride that out
        // without making a real second opener wait noticeably.
        let mut attempt = f.try_lock();
        for _ in 0..25 {
            if !matches!(attempt, Err(std::fs::TryLockError::WouldBlock)) {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
            attempt = f.try_lock();
        }
        match attempt {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = f.read_to_string(&mut pid);
                let pid = pid.trim();
                return Err(Error::Locked {
                    path: dir.to_path_buf(),
                    program: match std::fs::read_to_string(format!("/proc/{pid}/comm")) {
                        Ok(c) if !pid.is_empty() && !c.trim().is_empty() => {
                            format!(" ({})", c.trim())
                        }
                        _ => String::new(),
                    },
                    pid: if pid.is_empty() {
                        "unknown".into()
                    } else {
                        pid.into()
                    },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e).ctx(&path),
        }
        f.set_len(0).ctx(&path)?;
        f.seek(SeekFrom::Start(0)).ctx(&path)?;
        writeln!(f, "{}", std::process::id()).ctx(&path)?;
        Ok(DbLock { _file: f })
    }
}

/// The pid of the process holding `dir`'s lock, if any — read from
/// `/proc/locks` without touching the lock (so a follower process never
/// makes the application's `open` fail).
pub fn holder(dir: &Path) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(dir.join(FILE_NAME)).ok()?;
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    for line in locks.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF"
        if f.len() < 6 || f[1] != "FLOCK" {
            continue;
        }
        let ino = f[5].rsplit(':').next().and_then(|i| i.parse::<u64>().ok());
        if ino == Some(m.ino()) {
            return f[4].parse().ok();
        }
    }
    None
}
