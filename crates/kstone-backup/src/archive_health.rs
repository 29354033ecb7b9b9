//! How far continuous archiving trails the database, and whether the
//! archiver is alive: the one definition of archive lag that `backup status`,
//! the agent's `kstone_archive_lag_seconds` and the alerts share.
//!
//! *Lag* is how long the oldest committed write that the archive lacks has
//! been waiting: 0 when every committed write is archived — the writes a
//! disaster now would lose go back this far (the RPO as it stands). An
//! archiver measures it when each round reads the WAL, before shipping (the
//! top of the sawtooth: at a steady write rate, about the interval plus a
//! round's time), and it keeps growing while rounds fail. An idle,
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

/// The archive lag at `now_us`, in microseconds: how long the oldest write
/// the archive lacks (committed at `oldest_pending_us`) has waited; 0 when
/// it lacks none.
///
/// ```
/// use kstone_backup::archive_health::lag_us;
/// assert_eq!(lag_us(None, 9_000_000), 0);
/// assert_eq!(lag_us(Some(7_000_000), 9_000_000), 2_000_000);
/// ```
pub fn lag_us(oldest_pending_us: Option<u64>, now_us: u64) -> u64 {
    oldest_pending_us.map_or(0, |t| now_us.saturating_sub(t))
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
    /// The newest write this archiver has stored in the repository (`None`
    /// before its first round found where the archive continues).
    pub archived: Option<Position>,
    /// [`lag_us`] as the archiver last measured it (when its last round
    /// read the WAL, before shipping; growing while rounds fail).
    pub lag_us: Option<u64>,
    /// The archiver stopped cleanly (SIGTERM, end of a run); no more reports
    /// are due.
    #[serde(default)]
    pub stopped: bool,
    /// Why the last round failed, if it did.
    pub error: Option<String>,
    pub host: String,
    pub pid: u32,
}

use crate::layout;

impl Heartbeat {
    /// Seconds since it was written.
    pub fn age_secs(&self, now_us: u64) -> f64 {
        now_us.saturating_sub(self.at_us) as f64 / 1e6
    }

    /// Whether the archiver has missed its promise: no heartbeat for three
    /// periods and ten seconds (slack for a slow round or a busy host).
    pub fn overdue(&self, now_us: u64) -> bool {
        !self.stopped
            && self.every_us > 0
            && now_us.saturating_sub(self.at_us) > 3 * self.every_us + 10_000_000
    }

    /// One word for the archiver's state.
    pub fn state(&self, now_us: u64) -> &'static str {
        if self.error.is_some() {
            "FAILING"
        } else if self.stopped {
            "stopped"
        } else if self.overdue(now_us) {
            "SILENT"
        } else {
            "ok"
        }
    }
}

impl Heartbeat {
    /// What needs an operator in this report. `reachable`: the newest point
    /// the repository can restore of this heartbeat's history, if known;
    /// `max_lag`: the most lag the operator accepts.
    pub fn problems(
        &self,
        now_us: u64,
        reachable: Option<u64>,
        max_lag: Option<std::time::Duration>,
    ) -> Vec<String> {
        let mut out = Vec::new();
        let at = crate::manifest::rfc3339(self.at_us);
        if let Some(e) = &self.error {
            out.push(format!("archiving is failing (as of {at}): {e}"));
        }
        if self.overdue(now_us) {
            out.push(format!(
                "the archiver has not reported for {:.0} s (it reports every {} s): is it running?",
                self.age_secs(now_us),
                self.every_us / 1_000_000
            ));
        }
        out.extend(self.claims_beyond(reachable));
        if let Some(max) = max_lag {
            let max_s = max.as_secs_f64();
            match self.lag_us {
                Some(l) if l as f64 / 1e6 > max_s => out.push(format!(
                    "the oldest write the archive lacked had waited {:.1} s at the archiver's last report ({at}), more than the limit of {max_s} s",
                    l as f64 / 1e6
                )),
                None => out.push(format!(
                    "the archiver has not yet read the database's WAL (as of {at})"
                )),
                _ => {}
            }
            if self.stopped {
                out.push(format!(
                    "the archiver stopped at {at}: nothing is archiving this database"
                ));
            }
            if self.every_us == 0 && self.age_secs(now_us) > max_s {
                out.push(format!(
                    "the last archiving run was {:.1} s ago, longer than the limit of {max_s} s",
                    self.age_secs(now_us)
                ));
            }
        }
        out
    }
}

impl Heartbeat {
    /// The archiver says it stored writes the repository no longer reaches:
    /// archive objects were deleted or lost after it wrote them.
    pub fn claims_beyond(&self, reachable: Option<u64>) -> Option<String> {
        let (a, r) = (self.archived?, reachable?);
        (a.lsn > r).then(|| {
            format!(
                "the archiver stored writes through LSN {}, but the repository reaches only LSN {r}: \
                 archive objects are missing",
                a.lsn
            )
        })
    }
}

impl Repository {
    /// The newest point of `history` this repository can restore, if any.
    pub fn reachable_lsn(&self, history: &str) -> Option<u64> {
        self.window(Some(history)).ok().map(|w| w.latest_lsn)
    }

    /// Every archiver heartbeat in the repository, by database id; a damaged
    /// one is reported as its error (the next round rewrites it).
    pub fn heartbeats(&self) -> Result<Vec<(String, Result<Heartbeat>)>> {
        Ok(self
            .storage
            .list(layout::HEARTBEATS)?
            .into_iter()
            .filter_map(|(k, _)| {
                let id = layout::heartbeat_db(&k)?.to_string();
                let hb = self.heartbeat(&id).and_then(|h| {
                    h.ok_or_else(|| crate::error::Error::Corrupt {
                        object: k.clone(),
                        detail: "vanished while being read".into(),
                    })
                });
                Some((id, hb))
            })
            .collect())
    }

    /// Store an archiver's heartbeat (metadata only, readable without an
    /// identity, like the manifests).
    pub fn write_heartbeat(&self, hb: &Heartbeat) -> Result<()> {
        self.storage.put(
            &layout::heartbeat(&hb.db_id),
            manifest::encode(HEARTBEAT_MAGIC, hb),
        )
    }

    /// The last heartbeat of the archiver of `db_id`, if any reported here.
    pub fn heartbeat(&self, db_id: &str) -> Result<Option<Heartbeat>> {
        let key = layout::heartbeat(db_id);
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
    fn lag_is_zero_when_caught_up_and_the_age_of_the_oldest_missing_write() {
        let s = |x: u64| x * 1_000_000;
        // Caught up: 0, however long the database has been idle.
        assert_eq!(lag_us(None, s(1_000)), 0);
        // One write 5 s old after a long idle time: 5 s, not the idle time.
        assert_eq!(lag_us(Some(s(995)), s(1_000)), s(5));
        // A clock step backwards never makes lag negative.
        assert_eq!(lag_us(Some(s(1_001)), s(1_000)), 0);
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
            archived: Some(Position {
                lsn: 1,
                commit_us: 1,
            }),
            lag_us: Some(0),
            stopped: false,
            error: None,
            host: "h".into(),
            pid: 1,
        };
        assert!(!hb.overdue(hb.at_us + 39_000_000));
        assert!(hb.overdue(hb.at_us + 41_000_000));
        let once = Heartbeat {
            every_us: 0,
            ..hb.clone()
        };
        assert!(!once.overdue(once.at_us + 1_000_000_000_000));
        let stopped = Heartbeat {
            stopped: true,
            ..hb.clone()
        };
        assert!(!stopped.overdue(stopped.at_us + 1_000_000_000_000));
        assert_eq!(stopped.state(stopped.at_us + 1_000_000_000_000), "stopped");
        assert_eq!(hb.state(hb.at_us + 41_000_000), "SILENT");
        // What it stored beyond what the repository reaches is a problem.
        assert!(hb.problems(hb.at_us, Some(1), None).is_empty());
        assert!(hb.problems(hb.at_us, Some(0), None)[0].contains("archive objects are missing"));
    }
}
