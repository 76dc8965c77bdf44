//! The forwarder's protocol core: no I/O, no clock. [`Encapsulator`] turns an
//! inner IPv4 packet into the UDP payload of a tunnel packet;
//! [`Decapsulator`] checks a received UDP payload in the order docs/wire.md
//! and the XDP program use (parse, SPI, MAC in constant time, replay window,
//! inner address check) and yields the inner packet.
//!
//! All parsing, MAC and replay logic is `roamgate_common`'s, the same code
//! the XDP program runs: the kernel and userspace cannot disagree on the
//! format.
//!
//! A tunnel with a static key (`roamgate tunnel`) also carries a
//! [`SeqStore`]: the sender reserves its sequence numbers block by block
//! and the receiver raises its floor before it accepts a sequence in a new
//! block, so a restart of either end reuses no sequence number
//! (docs/wire.md §3). Tunnels keyed afresh by each registration have none.

use std::{
    net::Ipv4Addr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::Instant,
};

use zeroize::Zeroize as _;

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

use super::seqstate::{block_end, block_of, SeqState, SeqStore, BLOCK_LIFETIME, SEQ_BLOCK};
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
    /// From TUN: inner TTL 0. Received: inner TTL 0 or 1 (docs/wire.md §4
    /// step 6).
    Ttl,
    /// The sequence state could not be written to disk, so the sequence
    /// number could not be used (sent) or accepted without risking reuse.
    StateWrite,
}

impl DropReason {
    pub const ALL: [DropReason; 15] = [
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
        DropReason::Ttl,
        DropReason::StateWrite,
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
            DropReason::Ttl => "drop_ttl",
            DropReason::StateWrite => "drop_state_write",
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
    /// Where reservations go, for a static key; `None`: the sequence only
    /// lives in memory (keys fresh from each registration).
    store: Option<Arc<dyn SeqStore>>,
    /// Last sequence number reserved in `store`.
    reserved: u64,
    /// When the current block was reserved.
    block_since: Option<Instant>,
}

impl std::fmt::Debug for Encapsulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encapsulator")
            .field("repr", &self.repr)
            .field("key", &"<redacted>")
            .field("mtu", &self.mtu)
            .field("store", &self.store)
            .field("reserved", &self.reserved)
            .finish()
    }
}

impl Drop for Encapsulator {
    fn drop(&mut self) {
        self.key.zeroize();
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
            store: None,
            reserved: u64::MAX,
            block_since: None,
        }
    }

    /// Makes the sequence survive restarts: continues after `reserved` (the
    /// end of the last block reserved before) and reserves each further
    /// block in `store` before it sends from it.
    pub fn with_store(mut self, store: Arc<dyn SeqStore>, reserved: u64) -> Self {
        self.repr.seq = reserved;
        self.reserved = reserved;
        self.store = Some(store);
        self.block_since = None;
        self
    }

    /// Moves the tunnel's far end (handover).
    pub fn set_remote(&mut self, remote: Ipv4Addr) {
        self.repr.dst = remote.octets();
    }

    /// The last sequence number used.
    pub fn last_seq(&self) -> u64 {
        self.repr.seq
    }

    /// The next sequence number, reserving a new block first when the
    /// current one is used up or older than [`BLOCK_LIFETIME`] (then the
    /// rest of it is skipped). Nothing is committed here but the
    /// reservation.
    fn next_seq(&mut self, now: Option<Instant>) -> Result<u64, DropReason> {
        let mut seq = self.repr.seq.wrapping_add(1);
        let Some(store) = &self.store else {
            return Ok(seq);
        };
        let stale = match (now, self.block_since) {
            (Some(now), Some(since)) => now.saturating_duration_since(since) >= BLOCK_LIFETIME,
            _ => false,
        };
        if seq > self.reserved || stale {
            if seq <= self.reserved {
                seq = (block_of(seq) + 1).saturating_mul(SEQ_BLOCK);
            }
            let end = block_end(block_of(seq));
            store.reserve_tx(end).map_err(|_| DropReason::StateWrite)?;
            self.reserved = end;
            self.repr.seq = seq - 1;
            self.block_since = now;
        }
        Ok(seq)
    }

    /// Builds the whole outer packet for `inner` into `buf` (the outer IPv4
    /// and UDP headers first; a UDP socket sends
    /// `buf[UDP_PAYLOAD_OFFSET..len]`, with the outer TOS `buf[1]`). Returns
    /// the outer length.
    pub fn encap(&mut self, inner: &[u8], buf: &mut [u8]) -> Result<usize, DropReason> {
        self.encap_at(inner, buf, None)
    }

    /// As [`Encapsulator::encap`] at time `now`, which moves a persisted
    /// sequence to its next block every [`BLOCK_LIFETIME`].
    ///
    /// The inner packet is carried as read from TUN: the kernel's
    /// forwarding into the TUN device is the RFC 2003 TTL decrement (a
    /// locally sent packet gets none), so only TTL 0, which no router
    /// forwards, is dropped.
    pub fn encap_at(
        &mut self,
        inner: &[u8],
        buf: &mut [u8],
        now: Option<Instant>,
    ) -> Result<usize, DropReason> {
        if tunnel::buffer_len(inner.len()) > self.mtu as usize {
            return Err(DropReason::OverMtu);
        }
        let ip = Ipv4Hdr::from_bytes(inner)
            .filter(|ip| ip.version() == 4)
            .ok_or(DropReason::NotIpv4)?;
        if ip.ttl == 0 {
            return Err(DropReason::Ttl);
        }
        let mut repr = self.repr;
        repr.seq = self.next_seq(now)?;
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
    /// Largest outer packet accepted.
    mtu: u16,
    /// Everything at or below is refused (the floor persisted before the
    /// last restart).
    floor: u64,
    store: Option<Arc<dyn SeqStore>>,
    /// The floor persisted so far.
    persisted: u64,
}

impl std::fmt::Debug for Decapsulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decapsulator")
            .field("spi", &u32::from_be_bytes(self.spi))
            .field("home", &self.home)
            .field("role", &self.role)
            .field("key", &"<redacted>")
            .field("window", &self.window)
            .field("mtu", &self.mtu)
            .field("floor", &self.floor)
            .field("store", &self.store)
            .finish()
    }
}

impl Drop for Decapsulator {
    fn drop(&mut self) {
        self.key.zeroize();
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
            mtu: u16::MAX,
            floor: 0,
            store: None,
            persisted: u64::MAX,
        }
    }

    /// Refuses outer packets longer than `mtu` (*over-MTU*).
    pub fn with_mtu(mut self, mtu: u16) -> Self {
        self.mtu = mtu;
        self
    }

    /// Makes the replay state survive restarts: refuses everything at or
    /// below `floor` (persisted before), and raises the floor in `store` to
    /// the end of a sequence's block before it accepts the first sequence
    /// of that block.
    pub fn with_store(mut self, store: Arc<dyn SeqStore>, floor: u64) -> Self {
        self.floor = floor;
        self.persisted = floor;
        self.store = Some(store);
        self
    }

    /// Checks a whole outer IPv4 packet and returns the inner packet's range
    /// in it (docs/wire.md §4).
    pub fn decap(&mut self, packet: &[u8]) -> Result<std::ops::Range<usize>, DropReason> {
        let p = tunnel::parse(packet).map_err(DropReason::from_tunnel)?;
        if p.repr.spi != self.spi {
            return Err(DropReason::UnknownSpi);
        }
        let total = Ipv4Hdr::from_bytes(packet).map_or(0, |ip| ip.total_len());
        if total > self.mtu {
            return Err(DropReason::OverMtu);
        }
        p.verify(&self.key).map_err(DropReason::from_tunnel)?;
        let seq = p.repr.seq;
        if seq <= self.floor {
            return Err(DropReason::TooOld);
        }
        let replay = |e| match e {
            ReplayError::Duplicate | ReplayError::Contended => DropReason::Replayed,
            ReplayError::TooOld => DropReason::TooOld,
        };
        self.window.would_accept(seq).map_err(replay)?;
        if let Some(store) = &self.store {
            if seq > self.persisted {
                let floor = block_end(block_of(seq));
                store
                    .raise_rx_floor(floor)
                    .map_err(|_| DropReason::StateWrite)?;
                self.persisted = floor;
            }
        }
        self.window.accept(seq).map_err(replay)?;
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
        // The kernel decrements it when it forwards the packet out of TUN
        // (RFC 2003 §3.1), so it is checked here and not decremented.
        if inner_ip.ttl <= 1 {
            return Err(DropReason::Ttl);
        }
        let start = p.outer_header_len + UdpHdr::LEN + tunnel::TunnelHdr::LEN;
        Ok(start..start + p.inner.len())
    }

    /// As [`Decapsulator::decap`] for a datagram from a UDP socket: `buf`
    /// holds the UDP payload at `UDP_PAYLOAD_OFFSET..UDP_PAYLOAD_OFFSET +
    /// payload_len`; the outer IPv4 and UDP headers the socket stripped are
    /// rebuilt in front of it from `src` (the sender) and this end's address,
    /// so the MAC is checked over the same fields as in XDP. `reassembled`
    /// (the kernel reassembled the datagram from fragments) sets MF in the
    /// rebuilt header, so the shared parser drops it as *fragmented*.
    pub fn decap_udp(
        &mut self,
        src: Ipv4Addr,
        src_port: u16,
        buf: &mut [u8],
        payload_len: usize,
    ) -> Result<std::ops::Range<usize>, DropReason> {
        self.decap_datagram(src, src_port, buf, payload_len, false)
    }

    /// [`Decapsulator::decap_udp`] with what the socket said about the
    /// datagram.
    pub fn decap_datagram(
        &mut self,
        src: Ipv4Addr,
        src_port: u16,
        buf: &mut [u8],
        payload_len: usize,
        reassembled: bool,
    ) -> Result<std::ops::Range<usize>, DropReason> {
        let total = rebuild_outer(src, src_port, self.local, buf, payload_len, reassembled)?;
        self.decap(&buf[..total])
    }

    pub fn window(&self) -> &ReplayWindow {
        &self.window
    }
}

/// Writes the outer IPv4 and UDP headers a UDP socket stripped in front of
/// the payload at `buf[UDP_PAYLOAD_OFFSET..UDP_PAYLOAD_OFFSET + payload_len]`:
/// from `src:src_port` to `dst:434`, with MF set if `more_fragments` (the
/// datagram came in fragments). Returns the outer packet's length.
pub fn rebuild_outer(
    src: Ipv4Addr,
    src_port: u16,
    dst: [u8; 4],
    buf: &mut [u8],
    payload_len: usize,
    more_fragments: bool,
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
    if more_fragments {
        ip.frag_off = [0x20, 0];
        ip.fill_checksum();
    }
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
    reassembled: bool,
) -> DropReason {
    match rebuild_outer(src, src_port, [0; 4], buf, payload_len, reassembled) {
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
        Decapsulator::new(spi, local, home, role, keys.rx).with_mtu(mtu),
    )
}

/// [`halves`] for a tunnel with a static key whose sequence state persists
/// in `store`, continuing from `start`.
#[allow(clippy::too_many_arguments)]
pub fn persistent_halves(
    spi: u32,
    role: Role,
    local: Ipv4Addr,
    remote: Ipv4Addr,
    home: Ipv4Addr,
    keys: &TunnelKeys,
    mtu: u16,
    store: Arc<dyn SeqStore>,
    start: SeqState,
) -> (Encapsulator, Decapsulator) {
    let (enc, dec) = halves(spi, role, local, remote, home, keys, mtu);
    (
        enc.with_store(store.clone(), start.tx_reserved),
        dec.with_store(store, start.rx_floor),
    )
}

/// A fingerprint of a tunnel's keys for its state file: a SipHash of a
/// fixed label under the send key, so a state file written under other keys
/// is recognised (and says nothing about the key).
pub fn key_id(keys: &TunnelKeys) -> u64 {
    roamgate_common::siphash::siphash24_64(&keys.tx, b"roamgate tunnel sequence state")
}

/// Bytes a tunnel packet adds to an inner packet.
pub const OVERHEAD: usize = tunnel::OVERHEAD;
/// Outer headers before the inner packet.
pub const OUTER_HEADERS: usize = OUTER_HDRS_LEN;

#[cfg(test)]
mod tests {
    use std::time::Duration;

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

    /// An in-memory [`SeqStore`]: what a state file would hold, and a
    /// switch that makes writes fail.
    #[derive(Debug, Default)]
    struct MemStore {
        state: std::sync::Mutex<SeqState>,
        writes: AtomicU64,
        fail: std::sync::atomic::AtomicBool,
    }

    impl SeqStore for MemStore {
        fn reserve_tx(&self, end: u64) -> std::io::Result<()> {
            if self.fail.load(Ordering::Relaxed) {
                return Err(std::io::Error::other("disk full"));
            }
            self.writes.fetch_add(1, Ordering::Relaxed);
            let mut s = self.state.lock().unwrap();
            s.tx_reserved = s.tx_reserved.max(end);
            Ok(())
        }
        fn raise_rx_floor(&self, floor: u64) -> std::io::Result<()> {
            if self.fail.load(Ordering::Relaxed) {
                return Err(std::io::Error::other("disk full"));
            }
            self.writes.fetch_add(1, Ordering::Relaxed);
            let mut s = self.state.lock().unwrap();
            s.rx_floor = s.rx_floor.max(floor);
            Ok(())
        }
    }

    impl MemStore {
        fn get(&self) -> SeqState {
            *self.state.lock().unwrap()
        }
    }

    /// Static-key ends (ha sends, coa receives), each with its own store,
    /// started from what the stores hold (a restart).
    fn persistent_ends(
        ha_store: &Arc<MemStore>,
        coa_store: &Arc<MemStore>,
    ) -> (Encapsulator, Decapsulator) {
        let mk = MasterKey::new([7; 32]);
        let ha = derive_keys(&mk, SPI, HOME, Role::HomeAgent);
        let coa = derive_keys(&mk, SPI, HOME, Role::CareOf);
        let (enc, _) = persistent_halves(
            SPI,
            Role::HomeAgent,
            HA,
            COA,
            HOME,
            &ha,
            1500,
            ha_store.clone(),
            ha_store.get(),
        );
        let (_, dec) = persistent_halves(
            SPI,
            Role::CareOf,
            COA,
            HA,
            HOME,
            &coa,
            1500,
            coa_store.clone(),
            coa_store.get(),
        );
        (enc, dec)
    }

    fn seq_of(pkt: &[u8]) -> u64 {
        let n = pkt.len();
        u64::from_be_bytes(pkt[n - 24..n - 16].try_into().unwrap())
    }

    #[test]
    fn restarted_receiver_refuses_what_it_accepted() {
        let (ha_s, coa_s) = (Arc::default(), Arc::default());
        let (mut enc, mut dec) = persistent_ends(&ha_s, &coa_s);
        let t0 = Instant::now();
        let mut captured = Vec::new();
        for _ in 0..300 {
            let mut out = vec![0u8; 512];
            let n = enc.encap_at(&to_home(20), &mut out, Some(t0)).unwrap();
            assert!(dec.decap(&out[..n]).is_ok());
            captured.push(out[..n].to_vec());
        }
        // One write per block, not per packet.
        assert_eq!(coa_s.writes.load(Ordering::Relaxed), 1);
        assert_eq!(coa_s.get().rx_floor, SEQ_BLOCK - 1);
        drop(dec);
        let (_, mut dec) = persistent_ends(&ha_s, &coa_s);
        for p in &captured {
            assert_eq!(dec.decap(p), Err(DropReason::TooOld), "seq {}", seq_of(p));
        }
        // The sender that did not restart is refused until its block is a
        // second old; then it moves to the next block and gets through.
        let mut out = vec![0u8; 512];
        let n = enc
            .encap_at(
                &to_home(20),
                &mut out,
                Some(t0 + Duration::from_millis(999)),
            )
            .unwrap();
        assert_eq!(dec.decap(&out[..n]), Err(DropReason::TooOld));
        let n = enc
            .encap_at(&to_home(20), &mut out, Some(t0 + BLOCK_LIFETIME))
            .unwrap();
        assert_eq!(seq_of(&out[..n]), SEQ_BLOCK);
        assert!(dec.decap(&out[..n]).is_ok());
        assert_eq!(coa_s.get().rx_floor, 2 * SEQ_BLOCK - 1);
    }

    #[test]
    fn restarted_sender_continues_after_its_reservation() {
        let (ha_s, coa_s) = (Arc::default(), Arc::default());
        let (mut enc, mut dec) = persistent_ends(&ha_s, &coa_s);
        let t0 = Instant::now();
        let mut out = vec![0u8; 512];
        for i in 1..=50u64 {
            let n = enc.encap_at(&to_home(20), &mut out, Some(t0)).unwrap();
            assert_eq!(seq_of(&out[..n]), i);
            dec.decap(&out[..n]).unwrap();
        }
        assert_eq!(ha_s.get().tx_reserved, SEQ_BLOCK - 1);
        drop(enc);
        let (mut enc, _) = persistent_ends(&ha_s, &coa_s);
        let n = enc.encap_at(&to_home(20), &mut out, Some(t0)).unwrap();
        // Past every number the first run could have used, and accepted by
        // the receiver that kept its window.
        assert_eq!(seq_of(&out[..n]), SEQ_BLOCK);
        assert_eq!(ha_s.get().tx_reserved, 2 * SEQ_BLOCK - 1);
        assert!(dec.decap(&out[..n]).is_ok());
        // A used-up block moves on without waiting for the clock.
        enc.repr.seq = 2 * SEQ_BLOCK - 1;
        let n = enc.encap_at(&to_home(20), &mut out, Some(t0)).unwrap();
        assert_eq!(seq_of(&out[..n]), 2 * SEQ_BLOCK);
        assert_eq!(ha_s.get().tx_reserved, 3 * SEQ_BLOCK - 1);
    }

    #[test]
    fn state_write_failure_fails_closed() {
        let (ha_s, coa_s): (Arc<MemStore>, Arc<MemStore>) = (Arc::default(), Arc::default());
        let (mut enc, mut dec) = persistent_ends(&ha_s, &coa_s);
        let mut out = vec![0u8; 512];
        ha_s.fail.store(true, Ordering::Relaxed);
        assert_eq!(
            enc.encap_at(&to_home(20), &mut out, None),
            Err(DropReason::StateWrite)
        );
        ha_s.fail.store(false, Ordering::Relaxed);
        let n = enc.encap_at(&to_home(20), &mut out, None).unwrap();
        coa_s.fail.store(true, Ordering::Relaxed);
        assert_eq!(dec.decap(&out[..n]), Err(DropReason::StateWrite));
        coa_s.fail.store(false, Ordering::Relaxed);
        // Nothing was recorded: the packet is still acceptable.
        assert!(dec.decap(&out[..n]).is_ok());
    }

    fn inner_with(ttl: u8, tos: u8) -> Vec<u8> {
        FrameBuilder::new()
            .ipv4(CN, HOME)
            .ttl(ttl)
            .tos(tos)
            .udp(5000, 6000)
            .payload_len(32)
            .build_l3()
    }

    /// docs/wire.md §1 and §4 step 6 on the forwarder: outer TOS = inner
    /// TOS, outer ID = low 16 bits of the sequence; TTL 0 from TUN and TTL
    /// 0 or 1 received are dropped as *TTL*; anything else is carried
    /// byte for byte (the kernel's forwarding around TUN decrements).
    #[test]
    fn tos_and_ttl_rules() {
        let ((mut enc, _), (_, mut dec)) = ends();
        let mut out = vec![0u8; 512];
        let ef = (roamgate_common::wire::ipv4::DSCP_EF << 2) | 1;
        let inner = inner_with(2, ef);
        let n = enc.encap(&inner, &mut out).unwrap();
        assert_eq!(out[1], ef, "outer TOS");
        assert_eq!(&out[4..6], &1u16.to_be_bytes(), "outer ID");
        let r = dec.decap(&out[..n]).unwrap();
        assert_eq!(&out[r], &inner[..], "inner carried unchanged");
        assert_eq!(enc.encap(&inner_with(0, 0), &mut out), Err(DropReason::Ttl));
        let n = enc.encap(&inner_with(1, 0), &mut out).unwrap();
        assert_eq!(dec.decap(&out[..n]), Err(DropReason::Ttl));
    }

    /// docs/wire.md §4 step 3 and §8: the receiver applies the tunnel MTU,
    /// and tunnel data the kernel reassembled from fragments is dropped.
    #[test]
    fn receiver_mtu_and_reassembled_datagrams() {
        let mk = MasterKey::new([7; 32]);
        let ha = derive_keys(&mk, SPI, HOME, Role::HomeAgent);
        let coa = derive_keys(&mk, SPI, HOME, Role::CareOf);
        let (mut enc, _) = halves(SPI, Role::HomeAgent, HA, COA, HOME, &ha, 1500);
        let (_, mut dec) = halves(SPI, Role::CareOf, COA, HA, HOME, &coa, 600);
        let mut out = vec![0u8; 2048];
        let n = enc.encap(&to_home(600 - 60 - 28), &mut out).unwrap();
        assert_eq!(n, 600);
        let payload = out[UDP_PAYLOAD_OFFSET..n].to_vec();
        let mut rx = vec![0u8; 2048];
        rx[UDP_PAYLOAD_OFFSET..][..payload.len()].copy_from_slice(&payload);
        assert_eq!(
            dec.decap_datagram(HA, 434, &mut rx, payload.len(), true),
            Err(DropReason::Fragmented)
        );
        assert!(dec.decap_udp(HA, 434, &mut rx, payload.len()).is_ok());
        let n = enc.encap(&to_home(600 - 60 - 27), &mut out).unwrap();
        assert_eq!(dec.decap(&out[..n]), Err(DropReason::OverMtu));
    }

    /// Keys are wiped when a half is dropped, and never printed.
    #[test]
    fn keys_are_wiped_and_redacted() {
        let key = [0xa5; 16];
        let enc = Encapsulator::new(SPI, HA, COA, key, 1500, 1);
        let dec = Decapsulator::new(SPI, COA, HOME, Role::CareOf, key);
        for d in [format!("{enc:?}"), format!("{dec:?}")] {
            assert!(d.contains("<redacted>"), "{d}");
            assert!(
                !d.contains("165") && !d.to_lowercase().contains("a5"),
                "{d}"
            );
        }
        let mut enc = std::mem::ManuallyDrop::new(enc);
        let mut dec = std::mem::ManuallyDrop::new(dec);
        // SAFETY: each value is dropped once, in place; afterwards only the
        // plain byte arrays of its `key` field are read, whose memory
        // ManuallyDrop keeps alive.
        unsafe {
            std::ptr::drop_in_place(&mut *enc);
            std::ptr::drop_in_place(&mut *dec);
        }
        assert_eq!(enc.key, [0; 16]);
        assert_eq!(dec.key, [0; 16]);
    }
}
