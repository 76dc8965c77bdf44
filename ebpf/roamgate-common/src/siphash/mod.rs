//! SipHash-2-4 with 64-bit and 128-bit output (Aumasson and Bernstein, "SipHash:
//! a fast short-input PRF", 2012; 128-bit mode as in the reference
//! implementation).
//!
//! The state is exposed word by word ([`SipHash24::compress`]) so that the XDP
//! program can feed it 8-byte little-endian loads straight from packet memory,
//! and [`SipHash24::finish128`] takes the last partial word already assembled
//! ([`tail_word`]). The slice functions ([`siphash24_64`], [`siphash24_128`])
//! drive the same core and are what userspace and the tests use, so the kernel
//! and the host cannot disagree.
//!
//! Everything is `#[inline(always)]` and free of loops over the data length
//! except in the slice helpers: the eBPF side owns its bounded loop.

#[cfg(test)]
mod vectors;

/// A 128-bit SipHash key, as the 16 bytes `k0 || k1` (each little-endian).
pub type Key = [u8; 16];

/// The running state of one SipHash-2-4 computation.
#[derive(Clone, Copy)]
pub struct SipHash24 {
    v0: u64,
    v1: u64,
    v2: u64,
    v3: u64,
}

// The state is derived from the key: never print it.
impl core::fmt::Debug for SipHash24 {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SipHash24 { .. }")
    }
}

#[inline(always)]
fn round(v0: &mut u64, v1: &mut u64, v2: &mut u64, v3: &mut u64) {
    *v0 = v0.wrapping_add(*v1);
    *v1 = v1.rotate_left(13);
    *v1 ^= *v0;
    *v0 = v0.rotate_left(32);
    *v2 = v2.wrapping_add(*v3);
    *v3 = v3.rotate_left(16);
    *v3 ^= *v2;
    *v0 = v0.wrapping_add(*v3);
    *v3 = v3.rotate_left(21);
    *v3 ^= *v0;
    *v2 = v2.wrapping_add(*v1);
    *v1 = v1.rotate_left(17);
    *v1 ^= *v2;
    *v2 = v2.rotate_left(32);
}

/// Splits a key into its two little-endian halves.
#[inline(always)]
pub fn key_words(key: &Key) -> (u64, u64) {
    let mut k0 = [0u8; 8];
    let mut k1 = [0u8; 8];
    k0.copy_from_slice(&key[..8]);
    k1.copy_from_slice(&key[8..]);
    (u64::from_le_bytes(k0), u64::from_le_bytes(k1))
}

/// The final word: the `len % 8` bytes of `partial` that belong to the message
/// (its low bytes, as a little-endian load puts them) and the message length
/// in the top byte. Bytes of `partial` beyond the message are masked off, so
/// the caller may over-read.
#[inline(always)]
pub fn tail_word(partial: u64, len: usize) -> u64 {
    let rem = (len & 7) as u32;
    // rem == 0 must give mask 0; a shift by 64 would overflow, so shift twice.
    let mask = ((1u64 << (rem * 4)) << (rem * 4)).wrapping_sub(1);
    (partial & mask) | ((len as u64) << 56)
}

impl SipHash24 {
    /// Initial state for a 64-bit tag.
    #[inline(always)]
    pub fn new64(k0: u64, k1: u64) -> Self {
        SipHash24 {
            v0: k0 ^ 0x736f_6d65_7073_6575,
            v1: k1 ^ 0x646f_7261_6e64_6f6d,
            v2: k0 ^ 0x6c79_6765_6e65_7261,
            v3: k1 ^ 0x7465_6462_7974_6573,
        }
    }

    /// Initial state for a 128-bit tag (`v1 ^= 0xee`).
    #[inline(always)]
    pub fn new128(k0: u64, k1: u64) -> Self {
        let mut s = Self::new64(k0, k1);
        s.v1 ^= 0xee;
        s
    }

    /// Absorbs one 8-byte message word (little-endian) with two rounds.
    #[inline(always)]
    pub fn compress(&mut self, m: u64) {
        let SipHash24 { v0, v1, v2, v3 } = self;
        *v3 ^= m;
        round(v0, v1, v2, v3);
        round(v0, v1, v2, v3);
        *v0 ^= m;
    }

    /// Absorbs the final word from [`tail_word`] and returns the 64-bit tag.
    #[inline(always)]
    pub fn finish64(mut self, last: u64) -> u64 {
        self.compress(last);
        let SipHash24 { v0, v1, v2, v3 } = &mut self;
        *v2 ^= 0xff;
        round(v0, v1, v2, v3);
        round(v0, v1, v2, v3);
        round(v0, v1, v2, v3);
        round(v0, v1, v2, v3);
        *v0 ^ *v1 ^ *v2 ^ *v3
    }

    /// Absorbs the final word from [`tail_word`] and returns the 128-bit tag
    /// as two words; the tag's bytes are `lo.to_le_bytes() || hi.to_le_bytes()`.
    #[inline(always)]
    pub fn finish128(mut self, last: u64) -> (u64, u64) {
        self.compress(last);
        let SipHash24 { v0, v1, v2, v3 } = &mut self;
        *v2 ^= 0xee;
        round(v0, v1, v2, v3);
        round(v0, v1, v2, v3);
        round(v0, v1, v2, v3);
        round(v0, v1, v2, v3);
        let lo = *v0 ^ *v1 ^ *v2 ^ *v3;
        *v1 ^= 0xdd;
        round(v0, v1, v2, v3);
        round(v0, v1, v2, v3);
        round(v0, v1, v2, v3);
        round(v0, v1, v2, v3);
        let hi = *v0 ^ *v1 ^ *v2 ^ *v3;
        (lo, hi)
    }

    /// Absorbs every whole word of `data` and returns the final word.
    #[inline]
    fn absorb_slice(&mut self, data: &[u8], total_len: usize) -> u64 {
        let mut chunks = data.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.compress(u64::from_le_bytes(w));
        }
        let mut w = [0u8; 8];
        let rem = chunks.remainder();
        w[..rem.len()].copy_from_slice(rem);
        tail_word(u64::from_le_bytes(w), total_len)
    }
}

/// SipHash-2-4, 64-bit output, over a byte slice.
pub fn siphash24_64(key: &Key, data: &[u8]) -> u64 {
    let (k0, k1) = key_words(key);
    let mut s = SipHash24::new64(k0, k1);
    let last = s.absorb_slice(data, data.len());
    s.finish64(last)
}

/// SipHash-2-4, 128-bit output, over a byte slice; bytes as the reference
/// implementation writes them.
pub fn siphash24_128(key: &Key, data: &[u8]) -> [u8; 16] {
    let (k0, k1) = key_words(key);
    let mut s = SipHash24::new128(k0, k1);
    let last = s.absorb_slice(data, data.len());
    tag_bytes(s.finish128(last))
}

/// The 16 tag bytes of a [`SipHash24::finish128`] result.
#[inline(always)]
pub fn tag_bytes((lo, hi): (u64, u64)) -> [u8; 16] {
    let mut out = [0u8; 16];
    out[..8].copy_from_slice(&lo.to_le_bytes());
    out[8..].copy_from_slice(&hi.to_le_bytes());
    out
}

/// Compares two 128-bit tags in constant time: no branch depends on where
/// they differ.
#[inline(always)]
pub fn tags_equal(a: (u64, u64), b: (u64, u64)) -> bool {
    ((a.0 ^ b.0) | (a.1 ^ b.1)) == 0
}

/// Splits 16 tag bytes into the two words [`tags_equal`] compares.
#[inline(always)]
pub fn tag_words(tag: &[u8; 16]) -> (u64, u64) {
    let mut lo = [0u8; 8];
    let mut hi = [0u8; 8];
    lo.copy_from_slice(&tag[..8]);
    hi.copy_from_slice(&tag[8..]);
    (u64::from_le_bytes(lo), u64::from_le_bytes(hi))
}

#[cfg(test)]
mod tests {
    use super::vectors::{VECTORS_SIP128, VECTORS_SIP64};
    use super::*;

    fn reference_key() -> Key {
        let mut k = [0u8; 16];
        for (i, b) in k.iter_mut().enumerate() {
            *b = i as u8;
        }
        k
    }

    fn reference_message() -> [u8; 64] {
        let mut m = [0u8; 64];
        for (i, b) in m.iter_mut().enumerate() {
            *b = i as u8;
        }
        m
    }

    #[test]
    fn reference_vectors_64() {
        let key = reference_key();
        let msg = reference_message();
        for (len, want) in VECTORS_SIP64.iter().enumerate() {
            let got = siphash24_64(&key, &msg[..len]).to_le_bytes();
            assert_eq!(&got, want, "64-bit vector {len}");
        }
    }

    #[test]
    fn reference_vectors_128() {
        let key = reference_key();
        let msg = reference_message();
        for (len, want) in VECTORS_SIP128.iter().enumerate() {
            let got = siphash24_128(&key, &msg[..len]);
            assert_eq!(&got, want, "128-bit vector {len}");
        }
    }

    #[test]
    fn paper_appendix_a() {
        // The worked example of the SipHash paper (Appendix A): key 00..0f,
        // 15-byte message 00..0e, 64-bit output a129ca6149be45e5.
        let key = reference_key();
        let msg = reference_message();
        assert_eq!(siphash24_64(&key, &msg[..15]), 0xa129_ca61_49be_45e5);
    }

    #[test]
    fn tail_word_masks_over_read_bytes() {
        let junk = 0xffee_ddcc_bbaa_9988u64;
        assert_eq!(tail_word(junk, 16), 16u64 << 56);
        assert_eq!(tail_word(junk, 3), 0xaa_9988 | (3u64 << 56));
        assert_eq!(tail_word(junk, 15), 0x00ee_ddcc_bbaa_9988 | (15u64 << 56));
    }

    #[test]
    fn constant_time_compare() {
        assert!(tags_equal((1, 2), (1, 2)));
        assert!(!tags_equal((1, 2), (1, 3)));
        assert!(!tags_equal((0, 2), (1, 2)));
        let t = [7u8; 16];
        assert_eq!(tag_bytes(tag_words(&t)), t);
    }

    #[test]
    fn debug_redacts_state() {
        extern crate std;
        let s = SipHash24::new128(1, 2);
        assert_eq!(std::format!("{s:?}"), "SipHash24 { .. }");
    }
}
