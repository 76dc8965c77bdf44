//! The forwarder's protocol core: no I/O, no clock. [`Encapsulator`] turns an
//! inner IPv4 packet into the UDP payload of a tunnel packet;
//! [`Decapsulator`] checks a received UDP payload in the order docs/wire.md
//! and the XDP program use (parse, SPI, MAC in constant time, replay window,
//! inner address check) and yields the inner packet.
//!
//! All parsing, MAC and replay logic is `roamgate_common`'s, the same code
//! the XDP program runs: the kernel and userspace cannot disagree on the
//! format.

use std::{
    net::Ipv4Addr,
    sync::atomic::{AtomicU64, Ordering},
};

use roamgate_common::{
    replay::{ReplayError, ReplayWindow},
    siphash::Key,
    wire::{
        ipv4::Ipv4Hdr,
        tunnel::{self, EncapRepr, TunnelError, OUTER_HDRS_LEN},
        udp::UdpHdr,
        Header,
    },
};

use roamgate_mip::tunnel_key::TunnelKeys;

use crate::dataplane::maps::Role;

/// Bytes in front of the UDP payload in a full outer packet: the outer IPv4
/// header and the UDP header. The tunnel-data header is part of the payload.
pub const UDP_PAYLOAD_OFFSET: usize = Ipv4Hdr::LEN + UdpHdr::LEN;

/// Why the forwarder dropped a packet. Each has its own counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    /// From TUN: not an IPv4 packet (IPv6, garbage).
    NotIpv4,
    /// From TUN: the tunnel packet would exceed the tunnel MTU.
    OverMtu,
    /// On UDP 434: not RFC 3519 tunnel data (left to the control plane).
    NotTunnel,
    Fragmented,
    Truncated,
    Malformed,
    UnknownSpi,
    BadMac,
    Replayed,
    TooOld,
    /// Decapsulated, but the inner addresses do not match the home address.
    Spoofed,
    /// From TUN: no binding carries this packet (none set, or its inner
    /// address is not the binding's home address).
    NoBinding,
    /// The binding or the tunnel has expired.
    Expired,
}

impl DropReason {
    pub const ALL: [DropReason; 13] = [
        DropReason::NotIpv4,
        DropReason::OverMtu,
        DropReason::NotTunnel,
        DropReason::Fragmented,
        DropReason::Truncated,
        DropReason::Malformed,
        DropReason::UnknownSpi,
        DropReason::BadMac,
        DropReason::Replayed,
        DropReason::TooOld,
        DropReason::Spoofed,
        DropReason::NoBinding,
        DropReason::Expired,
    ];

    /// Counter name, the same as the XDP program's where the reason exists
    /// there.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::NotIpv4 => "drop_not_ipv4",
            DropReason::OverMtu => "drop_over_mtu",
            DropReason::NotTunnel => "drop_not_tunnel",
            DropReason::Fragmented => "drop_fragmented",
            DropReason::Truncated => "drop_truncated",
            DropReason::Malformed => "drop_malformed",
            DropReason::UnknownSpi => "drop_unknown_spi",
            DropReason::BadMac => "drop_bad_mac",
            DropReason::Replayed => "drop_replayed",
            DropReason::TooOld => "drop_too_old",
            DropReason::Spoofed => "drop_spoofed",
            DropReason::NoBinding => "drop_no_binding",
            DropReason::Expired => "drop_expired",
        }
    }

    fn index(self) -> usize {
        self as usize
    }

    fn from_tunnel(e: TunnelError) -> Self {
        match e {
            TunnelError::NotTunnel => DropReason::NotTunnel,
            TunnelError::Fragmented => DropReason::Fragmented,
            TunnelError::Truncated => DropReason::Truncated,
            TunnelError::Malformed | TunnelError::BufferTooSmall => DropReason::Malformed,
            TunnelError::BadMac => DropReason::BadMac,
            TunnelError::BadInner => DropReason::NotIpv4,
        }
    }
}

impl std::fmt::Display for DropReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The forwarder's counters; shared by its two directions.
#[derive(Debug, Default)]
pub struct ForwarderCounters {
    pub encap: AtomicU64,
    pub decap: AtomicU64,
    pub encap_bytes: AtomicU64,
    pub decap_bytes: AtomicU64,
    /// Sends that failed (socket buffer full, no route, TUN down).
    pub send_errors: AtomicU64,
    drops: [AtomicU64; DropReason::ALL.len()],
}

impl ForwarderCounters {
    pub fn count_drop(&self, r: DropReason) {
        self.drops[r.index()].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_send_error(&self) {
        self.send_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn drops(&self, r: DropReason) -> u64 {
        self.drops[r.index()].load(Ordering::Relaxed)
    }

    /// Every counter by name.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let mut v = vec![
            ("tunnel_encap", self.encap.load(Ordering::Relaxed)),
            ("tunnel_decap", self.decap.load(Ordering::Relaxed)),
            ("encap_bytes", self.encap_bytes.load(Ordering::Relaxed)),
            ("decap_bytes", self.decap_bytes.load(Ordering::Relaxed)),
            ("send_errors", self.send_errors.load(Ordering::Relaxed)),
        ];
        v.extend(DropReason::ALL.iter().map(|r| (r.name(), self.drops(*r))));
        v
    }

    /// The snapshot as one JSON object.
    pub fn to_json(&self) -> String {
        let body: Vec<String> = self
            .snapshot()
            .iter()
            .map(|(k, v)| format!("\"{k}\":{v}"))
            .collect();
        format!("{{{}}}", body.join(","))
    }
}

/// The send half of one tunnel.
pub struct Encapsulator {
    repr: EncapRepr,
    key: Key,
    mtu: u16,
}

impl std::fmt::Debug for Encapsulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encapsulator")
            .field("repr", &self.repr)
            .field("key", &"<redacted>")
            .field("mtu", &self.mtu)
            .finish()
    }
}

impl Encapsulator {
    /// Sends from `local` to `remote` under `spi`; the first packet carries
    /// sequence number `next_seq` (1 for a fresh tunnel).
    pub fn new(
        spi: u32,
        local: Ipv4Addr,
        remote: Ipv4Addr,
        key: Key,
        mtu: u16,
        next_seq: u64,
    ) -> Self {
        Self {
            repr: EncapRepr {
                src: local.octets(),
                dst: remote.octets(),
                src_port: tunnel::MIP_PORT,
                dst_port: tunnel::MIP_PORT,
                spi: spi.to_be_bytes(),
                seq: next_seq.max(1) - 1,
            },
            key,
            mtu,
        }
    }

    /// Moves the tunnel's far end (handover).
    pub fn set_remote(&mut self, remote: Ipv4Addr) {
        self.repr.dst = remote.octets();
    }

    /// The last sequence number used.
    pub fn last_seq(&self) -> u64 {
        self.repr.seq
    }

    /// Builds the whole outer packet for `inner` into `buf` (the outer IPv4
    /// and UDP headers first; a UDP socket sends
    /// `buf[UDP_PAYLOAD_OFFSET..len]`). Returns the outer length.
    pub fn encap(&mut self, inner: &[u8], buf: &mut [u8]) -> Result<usize, DropReason> {
        if tunnel::buffer_len(inner.len()) > self.mtu as usize {
            return Err(DropReason::OverMtu);
        }
        let mut repr = self.repr;
        repr.seq = repr.seq.wrapping_add(1);
        let n = tunnel::emit(&repr, &self.key, inner, buf).map_err(DropReason::from_tunnel)?;
        self.repr.seq = repr.seq;
        Ok(n)
    }
}

/// The receive half of one tunnel.
pub struct Decapsulator {
    spi: [u8; 4],
    local: [u8; 4],
    home: Ipv4Addr,
    role: Role,
    key: Key,
    window: ReplayWindow,
}

impl std::fmt::Debug for Decapsulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decapsulator")
            .field("spi", &u32::from_be_bytes(self.spi))
            .field("home", &self.home)
            .field("role", &self.role)
            .field("key", &"<redacted>")
            .field("window", &self.window)
            .finish()
    }
}

impl Decapsulator {
    /// Receives tunnel `spi` at `local` for home address `home`.
    pub fn new(spi: u32, local: Ipv4Addr, home: Ipv4Addr, role: Role, key: Key) -> Self {
        Self {
            spi: spi.to_be_bytes(),
            local: local.octets(),
            home,
            role,
            key,
            window: ReplayWindow::default(),
        }
    }

    /// Checks a whole outer IPv4 packet and returns the inner packet's range
    /// in it.
    pub fn decap(&mut self, packet: &[u8]) -> Result<std::ops::Range<usize>, DropReason> {
        let p = tunnel::parse(packet).map_err(DropReason::from_tunnel)?;
        if p.repr.spi != self.spi {
            return Err(DropReason::UnknownSpi);
        }
        p.verify(&self.key).map_err(DropReason::from_tunnel)?;
        self.window.accept(p.repr.seq).map_err(|e| match e {
            ReplayError::Duplicate | ReplayError::Contended => DropReason::Replayed,
            ReplayError::TooOld => DropReason::TooOld,
        })?;
        // parse() checked the inner header is there.
        let inner_ip = Ipv4Hdr::from_bytes(p.inner).ok_or(DropReason::Malformed)?;
        let home = self.home.octets();
        let ok = match self.role {
            Role::HomeAgent => inner_ip.src == home,
            Role::CareOf => inner_ip.dst == home,
        };
        if !ok {
            return Err(DropReason::Spoofed);
        }
        let start = p.outer_header_len + UdpHdr::LEN + tunnel::TunnelHdr::LEN;
        Ok(start..start + p.inner.len())
    }

    /// As [`Decapsulator::decap`] for a datagram from a UDP socket: `buf`
    /// holds the UDP payload at `UDP_PAYLOAD_OFFSET..UDP_PAYLOAD_OFFSET +
    /// payload_len`; the outer IPv4 and UDP headers the socket stripped are
    /// rebuilt in front of it from `src` (the sender) and this end's address,
    /// so the MAC is checked over the same fields as in XDP.
    pub fn decap_udp(
        &mut self,
        src: Ipv4Addr,
        src_port: u16,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<std::ops::Range<usize>, DropReason> {
        let total = rebuild_outer(src, src_port, self.local, buf, payload_len)?;
        self.decap(&buf[..total])
    }

    pub fn window(&self) -> &ReplayWindow {
        &self.window
    }
}

/// Writes the outer IPv4 and UDP headers a UDP socket stripped in front of
/// the payload at `buf[UDP_PAYLOAD_OFFSET..UDP_PAYLOAD_OFFSET + payload_len]`:
/// from `src:src_port` to `dst:434`. Returns the outer packet's length.
pub fn rebuild_outer(
    src: Ipv4Addr,
    src_port: u16,
    dst: [u8; 4],
    buf: &mut [u8],
    payload_len: usize,
) -> Result<usize, DropReason> {
    let total = UDP_PAYLOAD_OFFSET + payload_len;
    if total > buf.len() || total > u16::MAX as usize {
        return Err(DropReason::Truncated);
    }
    let repr = EncapRepr {
        src: src.octets(),
        dst,
        src_port,
        dst_port: tunnel::MIP_PORT,
        spi: [0; 4],
        seq: 0,
    };
    let (ip_b, rest) = buf.split_at_mut(Ipv4Hdr::LEN);
    let ip = Ipv4Hdr::from_bytes_mut(ip_b).ok_or(DropReason::Truncated)?;
    *ip = tunnel::outer_ipv4(&repr, 0, total as u16);
    let udp = UdpHdr::from_bytes_mut(rest).ok_or(DropReason::Truncated)?;
    *udp = UdpHdr {
        src_port: src_port.to_be_bytes(),
        dst_port: tunnel::MIP_PORT.to_be_bytes(),
        len: ((UdpHdr::LEN + payload_len) as u16).to_be_bytes(),
        check: [0, 0],
    };
    Ok(total)
}

/// Why a received datagram whose SPI selects no tunnel is dropped: the
/// parse error if it is not well-formed tunnel data, else unknown SPI.
pub fn classify_unknown(
    src: Ipv4Addr,
    src_port: u16,
    buf: &mut [u8],
    payload_len: usize,
) -> DropReason {
    match rebuild_outer(src, src_port, [0; 4], buf, payload_len) {
        Ok(total) => match tunnel::parse(&buf[..total]) {
            Ok(_) => DropReason::UnknownSpi,
            Err(e) => DropReason::from_tunnel(e),
        },
        Err(r) => r,
    }
}

/// The SPI of a tunnel-data UDP payload, read from its trailer (`None` if
/// the payload is too short to have one).
pub fn peek_spi(payload: &[u8]) -> Option<u32> {
    let n = payload.len();
    if n < tunnel::TunnelHdr::LEN + tunnel::Trailer::LEN {
        return None;
    }
    let at = n - tunnel::Trailer::LEN;
    let b = payload.get(at..at + 4)?;
    Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// Both halves of a tunnel for one end, from its keys.
pub fn halves(
    spi: u32,
    role: Role,
    local: Ipv4Addr,
    remote: Ipv4Addr,
    home: Ipv4Addr,
    keys: &TunnelKeys,
    mtu: u16,
) -> (Encapsulator, Decapsulator) {
    (
        Encapsulator::new(spi, local, remote, keys.tx, mtu, 1),
        Decapsulator::new(spi, local, home, role, keys.rx),
    )
}

/// Bytes a tunnel packet adds to an inner packet.
pub const OVERHEAD: usize = tunnel::OVERHEAD;
/// Outer headers before the inner packet.
pub const OUTER_HEADERS: usize = OUTER_HDRS_LEN;

#[cfg(test)]
mod tests {
    use roamgate_common::wire::ipv4::checksum;
    use roamgate_mip::tunnel_key::{derive_keys, MasterKey};

    use super::*;
    use roamgate_testkit::frame::FrameBuilder;

    const HA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const COA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
    const HOME: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
    const CN: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
    const SPI: u32 = 0x1001;

    fn ends() -> ((Encapsulator, Decapsulator), (Encapsulator, Decapsulator)) {
        let mk = MasterKey::new([7; 32]);
        let ha = derive_keys(&mk, SPI, HOME, Role::HomeAgent);
        let coa = derive_keys(&mk, SPI, HOME, Role::CareOf);
        (
            halves(SPI, Role::HomeAgent, HA, COA, HOME, &ha, 1500),
            halves(SPI, Role::CareOf, COA, HA, HOME, &coa, 1500),
        )
    }

    fn to_home(len: usize) -> Vec<u8> {
        FrameBuilder::new()
            .ipv4(CN, HOME)
            .udp(5000, 6000)
            .payload_len(len)
            .build_l3()
    }

    /// Sends `inner` through `enc`, then hands the UDP payload to `dec` the
    /// way the socket path does.
    fn through(
        enc: &mut Encapsulator,
        dec: &mut Decapsulator,
        inner: &[u8],
    ) -> Result<Vec<u8>, DropReason> {
        let mut out = vec![0u8; 2048];
        let n = enc.encap(inner, &mut out)?;
        let mut rx = vec![0u8; 2048];
        let payload = &out[UDP_PAYLOAD_OFFSET..n];
        rx[UDP_PAYLOAD_OFFSET..UDP_PAYLOAD_OFFSET + payload.len()].copy_from_slice(payload);
        let r = dec.decap_udp(Ipv4Addr::from(enc.repr.src), 434, &mut rx, payload.len())?;
        Ok(rx[r].to_vec())
    }

    #[test]
    fn round_trip_both_directions() {
        let ((mut ha_enc, mut ha_dec), (mut coa_enc, mut coa_dec)) = ends();
        for len in [0, 1, 7, 8, 100, 1400] {
            let inner = to_home(len);
            assert_eq!(through(&mut ha_enc, &mut coa_dec, &inner).unwrap(), inner);
            let back = FrameBuilder::new()
                .ipv4(HOME, CN)
                .udp(6000, 5000)
                .payload_len(len)
                .build_l3();
            assert_eq!(through(&mut coa_enc, &mut ha_dec, &back).unwrap(), back);
        }
        assert_eq!(ha_enc.last_seq(), 6);
        assert_eq!(coa_dec.window().top, 6);
    }

    #[test]
    fn emitted_packet_is_the_wire_format() {
        let ((mut ha_enc, _), (_, mut coa_dec)) = ends();
        let inner = to_home(50);
        let mut out = vec![0u8; 512];
        let n = ha_enc.encap(&inner, &mut out).unwrap();
        assert_eq!(n, inner.len() + OVERHEAD);
        assert_eq!(checksum(&out[..20]), 0);
        assert_eq!(&out[12..20], &[192, 0, 2, 1, 192, 0, 2, 2]);
        assert_eq!(&out[20..24], &[0x01, 0xb2, 0x01, 0xb2]);
        assert_eq!(&out[28..32], &[4, 4, 0, 0]);
        assert_eq!(&out[n - 28..n - 24], &SPI.to_be_bytes());
        assert_eq!(&out[n - 24..n - 16], &1u64.to_be_bytes());
        // The full packet (as XDP would see it) decapsulates too.
        let r = coa_dec.decap(&out[..n]).unwrap();
        assert_eq!(&out[r], &inner[..]);
    }

    #[test]
    fn replayed_and_forged_are_dropped() {
        let ((mut ha_enc, _), (_, mut coa_dec)) = ends();
        let inner = to_home(64);
        let mut out = vec![0u8; 512];
        let n = ha_enc.encap(&inner, &mut out).unwrap();
        let pkt = out[..n].to_vec();
        assert!(coa_dec.decap(&pkt).is_ok());
        assert_eq!(coa_dec.decap(&pkt), Err(DropReason::Replayed));
        let n2 = ha_enc.encap(&inner, &mut out).unwrap();
        let mut forged = out[..n2].to_vec();
        forged[40] ^= 0x80;
        assert_eq!(coa_dec.decap(&forged), Err(DropReason::BadMac));
        // A forged packet does not burn its sequence number.
        assert!(coa_dec.decap(&out[..n2]).is_ok());
        // Outer source is covered by the MAC: a packet claiming another
        // sender fails.
        let n3 = ha_enc.encap(&inner, &mut out).unwrap();
        let payload = out[UDP_PAYLOAD_OFFSET..n3].to_vec();
        let mut rx = vec![0u8; 512];
        rx[UDP_PAYLOAD_OFFSET..UDP_PAYLOAD_OFFSET + payload.len()].copy_from_slice(&payload);
        assert_eq!(
            coa_dec.decap_udp(Ipv4Addr::new(192, 0, 2, 99), 434, &mut rx, payload.len()),
            Err(DropReason::BadMac)
        );
    }

    #[test]
    fn too_old_unknown_spi_spoofed_and_not_tunnel() {
        let mk = MasterKey::new([7; 32]);
        let ha = derive_keys(&mk, SPI, HOME, Role::HomeAgent);
        let coa = derive_keys(&mk, SPI, HOME, Role::CareOf);
        let mut enc = Encapsulator::new(SPI, HA, COA, ha.tx, 1500, 1000);
        let mut old = Encapsulator::new(SPI, HA, COA, ha.tx, 1500, 2);
        let mut dec = Decapsulator::new(SPI, COA, HOME, Role::CareOf, coa.rx);
        let inner = to_home(10);
        assert!(through(&mut enc, &mut dec, &inner).is_ok());
        assert_eq!(through(&mut old, &mut dec, &inner), Err(DropReason::TooOld));
        let mut other_spi = Encapsulator::new(SPI + 1, HA, COA, ha.tx, 1500, 1);
        assert_eq!(
            through(&mut other_spi, &mut dec, &inner),
            Err(DropReason::UnknownSpi)
        );
        let not_home = FrameBuilder::new()
            .ipv4(CN, Ipv4Addr::new(10, 10, 0, 3))
            .udp(1, 2)
            .build_l3();
        assert_eq!(
            through(&mut enc, &mut dec, &not_home),
            Err(DropReason::Spoofed)
        );
        let mut rx = vec![0u8; 256];
        rx[UDP_PAYLOAD_OFFSET] = 1; // a registration request, not tunnel data
        assert_eq!(
            dec.decap_udp(HA, 434, &mut rx, 24),
            Err(DropReason::NotTunnel)
        );
        // Tunnel data with nothing behind the header.
        rx[UDP_PAYLOAD_OFFSET..UDP_PAYLOAD_OFFSET + 4].copy_from_slice(&[4, 4, 0, 0]);
        assert_eq!(
            dec.decap_udp(HA, 434, &mut rx, 4),
            Err(DropReason::Malformed)
        );
        assert_eq!(
            dec.decap_udp(HA, 434, &mut rx, 300),
            Err(DropReason::Truncated)
        );
    }

    #[test]
    fn mtu_and_non_ipv4_from_tun() {
        let ((mut ha_enc, _), _) = ends();
        let mut out = vec![0u8; 2048];
        assert_eq!(ha_enc.encap(&to_home(1500 - 60 - 28), &mut out), Ok(1500));
        assert_eq!(
            ha_enc.encap(&to_home(1500 - 60 - 27), &mut out),
            Err(DropReason::OverMtu)
        );
        let mut v6 = to_home(10);
        v6[0] = 0x60;
        assert_eq!(ha_enc.encap(&v6, &mut out), Err(DropReason::NotIpv4));
        assert_eq!(ha_enc.encap(&[0x45], &mut out), Err(DropReason::NotIpv4));
        // Failed packets do not consume sequence numbers.
        assert_eq!(ha_enc.last_seq(), 1);
    }

    #[test]
    fn counters_by_reason() {
        let c = ForwarderCounters::default();
        c.count_drop(DropReason::BadMac);
        c.count_drop(DropReason::BadMac);
        c.count_drop(DropReason::Replayed);
        assert_eq!(c.drops(DropReason::BadMac), 2);
        let j = c.to_json();
        assert!(j.contains("\"drop_bad_mac\":2"), "{j}");
        assert!(j.contains("\"drop_replayed\":1"), "{j}");
        let names: std::collections::HashSet<_> =
            DropReason::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), DropReason::ALL.len());
        for (i, r) in DropReason::ALL.iter().enumerate() {
            assert_eq!(r.index(), i);
        }
    }
}
