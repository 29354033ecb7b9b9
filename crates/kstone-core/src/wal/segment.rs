//! WAL segment files: `wal/SSS-IIIIIIIIIIII.wal` (stripe, file id). Each has a
//! checksummed header, then framed records appended by one writer at a time.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::record::{read_frame, Frame, OpRef, Record, RecordRef};
use crate::error::{Error, IoContext, Result};
use crate::model::varint::Reader;

pub const MAGIC: &[u8; 8] = b"KSTNWAL\0";
pub const VERSION: u32 = 1;
pub const HEADER_LEN: usize = 36;

/// File name of a segment.
pub fn file_name(stripe: usize, id: u64) -> String {
    format!("{stripe:03}-{id:012}.wal")
}

/// `(stripe, id)` from a segment file name, or `None` for any other file.
pub fn parse_name(name: &str) -> Option<(usize, u64)> {
    let stem = name.strip_suffix(".wal")?;
    let (s, id) = stem.split_once('-')?;
    if s.len() != 3 || id.len() != 12 {
        return None;
    }
    let stripe: usize = s.parse().ok()?;
    (stripe < crate::model::key::STRIPES).then_some(())?;
    Some((stripe, id.parse().ok()?))
}

/// The bytes of every segment file in `wal_dir` (zeros allocated ahead
/// included: an upper bound of what recovery replays).
pub fn total_bytes(wal_dir: &Path) -> Result<u64> {
    let mut total = 0;
    let entries = match std::fs::read_dir(wal_dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        r => r.ctx(wal_dir)?,
    };
    for e in entries {
        let e = e.ctx(wal_dir)?;
        if parse_name(&e.file_name().to_string_lossy()).is_some() {
            total += e.metadata().ctx(&e.path())?.len();
        }
    }
    Ok(total)
}

/// The fixed header at the start of each segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub stripe: u32,
    pub id: u64,
    /// The id of the stripe's previous segment (0 if none), so a missing
    /// segment in the middle of a stripe's log is detected.
    pub prev: u64,
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[..8].copy_from_slice(MAGIC);
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        b[12..16].copy_from_slice(&self.stripe.to_le_bytes());
        b[16..24].copy_from_slice(&self.id.to_le_bytes());
        b[24..32].copy_from_slice(&self.prev.to_le_bytes());
        let crc = crate::checksum::crc32c(&b[..32]);
        b[32..].copy_from_slice(&crc.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8], path: &Path) -> Result<Header> {
        let corrupt = |d: &str| Error::Corruption {
            path: path.to_path_buf(),
            offset: 0,
            detail: d.to_string(),
        };
        if b.len() < HEADER_LEN {
            return Err(corrupt("segment header is truncated"));
        }
        let mut r = Reader::new(&b[..HEADER_LEN]);
        let magic = r.bytes(8)?;
        let version = r.u32_le()?;
        let stripe = r.u32_le()?;
        let id = r.u64_le()?;
        let prev = r.u64_le()?;
        let crc = r.u32_le()?;
        if magic != MAGIC {
            return Err(corrupt("not a WAL segment (bad magic)"));
        }
        if crc != crate::checksum::crc32c(&b[..32]) {
            return Err(corrupt("segment header checksum mismatch"));
        }
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
            });
        }
        Ok(Header { stripe, id, prev })
    }
}

/// Smallest and largest step by which a mapped segment grows.
const MAP_STEP_MIN: u64 = 64 << 10;
const MAP_STEP_MAX: u64 = 4 << 20;

/// Appends of at least this many bytes go through `pwrite` even in a mapped
/// segment. Storing into a mapped page costs a write fault each time the
/// group commit's writeback has write-protected it again (and that
/// write-protect a TLB shootdown to the other cores): with 1 KiB records
/// that was a quarter of a writer's cycles, more than a syscall per record
/// costs. Below this the syscall costs more than the faults, shared by the
/// many small records a page holds.
const DIRECT_MIN: usize = 1024;

/// The segment a stripe is currently appending to.
///
/// In `Buffered` mode records are copied into a shared memory map of the
/// file instead of a `write(2)` each: the pages are the kernel's page cache,
/// so a record is in the OS (it survives a process crash) as soon as it is
/// copied, and the group commit's fdatasync of the file writes the mapped
/// pages like any others. The mapped part of the file is allocated first
/// (`fallocate`), so a full disk is an error on the write path, never a
/// SIGBUS on a page fault. Space not yet written is zeros, which readers
/// take as the end of the log; sealing cuts it off ([`ActiveSegment::trim`]).
/// In `Sync` mode each record is one `pwrite` (its fdatasync dominates).
#[derive(Debug)]
pub struct ActiveSegment {
    pub id: u64,
    pub path: PathBuf,
    pub file: Arc<File>,
    /// End of the last record: where the next one goes.
    pub len: u64,
    /// Length of the file: `len` plus any zeros allocated ahead.
    pub cap: u64,
    map: Option<memmap2::MmapMut>,
    mapped: bool,
    /// Bytes of records copied into the mapping (not seen by `write(2)`
    /// accounting such as `/proc/PID/io`).
    mapped_bytes: u64,
    /// The group commit's number for this file's creation (0: unknown, as
    /// for a segment reopened after a crash).
    pub created: u64,
}

impl ActiveSegment {
    /// Create a new segment and write its header. Nothing is fsynced here (a
    /// writer creates one at every memtable seal, on the write path): the
    /// caller registers the file and the directory with the group commit,
    /// whose next round makes header, records and directory entry durable
    /// together before any of them is acknowledged. A header lost to a power
    /// cut leaves a short or empty last segment, which recovery removes.
    /// `mapped`: append through a memory map (see the type's docs).
    pub fn create(
        dir: &Path,
        stripe: usize,
        id: u64,
        prev: u64,
        mapped: bool,
    ) -> Result<ActiveSegment> {
        let header = Header {
            stripe: stripe as u32,
            id,
            prev,
        };
        ActiveSegment::create_at(dir.join(file_name(stripe, id)), header, mapped)
    }

    /// Create a segment file at `path` with `header` (see [`ActiveSegment::create`]).
    pub fn create_at(path: PathBuf, header: Header, mapped: bool) -> Result<ActiveSegment> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .ctx(&path)?;
        ActiveSegment::start(f, path, header, mapped)
    }

    /// Make `f`, a new empty file at `path` opened for reading and writing,
    /// a segment with `header` (see [`ActiveSegment::create`]).
    pub fn start(f: File, path: PathBuf, header: Header, mapped: bool) -> Result<ActiveSegment> {
        let written = f.write_all_at(&header.encode(), 0).ctx(&path);
        if let Err(e) = written {
            // A full disk must not leave a headerless segment behind.
            let _ = std::fs::remove_file(&path);
            return Err(e);
        }
        Ok(ActiveSegment {
            id: header.id,
            path,
            file: Arc::new(f),
            len: HEADER_LEN as u64,
            cap: HEADER_LEN as u64,
            map: None,
            mapped: mapped && MAPPING_SUPPORTED,
            mapped_bytes: 0,
            created: 0,
        })
    }

    /// Continue appending to an existing segment whose first `len` bytes are
    /// known good and whose other `file_len - len` bytes are zeros (recovery
    /// has already cut off any torn record).
    pub fn reopen(
        path: &Path,
        id: u64,
        len: u64,
        file_len: u64,
        mapped: bool,
    ) -> Result<ActiveSegment> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .ctx(path)?;
        Ok(ActiveSegment {
            id,
            path: path.to_path_buf(),
            file: Arc::new(f),
            len,
            cap: file_len.max(len),
            map: None,
            mapped: mapped && MAPPING_SUPPORTED,
            mapped_bytes: 0,
            created: 0,
        })
    }

    /// Write already-framed records after the last one (not yet durable).
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self.len + bytes.len() as u64;
        if !self.mapped || bytes.len() >= DIRECT_MIN {
            // In a mapped segment: the same page cache as the mapping, so
            // readers see one file. Nothing is allocated ahead for it:
            // `pwrite` reports a full disk itself, and a segment written only
            // this way has no zeros for `trim` to free when it is sealed
            // (freeing blocks is a synchronous discard on filesystems mounted
            // with `discard`).
            self.file.write_all_at(bytes, self.len).ctx(&self.path)?;
            self.len = end;
            self.cap = self.cap.max(end);
            return Ok(());
        }
        // A mapping never reaches past `cap`, so this also covers growing
        // the file, which `remap` allocates first: a full disk is an error
        // here, not a SIGBUS.
        if self.map.as_ref().is_none_or(|m| (m.len() as u64) < end) {
            self.remap(end)?;
        }
        let map = self
            .map
            .as_mut()
            .ok_or_else(|| Error::Internal("WAL segment map missing".into()))?;
        let range = self.len as usize..end as usize;
        let dst = map
            .get_mut(range)
            .ok_or_else(|| Error::Internal("WAL segment map too short".into()))?;
        copy_frames(dst, bytes);
        self.len = end;
        self.mapped_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Bytes of records this segment copied into its memory map.
    pub fn mapped_bytes(&self) -> u64 {
        self.mapped_bytes
    }

    /// Map the file with room for `need` bytes, allocating more first if needed.
    fn remap(&mut self, need: u64) -> Result<()> {
        self.map = None;
        if need > self.cap {
            let step = (self.cap / 2).clamp(MAP_STEP_MIN, MAP_STEP_MAX);
            let cap = (need + step).div_ceil(MAP_STEP_MIN) * MAP_STEP_MIN;
            allocate(&self.file, cap).ctx(&self.path)?;
            self.cap = cap;
        }
        // SAFETY: the database lock keeps other KeystoneDB writers out of
        // this file, and no one truncates it while mapped: `trim` and
        // `abandon` unmap first, and the file is only deleted after sealing.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .len(self.cap as usize)
                .map_mut(&*self.file)
        };
        self.map = Some(map.ctx(&self.path)?);
        Ok(())
    }

    /// Unmap and cut off zeros allocated ahead, so a sealed segment ends at
    /// its last record (the caller fsyncs).
    pub fn trim(&mut self) -> Result<()> {
        self.map = None;
        if self.cap > self.len {
            self.file.set_len(self.len).ctx(&self.path)?;
            self.cap = self.len;
        }
        Ok(())
    }

    /// After a failed append: cut the file back to `len` bytes (dropping any
    /// partial record) and make that durable.
    pub fn abandon(&mut self, len: u64) -> std::io::Result<()> {
        self.map = None;
        self.file.set_len(len)?;
        self.file.sync_data()
    }
}

/// Copy framed records into the mapped `dst` so that whatever a SIGKILL
/// leaves of them reads as a torn tail: frame by frame, front to back, and
/// each frame's last four bytes in one store after the rest of it. So a kill
/// leaves whole frames, then one frame cut short whose last four bytes are
/// zeros (or whose header is cut, with zeros after it), then zeros: what
/// `scan_frames` takes for a torn tail. `copy_from_slice` (glibc's `memcpy`)
/// stores the head of a large copy last: a kill during it (at a page fault of
/// the mapping, say) left zeros where an append's first frame header belonged,
/// then whole frames, which recovery must take for damage.
fn copy_frames(dst: &mut [u8], src: &[u8]) {
    assert_eq!(dst.len(), src.len(), "copy_frames: lengths differ");
    frame_stores(src, |at, bytes| {
        let Some(d) = dst.get_mut(at..at + bytes.len()) else {
            return;
        };
        // SAFETY: `d` is a valid, exclusive slice of `bytes.len()` bytes, and
        // byte arrays need no alignment. Volatile keeps the compiler from
        // merging or reordering the stores.
        unsafe {
            match (<[u8; 8]>::try_from(bytes), <[u8; 4]>::try_from(bytes)) {
                (Ok(w), _) => std::ptr::write_volatile(d.as_mut_ptr().cast::<[u8; 8]>(), w),
                (_, Ok(w)) => std::ptr::write_volatile(d.as_mut_ptr().cast::<[u8; 4]>(), w),
                _ => {
                    for (i, &b) in bytes.iter().enumerate() {
                        std::ptr::write_volatile(d.as_mut_ptr().add(i), b);
                    }
                }
            }
        }
    });
}

/// The stores [`copy_frames`] makes, in order, as (offset, bytes): each
/// frame's body eight bytes at a time (then byte by byte), then its last
/// four bytes in one store; bytes that are not a whole frame (never, from
/// the write path) byte by byte.
fn frame_stores(src: &[u8], mut store: impl FnMut(usize, &[u8])) {
    const FRAME_HEADER: usize = crate::wal::record::FRAME_HEADER;
    let mut at = 0;
    while at < src.len() {
        let n = src
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(|b| FRAME_HEADER + u32::from_le_bytes(b) as usize)
            .filter(|&n| at + n <= src.len());
        let Some(n) = n else {
            (at..src.len()).for_each(|i| store(i, &src[i..i + 1]));
            return;
        };
        let body = at + n - 4;
        let mut p = at;
        while p + 8 <= body {
            store(p, &src[p..p + 8]);
            p += 8;
        }
        (p..body).for_each(|i| store(i, &src[i..i + 1]));
        store(body, &src[body..at + n]);
        at += n;
    }
}

/// Memory-mapped appends need `fallocate` (Linux): without it a full disk
/// would show up as a SIGBUS on a page fault.
const MAPPING_SUPPORTED: bool = cfg!(target_os = "linux");

/// Allocate the file's blocks up to `len` bytes (extending it with zeros).
#[cfg(target_os = "linux")]
fn allocate(f: &File, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = libc::off_t::try_from(len)
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "segment too large"))?;
    // SAFETY: a plain system call on an open descriptor.
    match unsafe { libc::posix_fallocate(f.as_raw_fd(), 0, len) } {
        0 => Ok(()),
        e => Err(std::io::Error::from_raw_os_error(e)),
    }
}

#[cfg(not(target_os = "linux"))]
fn allocate(f: &File, len: u64) -> std::io::Result<()> {
    f.set_len(len)
}

/// What a scan of a segment found (`T`: what its frames hold; records,
/// or the commit log's entries).
#[derive(Debug)]
pub struct Scan<T = Record> {
    /// `None` when the header itself was torn (a crash while creating the
    /// segment, before any record could be acknowledged).
    pub header: Option<Header>,
    pub records: Vec<T>,
    /// Bytes up to the end of the last good record.
    pub valid_len: u64,
    pub file_len: u64,
    /// Everything after `valid_len` is zeros: allocated ahead of the records
    /// of a mapped segment, or never written (no record was torn).
    pub zero_tail: bool,
}

impl<T> Scan<T> {
    pub fn is_torn(&self) -> bool {
        self.valid_len < self.file_len
    }
}

/// A read-only map of segment `path` for replay to keep its records in
/// (`memtable::Bytes::Mapped`), where appends go through maps too; `None`
/// for an empty file or where the kernel refuses the map (replay then reads
/// the file instead).
pub fn map_for_replay(path: &Path) -> Result<Option<Arc<memmap2::Mmap>>> {
    if !MAPPING_SUPPORTED {
        return Ok(None);
    }
    let f = open_for_read(path)?;
    if f.metadata().ctx(path)?.len() == 0 {
        return Ok(None);
    }
    // SAFETY: the database lock makes this process the segment's only
    // writer, and nothing truncates a segment below the records replayed
    // from it or rewrites them (see `memtable::Bytes`); an unlinked file
    // stays mapped.
    Ok(unsafe { memmap2::Mmap::map(&f) }.ok().map(Arc::new))
}

/// Scan stripe `stripe`'s segment as a replay of it must: every record
/// decoded, LSNs increasing, every put and delete of a key in `stripe`;
/// `f` sees each record (markers too) in order. Recovery and the views of
/// snapshots both replay through this, so what one refuses the other does.
pub fn scan_stripe<'a>(
    buf: &'a [u8],
    path: &Path,
    stripe: usize,
    mut f: impl FnMut(RecordRef<'a>),
) -> Result<Scan<()>> {
    let mut last = 0;
    scan_frames(buf, path, |p| {
        let r = RecordRef::decode_payload(p).map_err(|e| format!("undecodable WAL record: {e}"))?;
        if r.lsn <= last {
            return Err(format!("LSN {} does not increase", r.lsn));
        }
        last = r.lsn;
        if let OpRef::Put { key, .. } | OpRef::Delete { key } = r.op {
            if crate::model::key::stripe_of(key.pk) != stripe {
                return Err("record belongs to another stripe".into());
            }
        }
        f(r);
        Ok(())
    })
}

/// Open a segment for reading: a name in `wal/` that is not a regular
/// file (a FIFO would block the open forever) is damage, not a segment.
pub fn open_for_read(path: &Path) -> Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .ctx(path)?;
    if !f.metadata().ctx(path)?.is_file() {
        return Err(Error::Corruption {
            path: path.to_path_buf(),
            offset: 0,
            detail: "not a regular file".into(),
        });
    }
    Ok(f)
}

/// Read a segment, tolerating only a torn tail: an incomplete last frame, a
/// last frame whose payload fails its checksum, or a zero-filled tail. Any
/// other damage is `Error::Corruption` naming the file and offset.
pub fn scan(path: &Path) -> Result<Scan> {
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut open_for_read(path)?, &mut buf).ctx(path)?;
    scan_bytes(&buf, path)
}

pub fn scan_bytes(buf: &[u8], path: &Path) -> Result<Scan> {
    scan_frames(buf, path, |p| {
        Record::decode_payload(p).map_err(|e| format!("undecodable WAL record: {e}"))
    })
}

/// Whether `b` holds only zeros. A mapped segment's tail, allocated ahead
/// of its records, is read this way at every open: OR-folding a block at a
/// time vectorizes, an early-exit byte loop does not.
fn all_zero(b: &[u8]) -> bool {
    b.chunks(4096)
        .all(|c| c.iter().fold(0u8, |acc, &x| acc | x) == 0)
}

/// Whether a whole, checksummed frame starts anywhere in `b` (only on the
/// rare path of a tail that is neither a record nor zeros).
fn any_frame_in(b: &[u8]) -> bool {
    (0..b.len()).any(|i| matches!(read_frame(&b[i..]), Frame::Ok(..)))
}

/// [`scan_bytes`] with frames whose payloads `decode` reads in order (it
/// returns the detail of a corruption error). Recovery decodes records
/// borrowed from `buf` and keeps only what it copies out of them.
pub fn scan_frames<'a, T>(
    buf: &'a [u8],
    path: &Path,
    mut decode: impl FnMut(&'a [u8]) -> std::result::Result<T, String>,
) -> Result<Scan<T>> {
    let file_len = buf.len() as u64;
    if buf.len() < HEADER_LEN || all_zero(&buf[..HEADER_LEN]) {
        if !all_zero(buf) && buf.len() >= HEADER_LEN {
            return Err(Error::Corruption {
                path: path.to_path_buf(),
                offset: 0,
                detail: "segment header is zeroed but data follows".into(),
            });
        }
        return Ok(Scan {
            header: None,
            records: Vec::new(),
            valid_len: 0,
            file_len,
            zero_tail: all_zero(buf),
        });
    }
    let header = Header::decode(buf, path)?;
    let mut records = Vec::new();
    let mut at = HEADER_LEN;
    let corrupt = |offset: usize, detail: String| Error::Corruption {
        path: path.to_path_buf(),
        offset: offset as u64,
        detail,
    };
    while at < buf.len() {
        let rest = &buf[at..];
        match read_frame(rest) {
            Frame::Ok(payload, n) => {
                let rec = decode(payload).map_err(|e| corrupt(at, e))?;
                records.push(rec);
                at += n;
            }
            Frame::Incomplete => break,
            Frame::BadHeader if all_zero(rest) => break,
            // A header never written (zeros) whose payload did reach the disk:
            // a power cut that persisted a frame's later page but not the
            // page holding its header (writeback is page by page, and an
            // unsynced `Buffered` tail may have any of its pages). Torn, if
            // no whole frame follows: a record after it would mean the log
            // went on, so the zeros are damage.
            Frame::BadHeader
                if all_zero(&rest[..super::record::FRAME_HEADER]) && !any_frame_in(&rest[1..]) =>
            {
                break
            }
            // A header cut short by a kill, its payload never written: the
            // records a segment holds never end in zeros, so damage to a
            // written header has a non-zero payload after it.
            Frame::BadHeader if all_zero(&rest[super::record::FRAME_HEADER..]) => break,
            Frame::BadHeader => {
                return Err(corrupt(at, "WAL record header checksum mismatch".into()))
            }
            Frame::BadPayload => {
                let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
                let end = super::record::FRAME_HEADER + len;
                // Torn: a write cut short leaves the frame's last bytes
                // unwritten (zeros: appends go to new or zero-filled space,
                // and a copy's last store covers its end). A frame written to
                // its end whose checksum fails was damaged after the fact:
                // cutting it would drop an acknowledged write.
                if all_zero(&rest[end..]) && all_zero(&rest[end.saturating_sub(4)..end]) {
                    break;
                }
                return Err(corrupt(at, "WAL record checksum mismatch".into()));
            }
        }
    }
    Ok(Scan {
        header: Some(header),
        records,
        valid_len: at as u64,
        file_len,
        zero_tail: all_zero(&buf[at.min(buf.len())..]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::key::Key;
    use crate::wal::record::Op;

    fn rec(lsn: u64) -> Record {
        Record {
            lsn,
            ts: lsn * 10,
            op: Op::Put {
                key: Key::new(format!("k{lsn}").as_bytes(), None).unwrap(),
                value: vec![lsn as u8; 20],
            },
        }
    }

    const FRAME_HEADER_LEN: usize = crate::wal::record::FRAME_HEADER;

    fn segment(n: u64) -> Vec<u8> {
        let mut b = Header {
            stripe: 3,
            id: 9,
            prev: 2,
        }
        .encode()
        .to_vec();
        (1..=n).for_each(|i| rec(i).encode_framed(&mut b));
        b
    }

    /// A stripe's replay checks each record: LSNs increase, keys are the
    /// stripe's; whatever fails names the file and the record's offset.
    #[test]
    fn a_stripe_scan_refuses_a_repeated_lsn_and_a_foreign_key() {
        let p = Path::new("seg");
        let key = |lsn: u64| Key::new(format!("k{lsn}").as_bytes(), None).unwrap();
        let stripe = crate::model::key::stripe_of(&key(1).pk);
        let mut b = Header {
            stripe: stripe as u32,
            id: 9,
            prev: 0,
        }
        .encode()
        .to_vec();
        let mut seen = Vec::new();
        // Records of keys in `stripe` only, then one marker (no key).
        let mine: Vec<u64> = (1..200)
            .filter(|&l| crate::model::key::stripe_of(&key(l).pk) == stripe)
            .collect();
        for &l in &mine {
            rec(l).encode_framed(&mut b);
        }
        Record {
            lsn: 1000,
            ts: 1,
            op: Op::Marker { name: "m".into() },
        }
        .encode_framed(&mut b);
        scan_stripe(&b, p, stripe, |r| seen.push(r.lsn)).unwrap();
        assert_eq!(seen, mine.iter().copied().chain([1000]).collect::<Vec<_>>());
        // The last record again.
        let mut dup = b.clone();
        let at = dup.len();
        rec(*mine.last().unwrap()).encode_framed(&mut dup);
        let e = scan_stripe(&dup, p, stripe, |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("does not increase") && e.contains(&at.to_string()),
            "{e}"
        );
        // A record of another stripe's key.
        let other = (1..400)
            .find(|&l| crate::model::key::stripe_of(&key(l).pk) != stripe)
            .unwrap();
        let mut foreign = b.clone();
        Record {
            lsn: 2000,
            ts: 1,
            op: Op::Delete { key: key(other) },
        }
        .encode_framed(&mut foreign);
        let e = scan_stripe(&foreign, p, stripe, |_| {})
            .unwrap_err()
            .to_string();
        assert!(e.contains("another stripe"), "{e}");
    }

    #[test]
    fn a_segment_name_that_is_not_a_file_is_damage() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join(file_name(3, 7));
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Returns at once (no writer on the FIFO), with the file named.
        let e = open_for_read(&fifo).unwrap_err().to_string();
        assert!(
            e.contains("not a regular file") && e.contains("003-"),
            "{e}"
        );
        let e = open_for_read(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a regular file"), "{e}");
    }

    #[test]
    fn names() {
        assert_eq!(parse_name(&file_name(255, 42)), Some((255, 42)));
        assert_eq!(parse_name("256-000000000001.wal"), None);
        assert_eq!(parse_name("x.wal"), None);
    }

    #[test]
    fn torn_tail_is_tolerated() {
        let b = segment(5);
        let p = Path::new("seg");
        let full = scan_bytes(&b, p).unwrap();
        assert_eq!(full.records.len(), 5);
        assert!(!full.is_torn());
        for cut in 1..40 {
            let s = scan_bytes(&b[..b.len() - cut], p).unwrap();
            assert_eq!(s.records.len(), 4, "cut {cut}");
            assert!(s.is_torn());
        }
        let mut z = b.clone();
        z.extend_from_slice(&[0u8; 100]);
        assert_eq!(scan_bytes(&z, p).unwrap().records.len(), 5);
    }

    /// Records `from..=to`, framed as a segment holds them.
    fn framed(from: u64, to: u64) -> Vec<u8> {
        let mut b = Vec::new();
        (from..=to).for_each(|i| rec(i).encode_framed(&mut b));
        b
    }

    #[test]
    fn copies_are_exact_at_every_length() {
        for n in 0..40usize {
            let src: Vec<u8> = (0..n as u8).map(|b| b.wrapping_mul(37) | 1).collect();
            let mut dst = vec![0u8; n];
            copy_frames(&mut dst, &src);
            assert_eq!(dst, src, "{n} bytes, not frames");
        }
        let frames = framed(1, 9);
        let mut dst = vec![0u8; frames.len()];
        copy_frames(&mut dst, &frames);
        assert_eq!(dst, frames);
    }

    /// What a kill can leave of an append copied frame by frame (every
    /// prefix of its stores) reads as its whole frames and a torn tail.
    #[test]
    fn every_cut_of_a_mapped_append_is_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seg");
        let head = [
            &Header {
                stripe: 0,
                id: 1,
                prev: 0,
            }
            .encode()[..],
            &framed(1, 2),
        ]
        .concat();
        let append = framed(3, 7);
        let mut stores = Vec::new();
        frame_stores(&append, |at, b| stores.push((at, b.to_vec())));
        assert!(stores.len() > 20, "{} stores", stores.len());
        let mut written = vec![0u8; append.len() + 4096];
        let mut whole = 0;
        for (k, (at, b)) in stores.iter().enumerate() {
            written[*at..*at + b.len()].copy_from_slice(b);
            // A frame's last store is its only 4-byte one.
            whole += usize::from(b.len() == 4);
            std::fs::write(&path, [&head[..], &written].concat()).unwrap();
            let s = scan(&path).unwrap_or_else(|e| panic!("after {} stores: {e}", k + 1));
            let lsns: Vec<u64> = s.records.iter().map(|r| r.lsn).collect();
            assert_eq!(
                lsns,
                (1..=2 + whole as u64).collect::<Vec<_>>(),
                "after {} stores",
                k + 1
            );
        }
        assert_eq!(scan(&path).unwrap().records.len(), 7);
    }

    #[test]
    fn small_mapped_and_large_direct_appends_interleave_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut seg = ActiveSegment::create(dir.path(), 1, 1, 0, true).unwrap();
        let (mut next, mut mapped) = (1u64, 0);
        // Single small records (mapped), runs large enough for pwrite, and
        // runs that cross the allocated end, in a pattern that revisits each
        // (a pwrite that grows the file leaves a mapping too short for the
        // next small record).
        for n in [1u64, 40, 1, 1, 2000, 3, 900, 1, 5000, 1] {
            let b = framed(next, next + n - 1);
            let direct = b.len() >= DIRECT_MIN;
            assert_eq!(direct, n >= 40, "{n} records are {} bytes", b.len());
            seg.append(&b).unwrap();
            next += n;
            mapped += if direct { 0 } else { b.len() as u64 };
            assert_eq!(seg.mapped_bytes(), mapped);
            assert_eq!(std::fs::metadata(&seg.path).unwrap().len(), seg.cap);
            let s = scan(&seg.path).unwrap();
            assert_eq!(s.valid_len, seg.len);
            assert!(s.zero_tail);
            assert_eq!(s.records.len() as u64, next - 1);
            assert!(s
                .records
                .iter()
                .enumerate()
                .all(|(i, r)| r.lsn == i as u64 + 1));
        }
        seg.trim().unwrap();
        assert_eq!(scan(&seg.path).unwrap().records.len() as u64, next - 1);
    }

    #[test]
    fn mapped_appends_read_back_over_reopen_and_trim() {
        let dir = tempfile::tempdir().unwrap();
        let on_disk = |p: &Path| std::fs::metadata(p).unwrap().len();
        let mut seg = ActiveSegment::create(dir.path(), 3, 9, 2, true).unwrap();
        seg.append(&framed(1, 3)).unwrap();
        let path = seg.path.clone();
        assert!(on_disk(&path) >= MAP_STEP_MIN, "space is allocated ahead");
        assert_eq!(on_disk(&path), seg.cap);
        // Another reader sees mapped records at once (the page cache).
        let s = scan(&path).unwrap();
        assert_eq!((s.records.len(), s.valid_len), (3, seg.len));
        assert!(s.is_torn() && s.zero_tail);
        drop(seg);
        // Reopened over its zeros (as recovery does), it writes after record 3.
        let mut seg = ActiveSegment::reopen(&path, 9, s.valid_len, s.file_len, true).unwrap();
        seg.append(&framed(4, 5)).unwrap();
        assert_eq!(on_disk(&path), s.file_len, "no growth inside the zeros");
        // Past the zeros it grows (a run this large through `pwrite`, to
        // its end) and keeps every record.
        let big = framed(6, 3000);
        seg.append(&big).unwrap();
        assert_eq!(on_disk(&path), seg.len);
        let s = scan(&path).unwrap();
        assert_eq!(s.records.len(), 3000);
        assert!(s
            .records
            .iter()
            .enumerate()
            .all(|(i, r)| r.lsn == i as u64 + 1));
        // fdatasync writes mapped pages like any others.
        seg.file.sync_data().unwrap();
        // Trim cuts the zeros; later appends (unmapped now) follow the last record.
        seg.trim().unwrap();
        assert_eq!(on_disk(&path), seg.len);
        let mut seg = ActiveSegment::reopen(&path, 9, seg.len, seg.len, false).unwrap();
        seg.append(&framed(3001, 3001)).unwrap();
        let s = scan(&path).unwrap();
        assert!(!s.is_torn());
        assert_eq!(s.records.len(), 3001);
        // A record torn before the zeros is not a zero tail.
        let mut b = std::fs::read(&path).unwrap();
        let cut = b.len() - 5;
        b[cut..].fill(0);
        b.extend_from_slice(&[0; 100]);
        let s = scan_bytes(&b, &path).unwrap();
        assert_eq!(s.records.len(), 3000);
        assert!(!s.zero_tail);
        // A failed append is undone: the file ends at the given length.
        let mut seg = ActiveSegment::reopen(&path, 9, s.valid_len, s.valid_len, true).unwrap();
        seg.append(&framed(3001, 3002)).unwrap();
        seg.abandon(s.valid_len).unwrap();
        assert_eq!(on_disk(&path), s.valid_len);
    }

    /// A power cut can persist a frame's payload page but not the page with
    /// its header: a zero header with no whole frame after it is a torn
    /// tail. Zeros where a header should be, with records after them, are
    /// damage; so is a last header that is not zeros.
    #[test]
    fn an_unwritten_last_header_is_torn_unless_records_follow() {
        let p = Path::new("seg");
        let b = segment(5);
        let starts: Vec<usize> = {
            let (mut at, mut v) = (HEADER_LEN, Vec::new());
            while at < b.len() {
                v.push(at);
                at += FRAME_HEADER_LEN
                    + u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize;
            }
            v
        };
        let last = starts[4];
        let mut z = b.clone();
        z[last..last + FRAME_HEADER_LEN].fill(0);
        z.extend_from_slice(&[0u8; 4096]);
        let s = scan_bytes(&z, p).unwrap();
        assert_eq!(s.records.len(), 4);
        assert_eq!(s.valid_len, last as u64);
        assert!(s.is_torn() && !s.zero_tail);
        // The same zeros before the last record: the log went on after them.
        let second = starts[3];
        let mut m = b.clone();
        m[second..second + FRAME_HEADER_LEN].fill(0);
        assert!(matches!(
            scan_bytes(&m, p),
            Err(Error::Corruption { offset, .. }) if offset as usize == second
        ));
        // A last header with a flipped bit is not a header never written.
        let mut f = b.clone();
        f[last + 1] ^= 0x10;
        assert!(matches!(scan_bytes(&f, p), Err(Error::Corruption { .. })));
    }

    #[test]
    fn damage_in_the_middle_is_an_error_with_offset() {
        let b = segment(5);
        let p = Path::new("seg");
        let mid = HEADER_LEN + (b.len() - HEADER_LEN) / 2;
        for i in [HEADER_LEN, HEADER_LEN + 2, HEADER_LEN + 13, mid] {
            let mut c = b.clone();
            c[i] ^= 0x40;
            match scan_bytes(&c, p) {
                Err(Error::Corruption { offset, .. }) => assert!(offset as usize <= i),
                other => panic!("flip at {i}: {other:?}"),
            }
        }
        let mut c = b.clone();
        c[20] ^= 1;
        assert!(matches!(
            scan_bytes(&c, p),
            Err(Error::Corruption { offset: 0, .. })
        ));
    }
}
