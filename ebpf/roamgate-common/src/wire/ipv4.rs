//! IPv4 header (RFC 791) and the Internet checksum (RFC 1071, RFC 1624).

use super::Header;

pub const PROTO_ICMP: u8 = 1;
pub const PROTO_IPIP: u8 = 4;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;

/// DSCP Expedited Forwarding (RFC 3246), the voice class.
pub const DSCP_EF: u8 = 46;

/// Fixed part of the IPv4 header; options follow when `ihl > 5`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ipv4Hdr {
    pub version_ihl: u8,
    pub tos: u8,
    pub tot_len: [u8; 2],
    pub id: [u8; 2],
    pub frag_off: [u8; 2],
    pub ttl: u8,
    pub proto: u8,
    pub check: [u8; 2],
    pub src: [u8; 4],
    pub dst: [u8; 4],
}

// SAFETY: repr(C), u8 and u8 arrays only.
unsafe impl Header for Ipv4Hdr {}

/// Why an IPv4 header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ipv4Error {
    /// The version nibble is not 4.
    Version,
    /// IHL below 5 words.
    HeaderLen,
    /// Total length shorter than the header, or longer than the buffer.
    TotalLen,
}

/// More-fragments flag and offset mask within `frag_off`.
const MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

impl Ipv4Hdr {
    #[inline(always)]
    pub fn version(&self) -> u8 {
        self.version_ihl >> 4
    }

    /// Header length in bytes, options included.
    #[inline(always)]
    pub fn header_len(&self) -> usize {
        ((self.version_ihl & 0x0f) as usize) * 4
    }

    #[inline(always)]
    pub fn total_len(&self) -> u16 {
        u16::from_be_bytes(self.tot_len)
    }

    #[inline(always)]
    pub fn set_total_len(&mut self, len: u16) {
        self.tot_len = len.to_be_bytes();
    }

    /// True for any fragment: MF set or a non-zero offset.
    #[inline(always)]
    pub fn is_fragment(&self) -> bool {
        let f = u16::from_be_bytes(self.frag_off);
        f & (MF | OFFSET_MASK) != 0
    }

    /// Fragment offset in 8-byte units (0 for unfragmented and first fragments).
    #[inline(always)]
    pub fn fragment_offset(&self) -> u16 {
        u16::from_be_bytes(self.frag_off) & OFFSET_MASK
    }

    /// The more-fragments flag.
    #[inline(always)]
    pub fn more_fragments(&self) -> bool {
        u16::from_be_bytes(self.frag_off) & MF != 0
    }

    /// Forwarding step: decrements the TTL and patches the checksum
    /// incrementally (RFC 1624). Returns `false`, leaving the header as it
    /// was, when the TTL is 0 or 1 and the packet must not be forwarded.
    #[inline(always)]
    pub fn decrement_ttl(&mut self) -> bool {
        if self.ttl <= 1 {
            return false;
        }
        let old = u16::from_be_bytes([self.ttl, self.proto]);
        self.ttl -= 1;
        let new = u16::from_be_bytes([self.ttl, self.proto]);
        let c = update_checksum(u16::from_be_bytes(self.check), old, new);
        self.check = c.to_be_bytes();
        true
    }

    /// Sets the DSCP (top six bits of the TOS byte), keeping the ECN bits,
    /// and patches the checksum incrementally.
    #[inline(always)]
    pub fn set_dscp(&mut self, dscp: u8) {
        let old = u16::from_be_bytes([self.version_ihl, self.tos]);
        self.tos = (dscp << 2) | (self.tos & 0x03);
        let new = u16::from_be_bytes([self.version_ihl, self.tos]);
        let c = update_checksum(u16::from_be_bytes(self.check), old, new);
        self.check = c.to_be_bytes();
    }

    /// Checks the invariants every later accessor relies on, against the number
    /// of bytes available from the start of this header.
    #[inline(always)]
    pub fn check(&self, available: usize) -> Result<(), Ipv4Error> {
        if self.version() != 4 {
            return Err(Ipv4Error::Version);
        }
        let hl = self.header_len();
        if hl < Self::LEN {
            return Err(Ipv4Error::HeaderLen);
        }
        let tl = self.total_len() as usize;
        if tl < hl || tl > available {
            return Err(Ipv4Error::TotalLen);
        }
        Ok(())
    }

    /// Recomputes the header checksum of an option-less header.
    #[inline(always)]
    pub fn fill_checksum(&mut self) {
        self.check = [0, 0];
        let c = checksum_words(self.words());
        self.check = c.to_be_bytes();
    }

    /// The option-less header as ten big-endian 16-bit words.
    #[inline(always)]
    pub fn words(&self) -> [u16; 10] {
        [
            u16::from_be_bytes([self.version_ihl, self.tos]),
            u16::from_be_bytes(self.tot_len),
            u16::from_be_bytes(self.id),
            u16::from_be_bytes(self.frag_off),
            u16::from_be_bytes([self.ttl, self.proto]),
            u16::from_be_bytes(self.check),
            u16::from_be_bytes([self.src[0], self.src[1]]),
            u16::from_be_bytes([self.src[2], self.src[3]]),
            u16::from_be_bytes([self.dst[0], self.dst[1]]),
            u16::from_be_bytes([self.dst[2], self.dst[3]]),
        ]
    }
}

/// Folds a 32-bit one's-complement sum into 16 bits.
#[inline(always)]
pub fn fold(mut sum: u32) -> u16 {
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum as u16
}

/// RFC 1071 checksum over big-endian words.
#[inline(always)]
pub fn checksum_words<const N: usize>(words: [u16; N]) -> u16 {
    let mut sum = 0u32;
    let mut i = 0;
    while i < N {
        sum += words[i] as u32;
        i += 1;
    }
    !fold(sum)
}

/// RFC 1071 checksum over a byte slice (odd length padded with zero).
pub fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u16::from_be_bytes([c[0], c[1]]) as u32;
        sum = (sum & 0xffff) + (sum >> 16);
    }
    if let [last] = chunks.remainder() {
        sum += (*last as u32) << 8;
    }
    !fold(sum)
}

/// RFC 1624 incremental update: the checksum after one 16-bit word changed
/// from `old` to `new` (HC' = ~(~HC + ~m + m')).
#[inline(always)]
pub fn update_checksum(check: u16, old: u16, new: u16) -> u16 {
    let sum = (!check as u32) + (!old as u32 & 0xffff) + new as u32;
    !fold(sum)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real ICMP echo IPv4 header (10.0.0.1 -> 10.0.0.2), checksum 0x26c5
    // as computed by the Linux stack.
    const HDR: [u8; 20] = [
        0x45, 0x00, 0x00, 0x54, 0x12, 0x34, 0x40, 0x00, 0x40, 0x01, 0x00, 0x00, 0x0a, 0x00, 0x00,
        0x01, 0x0a, 0x00, 0x00, 0x02,
    ];

    fn with_checksum() -> [u8; 20] {
        let mut h = HDR;
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        h
    }

    #[test]
    fn deconstruct() {
        let mut buf = [0u8; 84];
        buf[..20].copy_from_slice(&HDR);
        let h = Ipv4Hdr::from_bytes(&buf).unwrap();
        assert_eq!(h.version(), 4);
        assert_eq!(h.header_len(), 20);
        assert_eq!(h.total_len(), 84);
        assert_eq!(h.proto, PROTO_ICMP);
        assert!(!h.is_fragment());
        assert_eq!(h.check(buf.len()), Ok(()));
    }

    #[test]
    fn checksum_verifies_to_zero() {
        let h = with_checksum();
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn fill_checksum_matches_full_recomputation() {
        let mut buf = HDR;
        let h = Ipv4Hdr::from_bytes_mut(&mut buf).unwrap();
        h.fill_checksum();
        assert_eq!(buf, with_checksum());
    }

    #[test]
    fn incremental_update_matches_full_recomputation() {
        let mut h = with_checksum();
        let old = u16::from_be_bytes([h[8], h[9]]);
        h[8] -= 1; // TTL decrement
        let new = u16::from_be_bytes([h[8], h[9]]);
        let c = update_checksum(u16::from_be_bytes([h[10], h[11]]), old, new);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn invariants() {
        let mut buf = [0u8; 84];
        buf[..20].copy_from_slice(&HDR);
        let h = *Ipv4Hdr::from_bytes(&buf).unwrap();
        assert_eq!(h.check(83), Err(Ipv4Error::TotalLen));
        let mut bad = h;
        bad.version_ihl = 0x65;
        assert_eq!(bad.check(84), Err(Ipv4Error::Version));
        bad.version_ihl = 0x44;
        assert_eq!(bad.check(84), Err(Ipv4Error::HeaderLen));
        let mut frag = h;
        frag.frag_off = [0x20, 0x00];
        assert!(frag.is_fragment());
        frag.frag_off = [0x40, 0x00]; // DF only
        assert!(!frag.is_fragment());
    }

    #[test]
    fn decrement_ttl_matches_full_recomputation() {
        let mut h = with_checksum();
        let hdr = Ipv4Hdr::from_bytes_mut(&mut h).unwrap();
        assert!(hdr.decrement_ttl());
        assert_eq!(hdr.ttl, 0x3f);
        assert_eq!(checksum(&h), 0);
        let mut low = with_checksum();
        low[8] = 1;
        let c = checksum(&{
            let mut z = low;
            z[10] = 0;
            z[11] = 0;
            z
        });
        low[10..12].copy_from_slice(&c.to_be_bytes());
        let before = low;
        assert!(!Ipv4Hdr::from_bytes_mut(&mut low).unwrap().decrement_ttl());
        assert_eq!(low, before);
    }

    #[test]
    fn set_dscp_keeps_ecn_and_checksum() {
        let mut h = with_checksum();
        h[1] = 0x02; // ECT(0)
        let c = checksum(&{
            let mut z = h;
            z[10] = 0;
            z[11] = 0;
            z
        });
        h[10..12].copy_from_slice(&c.to_be_bytes());
        Ipv4Hdr::from_bytes_mut(&mut h).unwrap().set_dscp(DSCP_EF);
        assert_eq!(h[1], 0xba);
        assert_eq!(checksum(&h), 0);
    }

    #[test]
    fn fragment_fields() {
        let mut h = *Ipv4Hdr::from_bytes(&HDR).unwrap();
        assert_eq!((h.fragment_offset(), h.more_fragments()), (0, false));
        h.frag_off = [0x20, 0x00];
        assert_eq!((h.fragment_offset(), h.more_fragments()), (0, true));
        h.frag_off = [0x40, 0xb9];
        assert_eq!((h.fragment_offset(), h.more_fragments()), (0xb9, false));
    }

    #[test]
    fn odd_length_checksum_pads_with_zero() {
        assert_eq!(checksum(&[0x01]), !0x0100);
    }
}
