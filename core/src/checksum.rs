//! The walb checksum: salt plus the wrapping sum of little-endian u32 words, negated.
//! Userland's rule for a 1–3 byte tail (zero-padded on the high side) is applied, so it works
//! on any length; self-checksummed blocks verify to 0.

/// Wrapping sum of the little-endian u32 words of `data`, tail zero-padded.
#[inline]
pub fn sum_words(data: &[u8], init: u32) -> u32 {
    // Eight independent lanes let the compiler vectorise the loop.
    let mut lanes = [0u32; 8];
    let mut chunks = data.chunks_exact(32);
    for c in &mut chunks {
        for (i, lane) in lanes.iter_mut().enumerate() {
            let w = u32::from_le_bytes([c[i * 4], c[i * 4 + 1], c[i * 4 + 2], c[i * 4 + 3]]);
            *lane = lane.wrapping_add(w);
        }
    }
    let mut sum = lanes.iter().fold(init, |a, &b| a.wrapping_add(b));
    let rest = chunks.remainder();
    let mut words = rest.chunks_exact(4);
    for w in &mut words {
        sum = sum.wrapping_add(u32::from_le_bytes([w[0], w[1], w[2], w[3]]));
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut b = [0u8; 4];
        b[..tail.len()].copy_from_slice(tail);
        sum = sum.wrapping_add(u32::from_le_bytes(b));
    }
    sum
}

/// The walb checksum of `data` with `salt`.
#[inline]
pub fn checksum(data: &[u8], salt: u32) -> u32 {
    sum_words(data, salt).wrapping_neg()
}

/// Stores the checksum of `block` (with the 4-byte field at `field` zeroed first) into that field.
pub fn seal(block: &mut [u8], field: usize, salt: u32) {
    block[field..field + 4].fill(0);
    let c = checksum(block, salt);
    block[field..field + 4].copy_from_slice(&c.to_le_bytes());
}

/// True when a self-checksummed block (stored checksum included) sums to zero.
pub fn is_sealed(block: &[u8], salt: u32) -> bool {
    checksum(block, salt) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors() {
        let d = [1u8, 0, 0, 0, 2, 0, 0, 0];
        assert_eq!(checksum(&d, 0), 0xFFFF_FFFD);
        assert_eq!(checksum(&d, 5), 0xFFFF_FFF8);
        assert_eq!(checksum(&[], 0), 0);
    }

    #[test]
    fn tail_is_zero_padded_high() {
        // 3-byte tail 01 02 03 reads as 0x00030201.
        assert_eq!(checksum(&[1, 2, 3], 0), 0x0003_0201u32.wrapping_neg());
        let mut long = vec![7u8; 71];
        long[70] = 9;
        let naive = long
            .chunks(4)
            .map(|c| {
                let mut b = [0u8; 4];
                b[..c.len()].copy_from_slice(c);
                u32::from_le_bytes(b)
            })
            .fold(3u32, |a, b| a.wrapping_add(b))
            .wrapping_neg();
        assert_eq!(checksum(&long, 3), naive);
    }

    #[test]
    fn seal_verifies() {
        let mut b = vec![0xabu8; 512];
        seal(&mut b, 4, 77);
        assert!(is_sealed(&b, 77));
        b[100] ^= 1;
        assert!(!is_sealed(&b, 77));
    }
}
