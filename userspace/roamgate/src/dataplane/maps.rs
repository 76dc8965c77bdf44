//! A small typed API over the pinned data-plane maps: bindings, tunnels and
//! voice flows. Later control-plane code (registration, handover, calls)
//! programs the XDP data plane only through [`Maps`].
//!
//! Ordering rules, so that no packet is ever sent under a key the receiver
//! lacks and no half-installed state is visible to the program:
//! - install: the tunnel (SPI → keys, window) first, which makes the receive
//!   side ready, then the binding, which starts the send path;
//! - handover: one binding update (atomic for the program); the tunnel, its
//!   sequence counter and its replay window stay;
//! - rekey: a new SPI is installed next to the old one, the binding is swapped
//!   to it, and only then the old tunnel is removed (make before break). A
//!   tunnel is never rewritten under the same SPI with other keys, because
//!   that would restart its sequence numbers inside the peer's window;
//! - remove: the binding first (stop sending), then the tunnel.
//!
//! Per-direction keys come from the tunnel master key with HKDF-SHA256
//! (RFC 5869) as docs/wire.md ("Keys") specifies:
//! [`roamgate_mip::tunnel_key::derive_keys`]. Keys never reach a log: every
//! type holding one has a redacting `Debug`.

use std::{net::Ipv4Addr, path::Path, time::Duration};

use aya::maps::{Array, HashMap, Map, MapData, MapError};
use roamgate_common::{maps as m, replay::ReplayWindow, wire::tunnel::MIP_PORT};
use roamgate_mip::tunnel_key::{derive_keys, MasterKey, TunnelKeys};

// The map names and raw key/value types, so `dataplane::maps` is a superset of
// `roamgate_common::maps`.
pub use roamgate_common::maps::*;

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

    fn ns(self) -> u64 {
        match self {
            Expiry::Never => m::NEVER_EXPIRES,
            Expiry::AtBoottimeNs(n) => n.min(m::NEVER_EXPIRES - 1),
        }
    }

    fn from_ns(ns: u64) -> Self {
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

    fn value(&self, tx_seq: u64, rx: ReplayWindow) -> TunnelValue {
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
    fn key(&self) -> BindingKey {
        BindingKey::new(self.home.octets(), self.role.binding_kind())
    }

    fn value(&self) -> BindingValue {
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
    fn key(&self) -> VoiceFlowKey {
        VoiceFlowKey {
            src: self.src.octets(),
            dst: self.dst.octets(),
            src_port: self.src_port.to_be_bytes(),
            dst_port: self.dst_port.to_be_bytes(),
            proto: 17,
            pad: [0; 3],
            ssrc: self.ssrc.to_be_bytes(),
        }
    }

    fn port_key(&self) -> VoicePortKey {
        VoicePortKey {
            addr: self.dst.octets(),
            port: self.dst_port.to_be_bytes(),
            pad: [0; 2],
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MapsError {
    #[error("opening pinned map {path}: {source} (is the data plane loaded with this pin_dir?)")]
    Open {
        path: String,
        #[source]
        source: MapError,
    },
    #[error("map {map}: {source}")]
    Map {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error(
        "tunnel SPI {spi:#010x} already exists with other keys or role: rekey under a new SPI"
    )]
    SpiInUse { spi: u32 },
    #[error("binding for {home} refers to SPI {spi:#010x}, which has no tunnel: install the tunnel first")]
    NoTunnel { home: Ipv4Addr, spi: u32 },
    #[error(
        "binding for {home} is a {binding:?} binding but tunnel SPI {spi:#010x} is {tunnel:?}"
    )]
    RoleMismatch {
        home: Ipv4Addr,
        spi: u32,
        binding: Role,
        tunnel: Option<Role>,
    },
    #[error("tunnel SPI {spi:#010x} is still used by the binding for {home}")]
    TunnelInUse { spi: u32, home: Ipv4Addr },
    #[error("SPI 0 is reserved")]
    ZeroSpi,
    #[error("creating map {map}: {source}")]
    Create {
        map: &'static str,
        #[source]
        source: MapError,
    },
    #[error("pinning map {path}: {source}")]
    Pin {
        path: String,
        #[source]
        source: aya::pin::PinError,
    },
    #[error("pin directory {path}: {source}")]
    PinDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// How many entries each map created by [`Maps::create_pinned`] holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub bindings: u32,
    pub tunnels: u32,
    pub voice_ports: u32,
    pub voice_flows: u32,
}

impl Default for Capacity {
    /// The data plane's own sizes.
    fn default() -> Self {
        Self {
            bindings: BINDINGS_MAX,
            tunnels: TUNNELS_MAX,
            voice_ports: VOICE_PORTS_MAX,
            voice_flows: VOICE_FLOWS_MAX,
        }
    }
}

/// Creates a hash map like the data plane's `name` with `max_entries` and
/// pins it at `<pin_dir>/<name>`.
fn create_pinned<K: aya::Pod, V: aya::Pod>(
    pin_dir: &Path,
    name: &'static str,
    max_entries: u32,
    flags: u32,
) -> Result<(), MapsError> {
    let map = HashMap::<MapData, K, V>::create(max_entries, flags)
        .map_err(|source| MapsError::Create { map: name, source })?;
    let path = pin_dir.join(name);
    map.pin(&path).map_err(|source| MapsError::Pin {
        path: path.display().to_string(),
        source,
    })
}

/// Marks `key`'s slot in the binding filter ([`m::BINDING_FILTER`]).
fn mark(filter: &mut Array<MapData, u32>, key: &BindingKey) -> Result<(), MapsError> {
    filter
        .set(m::binding_filter_slot(key), 1, 0)
        .map_err(map_err(m::BINDING_FILTER))
}

/// As [`create_pinned`], for an array of `len` elements.
fn create_pinned_array<V: aya::Pod>(
    pin_dir: &Path,
    name: &'static str,
    len: u32,
) -> Result<(), MapsError> {
    let map = Array::<MapData, V>::create(len, 0)
        .map_err(|source| MapsError::Create { map: name, source })?;
    let path = pin_dir.join(name);
    map.pin(&path).map_err(|source| MapsError::Pin {
        path: path.display().to_string(),
        source,
    })
}

fn map_err(map: &'static str) -> impl FnOnce(MapError) -> MapsError {
    move |source| MapsError::Map { map, source }
}

/// `Ok(None)` for a missing key.
fn get_opt<K: aya::Pod, V: aya::Pod>(
    map: &HashMap<MapData, K, V>,
    key: &K,
    name: &'static str,
) -> Result<Option<V>, MapsError> {
    match map.get(key, 0) {
        Ok(v) => Ok(Some(v)),
        Err(MapError::KeyNotFound) => Ok(None),
        Err(source) => Err(MapsError::Map { map: name, source }),
    }
}

/// `Ok(())` also for a missing key.
fn remove_opt<K: aya::Pod, V: aya::Pod>(
    map: &mut HashMap<MapData, K, V>,
    key: &K,
    name: &'static str,
) -> Result<(), MapsError> {
    match map.remove(key) {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(source) => Err(MapsError::Map { map: name, source }),
    }
}

/// Handles to the pinned bindings, tunnels and voice maps.
pub struct Maps {
    bindings: HashMap<MapData, BindingKey, BindingValue>,
    tunnels: HashMap<MapData, TunnelKey, TunnelValue>,
    voice_ports: HashMap<MapData, VoicePortKey, u32>,
    voice_flows: HashMap<MapData, VoiceFlowKey, VoiceFlowValue>,
    voice_port_bits: Array<MapData, u64>,
    binding_filter: Array<MapData, u32>,
    inside_ifs: HashMap<MapData, u32, u32>,
}

impl std::fmt::Debug for Maps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Maps { .. }")
    }
}

/// Opens the map pinned at `<pin_dir>/<name>` as `M` (a typed aya map).
fn open<M: TryFrom<Map, Error = MapError>>(
    pin_dir: &Path,
    name: &'static str,
) -> Result<M, MapsError> {
    let path = pin_dir.join(name);
    let open_err = |source| MapsError::Open {
        path: path.display().to_string(),
        source,
    };
    let data = MapData::from_pin(&path).map_err(open_err)?;
    let map = Map::from_map_data(data).map_err(open_err)?;
    M::try_from(map).map_err(open_err)
}

impl Maps {
    /// Creates the bindings, tunnels and voice maps with the capacities of
    /// `cap` (same types, key and value sizes and flags as the program's)
    /// and pins them by name under `pin_dir`, then opens them. A data plane
    /// loaded afterwards with this `pin_dir` reuses them. Tests use it to
    /// get maps that really fill up (an insert into a full map fails with
    /// E2BIG); an existing pin is an error, never replaced.
    pub fn create_pinned(pin_dir: &Path, cap: Capacity) -> Result<Self, MapsError> {
        crate::platform::fs::private_dir(pin_dir).map_err(|source| MapsError::PinDir {
            path: pin_dir.display().to_string(),
            source,
        })?;
        create_pinned::<BindingKey, BindingValue>(
            pin_dir,
            m::BINDINGS,
            cap.bindings,
            BPF_F_NO_PREALLOC,
        )?;
        create_pinned::<TunnelKey, TunnelValue>(
            pin_dir,
            m::TUNNELS,
            cap.tunnels,
            BPF_F_NO_PREALLOC,
        )?;
        create_pinned::<VoicePortKey, u32>(pin_dir, m::VOICE_PORTS, cap.voice_ports, 0)?;
        create_pinned::<VoiceFlowKey, VoiceFlowValue>(pin_dir, m::VOICE_FLOWS, cap.voice_flows, 0)?;
        create_pinned_array::<u64>(pin_dir, m::VOICE_PORT_BITS, m::VOICE_PORT_BITS_WORDS)?;
        create_pinned_array::<u32>(pin_dir, m::BINDING_FILTER, m::BINDING_FILTER_SLOTS)?;
        create_pinned::<u32, u32>(pin_dir, m::INSIDE_IFS, m::INSIDE_IFS_MAX, 0)?;
        Self::open(pin_dir)
    }

    /// Opens the maps a loaded data plane pinned under `pin_dir`.
    pub fn open(pin_dir: &Path) -> Result<Self, MapsError> {
        Ok(Self {
            bindings: open(pin_dir, m::BINDINGS)?,
            tunnels: open(pin_dir, m::TUNNELS)?,
            voice_ports: open(pin_dir, m::VOICE_PORTS)?,
            voice_flows: open(pin_dir, m::VOICE_FLOWS)?,
            voice_port_bits: open(pin_dir, m::VOICE_PORT_BITS)?,
            binding_filter: open(pin_dir, m::BINDING_FILTER)?,
            inside_ifs: open(pin_dir, m::INSIDE_IFS)?,
        })
    }

    /// Marks interface `ifindex` as the node's inside: frames from a bound
    /// home address that arrive on it are reverse-tunnelled. From any other
    /// interface (an uplink) they are dropped as spoofed (see
    /// [`m::INSIDE_IFS`]). Idempotent.
    pub fn mark_inside(&mut self, ifindex: u32) -> Result<(), MapsError> {
        self.inside_ifs
            .insert(ifindex, 0, 0)
            .map_err(map_err(m::INSIDE_IFS))
    }

    /// Undoes [`Maps::mark_inside`]; `Ok` also when it was not marked.
    pub fn unmark_inside(&mut self, ifindex: u32) -> Result<(), MapsError> {
        remove_opt(&mut self.inside_ifs, &ifindex, m::INSIDE_IFS)
    }

    /// The interfaces marked as the node's inside, by ifindex, sorted.
    pub fn inside_interfaces(&self) -> Result<Vec<u32>, MapsError> {
        let mut v = self
            .inside_ifs
            .keys()
            .collect::<Result<Vec<u32>, _>>()
            .map_err(map_err(m::INSIDE_IFS))?;
        v.sort_unstable();
        Ok(v)
    }

    /// Marks the filter slot of every binding present (see
    /// [`m::BINDING_FILTER`]): bindings pinned by an earlier run, or by a
    /// version without the filter, are then found by the program. Returns
    /// how many bindings it saw. Setting a mark is idempotent and never
    /// clears one, so it is safe beside a running control plane.
    pub fn mark_bindings(&mut self) -> Result<usize, MapsError> {
        let mut n = 0;
        for key in self.bindings.keys() {
            let key = key.map_err(map_err(m::BINDINGS))?;
            mark(&mut self.binding_filter, &key)?;
            n += 1;
        }
        Ok(n)
    }

    /// Whether `key`'s filter slot is marked (tests and diagnostics).
    pub fn binding_filter_marked(&self, key: &BindingKey) -> Result<bool, MapsError> {
        let v = self
            .binding_filter
            .get(&m::binding_filter_slot(key), 0)
            .map_err(map_err(m::BINDING_FILTER))?;
        Ok(v != 0)
    }

    /// Installs (or updates) a tunnel. A tunnel already present under the
    /// same SPI with the same keys and role keeps its sequence counter and
    /// replay window (only addresses, MTU and expiry change; see
    /// [`reinstall`] for when it is left alone); other keys under a live SPI
    /// are refused ([`MapsError::SpiInUse`]).
    pub fn install_tunnel(&mut self, t: &TunnelSpec) -> Result<(), MapsError> {
        if t.spi == 0 {
            return Err(MapsError::ZeroSpi);
        }
        let key = TunnelKey {
            spi: t.spi.to_be_bytes(),
        };
        let value = match get_opt(&self.tunnels, &key, m::TUNNELS)? {
            Some(old) => match reinstall(&old, t) {
                Reinstall::Conflict => return Err(MapsError::SpiInUse { spi: t.spi }),
                Reinstall::Keep => return Ok(()),
                Reinstall::Rewrite(v) => v,
            },
            None => t.value(0, ReplayWindow::default()),
        };
        self.tunnels
            .insert(key, value, 0)
            .map_err(map_err(m::TUNNELS))
    }

    /// Points a binding at an installed tunnel (one atomic map update: this
    /// is also the handover step).
    pub fn set_binding(&mut self, b: &Binding) -> Result<(), MapsError> {
        let tk = TunnelKey {
            spi: b.spi.to_be_bytes(),
        };
        let Some(t) = get_opt(&self.tunnels, &tk, m::TUNNELS)? else {
            return Err(MapsError::NoTunnel {
                home: b.home,
                spi: b.spi,
            });
        };
        if t.role != b.role.tunnel_role() {
            return Err(MapsError::RoleMismatch {
                home: b.home,
                spi: b.spi,
                binding: b.role,
                tunnel: Role::from_tunnel_role(t.role),
            });
        }
        // The mark first: the program looks a key up only once it is set.
        mark(&mut self.binding_filter, &b.key())?;
        self.bindings
            .insert(b.key(), b.value(), 0)
            .map_err(map_err(m::BINDINGS))
    }

    /// Installs a binding and its tunnel: the tunnel first (receive path
    /// ready), then the binding (send path starts). If the binding pointed
    /// at another SPI before (rekey), that tunnel is removed afterwards
    /// unless another binding still uses it.
    pub fn install(&mut self, b: &Binding, t: &TunnelSpec) -> Result<(), MapsError> {
        if b.spi != t.spi {
            return Err(MapsError::NoTunnel {
                home: b.home,
                spi: b.spi,
            });
        }
        let previous = get_opt(&self.bindings, &b.key(), m::BINDINGS)?;
        self.install_tunnel(t)?;
        self.set_binding(b)?;
        if let Some(prev) = previous {
            let old_spi = u32::from_be_bytes(prev.spi);
            if old_spi != b.spi {
                self.remove_tunnel_if_unused(old_spi)?;
            }
        }
        Ok(())
    }

    /// Moves a binding to a new remote (care-of) address: handover. The
    /// tunnel, its sequence numbers and its window stay.
    pub fn update_remote(
        &mut self,
        home: Ipv4Addr,
        role: Role,
        remote: Ipv4Addr,
        expires: Expiry,
    ) -> Result<Binding, MapsError> {
        let key = BindingKey::new(home.octets(), role.binding_kind());
        let Some(old) = get_opt(&self.bindings, &key, m::BINDINGS)? else {
            return Err(MapsError::NoTunnel { home, spi: 0 });
        };
        let b = Binding {
            home,
            role,
            remote,
            spi: u32::from_be_bytes(old.spi),
            expires,
        };
        self.bindings
            .insert(key, b.value(), 0)
            .map_err(map_err(m::BINDINGS))?;
        Ok(b)
    }

    /// Removes a binding (send path stops first), then its tunnel unless
    /// another binding uses it. Missing entries are not an error.
    pub fn remove(&mut self, home: Ipv4Addr, role: Role) -> Result<(), MapsError> {
        let key = BindingKey::new(home.octets(), role.binding_kind());
        let Some(old) = get_opt(&self.bindings, &key, m::BINDINGS)? else {
            return Ok(());
        };
        remove_opt(&mut self.bindings, &key, m::BINDINGS)?;
        self.remove_tunnel_if_unused(u32::from_be_bytes(old.spi))
    }

    /// Removes the bindings `which`, then each of their tunnels and of
    /// `spis` that no binding left uses, with one walk of the bindings map
    /// ([`Maps::remove`] walks it once per tunnel: a restore that removes
    /// many expired bindings would be quadratic). Missing entries are not
    /// an error.
    pub fn remove_many(
        &mut self,
        which: &[(Ipv4Addr, Role)],
        spis: &[u32],
    ) -> Result<(), MapsError> {
        let mut candidates: std::collections::HashSet<u32> = spis.iter().copied().collect();
        for (home, role) in which {
            let key = BindingKey::new(home.octets(), role.binding_kind());
            if let Some(old) = get_opt(&self.bindings, &key, m::BINDINGS)? {
                remove_opt(&mut self.bindings, &key, m::BINDINGS)?;
                candidates.insert(u32::from_be_bytes(old.spi));
            }
        }
        for item in self.bindings.iter() {
            let (_, v) = item.map_err(map_err(m::BINDINGS))?;
            candidates.remove(&u32::from_be_bytes(v.spi));
        }
        for spi in candidates {
            remove_opt(
                &mut self.tunnels,
                &TunnelKey {
                    spi: spi.to_be_bytes(),
                },
                m::TUNNELS,
            )?;
        }
        Ok(())
    }

    /// Removes a tunnel no binding refers to.
    pub fn remove_tunnel(&mut self, spi: u32) -> Result<(), MapsError> {
        if let Some(home) = self.binding_using(spi)? {
            return Err(MapsError::TunnelInUse { spi, home });
        }
        remove_opt(
            &mut self.tunnels,
            &TunnelKey {
                spi: spi.to_be_bytes(),
            },
            m::TUNNELS,
        )
    }

    fn remove_tunnel_if_unused(&mut self, spi: u32) -> Result<(), MapsError> {
        match self.remove_tunnel(spi) {
            Err(MapsError::TunnelInUse { .. }) => Ok(()),
            r => r,
        }
    }

    fn binding_using(&self, spi: u32) -> Result<Option<Ipv4Addr>, MapsError> {
        let want = spi.to_be_bytes();
        for item in self.bindings.iter() {
            let (k, v) = item.map_err(map_err(m::BINDINGS))?;
            if v.spi == want {
                return Ok(Some(Ipv4Addr::from(k.addr)));
            }
        }
        Ok(None)
    }

    /// Every binding with its tunnel's sequence counters.
    pub fn list(&self) -> Result<Vec<BindingStatus>, MapsError> {
        let mut out = Vec::new();
        for item in self.bindings.iter() {
            let (k, v) = item.map_err(map_err(m::BINDINGS))?;
            let Some(role) = Role::from_binding_kind(k.kind) else {
                continue;
            };
            let binding = Binding {
                home: Ipv4Addr::from(k.addr),
                role,
                remote: Ipv4Addr::from(v.remote),
                spi: u32::from_be_bytes(v.spi),
                expires: Expiry::from_ns(v.expires_ns),
            };
            let t = get_opt(&self.tunnels, &TunnelKey { spi: v.spi }, m::TUNNELS)?;
            out.push(BindingStatus {
                binding,
                tunnel_present: t.is_some(),
                tx_packets: t.map(|t| t.tx_seq).unwrap_or(0),
                rx_highest_seq: t.map(|t| t.rx.top).unwrap_or(0),
                tunnel_expires: t.map(|t| Expiry::from_ns(t.expires_ns)),
            });
        }
        out.sort_by_key(|s| (u32::from(s.binding.home), s.binding.role.tunnel_role()));
        Ok(out)
    }

    /// Number of installed tunnels.
    pub fn tunnel_count(&self) -> usize {
        self.tunnels.keys().filter(|k| k.is_ok()).count()
    }

    /// Authorises a voice flow: its destination becomes a voice port (whose
    /// other traffic is dropped), and the flow gets a fresh replay window.
    /// The flow is inserted before the port, so no authorised packet is
    /// dropped in between. Re-authorising an existing flow keeps its window.
    pub fn authorise_voice(&mut self, f: &VoiceFlow, expires: Expiry) -> Result<(), MapsError> {
        let key = f.key();
        let window = get_opt(&self.voice_flows, &key, m::VOICE_FLOWS)?
            .map(|v| v.window)
            .unwrap_or_default();
        self.voice_flows
            .insert(
                key,
                VoiceFlowValue {
                    expires_ns: expires.ns(),
                    window,
                },
                0,
            )
            .map_err(map_err(m::VOICE_FLOWS))?;
        self.voice_ports
            .insert(f.port_key(), 0, 0)
            .map_err(map_err(m::VOICE_PORTS))?;
        // Last: until its bit is set the data plane does not look the port up.
        self.set_port_bit(f.dst_port, true)
    }

    /// Sets or clears UDP `port`'s bit in the voice-port bitmap.
    fn set_port_bit(&mut self, port: u16, on: bool) -> Result<(), MapsError> {
        let (word, bit) = m::voice_port_bit(port);
        let old = self
            .voice_port_bits
            .get(&word, 0)
            .map_err(map_err(m::VOICE_PORT_BITS))?;
        let new = if on { old | bit } else { old & !bit };
        if new != old {
            self.voice_port_bits
                .set(word, new, 0)
                .map_err(map_err(m::VOICE_PORT_BITS))?;
        }
        Ok(())
    }

    /// Revokes a voice flow. The voice port stays a voice port while another
    /// flow to it is authorised; after the last one it is released.
    pub fn revoke_voice(&mut self, f: &VoiceFlow) -> Result<(), MapsError> {
        remove_opt(&mut self.voice_flows, &f.key(), m::VOICE_FLOWS)?;
        let port = f.port_key();
        let mut still_used = false;
        for item in self.voice_flows.keys() {
            let k = item.map_err(map_err(m::VOICE_FLOWS))?;
            if k.dst == port.addr && k.dst_port == port.port {
                still_used = true;
                break;
            }
        }
        if !still_used {
            remove_opt(&mut self.voice_ports, &port, m::VOICE_PORTS)?;
            // The bit is per port number: clear it only when no address
            // keeps that port as a voice port.
            let mut number_used = false;
            for item in self.voice_ports.keys() {
                let k = item.map_err(map_err(m::VOICE_PORTS))?;
                if k.port == port.port {
                    number_used = true;
                    break;
                }
            }
            if !number_used {
                self.set_port_bit(f.dst_port, false)?;
            }
        }
        Ok(())
    }

    /// Every authorised voice flow.
    pub fn voice_flows(&self) -> Result<Vec<(VoiceFlow, Expiry)>, MapsError> {
        let mut out = Vec::new();
        for item in self.voice_flows.iter() {
            let (k, v) = item.map_err(map_err(m::VOICE_FLOWS))?;
            out.push((
                VoiceFlow {
                    src: Ipv4Addr::from(k.src),
                    dst: Ipv4Addr::from(k.dst),
                    src_port: u16::from_be_bytes(k.src_port),
                    dst_port: u16::from_be_bytes(k.dst_port),
                    ssrc: u32::from_be_bytes(k.ssrc),
                },
                Expiry::from_ns(v.expires_ns),
            ));
        }
        Ok(out)
    }

    /// Whether `(addr, port)` is a voice port, as the data plane sees it:
    /// the port's bit is set and the (address, port) entry exists.
    pub fn is_voice_port(&self, addr: Ipv4Addr, port: u16) -> Result<bool, MapsError> {
        let k = VoicePortKey {
            addr: addr.octets(),
            port: port.to_be_bytes(),
            pad: [0; 2],
        };
        Ok(self.voice_port_bit(port)? && get_opt(&self.voice_ports, &k, m::VOICE_PORTS)?.is_some())
    }

    /// Whether UDP `port`'s bit is set in the voice-port bitmap.
    pub fn voice_port_bit(&self, port: u16) -> Result<bool, MapsError> {
        let (word, bit) = m::voice_port_bit(port);
        let w = self
            .voice_port_bits
            .get(&word, 0)
            .map_err(map_err(m::VOICE_PORT_BITS))?;
        Ok(w & bit != 0)
    }

    /// The raw tunnel value (tests, diagnostics). Its `Debug` redacts keys.
    pub fn tunnel(&self, spi: u32) -> Result<Option<TunnelValue>, MapsError> {
        get_opt(
            &self.tunnels,
            &TunnelKey {
                spi: spi.to_be_bytes(),
            },
            m::TUNNELS,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::new(core::array::from_fn(|i| i as u8))
    }

    fn live(spec: &TunnelSpec) -> TunnelValue {
        let mut rx = ReplayWindow::default();
        rx.accept(41).unwrap();
        rx.accept(42).unwrap();
        spec.value(17, rx)
    }

    #[test]
    fn reinstalling_an_unchanged_tunnel_writes_nothing() {
        let local = Ipv4Addr::new(192, 0, 2, 1);
        let mut spec = TunnelSpec::new(7, Role::HomeAgent, local, H, &master());
        spec.expires = Expiry::AtBoottimeNs(50_000_000_000);
        let old = live(&spec);
        assert_eq!(reinstall(&old, &spec), Reinstall::Keep);
        // The same expiry converted again, a little later or earlier.
        spec.expires = Expiry::AtBoottimeNs(50_000_000_000 + 999_000_000);
        assert_eq!(reinstall(&old, &spec), Reinstall::Keep);
        spec.expires = Expiry::AtBoottimeNs(50_000_000_000 - 999_000_000);
        assert_eq!(reinstall(&old, &spec), Reinstall::Keep);
    }

    #[test]
    fn reinstalling_a_changed_tunnel_keeps_its_counters() {
        let local = Ipv4Addr::new(192, 0, 2, 1);
        let mut spec = TunnelSpec::new(7, Role::HomeAgent, local, H, &master());
        spec.expires = Expiry::AtBoottimeNs(50_000_000_000);
        let old = live(&spec);
        let mut later = spec.clone();
        later.expires = Expiry::AtBoottimeNs(52_000_000_000);
        let mut earlier = spec.clone();
        earlier.expires = Expiry::AtBoottimeNs(40_000_000_000);
        let mut smaller = spec.clone();
        smaller.mtu = 1400;
        for changed in [later, earlier, smaller] {
            let Reinstall::Rewrite(v) = reinstall(&old, &changed) else {
                panic!("{changed:?} must be rewritten");
            };
            assert_eq!(v.tx_seq, 17);
            assert_eq!(v.rx, old.rx);
            assert_eq!(v.expires_ns, changed.expires.ns());
            assert_eq!(v.mtu, changed.mtu);
        }
    }

    #[test]
    fn reinstalling_other_keys_or_role_is_a_conflict() {
        let local = Ipv4Addr::new(192, 0, 2, 1);
        let spec = TunnelSpec::new(7, Role::HomeAgent, local, H, &master());
        let old = live(&spec);
        let other_key = TunnelSpec::new(7, Role::HomeAgent, local, H, &MasterKey::new([9; 32]));
        assert_eq!(reinstall(&old, &other_key), Reinstall::Conflict);
        let mut other_role = spec.clone();
        other_role.role = Role::CareOf;
        assert_eq!(reinstall(&old, &other_role), Reinstall::Conflict);
    }

    const H: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);

    #[test]
    fn secrets_are_redacted() {
        let spec = TunnelSpec::new(
            7,
            Role::CareOf,
            Ipv4Addr::new(1, 2, 3, 4),
            Ipv4Addr::new(5, 6, 7, 8),
            &master(),
        );
        let s = format!("{spec:?}");
        assert!(
            s.contains("redacted") && !s.contains(&format!("{:?}", spec.keys.tx)),
            "{s}"
        );
    }

    #[test]
    fn expiry_encoding() {
        assert_eq!(Expiry::Never.ns(), m::NEVER_EXPIRES);
        let e = Expiry::after_from(Duration::from_secs(10), Duration::from_secs(5));
        assert_eq!(e, Expiry::AtBoottimeNs(15_000_000_000));
        assert_eq!(Expiry::from_ns(e.ns()), e);
        assert_eq!(
            Expiry::after_from(Duration::MAX, Duration::from_secs(1)).ns(),
            m::NEVER_EXPIRES - 1
        );
        assert!(boottime_now() > Duration::ZERO);
    }
}
