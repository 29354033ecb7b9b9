//! What a WAL archiver needs from the engine, and nothing more: read the log
//! after an LSN from an open, remote-pinned or closed database ([`Tail`]);
//! register a repository and record how far it has got, so the database
//! keeps the WAL segments it still lacks ([`enable`], [`mark_archived`]);
//! one archiver per (database, repository) at a time ([`ArchiverLock`]);
//! and the framing of log records inside archive objects
//! ([`encode_records`], [`decode_records`]).
//!
//! The WAL's own files and their formats stay private to the engine
//! (`docs/formats.md` documents them).

pub use crate::wal::archive_mark::{
    enable, highest, registration, registrations, unregister, write as mark_archived, ArchiverLock,
    Registration,
};
pub use crate::wal::tail::{Batch, Pinned, Pinning, Tail};

use crate::wal::record::{read_frame, Frame, Record};

/// Append `records` to `out` as checksummed log frames (the WAL's own
/// record framing).
pub fn encode_records(records: &[Record], out: &mut Vec<u8>) {
    records.iter().for_each(|r| r.encode_framed(out));
}

/// Decode back what [`encode_records`] wrote. On damage, the offset of the
/// first bad frame and what is wrong with it.
pub fn decode_records(mut frames: &[u8]) -> std::result::Result<Vec<Record>, (usize, String)> {
    let mut records = Vec::new();
    let mut at = 0;
    while !frames.is_empty() {
        match read_frame(frames) {
            Frame::Ok(payload, n) => {
                records.push(Record::decode_payload(payload).map_err(|e| (at, e.to_string()))?);
                at += n;
                frames = &frames[n..];
            }
            _ => return Err((at, "damaged record".into())),
        }
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::record::Op;
    use crate::Key;

    #[test]
    fn records_round_trip_and_damage_is_found() {
        let records: Vec<Record> = (1..=3)
            .map(|lsn| Record {
                lsn,
                ts: lsn * 10,
                op: Op::Delete {
                    key: Key::new(b"k", None).unwrap(),
                },
            })
            .collect();
        let mut out = Vec::new();
        encode_records(&records, &mut out);
        assert_eq!(decode_records(&out).unwrap(), records);
        let last = out.len() - 1;
        out[last] ^= 1;
        let (at, _) = decode_records(&out).unwrap_err();
        assert!(at > 0 && at < out.len());
    }
}
