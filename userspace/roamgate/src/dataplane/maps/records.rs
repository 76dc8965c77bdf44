//! What the control plane installs: tunnels, bindings and voice flows as
//! plain values, with their expiries and the re-install rule.

use std::{net::Ipv4Addr, time::Duration};

use roamgate_common::{
    maps::{self as m, *},
    replay::ReplayWindow,
    wire::tunnel::MIP_PORT,
};
use roamgate_mip::tunnel_key::{derive_keys, MasterKey, TunnelKeys};

/// Default tunnel MTU: the largest outer IPv4 packet (docs/wire.md, "MTU").
pub const DEFAULT_TUNNEL_MTU: u16 = 1500;

/// When a binding, tunnel or voice flow stops being valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    Never,
    /// At this `CLOCK_BOOTTIME` instant, in ns (what the program compares with
    /// `bpf_ktime_get_boot_ns`).
    AtBoottimeNs(u64),
}

impl Expiry {
    /// `lifetime` from now (CLOCK_BOOTTIME).
    pub fn after(lifetime: Duration) -> Self {
        Self::after_from(boottime_now(), lifetime)
    }

    /// `lifetime` after `now` (injected time, for tests).
    pub fn after_from(now: Duration, lifetime: Duration) -> Self {
        let at = now.saturating_add(lifetime).as_nanos();
        Expiry::AtBoottimeNs(u64::try_from(at).unwrap_or(u64::MAX - 1))
    }

    pub(super) fn ns(self) -> u64 {
        match self {
            Expiry::Never => m::NEVER_EXPIRES,
            Expiry::AtBoottimeNs(n) => n.min(m::NEVER_EXPIRES - 1),
        }
    }

    pub(super) fn from_ns(ns: u64) -> Self {
        if ns == m::NEVER_EXPIRES {
            Expiry::Never
        } else {
            Expiry::AtBoottimeNs(ns)
        }
    }
}

/// The current `CLOCK_BOOTTIME`.
pub fn boottime_now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_BOOTTIME always exists
    // on Linux, so the call cannot fail with these arguments.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// One tunnel as this end sees it.
#[derive(Clone, Debug)]
pub struct TunnelSpec {
    pub spi: u32,
    pub role: Role,
    /// This end's tunnel address: the outer source of what it sends.
    pub local: Ipv4Addr,
    /// The unit's home address carried by the tunnel.
    pub home: Ipv4Addr,
    pub keys: TunnelKeys,
    /// Largest outer IPv4 packet.
    pub mtu: u16,
    pub src_port: u16,
    pub dst_port: u16,
    pub expires: Expiry,
}

// By hand: the keys have no `PartialEq`, only a constant-time `ct_eq`.
impl PartialEq for TunnelSpec {
    fn eq(&self, other: &Self) -> bool {
        let Self {
            spi,
            role,
            local,
            home,
            keys,
            mtu,
            src_port,
            dst_port,
            expires,
        } = self;
        *spi == other.spi
            && *role == other.role
            && *local == other.local
            && *home == other.home
            && keys.ct_eq(&other.keys)
            && *mtu == other.mtu
            && *src_port == other.src_port
            && *dst_port == other.dst_port
            && *expires == other.expires
    }
}

impl Eq for TunnelSpec {}

impl TunnelSpec {
    /// A tunnel with keys derived from `master`, ports 434, MTU 1500, no expiry.
    pub fn new(spi: u32, role: Role, local: Ipv4Addr, home: Ipv4Addr, master: &MasterKey) -> Self {
        Self {
            spi,
            role,
            local,
            home,
            keys: derive_keys(master, spi, home, role),
            mtu: DEFAULT_TUNNEL_MTU,
            src_port: MIP_PORT,
            dst_port: MIP_PORT,
            expires: Expiry::Never,
        }
    }

    pub(super) fn value(&self, tx_seq: u64, rx: ReplayWindow) -> TunnelValue {
        TunnelValue {
            key_tx: self.keys.tx,
            key_rx: self.keys.rx,
            local: self.local.octets(),
            home: self.home.octets(),
            src_port: self.src_port.to_be_bytes(),
            dst_port: self.dst_port.to_be_bytes(),
            mtu: self.mtu,
            role: self.role.tunnel_role(),
            pad: 0,
            expires_ns: self.expires.ns(),
            tx_seq,
            rx,
        }
    }
}

/// How far from the asked expiry a kept tunnel's may be: a tunnel restored
/// from the journal is asked for the same instant, converted to
/// `CLOCK_BOOTTIME` again, and lands microseconds to milliseconds apart.
pub const REINSTALL_EXPIRY_SLACK: Duration = Duration::from_secs(1);

/// What installing `t` over the live tunnel `old` (same SPI) does.
#[derive(Debug, PartialEq, Eq)]
pub enum Reinstall {
    /// Other keys or role under a live SPI.
    Conflict,
    /// The live tunnel already is `t` (its expiry within
    /// [`REINSTALL_EXPIRY_SLACK`]): nothing is written.
    Keep,
    /// Addresses, ports, MTU or the expiry changed: this value replaces
    /// the live one, with its sequence counter and replay window as read.
    Rewrite(TunnelValue),
}

/// Decides a re-install (journal restore, rollback to a tunnel still alive).
///
/// A rewrite replaces the map element with a copy of the counter and window
/// read a moment before: frames the program accepted in between would leave
/// the window (one replay each would pass) and sequence numbers sent in
/// between would be sent again. So an unchanged tunnel is never rewritten.
pub fn reinstall(old: &TunnelValue, t: &TunnelSpec) -> Reinstall {
    if old.key_tx != t.keys.tx || old.key_rx != t.keys.rx || old.role != t.role.tunnel_role() {
        return Reinstall::Conflict;
    }
    let new = t.value(old.tx_seq, old.rx);
    let slack = REINSTALL_EXPIRY_SLACK.as_nanos() as u64;
    let unchanged = old.local == new.local
        && old.home == new.home
        && old.src_port == new.src_port
        && old.dst_port == new.dst_port
        && old.mtu == new.mtu
        && old.expires_ns.abs_diff(new.expires_ns) <= slack;
    if unchanged {
        Reinstall::Keep
    } else {
        Reinstall::Rewrite(new)
    }
}

/// One binding: packets for (home agent) or from (care-of side) `home` go
/// into tunnel `spi`, towards `remote`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Binding {
    pub home: Ipv4Addr,
    pub role: Role,
    /// Outer destination: the care-of address on a home agent, the home
    /// agent's address on the care-of side.
    pub remote: Ipv4Addr,
    pub spi: u32,
    pub expires: Expiry,
}

impl Binding {
    pub(super) fn key(&self) -> BindingKey {
        BindingKey::new(self.home.octets(), self.role.binding_kind())
    }

    pub(super) fn value(&self) -> BindingValue {
        BindingValue {
            remote: self.remote.octets(),
            spi: self.spi.to_be_bytes(),
            expires_ns: self.expires.ns(),
        }
    }
}

/// A binding with its tunnel's state, for listing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BindingStatus {
    pub binding: Binding,
    /// Whether the tunnel the binding points at exists.
    pub tunnel_present: bool,
    /// Packets sent into the tunnel (its last sequence number).
    pub tx_packets: u64,
    /// Highest sequence number accepted from the peer.
    pub rx_highest_seq: u64,
    /// Tunnel expiry.
    pub tunnel_expires: Option<Expiry>,
}

/// An authorised voice flow: UDP 5-tuple plus RTP SSRC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VoiceFlow {
    pub src: Ipv4Addr,
    pub dst: Ipv4Addr,
    pub src_port: u16,
    pub dst_port: u16,
    pub ssrc: u32,
}

impl VoiceFlow {
    pub(super) fn key(&self) -> VoiceFlowKey {
        VoiceFlowKey::udp(
            self.src.octets(),
            self.dst.octets(),
            self.src_port.to_be_bytes(),
            self.dst_port.to_be_bytes(),
            self.ssrc.to_be_bytes(),
        )
    }

    pub(super) fn port_key(&self) -> VoicePortKey {
        VoicePortKey {
            addr: self.dst.octets(),
            port: self.dst_port.to_be_bytes(),
            pad: [0; 2],
        }
    }
}
