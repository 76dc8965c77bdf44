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
//! (RFC 5869) as docs/wire.md ("Keys") specifies: [`derive_keys`]. Keys never
//! reach a log: every type holding one has a redacting `Debug`.

use std::{net::Ipv4Addr, path::Path, time::Duration};

use aya::maps::{Array, HashMap, Map, MapData, MapError};
use ring::hkdf;
use roamgate_common::{maps as m, replay::ReplayWindow, siphash::Key, wire::tunnel::MIP_PORT};

// The map names and raw key/value types, so `dataplane::maps` is a superset of
// `roamgate_common::maps`.
pub use roamgate_common::maps::*;

/// HKDF-SHA256 salt of the per-direction key derivation (docs/wire.md §3).
pub const KDF_SALT: &[u8] = b"roamgate-tunnel-v1";
/// HKDF info label of the home agent → mobile node (care-of) direction; the
/// SPI and the home address (4 bytes each, network order) follow.
pub const KDF_INFO_HA_TO_MN: &[u8] = b"roamgate tunnel ha->mn";
/// HKDF info label of the mobile node (care-of) → home agent direction.
pub const KDF_INFO_MN_TO_HA: &[u8] = b"roamgate tunnel mn->ha";

/// Default tunnel MTU: the largest outer IPv4 packet (docs/wire.md, "MTU").
pub const DEFAULT_TUNNEL_MTU: u16 = 1500;

/// A tunnel master key (the MN–HA key material of the registration):
/// [`MasterKey::MIN_LEN`] to [`MasterKey::MAX_LEN`] bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct MasterKey(Vec<u8>);

impl MasterKey {
    /// docs/wire.md §3: at least 16 random bytes.
    pub const MIN_LEN: usize = 16;
    pub const MAX_LEN: usize = 64;

    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes.to_vec())
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, MapsError> {
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&bytes.len()) {
            return Err(MapsError::MasterKeyLength(bytes.len()));
        }
        Ok(Self(bytes.to_vec()))
    }

    /// From hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, MapsError> {
        let t = text.trim();
        if !t.len().is_multiple_of(2) || !t.is_ascii() {
            return Err(MapsError::MasterKeyHex);
        }
        let mut out = vec![0u8; t.len() / 2];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(&t[2 * i..2 * i + 2], 16)
                .map_err(|_| MapsError::MasterKeyHex)?;
        }
        let k = Self::from_slice(&out);
        wipe(&mut out);
        k
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Overwrites a secret so it does not linger in freed memory.
fn wipe(bytes: &mut [u8]) {
    for b in bytes.iter_mut() {
        // SAFETY: `b` is a valid, aligned, exclusive reference to a u8; the
        // volatile write only keeps the compiler from eliding the store.
        unsafe { std::ptr::write_volatile(b, 0) };
    }
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

/// Which end of a tunnel this gateway is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The home agent: tunnels traffic for a home address to the care-of
    /// address and receives the reverse tunnel.
    HomeAgent,
    /// The care-of side: reverse-tunnels the unit's traffic to the home
    /// agent and receives the forward tunnel.
    CareOf,
}

impl Role {
    fn tunnel_role(self) -> u8 {
        match self {
            Role::HomeAgent => m::ROLE_HOME_AGENT,
            Role::CareOf => m::ROLE_CARE_OF,
        }
    }

    fn binding_kind(self) -> u8 {
        match self {
            Role::HomeAgent => m::BINDING_HOME_AGENT,
            Role::CareOf => m::BINDING_CARE_OF,
        }
    }

    fn from_tunnel_role(r: u8) -> Option<Self> {
        match r {
            m::ROLE_HOME_AGENT => Some(Role::HomeAgent),
            m::ROLE_CARE_OF => Some(Role::CareOf),
            _ => None,
        }
    }
}

/// The two SipHash keys of one tunnel, as seen from one end.
#[derive(Clone, PartialEq, Eq)]
pub struct TunnelKeys {
    /// Key of what this end sends.
    pub tx: Key,
    /// Key of what this end receives.
    pub rx: Key,
}

impl std::fmt::Debug for TunnelKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TunnelKeys { tx: <redacted>, rx: <redacted> }")
    }
}

impl Drop for TunnelKeys {
    fn drop(&mut self) {
        wipe(&mut self.tx);
        wipe(&mut self.rx);
    }
}

struct OkmLen(usize);

impl hkdf::KeyType for OkmLen {
    fn len(&self) -> usize {
        self.0
    }
}

/// The key of one direction: HKDF-SHA256(salt = [`KDF_SALT`], IKM = master,
/// info = label || SPI || home address), 16 bytes (docs/wire.md §3).
pub fn derive_direction_key(master: &MasterKey, label: &[u8], spi: u32, home: Ipv4Addr) -> Key {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, KDF_SALT).extract(master.as_bytes());
    let spi_be = spi.to_be_bytes();
    let home_b = home.octets();
    let info = [label, &spi_be[..], &home_b[..]];
    let mut out = [0u8; 16];
    // 16 bytes is far below HKDF-SHA256's limit of 255 * 32: cannot fail.
    prk.expand(&info, OkmLen(out.len()))
        .and_then(|okm| okm.fill(&mut out))
        .expect("HKDF-SHA256 output of 16 bytes is always valid");
    out
}

/// Both keys of tunnel `spi` for home address `home`, as `role` uses them.
pub fn derive_keys(master: &MasterKey, spi: u32, home: Ipv4Addr, role: Role) -> TunnelKeys {
    let ha_to_coa = derive_direction_key(master, KDF_INFO_HA_TO_MN, spi, home);
    let coa_to_ha = derive_direction_key(master, KDF_INFO_MN_TO_HA, spi, home);
    match role {
        Role::HomeAgent => TunnelKeys {
            tx: ha_to_coa,
            rx: coa_to_ha,
        },
        Role::CareOf => TunnelKeys {
            tx: coa_to_ha,
            rx: ha_to_coa,
        },
    }
}

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
#[derive(Clone, Debug, PartialEq, Eq)]
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
    #[error("a tunnel master key is 16 to 64 bytes, got {0}")]
    MasterKeyLength(usize),
    #[error("a tunnel master key in hex has only the digits 0-9a-f")]
    MasterKeyHex,
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
        })
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
            let role = match k.kind {
                m::BINDING_HOME_AGENT => Role::HomeAgent,
                m::BINDING_CARE_OF => Role::CareOf,
                _ => continue,
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

    /// RFC 5869 appendix A.1 (HKDF-SHA256 test case 1), through the same
    /// ring calls [`derive_direction_key`] makes.
    #[test]
    fn ring_hkdf_matches_rfc5869_case_1() {
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, &salt).extract(&ikm);
        let mut okm = [0u8; 42];
        prk.expand(&[&info], OkmLen(42))
            .unwrap()
            .fill(&mut okm)
            .unwrap();
        let want =
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865";
        let got: String = okm.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, want);
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

    fn hex(b: &[u8]) -> String {
        b.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The example of docs/wire.md §3.
    #[test]
    fn wire_md_example() {
        let ha = derive_keys(&master(), 0x1001, H, Role::HomeAgent);
        assert_eq!(hex(&ha.tx), "38dc7011d00d9cd9c51aeefac3a265df");
        assert_eq!(hex(&ha.rx), "00eb2bde43bec4e1dcc14eef928798b4");
        let prk = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, KDF_SALT),
            master().as_bytes(),
        );
        assert_eq!(
            hex(prk.as_ref()),
            "bfc00e00ebec7b9bcd9aaeb9330a989fbd732b19209dcc1e569c9957ea4382b4"
        );
    }

    #[test]
    fn the_two_ends_agree_and_directions_differ() {
        let ha = derive_keys(&master(), 0x1001, H, Role::HomeAgent);
        let coa = derive_keys(&master(), 0x1001, H, Role::CareOf);
        assert_eq!(ha.tx, coa.rx);
        assert_eq!(ha.rx, coa.tx);
        assert_ne!(ha.tx, ha.rx);
        let other_spi = derive_keys(&master(), 0x1002, H, Role::HomeAgent);
        assert_ne!(ha.tx, other_spi.tx);
        let mut mk = master().as_bytes().to_vec();
        mk[0] ^= 1;
        let other = MasterKey::from_slice(&mk).unwrap();
        assert_ne!(derive_keys(&other, 0x1001, H, Role::HomeAgent).tx, ha.tx);
        let other_home = derive_keys(
            &master(),
            0x1001,
            Ipv4Addr::new(10, 1, 0, 2),
            Role::HomeAgent,
        );
        assert_ne!(other_home.tx, ha.tx);
    }

    #[test]
    fn direction_key_is_hkdf_of_label_and_spi() {
        // Independent recomputation with HMAC-SHA256 (RFC 5869 section 2).
        use ring::hmac;
        let prk = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, KDF_SALT),
            master().as_bytes(),
        );
        let mut t1_input = KDF_INFO_HA_TO_MN.to_vec();
        t1_input.extend_from_slice(&0x1001u32.to_be_bytes());
        t1_input.extend_from_slice(&H.octets());
        t1_input.push(1);
        let t1 = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, prk.as_ref()), &t1_input);
        assert_eq!(
            &derive_direction_key(&master(), KDF_INFO_HA_TO_MN, 0x1001, H)[..],
            &t1.as_ref()[..16]
        );
    }

    #[test]
    fn secrets_are_redacted() {
        let k = derive_keys(&master(), 7, H, Role::CareOf);
        let s = format!("{k:?} {:?}", master());
        assert!(s.contains("redacted"), "{s}");
        assert!(
            !s.contains(&format!("{:?}", k.tx)) && !s.contains(&format!("{:?}", k.rx)),
            "{s}"
        );
        assert!(!s.contains(&format!("{:?}", master().as_bytes())), "{s}");
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
    fn master_key_parsing() {
        let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
        assert_eq!(MasterKey::from_hex(hex).unwrap(), master());
        assert!(matches!(
            MasterKey::from_hex("00"),
            Err(MapsError::MasterKeyLength(1))
        ));
        assert!(matches!(
            MasterKey::from_hex("000"),
            Err(MapsError::MasterKeyHex)
        ));
        assert_eq!(
            MasterKey::from_hex(&"ab".repeat(16))
                .unwrap()
                .as_bytes()
                .len(),
            16
        );
        assert!(matches!(
            MasterKey::from_hex(&"zz".repeat(32)),
            Err(MapsError::MasterKeyHex)
        ));
        assert!(MasterKey::from_slice(&[0; 15]).is_err());
        assert!(MasterKey::from_slice(&[0; 65]).is_err());
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
