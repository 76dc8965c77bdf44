//! The roamgate tunnel: RFC 3519 UDP tunnelling of IPv4, with an
//! authentication trailer. docs/wire.md is the normative description; this
//! module is its executable form.
//!
//! ```text
//! outer IPv4 (20 B, DF, proto 17) | UDP (8 B, dst 434, checksum 0)
//! | RFC 3519 tunnel-data header (4 B: type 4, next header 4, reserved 0)
//! | inner IPv4 packet (its own total length)
//! | trailer (28 B: SPI 4 B | sequence 8 B | SipHash-2-4-128 tag 16 B)
//! ```
//!
//! The MAC is SipHash-2-4 with a 128-bit output, keyed with the direction's
//! key, over the 24-byte prefix
//! `outer src (4) | outer dst (4) | SPI (4) | tunnel-data header (4) | seq (8)`
//! followed by the whole inner packet. The prefix is three 8-byte words, so
//! the inner packet starts on a word boundary of the MAC input, and the
//! trailer behind it lets the XDP program over-read the last partial word.
//!
//! [`TunnelHdr`] and [`Trailer`] are fixed-layout views (see [`super::Header`]);
//! [`parse`] and [`emit`] work on whole outer IPv4 packets for userspace, the
//! tests and the fuzzer. Once [`parse`] returns `Ok`, every range it returns
//! lies inside the input: no accessor panics.

use super::ipv4::{Ipv4Hdr, PROTO_UDP};
use super::udp::UdpHdr;
use super::Header;
use crate::siphash::{self, Key, SipHash24};

/// UDP port of Mobile IP (RFC 5944) and of RFC 3519 tunnel data.
pub const MIP_PORT: u16 = 434;
/// RFC 3519 message type "tunnel data".
pub const TYPE_TUNNEL_DATA: u8 = 4;
/// RFC 3519 next header: IPv4.
pub const NEXT_HEADER_IPV4: u8 = 4;
/// TTL of the outer header.
pub const OUTER_TTL: u8 = 64;
/// The DF flag in the outer header's `frag_off`: the tunnel never fragments.
pub const OUTER_FRAG_OFF: [u8; 2] = [0x40, 0x00];
/// Outer IPv4 (no options) + UDP + tunnel-data header.
pub const OUTER_HDRS_LEN: usize = Ipv4Hdr::LEN + UdpHdr::LEN + TunnelHdr::LEN;
/// Bytes the tunnel adds to an inner packet: 20 + 8 + 4 + 28 = 60.
pub const OVERHEAD: usize = OUTER_HDRS_LEN + Trailer::LEN;
/// Length of the MAC input before the inner packet.
pub const MAC_PREFIX_LEN: usize = 24;
/// Smallest inner packet: an option-less IPv4 header.
pub const MIN_INNER_LEN: usize = Ipv4Hdr::LEN;

/// RFC 3519 section 3.3.1 tunnel-data message header.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelHdr {
    pub msg_type: u8,
    pub next_header: u8,
    pub reserved: [u8; 2],
}

// SAFETY: repr(C), u8 and u8 arrays only.
unsafe impl Header for TunnelHdr {}

impl TunnelHdr {
    /// The only header roamgate sends and accepts.
    pub const IPV4: TunnelHdr = TunnelHdr {
        msg_type: TYPE_TUNNEL_DATA,
        next_header: NEXT_HEADER_IPV4,
        reserved: [0, 0],
    };

    /// The header as the little-endian high half of MAC word 1.
    pub const MAC_WORD_HIGH: u64 =
        (TYPE_TUNNEL_DATA as u64) << 32 | (NEXT_HEADER_IPV4 as u64) << 40;

    /// True for type 4 / next header IPv4 / reserved 0.
    #[inline(always)]
    pub fn is_ipv4_data(&self) -> bool {
        *self == Self::IPV4
    }
}

/// The authentication trailer behind the inner packet.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    pub spi: [u8; 4],
    pub seq: [u8; 8],
    pub tag: [u8; 16],
}

// SAFETY: repr(C), u8 arrays only.
unsafe impl Header for Trailer {}

impl core::fmt::Debug for Trailer {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Trailer")
            .field("spi", &u32::from_be_bytes(self.spi))
            .field("seq", &self.seq())
            .finish_non_exhaustive()
    }
}

impl Trailer {
    #[inline(always)]
    pub fn seq(&self) -> u64 {
        u64::from_be_bytes(self.seq)
    }
}

/// Why an outer packet is not a valid tunnel packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TunnelError {
    /// Not RFC 3519 tunnel data on UDP 434: not roamgate's, pass it on.
    NotTunnel,
    /// Tunnel data, but the first fragment of a fragmented outer packet.
    Fragmented,
    /// Tunnel data that ends before its headers, lengths or trailer do.
    Truncated,
    /// Tunnel data with inconsistent lengths or an unsupported header.
    Malformed,
    /// The MAC does not verify.
    BadMac,
    /// The output buffer is shorter than [`OVERHEAD`] plus the inner packet.
    BufferTooSmall,
    /// The inner packet is not a complete IPv4 packet of at most
    /// `u16::MAX - OVERHEAD` bytes.
    BadInner,
}

impl core::fmt::Display for TunnelError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            TunnelError::NotTunnel => "not tunnel data",
            TunnelError::Fragmented => "fragmented tunnel packet",
            TunnelError::Truncated => "truncated tunnel packet",
            TunnelError::Malformed => "malformed tunnel packet",
            TunnelError::BadMac => "tunnel MAC does not verify",
            TunnelError::BufferTooSmall => "buffer too small for the tunnel packet",
            TunnelError::BadInner => "inner packet is not a whole IPv4 packet",
        })
    }
}

/// The three MAC words before the inner packet, as little-endian loads of
/// `src|dst`, `spi|tunnel header` and `seq` (sequence in network order).
#[inline(always)]
pub fn mac_prefix_words(src: [u8; 4], dst: [u8; 4], spi: [u8; 4], seq: [u8; 8]) -> [u64; 3] {
    let w0 = u32::from_le_bytes(src) as u64 | (u32::from_le_bytes(dst) as u64) << 32;
    let w1 = u32::from_le_bytes(spi) as u64 | TunnelHdr::MAC_WORD_HIGH;
    [w0, w1, u64::from_le_bytes(seq)]
}

/// A SipHash-2-4-128 state keyed with `key` that has absorbed the prefix.
#[inline(always)]
pub fn mac_begin(key: &Key, src: [u8; 4], dst: [u8; 4], spi: [u8; 4], seq: [u8; 8]) -> SipHash24 {
    let (k0, k1) = siphash::key_words(key);
    let mut s = SipHash24::new128(k0, k1);
    let [w0, w1, w2] = mac_prefix_words(src, dst, spi, seq);
    s.compress(w0);
    s.compress(w1);
    s.compress(w2);
    s
}

/// The tag over the prefix and the whole inner packet (userspace path).
pub fn compute_mac(
    key: &Key,
    src: [u8; 4],
    dst: [u8; 4],
    spi: [u8; 4],
    seq: u64,
    inner: &[u8],
) -> [u8; 16] {
    let mut s = mac_begin(key, src, dst, spi, seq.to_be_bytes());
    let mut chunks = inner.chunks_exact(8);
    for c in &mut chunks {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        s.compress(u64::from_le_bytes(w));
    }
    let mut w = [0u8; 8];
    let rem = chunks.remainder();
    w[..rem.len()].copy_from_slice(rem);
    let last = siphash::tail_word(u64::from_le_bytes(w), MAC_PREFIX_LEN + inner.len());
    siphash::tag_bytes(s.finish128(last))
}

/// The sender's side of one tunnel packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EncapRepr {
    /// Outer source: this end's tunnel address.
    pub src: [u8; 4],
    /// Outer destination: the binding's remote address.
    pub dst: [u8; 4],
    pub src_port: u16,
    pub dst_port: u16,
    pub spi: [u8; 4],
    pub seq: u64,
}

/// A tunnel packet as received, before its MAC is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TunnelPacket<'a> {
    pub repr: EncapRepr,
    /// Outer IPv4 header length (options included).
    pub outer_header_len: usize,
    /// The whole inner IPv4 packet.
    pub inner: &'a [u8],
    pub tag: [u8; 16],
}

impl TunnelPacket<'_> {
    /// Verifies the tag with `key` in constant time.
    pub fn verify(&self, key: &Key) -> Result<(), TunnelError> {
        let r = &self.repr;
        let want = compute_mac(key, r.src, r.dst, r.spi, r.seq, self.inner);
        if siphash::tags_equal(siphash::tag_words(&want), siphash::tag_words(&self.tag)) {
            Ok(())
        } else {
            Err(TunnelError::BadMac)
        }
    }
}

/// What the first bytes of an outer IPv4 packet say about it, in the order
/// the XDP program decides: is it tunnel data at all, then is it whole.
/// `packet` starts at the outer IPv4 header and may carry link padding.
pub fn parse(packet: &[u8]) -> Result<TunnelPacket<'_>, TunnelError> {
    let ip = Ipv4Hdr::from_bytes(packet).ok_or(TunnelError::NotTunnel)?;
    let hl = ip.header_len();
    if ip.version() != 4 || hl < Ipv4Hdr::LEN || ip.proto != PROTO_UDP || ip.fragment_offset() != 0
    {
        return Err(TunnelError::NotTunnel);
    }
    let udp_bytes = packet.get(hl..).ok_or(TunnelError::NotTunnel)?;
    let udp = UdpHdr::from_bytes(udp_bytes).ok_or(TunnelError::NotTunnel)?;
    let payload = udp_bytes.get(UdpHdr::LEN..).ok_or(TunnelError::NotTunnel)?;
    let th = TunnelHdr::from_bytes(payload).ok_or(TunnelError::NotTunnel)?;
    if udp.dst_port() != MIP_PORT || th.msg_type != TYPE_TUNNEL_DATA {
        return Err(TunnelError::NotTunnel);
    }
    // From here on the packet claims to be roamgate's.
    if ip.more_fragments() {
        return Err(TunnelError::Fragmented);
    }
    if !th.is_ipv4_data() {
        return Err(TunnelError::Malformed);
    }
    let tot = ip.total_len() as usize;
    if tot < hl + UdpHdr::LEN + TunnelHdr::LEN + MIN_INNER_LEN + Trailer::LEN {
        return Err(TunnelError::Malformed);
    }
    if tot > packet.len() {
        return Err(TunnelError::Truncated);
    }
    if udp.len() as usize != tot - hl {
        return Err(TunnelError::Malformed);
    }
    let inner_off = hl + UdpHdr::LEN + TunnelHdr::LEN;
    // In bounds: tot >= inner_off + MIN_INNER_LEN + Trailer::LEN, tot <= len.
    let inner_ip = Ipv4Hdr::from_bytes(&packet[inner_off..tot]).ok_or(TunnelError::Malformed)?;
    let inner_tot = inner_ip.total_len() as usize;
    if inner_ip.version() != 4
        || inner_ip.header_len() < Ipv4Hdr::LEN
        || inner_tot < inner_ip.header_len()
        || inner_off + inner_tot + Trailer::LEN != tot
    {
        return Err(TunnelError::Malformed);
    }
    let inner = &packet[inner_off..inner_off + inner_tot];
    let trailer =
        Trailer::from_bytes(&packet[inner_off + inner_tot..tot]).ok_or(TunnelError::Malformed)?;
    Ok(TunnelPacket {
        repr: EncapRepr {
            src: ip.src,
            dst: ip.dst,
            src_port: udp.src_port(),
            dst_port: udp.dst_port(),
            spi: trailer.spi,
            seq: trailer.seq(),
        },
        outer_header_len: hl,
        inner,
        tag: trailer.tag,
    })
}

/// Bytes [`emit`] writes for an inner packet of `inner_len` bytes.
#[inline(always)]
pub const fn buffer_len(inner_len: usize) -> usize {
    OVERHEAD + inner_len
}

/// Writes the whole outer packet for `inner` into `buf` and returns its
/// length. The outer header is option-less, DF, TTL 64, identification =
/// low 16 bits of the sequence, TOS copied from the inner header; the UDP
/// checksum is 0 (RFC 768: none computed).
pub fn emit(
    repr: &EncapRepr,
    key: &Key,
    inner: &[u8],
    buf: &mut [u8],
) -> Result<usize, TunnelError> {
    let inner_hdr = Ipv4Hdr::from_bytes(inner).ok_or(TunnelError::BadInner)?;
    if inner_hdr.version() != 4
        || inner_hdr.total_len() as usize != inner.len()
        || inner.len() > u16::MAX as usize - OVERHEAD
    {
        return Err(TunnelError::BadInner);
    }
    let total = buffer_len(inner.len());
    let out = buf.get_mut(..total).ok_or(TunnelError::BufferTooSmall)?;
    let (hdrs, rest) = out.split_at_mut(OUTER_HDRS_LEN);
    let (inner_out, trailer_out) = rest.split_at_mut(inner.len());
    inner_out.copy_from_slice(inner);

    let (ip_b, rest) = hdrs.split_at_mut(Ipv4Hdr::LEN);
    let (udp_b, th_b) = rest.split_at_mut(UdpHdr::LEN);
    let ip = Ipv4Hdr::from_bytes_mut(ip_b).ok_or(TunnelError::BufferTooSmall)?;
    *ip = outer_ipv4(repr, inner[1], total as u16);
    let udp = UdpHdr::from_bytes_mut(udp_b).ok_or(TunnelError::BufferTooSmall)?;
    *udp = UdpHdr {
        src_port: repr.src_port.to_be_bytes(),
        dst_port: repr.dst_port.to_be_bytes(),
        len: ((total - Ipv4Hdr::LEN) as u16).to_be_bytes(),
        check: [0, 0],
    };
    let th = TunnelHdr::from_bytes_mut(th_b).ok_or(TunnelError::BufferTooSmall)?;
    *th = TunnelHdr::IPV4;
    let t = Trailer::from_bytes_mut(trailer_out).ok_or(TunnelError::BufferTooSmall)?;
    t.spi = repr.spi;
    t.seq = repr.seq.to_be_bytes();
    t.tag = compute_mac(key, repr.src, repr.dst, repr.spi, repr.seq, inner);
    Ok(total)
}

/// The outer IPv4 header of a tunnel packet of `total` bytes, checksum set.
#[inline(always)]
pub fn outer_ipv4(repr: &EncapRepr, tos: u8, total: u16) -> Ipv4Hdr {
    let mut ip = Ipv4Hdr {
        version_ihl: 0x45,
        tos,
        tot_len: total.to_be_bytes(),
        id: (repr.seq as u16).to_be_bytes(),
        frag_off: OUTER_FRAG_OFF,
        ttl: OUTER_TTL,
        proto: PROTO_UDP,
        check: [0, 0],
        src: repr.src,
        dst: repr.dst,
    };
    ip.fill_checksum();
    ip
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ipv4::checksum;

    const KEY: Key = [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
        0x0f,
    ];

    // ICMP echo 10.1.0.1 -> 10.2.0.7, 28 bytes, checksum filled by `inner()`.
    fn inner() -> [u8; 28] {
        let mut p = [
            0x45, 0x00, 0x00, 0x1c, 0xab, 0xcd, 0x40, 0x00, 0x3f, 0x01, 0x00, 0x00, 10, 1, 0, 1,
            10, 2, 0, 7, 0x08, 0x00, 0xf7, 0xfe, 0x00, 0x01, 0x00, 0x00,
        ];
        let c = checksum(&p[..20]);
        p[10..12].copy_from_slice(&c.to_be_bytes());
        p
    }

    fn repr() -> EncapRepr {
        EncapRepr {
            src: [192, 0, 2, 1],
            dst: [198, 51, 100, 9],
            src_port: MIP_PORT,
            dst_port: MIP_PORT,
            spi: [0, 0, 0x10, 0x01],
            seq: 0x0102_0304_0506_0708,
        }
    }

    fn packet() -> ([u8; 128], usize) {
        let mut buf = [0u8; 128];
        let n = emit(&repr(), &KEY, &inner(), &mut buf).unwrap();
        (buf, n)
    }

    #[test]
    fn construct() {
        let (buf, n) = packet();
        assert_eq!(n, 28 + OVERHEAD);
        let p = &buf[..n];
        // Outer IPv4: 45 00 | len 88 | id 0708 | DF | ttl 64 | udp.
        assert_eq!(
            &p[..12],
            &[0x45, 0, 0, 88, 0x07, 0x08, 0x40, 0, 64, 17, p[10], p[11]]
        );
        assert_eq!(checksum(&p[..20]), 0, "outer header checksum");
        assert_eq!(&p[12..20], &[192, 0, 2, 1, 198, 51, 100, 9]);
        // UDP 434 -> 434, length 68, checksum 0.
        assert_eq!(&p[20..28], &[0x01, 0xb2, 0x01, 0xb2, 0, 68, 0, 0]);
        // Tunnel-data header.
        assert_eq!(&p[28..32], &[4, 4, 0, 0]);
        assert_eq!(&p[32..60], &inner());
        // Trailer: SPI, sequence in network order, tag.
        assert_eq!(&p[60..64], &[0, 0, 0x10, 0x01]);
        assert_eq!(&p[64..72], &[1, 2, 3, 4, 5, 6, 7, 8]);
        let mut mac_input = [0u8; 24 + 28];
        mac_input[..8].copy_from_slice(&p[12..20]);
        mac_input[8..12].copy_from_slice(&p[60..64]);
        mac_input[12..16].copy_from_slice(&p[28..32]);
        mac_input[16..24].copy_from_slice(&p[64..72]);
        mac_input[24..].copy_from_slice(&inner());
        assert_eq!(&p[72..88], &siphash::siphash24_128(&KEY, &mac_input));
    }

    #[test]
    fn deconstruct() {
        let (buf, n) = packet();
        let t = parse(&buf[..n]).unwrap();
        assert_eq!(t.repr, repr());
        assert_eq!(t.outer_header_len, 20);
        assert_eq!(t.inner, &inner());
        assert_eq!(t.verify(&KEY), Ok(()));
    }

    #[test]
    fn parse_ignores_link_padding() {
        let (buf, n) = packet();
        let t = parse(&buf[..n + 10]).unwrap();
        assert_eq!(t.inner.len(), 28);
    }

    #[test]
    fn emit_parse_round_trip_many_lengths() {
        let mut inner_buf = [0u8; 300];
        let mut out = [0u8; 400];
        for len in 20..300usize {
            let inner = &mut inner_buf[..len];
            for (i, b) in inner.iter_mut().enumerate() {
                *b = i as u8;
            }
            inner[0] = 0x45;
            inner[2..4].copy_from_slice(&(len as u16).to_be_bytes());
            let n = emit(&repr(), &KEY, inner, &mut out).unwrap();
            let t = parse(&out[..n]).unwrap();
            assert_eq!(t.inner, &inner[..]);
            assert_eq!(t.verify(&KEY), Ok(()));
        }
    }

    #[test]
    fn mac_covers_every_field() {
        let (buf, n) = packet();
        // Each byte of outer src/dst, tunnel header reserved, inner, SPI, seq,
        // tag: flipping one bit must break verification (or the parse).
        let covered = (12..20).chain(30..32).chain(32..n);
        for i in covered {
            let mut b = buf;
            b[i] ^= 0x01;
            match parse(&b[..n]) {
                Ok(t) => assert_eq!(t.verify(&KEY), Err(TunnelError::BadMac), "byte {i}"),
                Err(e) => assert!(
                    matches!(e, TunnelError::Malformed | TunnelError::Truncated),
                    "byte {i}: {e:?}"
                ),
            }
        }
        let mut other = KEY;
        other[15] ^= 0x80;
        assert_eq!(
            parse(&buf[..n]).unwrap().verify(&other),
            Err(TunnelError::BadMac)
        );
    }

    #[test]
    fn fields_outside_the_mac_may_change() {
        // TTL, TOS and the UDP source port change in transit.
        let (mut buf, n) = packet();
        buf[8] = 3;
        buf[1] = 0xb8;
        buf[20] = 0x99;
        assert_eq!(parse(&buf[..n]).unwrap().verify(&KEY), Ok(()));
    }

    #[test]
    fn not_tunnel_data() {
        let (buf, n) = packet();
        let mut b = buf;
        b[9] = 6; // TCP
        assert_eq!(parse(&b[..n]), Err(TunnelError::NotTunnel));
        let mut b = buf;
        b[23] = 0xb3; // UDP 435
        assert_eq!(parse(&b[..n]), Err(TunnelError::NotTunnel));
        let mut b = buf;
        b[28] = 1; // registration request
        assert_eq!(parse(&b[..n]), Err(TunnelError::NotTunnel));
        let mut b = buf;
        b[6] = 0x00;
        b[7] = 0x10; // non-first fragment
        assert_eq!(parse(&b[..n]), Err(TunnelError::NotTunnel));
        assert_eq!(parse(&buf[..28]), Err(TunnelError::NotTunnel));
        assert_eq!(parse(&[]), Err(TunnelError::NotTunnel));
    }

    #[test]
    fn fragmented() {
        let (mut buf, n) = packet();
        buf[6] = 0x20; // MF
        assert_eq!(parse(&buf[..n]), Err(TunnelError::Fragmented));
    }

    #[test]
    fn truncated() {
        let (buf, n) = packet();
        assert_eq!(parse(&buf[..31]), Err(TunnelError::NotTunnel));
        assert_eq!(parse(&buf[..32]), Err(TunnelError::Truncated));
        assert_eq!(parse(&buf[..n - 1]), Err(TunnelError::Truncated));
    }

    #[test]
    fn malformed() {
        let (buf, n) = packet();
        let mut b = buf;
        b[29] = 55; // minimal encapsulation
        assert_eq!(parse(&b[..n]), Err(TunnelError::Malformed));
        let mut b = buf;
        b[25] -= 1; // UDP length
        assert_eq!(parse(&b[..n]), Err(TunnelError::Malformed));
        let mut b = buf;
        b[35] -= 4; // inner total length
        assert_eq!(parse(&b[..n]), Err(TunnelError::Malformed));
        let mut b = buf;
        b[32] = 0x65; // inner version 6
        assert_eq!(parse(&b[..n]), Err(TunnelError::Malformed));
        let mut b = buf;
        b[3] = 40; // outer total length too small for any tunnel packet
        assert_eq!(parse(&b[..n]), Err(TunnelError::Malformed));
    }

    #[test]
    fn emit_refuses_bad_input() {
        let mut out = [0u8; 128];
        assert_eq!(
            emit(&repr(), &KEY, &inner()[..19], &mut out),
            Err(TunnelError::BadInner)
        );
        assert_eq!(
            emit(&repr(), &KEY, &inner()[..27], &mut out),
            Err(TunnelError::BadInner)
        );
        assert_eq!(
            emit(&repr(), &KEY, &inner(), &mut out[..87]),
            Err(TunnelError::BufferTooSmall)
        );
    }

    #[test]
    fn trailer_debug_hides_tag() {
        extern crate std;
        let (buf, n) = packet();
        let t = Trailer::from_bytes(&buf[n - 28..n]).unwrap();
        let s = std::format!("{t:?}");
        assert!(s.contains("seq: 72623859790382856"), "{s}");
        assert!(!s.contains("tag"), "{s}");
    }
}
