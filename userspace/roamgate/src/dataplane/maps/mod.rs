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

use std::{net::Ipv4Addr, path::Path};

use aya::maps::{Array, HashMap, Map, MapData, MapError};
use roamgate_common::{maps as m, replay::ReplayWindow};

mod error;
mod records;
#[cfg(test)]
mod tests;
mod voice;

pub use self::{error::MapsError, records::*};

// The map names and raw key/value types, so `dataplane::maps` is a superset of
// `roamgate_common::maps`.
pub use roamgate_common::maps::*;
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
    /// How many bindings use each marked filter slot: counted by one walk of
    /// the bindings when the first binding is removed, then kept by this
    /// handle's own inserts and removals. The maps' owner (a home agent's
    /// engine thread, a proxy manager, a mobile node) is their only writer,
    /// so the counts stay exact and a slot no binding uses is cleared.
    slot_users: Option<std::collections::HashMap<u32, u32>>,
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
            slot_users: None,
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
    /// clears one, so it is safe beside a running control plane. (Marks are
    /// cleared by the maps' owner when it removes the last binding of a
    /// slot.)
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
        let new_key = match self.slot_users {
            Some(_) => get_opt(&self.bindings, &b.key(), m::BINDINGS)?.is_none(),
            None => false,
        };
        // The mark first: the program looks a key up only once it is set.
        mark(&mut self.binding_filter, &b.key())?;
        self.bindings
            .insert(b.key(), b.value(), 0)
            .map_err(map_err(m::BINDINGS))?;
        if let (true, Some(users)) = (new_key, self.slot_users.as_mut()) {
            *users.entry(m::binding_filter_slot(&b.key())).or_default() += 1;
        }
        Ok(())
    }

    /// After `removed` left the bindings map: one user fewer for its filter
    /// slot, and the mark cleared when none is left, so traffic to a home
    /// address no longer bound skips the hash lookups again.
    fn release_slots(&mut self, removed: &[BindingKey]) -> Result<(), MapsError> {
        if removed.is_empty() {
            return Ok(());
        }
        let users = match &mut self.slot_users {
            Some(u) => {
                for k in removed {
                    if let Some(n) = u.get_mut(&m::binding_filter_slot(k)) {
                        *n = n.saturating_sub(1);
                    }
                }
                u
            }
            // First removal: count the bindings left (the removed ones are
            // already gone).
            None => {
                let mut u = std::collections::HashMap::new();
                for key in self.bindings.keys() {
                    let key = key.map_err(map_err(m::BINDINGS))?;
                    *u.entry(m::binding_filter_slot(&key)).or_default() += 1;
                }
                self.slot_users.insert(u)
            }
        };
        for k in removed {
            let slot = m::binding_filter_slot(k);
            if users.get(&slot).copied().unwrap_or(0) == 0 {
                users.remove(&slot);
                self.binding_filter
                    .set(slot, 0, 0)
                    .map_err(map_err(m::BINDING_FILTER))?;
            }
        }
        Ok(())
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
        self.release_slots(&[key])?;
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
        let mut removed = Vec::new();
        for (home, role) in which {
            let key = BindingKey::new(home.octets(), role.binding_kind());
            if let Some(old) = get_opt(&self.bindings, &key, m::BINDINGS)? {
                remove_opt(&mut self.bindings, &key, m::BINDINGS)?;
                candidates.insert(u32::from_be_bytes(old.spi));
                removed.push(key);
            }
        }
        self.release_slots(&removed)?;
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
