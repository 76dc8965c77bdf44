//! The forwarder's tunnel state, replaceable at runtime: the tunnels one end
//! holds (by SPI, each with its keys, local address, sequence counter and
//! replay window) and the binding it sends with (home address, remote,
//! SPI). It mirrors the XDP maps (`RG_TUNNELS`, `RG_BINDINGS`) for one home
//! address, so the same control-plane actions drive either data plane:
//! install a tunnel before a binding points at it, move the binding (one
//! write, the handover), remove the binding before its tunnel.
//!
//! `roamgate tunnel` fills it once from its config; the mobile node's TUN
//! data plane rekeys it on every registration. The forwarding threads hold
//! the read lock only while they encapsulate or verify one packet; each
//! direction then locks only its own half of a tunnel.

use std::{
    collections::HashMap,
    net::Ipv4Addr,
    ops::Range,
    sync::{Arc, Mutex, PoisonError, RwLock},
    time::Instant,
};

use roamgate_common::wire::{ipv4::Ipv4Hdr, Header as _};

use super::{
    core::{
        classify_unknown, halves, peek_spi, persistent_halves, Decapsulator, DropReason,
        Encapsulator, UDP_PAYLOAD_OFFSET,
    },
    seqstate::{SeqState, SeqStore},
};
use roamgate_mip::tunnel_key::TunnelKeys;

use crate::dataplane::maps::Role;

/// A table shared by the control plane and the forwarding threads.
pub type SharedTable = Arc<RwLock<TunnelTable>>;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TableError {
    #[error("SPI {spi:#010x} is already installed")]
    SpiInUse { spi: u32 },
    #[error("no tunnel with SPI {spi:#010x} to bind to")]
    NoTunnel { spi: u32 },
    #[error("tunnel {spi:#010x} is still used by the binding")]
    TunnelInUse { spi: u32 },
    #[error("SPI 0 is reserved")]
    ZeroSpi,
}

/// One tunnel: both halves, each behind its own lock.
#[derive(Debug)]
struct Tunnel {
    role: Role,
    local: Ipv4Addr,
    home: Ipv4Addr,
    expires: Option<Instant>,
    enc: Mutex<Encapsulator>,
    dec: Mutex<Decapsulator>,
}

impl Tunnel {
    fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|t| t <= now)
    }
}

/// What this end sends with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableBinding {
    pub home: Ipv4Addr,
    pub remote: Ipv4Addr,
    pub spi: u32,
    pub expires: Option<Instant>,
}

/// One tunnel to install (see [`TunnelTable::install`]).
#[derive(Debug)]
pub struct TableTunnel<'a> {
    pub spi: u32,
    pub role: Role,
    /// This end's address: the outer source of what it sends, the outer
    /// destination the MAC of what it receives covers.
    pub local: Ipv4Addr,
    /// The far end (replaced by the binding's remote when one is set).
    pub remote: Ipv4Addr,
    pub home: Ipv4Addr,
    pub keys: &'a TunnelKeys,
    /// Largest outer packet.
    pub mtu: u16,
    pub expires: Option<Instant>,
}

/// Where an encapsulated packet goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Outer source (this end's tunnel address).
    pub local: Ipv4Addr,
    /// Outer destination.
    pub remote: Ipv4Addr,
}

#[derive(Debug, Default)]
pub struct TunnelTable {
    tunnels: HashMap<u32, Arc<Tunnel>>,
    binding: Option<(TableBinding, Arc<Tunnel>)>,
}

/// The guard's content even if a forwarding thread panicked holding it:
/// the table stays consistent (every update is one assignment).
fn unpoison<T>(r: Result<T, PoisonError<T>>) -> T {
    r.unwrap_or_else(PoisonError::into_inner)
}

impl TunnelTable {
    pub fn shared(self) -> SharedTable {
        Arc::new(RwLock::new(self))
    }

    /// Installs a tunnel; its receive side works at once.
    pub fn install(&mut self, t: &TableTunnel<'_>) -> Result<(), TableError> {
        self.install_with(t, None)
    }

    /// Installs a tunnel with a static key whose sequence state persists in
    /// `store` (docs/wire.md §3), continuing from `start`.
    pub fn install_persistent(
        &mut self,
        t: &TableTunnel<'_>,
        store: Arc<dyn SeqStore>,
        start: SeqState,
    ) -> Result<(), TableError> {
        self.install_with(t, Some((store, start)))
    }

    fn install_with(
        &mut self,
        t: &TableTunnel<'_>,
        persist: Option<(Arc<dyn SeqStore>, SeqState)>,
    ) -> Result<(), TableError> {
        if t.spi == 0 {
            return Err(TableError::ZeroSpi);
        }
        if self.tunnels.contains_key(&t.spi) {
            return Err(TableError::SpiInUse { spi: t.spi });
        }
        let (enc, dec) = match persist {
            None => halves(t.spi, t.role, t.local, t.remote, t.home, t.keys, t.mtu),
            Some((store, start)) => persistent_halves(
                t.spi, t.role, t.local, t.remote, t.home, t.keys, t.mtu, store, start,
            ),
        };
        self.tunnels.insert(
            t.spi,
            Arc::new(Tunnel {
                role: t.role,
                local: t.local,
                home: t.home,
                expires: t.expires,
                enc: Mutex::new(enc),
                dec: Mutex::new(dec),
            }),
        );
        Ok(())
    }

    /// Points the binding at installed tunnel `b.spi` towards `b.remote`
    /// (create or replace: the handover step).
    pub fn set_binding(&mut self, b: TableBinding) -> Result<(), TableError> {
        let t = self
            .tunnels
            .get(&b.spi)
            .ok_or(TableError::NoTunnel { spi: b.spi })?
            .clone();
        unpoison(t.enc.lock()).set_remote(b.remote);
        self.binding = Some((b, t));
        Ok(())
    }

    /// Stops sending.
    pub fn remove_binding(&mut self) {
        self.binding = None;
    }

    /// Removes a tunnel (absent is fine) unless the binding uses it.
    pub fn remove_tunnel(&mut self, spi: u32) -> Result<(), TableError> {
        if self.binding.as_ref().is_some_and(|(b, _)| b.spi == spi) {
            return Err(TableError::TunnelInUse { spi });
        }
        self.tunnels.remove(&spi);
        Ok(())
    }

    pub fn binding(&self) -> Option<TableBinding> {
        self.binding.as_ref().map(|(b, _)| *b)
    }

    /// Installed SPIs, ascending.
    pub fn spis(&self) -> Vec<u32> {
        let mut v: Vec<u32> = self.tunnels.keys().copied().collect();
        v.sort_unstable();
        v
    }

    /// Encapsulates an inner packet read from TUN into `out` (outer headers
    /// first, as [`Encapsulator::encap`]) if the binding carries it: on the
    /// care-of side its source must be the home address, on the home-agent
    /// side its destination. Returns the outer length and where it goes.
    pub fn encap(
        &self,
        inner: &[u8],
        out: &mut [u8],
        now: Instant,
    ) -> Result<(usize, Route), DropReason> {
        let ip = Ipv4Hdr::from_bytes(inner)
            .filter(|ip| ip.version_ihl >> 4 == 4)
            .ok_or(DropReason::NotIpv4)?;
        let (b, t) = self.binding.as_ref().ok_or(DropReason::NoBinding)?;
        let ours = match t.role {
            Role::CareOf => ip.src == t.home.octets(),
            Role::HomeAgent => ip.dst == t.home.octets(),
        };
        if !ours {
            return Err(DropReason::NoBinding);
        }
        if b.expires.is_some_and(|e| e <= now) || t.expired(now) {
            return Err(DropReason::Expired);
        }
        let n = unpoison(t.enc.lock()).encap_at(inner, out, Some(now))?;
        Ok((
            n,
            Route {
                local: t.local,
                remote: b.remote,
            },
        ))
    }

    /// Verifies a datagram received on UDP 434 (payload at
    /// `buf[UDP_PAYLOAD_OFFSET..][..payload_len]`) under the tunnel its SPI
    /// selects and returns the inner packet's range in `buf`.
    pub fn decap_udp(
        &self,
        src: Ipv4Addr,
        src_port: u16,
        buf: &mut [u8],
        payload_len: usize,
        now: Instant,
    ) -> Result<Range<usize>, DropReason> {
        self.decap_datagram(src, src_port, buf, payload_len, false, now)
    }

    /// [`TunnelTable::decap_udp`] for a datagram the kernel `reassembled`
    /// from fragments or not (IP_RECVFRAGSIZE).
    pub fn decap_datagram(
        &self,
        src: Ipv4Addr,
        src_port: u16,
        buf: &mut [u8],
        payload_len: usize,
        reassembled: bool,
        now: Instant,
    ) -> Result<Range<usize>, DropReason> {
        let spi = buf
            .get(UDP_PAYLOAD_OFFSET..UDP_PAYLOAD_OFFSET + payload_len)
            .and_then(peek_spi);
        let Some(t) = spi.and_then(|s| self.tunnels.get(&s)) else {
            return Err(classify_unknown(
                src,
                src_port,
                buf,
                payload_len,
                reassembled,
            ));
        };
        if t.expired(now) {
            return Err(DropReason::Expired);
        }
        unpoison(t.dec.lock()).decap_datagram(src, src_port, buf, payload_len, reassembled)
    }
}

/// Read access for the forwarding threads.
pub fn read(table: &SharedTable) -> std::sync::RwLockReadGuard<'_, TunnelTable> {
    unpoison(table.read())
}

/// Write access for the control plane.
pub fn write(table: &SharedTable) -> std::sync::RwLockWriteGuard<'_, TunnelTable> {
    unpoison(table.write())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use roamgate_mip::tunnel_key::{derive_keys, MasterKey};

    use super::*;
    use roamgate_testkit::frame::FrameBuilder;

    const HA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const COA1: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
    const COA2: Ipv4Addr = Ipv4Addr::new(10, 3, 0, 2);
    const HOME: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 50);
    const CN: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);

    fn tunnel<'a>(spi: u32, role: Role, local: Ipv4Addr, keys: &'a TunnelKeys) -> TableTunnel<'a> {
        TableTunnel {
            spi,
            role,
            local,
            remote: Ipv4Addr::UNSPECIFIED,
            home: HOME,
            keys,
            mtu: 1500,
            expires: None,
        }
    }

    fn binding(spi: u32, remote: Ipv4Addr) -> TableBinding {
        TableBinding {
            home: HOME,
            remote,
            spi,
            expires: None,
        }
    }

    fn packet(src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        FrameBuilder::new()
            .ipv4(src, dst)
            .udp(5000, 6000)
            .payload_len(40)
            .build_l3()
    }

    /// Sends `inner` from table `a` to table `b` the way the sockets do.
    fn through(
        a: &TunnelTable,
        b: &TunnelTable,
        inner: &[u8],
        now: Instant,
    ) -> Result<Vec<u8>, DropReason> {
        let mut out = vec![0u8; 2048];
        let (n, route) = a.encap(inner, &mut out, now)?;
        let mut rx = vec![0u8; 2048];
        let pl = &out[UDP_PAYLOAD_OFFSET..n];
        rx[UDP_PAYLOAD_OFFSET..][..pl.len()].copy_from_slice(pl);
        let r = b.decap_udp(route.local, 434, &mut rx, pl.len(), now)?;
        Ok(rx[r].to_vec())
    }

    /// Both ends with one tunnel `spi` under `master` from `coa`.
    fn keyed(
        ha: &mut TunnelTable,
        mn: &mut TunnelTable,
        master: [u8; 32],
        spi: u32,
        coa: Ipv4Addr,
    ) {
        let mk = MasterKey::new(master);
        let hk = derive_keys(&mk, spi, HOME, Role::HomeAgent);
        let ck = derive_keys(&mk, spi, HOME, Role::CareOf);
        // The safe order: the receive side first, then the binding.
        mn.install(&tunnel(spi, Role::CareOf, coa, &ck)).unwrap();
        ha.install(&tunnel(spi, Role::HomeAgent, HA, &hk)).unwrap();
        ha.set_binding(binding(spi, coa)).unwrap();
        mn.set_binding(binding(spi, HA)).unwrap();
    }

    #[test]
    fn rekey_and_handover_at_runtime() {
        let now = Instant::now();
        let (mut ha, mut mn) = (TunnelTable::default(), TunnelTable::default());
        let to_home = packet(CN, HOME);
        let from_home = packet(HOME, CN);
        // Nothing bound yet.
        assert_eq!(
            through(&mn, &ha, &from_home, now),
            Err(DropReason::NoBinding)
        );
        keyed(&mut ha, &mut mn, [1; 32], 0x1001, COA1);
        assert_eq!(through(&ha, &mn, &to_home, now).unwrap(), to_home);
        assert_eq!(through(&mn, &ha, &from_home, now).unwrap(), from_home);
        // Handover: a new SPI and key from the new care-of address; the
        // old tunnel still receives what was in flight.
        let mut inflight = vec![0u8; 2048];
        let (n, _) = ha.encap(&to_home, &mut inflight, now).unwrap();
        keyed(&mut ha, &mut mn, [2; 32], 0x2002, COA2);
        let mut out = vec![0u8; 2048];
        let (_, route) = mn.encap(&from_home, &mut out, now).unwrap();
        assert_eq!(
            route,
            Route {
                local: COA2,
                remote: HA
            }
        );
        let (_, route) = ha.encap(&to_home, &mut out, now).unwrap();
        assert_eq!(
            route,
            Route {
                local: HA,
                remote: COA2
            }
        );
        assert_eq!(through(&ha, &mn, &to_home, now).unwrap(), to_home);
        assert_eq!(through(&mn, &ha, &from_home, now).unwrap(), from_home);
        let mut rx = vec![0u8; 2048];
        rx[UDP_PAYLOAD_OFFSET..][..n - UDP_PAYLOAD_OFFSET]
            .copy_from_slice(&inflight[UDP_PAYLOAD_OFFSET..n]);
        assert!(mn
            .decap_udp(HA, 434, &mut rx, n - UDP_PAYLOAD_OFFSET, now)
            .is_ok());
        // The old tunnel retires; the bound one cannot be removed.
        mn.remove_tunnel(0x1001).unwrap();
        assert_eq!(
            mn.remove_tunnel(0x2002),
            Err(TableError::TunnelInUse { spi: 0x2002 })
        );
        rx[UDP_PAYLOAD_OFFSET..][..n - UDP_PAYLOAD_OFFSET]
            .copy_from_slice(&inflight[UDP_PAYLOAD_OFFSET..n]);
        assert_eq!(
            mn.decap_udp(HA, 434, &mut rx, n - UDP_PAYLOAD_OFFSET, now),
            Err(DropReason::UnknownSpi)
        );
        assert_eq!(mn.spis(), vec![0x2002]);
        // Deregistration: binding, then tunnel.
        mn.remove_binding();
        mn.remove_tunnel(0x2002).unwrap();
        assert!(mn.spis().is_empty());
        assert_eq!(
            through(&mn, &ha, &from_home, now),
            Err(DropReason::NoBinding)
        );
    }

    #[test]
    fn keys_per_direction_must_match() {
        let now = Instant::now();
        let (mut ha, mut mn) = (TunnelTable::default(), TunnelTable::default());
        let mk = MasterKey::new([3; 32]);
        let hk = derive_keys(&mk, 7, HOME, Role::HomeAgent);
        let wrong = derive_keys(&MasterKey::new([4; 32]), 7, HOME, Role::CareOf);
        ha.install(&tunnel(7, Role::HomeAgent, HA, &hk)).unwrap();
        ha.set_binding(binding(7, COA1)).unwrap();
        mn.install(&tunnel(7, Role::CareOf, COA1, &wrong)).unwrap();
        assert_eq!(
            through(&ha, &mn, &packet(CN, HOME), now),
            Err(DropReason::BadMac)
        );
        // The MAC covers the outer destination: a tunnel installed for
        // another care-of address does not verify either.
        let ck = derive_keys(&mk, 8, HOME, Role::CareOf);
        let hk8 = derive_keys(&mk, 8, HOME, Role::HomeAgent);
        ha.install(&tunnel(8, Role::HomeAgent, HA, &hk8)).unwrap();
        ha.set_binding(binding(8, COA1)).unwrap();
        mn.install(&tunnel(8, Role::CareOf, COA2, &ck)).unwrap();
        assert_eq!(
            through(&ha, &mn, &packet(CN, HOME), now),
            Err(DropReason::BadMac)
        );
    }

    #[test]
    fn refusals_and_drops_are_typed() {
        let now = Instant::now();
        let mut t = TunnelTable::default();
        let keys = derive_keys(&MasterKey::new([5; 32]), 9, HOME, Role::CareOf);
        assert_eq!(
            t.install(&tunnel(0, Role::CareOf, COA1, &keys)),
            Err(TableError::ZeroSpi)
        );
        assert_eq!(
            t.set_binding(binding(9, HA)),
            Err(TableError::NoTunnel { spi: 9 })
        );
        let mut tt = tunnel(9, Role::CareOf, COA1, &keys);
        tt.expires = Some(now + Duration::from_secs(10));
        t.install(&tt).unwrap();
        assert_eq!(t.install(&tt), Err(TableError::SpiInUse { spi: 9 }));
        t.set_binding(binding(9, HA)).unwrap();
        let mut out = vec![0u8; 2048];
        // Not the home address's traffic, not IPv4.
        assert_eq!(
            t.encap(&packet(COA1, CN), &mut out, now),
            Err(DropReason::NoBinding)
        );
        let mut v6 = packet(HOME, CN);
        v6[0] = 0x60;
        assert_eq!(t.encap(&v6, &mut out, now), Err(DropReason::NotIpv4));
        assert!(t.encap(&packet(HOME, CN), &mut out, now).is_ok());
        let later = now + Duration::from_secs(11);
        assert_eq!(
            t.encap(&packet(HOME, CN), &mut out, later),
            Err(DropReason::Expired)
        );
        // Received: not tunnel data, truncated, unknown SPI, expired.
        let mut rx = vec![0u8; 256];
        rx[UDP_PAYLOAD_OFFSET] = 1;
        assert_eq!(
            t.decap_udp(HA, 434, &mut rx, 24, now),
            Err(DropReason::NotTunnel)
        );
        let mut b = TableBinding {
            expires: Some(now),
            ..binding(9, HA)
        };
        t.set_binding(b).unwrap();
        assert_eq!(
            t.encap(&packet(HOME, CN), &mut out, now),
            Err(DropReason::Expired)
        );
        b.expires = None;
        t.set_binding(b).unwrap();
        let mut ha = TunnelTable::default();
        let hk = derive_keys(&MasterKey::new([5; 32]), 9, HOME, Role::HomeAgent);
        ha.install(&tunnel(9, Role::HomeAgent, HA, &hk)).unwrap();
        ha.set_binding(binding(9, COA1)).unwrap();
        assert_eq!(
            through(&ha, &t, &packet(CN, HOME), later),
            Err(DropReason::Expired)
        );
        assert!(through(&ha, &t, &packet(CN, HOME), now).is_ok());
    }
}
