//! CRC32C (Castagnoli), the checksum of every persisted byte.
//!
//! The `crc32c` crate computes it; for short inputs — a WAL frame's length
//! and its ~150-byte payload, a key's bloom probes — its hardware path spends
//! most of its time setting up (an unaligned prologue byte by byte, then a
//! three-way interleave meant for long buffers): ~250 instructions for a
//! 140-byte frame, where one `crc32` instruction per 8 bytes takes ~40. WAL
//! replay and every write checksum two such frames, so short inputs take the
//! direct loop below; long ones (blocks, files) go to the crate.

/// Inputs shorter than this take the direct loop.
const SHORT: usize = 256;

/// CRC32C of `data`.
///
/// ```
/// assert_eq!(kstone_core::checksum::crc32c(b"123456789"), 0xe306_9283);
/// ```
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    crc32c_append(0, data)
}

/// CRC32C of the bytes whose CRC32C is `crc` followed by `data`.
#[inline]
pub fn crc32c_append(crc: u32, data: &[u8]) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if data.len() < SHORT && std::arch::is_x86_feature_detected!("sse4.2") {
        // SAFETY: the CPU has SSE 4.2, checked just above.
        return unsafe { short_sse42(crc, data) };
    }
    crc32c::crc32c_append(crc, data)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn short_sse42(crc: u32, data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u64, _mm_crc32_u8};
    let mut state = u64::from(!crc);
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        state = _mm_crc32_u64(state, u64::from_le_bytes(b));
    }
    // The instruction leaves the CRC in the low 32 bits.
    let mut state = state as u32;
    for &b in words.remainder() {
        state = _mm_crc32_u8(state, b);
    }
    !state
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_the_crate_at_every_length_and_start() {
        let data: Vec<u8> = (0..600u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for start in 0..9 {
            for len in 0..(data.len() - start) {
                let d = &data[start..start + len];
                assert_eq!(crc32c(d), crc32c::crc32c(d), "len {len} start {start}");
                assert_eq!(
                    crc32c_append(0x9e37_79b9, d),
                    crc32c::crc32c_append(0x9e37_79b9, d),
                    "append, len {len} start {start}"
                );
            }
        }
    }
}
