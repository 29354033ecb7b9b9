//! Bloom filter over encoded keys (10 bits per key, 7 probes: ~1% false positives).

const BITS_PER_KEY: usize = 10;
const PROBES: u8 = 7;

fn hashes(key: &[u8]) -> (u64, u64) {
    let h1 = u64::from(crate::checksum::crc32c(key));
    let h2 = u64::from(crate::checksum::crc32c_append(0x9e37_79b9, key)) | 1;
    (h1, h2)
}

/// Build the filter block payload: `probes u8 | bit array`.
pub fn build(key_hashes: &[(u64, u64)]) -> Vec<u8> {
    let nbits = (key_hashes.len() * BITS_PER_KEY).max(64);
    let nbytes = nbits.div_ceil(8);
    let nbits = (nbytes * 8) as u64;
    let mut out = vec![0u8; nbytes + 1];
    out[0] = PROBES;
    for &(h1, h2) in key_hashes {
        for i in 0..u64::from(PROBES) {
            let bit = h1.wrapping_add(i.wrapping_mul(h2)) % nbits;
            out[1 + (bit / 8) as usize] |= 1 << (bit % 8);
        }
    }
    out
}

/// Hash pair of an encoded key, collected while building.
pub fn key_hash(key: &[u8]) -> (u64, u64) {
    hashes(key)
}

/// `false` means the key is certainly absent.
pub fn may_contain(filter: &[u8], key: &[u8]) -> bool {
    let Some((&probes, bits)) = filter.split_first() else {
        return true;
    };
    if bits.is_empty() {
        return true;
    }
    let nbits = (bits.len() * 8) as u64;
    let (h1, h2) = hashes(key);
    (0..u64::from(probes)).all(|i| {
        let bit = h1.wrapping_add(i.wrapping_mul(h2)) % nbits;
        bits[(bit / 8) as usize] & (1 << (bit % 8)) != 0
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_false_negatives_and_few_false_positives() {
        let keys: Vec<Vec<u8>> = (0..1000u32).map(|i| i.to_le_bytes().to_vec()).collect();
        let f = build(&keys.iter().map(|k| key_hash(k)).collect::<Vec<_>>());
        assert!(keys.iter().all(|k| may_contain(&f, k)));
        let fp = (1000..11000u32)
            .filter(|i| may_contain(&f, &i.to_le_bytes()))
            .count();
        assert!(fp < 300, "{fp} false positives in 10000");
    }
}
