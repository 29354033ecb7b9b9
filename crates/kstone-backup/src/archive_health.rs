//! How far continuous archiving trails the database, and whether the
//! archiver is alive: the one definition of archive lag that `backup status`,
//! the agent's `kstone_archive_lag_seconds` and the alerts share.
//!
//! *Lag* is how far the archive is behind the database's last committed
//! write: the commit time of the newest write minus the commit time of the
//! newest archived write, 0 when every committed write is archived. An
//! archiver measures it when each round takes its snapshot, before shipping
//! (the top of the sawtooth: at a steady write rate, about the interval plus
//! a round's time), so it keeps growing while rounds fail. An idle,
//! caught-up database has lag 0 however long it sits. A stalled archiver is
//! told apart by its *heartbeat*: every archiver writes
//! `status/archiver/<db_id>` (framed JSON, magic `KSTNHRTB`; `docs/formats.md`)
//! on its first round, when it starts or stops failing, and at least every
//! `every_us`; its age says whether anyone is archiving at all.

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::manifest;
use crate::repository::Repository;

pub const HEARTBEAT_MAGIC: &[u8; 8] = b"KSTNHRTB";

/// A point of a database's history: an LSN and its commit time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub lsn: u64,
    pub commit_us: u64,
}

/// The archive lag, in microseconds: how far `archived` trails the database's
/// last committed write `db`.
///
/// ```
/// use kstone_backup::archive_health::{lag_us, Position};
/// let db = Position { lsn: 10, commit_us: 5_000_000 };
/// assert_eq!(lag_us(db, Position { lsn: 10, commit_us: 5_000_000 }), 0);
/// assert_eq!(lag_us(db, Position { lsn: 7, commit_us: 3_000_000 }), 2_000_000);
/// ```
pub fn lag_us(db: Position, archived: Position) -> u64 {
    if archived.lsn >= db.lsn {
        0
    } else {
        db.commit_us.saturating_sub(archived.commit_us)
    }
}

/// What an archiver last reported to a repository about one database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    /// When it was written.
    pub at_us: u64,
    /// The longest the archiver means to go without writing another (0: a
    /// one-off `wal-archive --once`, which promises nothing).
    pub every_us: u64,
    pub db_id: String,
    pub history: String,
    /// The database's last committed write, as the archiver last saw it.
    pub db: Position,
    /// The newest archived write.
    pub archived: Position,
    /// [`lag_us`] when the last round began (before it shipped anything).
    pub lag_us: u64,
    /// Why the last round failed, if it did.
    pub error: Option<String>,
    pub host: String,
    pub pid: u32,
}

fn object(db_id: &str) -> String {
    format!("status/archiver/{db_id}")
}

impl Heartbeat {
    /// Seconds since it was written.
    pub fn age_secs(&self, now_us: u64) -> f64 {
        now_us.saturating_sub(self.at_us) as f64 / 1e6
    }

    /// Whether the archiver has missed its promise: no heartbeat for three
    /// periods and ten seconds (slack for a slow round or a busy host).
    pub fn overdue(&self, now_us: u64) -> bool {
        self.every_us > 0 && now_us.saturating_sub(self.at_us) > 3 * self.every_us + 10_000_000
    }
}

impl Repository {
    /// Store an archiver's heartbeat (metadata only, readable without an
    /// identity, like the manifests).
    pub fn write_heartbeat(&self, hb: &Heartbeat) -> Result<()> {
        self.storage
            .put(&object(&hb.db_id), manifest::encode(HEARTBEAT_MAGIC, hb))
    }

    /// The last heartbeat of the archiver of `db_id`, if any reported here.
    pub fn heartbeat(&self, db_id: &str) -> Result<Option<Heartbeat>> {
        let key = object(db_id);
        match self.storage.get(&key)? {
            None => Ok(None),
            Some(b) => manifest::decode(HEARTBEAT_MAGIC, &b, &key).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_is_zero_when_caught_up_and_grows_with_unarchived_commits() {
        let at = |lsn, s: u64| Position {
            lsn,
            commit_us: s * 1_000_000,
        };
        assert_eq!(lag_us(at(5, 100), at(5, 100)), 0);
        // Idle: nothing newer than the archive, however old it is.
        assert_eq!(
            lag_us(at(5, 100), at(5, 100)),
            lag_us(at(5, 100), at(9, 200))
        );
        assert_eq!(lag_us(at(8, 130), at(5, 100)), 30_000_000);
        // A clock step backwards never makes lag negative.
        assert_eq!(lag_us(at(8, 90), at(5, 100)), 0);
    }

    #[test]
    fn overdue_after_three_periods_and_ten_seconds() {
        let hb = Heartbeat {
            at_us: 1_000_000_000,
            every_us: 10_000_000,
            db_id: "d".into(),
            history: "h".into(),
            db: Position {
                lsn: 1,
                commit_us: 1,
            },
            archived: Position {
                lsn: 1,
                commit_us: 1,
            },
            lag_us: 0,
            error: None,
            host: "h".into(),
            pid: 1,
        };
        assert!(!hb.overdue(hb.at_us + 39_000_000));
        assert!(hb.overdue(hb.at_us + 41_000_000));
        let once = Heartbeat { every_us: 0, ..hb };
        assert!(!once.overdue(once.at_us + 1_000_000_000_000));
    }
}
