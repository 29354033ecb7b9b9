//! Memory for the slabs one WAL replay thread fills at `open`: one
//! anonymous map, sized to the thread's segment files and carved into a
//! range per segment.
//!
//! Why not the heap: replay copies a whole WAL into fresh memory on four
//! threads at once. From malloc, each segment's slab was its own `mmap`
//! (or an arena's `mprotect`), each of which takes the address-space lock
//! for writing while the other threads fault their pages in, and every
//! 4 KiB page was its own fault. One map per thread, with huge pages where
//! the kernel gives them, is one `mmap` and a fault per 2 MiB.
//!
//! A range is whole pages, exclusive to its [`RegionBuf`]; dropping it (its
//! memtable was flushed) hands those pages back to the kernel, so memory is
//! freed per segment as before, and the map itself goes with its last range.

use std::sync::Arc;

use memmap2::{Advice, MmapMut, MmapOptions, UncheckedAdvice};

/// The shared map. Ranges of it are handed out once each, so writes through
/// `ptr` never alias.
struct Map {
    map: MmapMut,
    ptr: *mut u8,
}

// SAFETY: `ptr` points into `map`, which lives as long as `Map`. Every byte
// is written only through the one `RegionBuf` whose range holds it, and
// read only through that buffer afterwards (`&self`), so sharing the map
// between threads shares no byte that one thread writes while another
// reads it.
unsafe impl Send for Map {}
// SAFETY: as for `Send`.
unsafe impl Sync for Map {}

/// A replay thread's map, carved front to back.
pub(crate) struct Region {
    map: Arc<Map>,
    next: usize,
}

impl Region {
    /// A map with a range for each of `sizes` (each rounded up to whole
    /// pages), or `None` if there is nothing to map or the kernel refuses
    /// (then slabs come from the heap).
    pub(crate) fn for_sizes(sizes: impl IntoIterator<Item = usize>) -> Option<Region> {
        let page = page_size();
        let bytes = sizes.into_iter().try_fold(0usize, |sum, n| {
            sum.checked_add(n.checked_next_multiple_of(page)?)
        })?;
        if bytes == 0 {
            return None;
        }
        let mut map = MmapOptions::new().len(bytes).map_anon().ok()?;
        // Small pages: zeroing a fresh 2 MiB page at its first touch made
        // replay slower here than taking a fault per 4 KiB.
        let _ = map.advise(Advice::NoHugePage);
        let ptr = map.as_mut_ptr();
        Some(Region {
            map: Arc::new(Map { map, ptr }),
            next: 0,
        })
    }

    /// The next `cap` bytes of the map (whole pages, so that a range shares
    /// no page with another) as an empty buffer, or `None` if fewer are left.
    pub(crate) fn take(&mut self, cap: usize) -> Option<RegionBuf> {
        let end = self
            .next
            .checked_add(cap.checked_next_multiple_of(page_size())?)?;
        if end > self.map.map.len() {
            return None;
        }
        let buf = RegionBuf {
            map: Arc::clone(&self.map),
            off: self.next,
            len: 0,
            cap,
        };
        self.next = end;
        Some(buf)
    }
}

/// A range of a [`Region`]: filled by [`RegionBuf::extend_from_slice`] up
/// to its capacity, then read as a slice.
pub(crate) struct RegionBuf {
    map: Arc<Map>,
    off: usize,
    len: usize,
    cap: usize,
}

impl RegionBuf {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Room left.
    pub(crate) fn remaining(&self) -> usize {
        self.cap - self.len
    }

    /// Append `b`; `false` (and nothing appended) if it does not fit.
    pub(crate) fn extend_from_slice(&mut self, b: &[u8]) -> bool {
        if b.len() > self.remaining() {
            return false;
        }
        // SAFETY: `off + len .. off + len + b.len()` lies inside this
        // buffer's range (checked above), which no other buffer holds, and
        // `b` cannot overlap it: nothing else has a reference into it.
        unsafe {
            let dst = self.map.ptr.add(self.off + self.len);
            std::ptr::copy_nonoverlapping(b.as_ptr(), dst, b.len());
        }
        self.len += b.len();
        true
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        // SAFETY: the first `len` bytes of the range were written by
        // `extend_from_slice`, and are written no more.
        unsafe { std::slice::from_raw_parts(self.map.ptr.add(self.off), self.len) }
    }
}

impl Drop for RegionBuf {
    fn drop(&mut self) {
        let page = page_size();
        let pages = self.cap.next_multiple_of(page);
        if pages > 0 {
            // SAFETY: `off..off + pages` is this buffer's range (`take`
            // handed out whole pages), which no one else reads or writes,
            // and nothing reads it after this drop. The pages read back as
            // zeros if touched again.
            let _ = unsafe {
                self.map
                    .map
                    .unchecked_advise_range(UncheckedAdvice::DontNeed, self.off, pages)
            };
        }
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(n).ok().filter(|&n| n > 0).unwrap_or(4096)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Ranges of odd sizes: each is filled to its capacity and no further,
    /// and dropping one (its pages handed back) leaves the others' bytes as
    /// they were.
    #[test]
    fn dropping_a_range_keeps_the_others_bytes() {
        let page = page_size();
        let sizes = [100, 3 * page + 17, 5, 2 * page - 1, page, 9 * page + 3];
        let mut region = Region::for_sizes(sizes).unwrap();
        let mut bufs: Vec<Option<RegionBuf>> = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let mut b = region.take(n).unwrap();
            assert_eq!(b.off % page, 0, "range {i} starts mid-page");
            let fill = vec![i as u8 + 1; n];
            assert!(b.extend_from_slice(&fill[..n / 2]));
            assert!(b.extend_from_slice(&fill[n / 2..]));
            assert!(!b.extend_from_slice(&[0]), "range {i} overfilled");
            assert_eq!(b.remaining(), 0);
            bufs.push(Some(b));
        }
        assert!(region.take(1).is_none(), "the region is used up");
        for drop_at in [1, 3, 0, 5] {
            bufs[drop_at] = None;
            for (i, b) in bufs.iter().enumerate() {
                if let Some(b) = b {
                    assert_eq!(b.len(), sizes[i]);
                    assert!(b.as_slice().iter().all(|&x| x == i as u8 + 1), "range {i}");
                }
            }
        }
        // A dropped range's pages are handed back; a live one's stay.
        let live = bufs[4].take().unwrap();
        let (map, off) = (Arc::clone(&live.map), live.off);
        assert_eq!(resident(&map, off, page), 1);
        drop(live);
        assert_eq!(resident(&map, off, page), 0);
        // (Range 3 was dropped before: all of its two pages went.)
        assert_eq!(resident(&map, off - 2 * page, 2 * page), 0);
        assert_eq!(resident(&map, bufs[2].as_ref().unwrap().off, 5), 1);
        // The map outlives the region while a range is in use.
        drop(region);
        assert!(bufs[2].as_ref().unwrap().as_slice().iter().all(|&x| x == 3));
    }

    /// How many pages of `off..off + len` of `map` are resident.
    fn resident(map: &Map, off: usize, len: usize) -> usize {
        let page = page_size();
        let mut vec = vec![0u8; len.div_ceil(page)];
        // SAFETY: the range is inside the map, and `vec` has a byte per page.
        let rc = unsafe { libc::mincore(map.ptr.add(off).cast(), len, vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", std::io::Error::last_os_error());
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }

    #[test]
    fn nothing_to_map_is_none_and_a_take_past_the_end_is_refused() {
        assert!(Region::for_sizes([]).is_none());
        assert!(Region::for_sizes([0, 0]).is_none());
        assert!(Region::for_sizes([usize::MAX]).is_none());
        let mut r = Region::for_sizes([10]).unwrap();
        assert!(r.take(page_size() + 1).is_none());
        assert!(r.take(usize::MAX).is_none());
        let b = r.take(10).unwrap();
        assert_eq!((b.len(), b.remaining()), (0, 10));
        assert!(r.take(1).is_none());
    }
}
