//! Names and value types of the maps shared between the XDP programs and
//! userspace. Maps are pinned by name under [`PIN_DIR`], so a control-plane
//! restart finds them again and forwarding never stops.

/// Where the control plane pins every roamgate map.
pub const PIN_DIR: &str = "/sys/fs/bpf/roamgate";

/// Per-CPU array of `u64`, indexed by [`crate::counters`].
pub const COUNTERS: &str = "RG_COUNTERS";

/// Hash: [`BindingKey`] → [`BindingValue`]. Which packets go into a tunnel.
pub const BINDINGS: &str = "RG_BINDINGS";
/// Hash: [`TunnelKey`] (the SPI) → [`TunnelValue`]. Keys, sequence counter
/// and replay window of one tunnel.
pub const TUNNELS: &str = "RG_TUNNELS";
/// Hash: [`VoicePortKey`] → `u32` (reserved, 0). Destinations whose UDP
/// traffic must be an authorised voice flow.
pub const VOICE_PORTS: &str = "RG_VOICE_PORTS";
/// Hash: [`VoiceFlowKey`] → [`VoiceFlowValue`]. Authorised voice flows.
pub const VOICE_FLOWS: &str = "RG_VOICE_FLOWS";
/// Array: word index → `u64`, one bit per UDP port ([`voice_port_bit`]). A
/// port's bit is set while some [`VOICE_PORTS`] entry has that port, so the
/// data plane skips the hash lookup (a helper call) for every other
/// datagram. A superset is harmless: the hash decides.
pub const VOICE_PORT_BITS: &str = "RG_VOICE_BITS";
/// Words in [`VOICE_PORT_BITS`]: 65 536 bits.
pub const VOICE_PORT_BITS_WORDS: u32 = 1024;

/// The word index and bit mask of UDP `port` in [`VOICE_PORT_BITS`].
#[inline(always)]
pub fn voice_port_bit(port: u16) -> (u32, u64) {
    ((port >> 6) as u32, 1u64 << (port & 63))
}

/// Array: slot ([`binding_filter_slot`]) → `u32`, non-zero when a binding
/// with a key of that slot may exist. Encapsulation checks it before each
/// [`BINDINGS`] lookup, so traffic that is not roamgate's (most of what a
/// gateway forwards) skips both hash lookups, helper calls that cost tens
/// of ns each. One element per slot, not one bit per slot in shared words:
/// setting a mark needs no read-modify-write. Userspace sets a key's mark
/// before inserting the binding, the loader marks the bindings already
/// pinned, and the maps' owner clears a slot when it removes the last
/// binding that uses it (it counts the users per slot).
pub const BINDING_FILTER: &str = "RG_BIND_FILTER";
/// Slots in [`BINDING_FILTER`].
pub const BINDING_FILTER_SLOTS: u32 = 1 << 16;

/// The [`BINDING_FILTER`] slot of a binding key (Fibonacci hashing of the
/// address and kind: the top 16 bits of a multiplication).
#[inline(always)]
pub fn binding_filter_slot(key: &BindingKey) -> u32 {
    let x = u32::from_be_bytes(key.addr) ^ ((key.kind as u32) << 16);
    x.wrapping_mul(0x9e37_79b1) >> (32 - BINDING_FILTER_SLOTS.trailing_zeros())
}

/// Hash: ingress ifindex (`u32`, host order) → `u32` (reserved, 0). The
/// interfaces of a care-of node that face its own side (the unit's LAN, a
/// TUN or veth to its own stack), as opposed to its uplinks. A packet that
/// matches a [`BINDING_CARE_OF`] binding is reverse-tunnelled only when it
/// arrived on one of them; from anywhere else it is a spoof of the unit's
/// home address and is dropped (`drop_spoofed_uplink`). Looked up only on
/// that branch, so foreign traffic and the home agent never pay for it.
pub const INSIDE_IFS: &str = "RG_INSIDE_IFS";
/// Capacity of [`INSIDE_IFS`].
pub const INSIDE_IFS_MAX: u32 = 64;

/// Capacity of [`BINDINGS`] (allocated on demand: `BPF_F_NO_PREALLOC`).
pub const BINDINGS_MAX: u32 = 1 << 20;
/// Capacity of [`TUNNELS`] (allocated on demand: `BPF_F_NO_PREALLOC`).
pub const TUNNELS_MAX: u32 = 1 << 20;
/// Capacity of [`VOICE_PORTS`].
pub const VOICE_PORTS_MAX: u32 = 1 << 16;
/// Capacity of [`VOICE_FLOWS`].
pub const VOICE_FLOWS_MAX: u32 = 1 << 16;
/// `BPF_F_NO_PREALLOC`: hash elements are allocated when inserted, so a
/// million-entry map costs memory only for what is installed.
pub const BPF_F_NO_PREALLOC: u32 = 1;

/// [`BindingKey::kind`] on a home agent: match the packet's destination (a
/// home address) and tunnel it to the care-of address.
pub const BINDING_HOME_AGENT: u8 = 1;
/// [`BindingKey::kind`] on the care-of side: match the packet's source (the
/// unit's home address) and reverse-tunnel it to the home agent.
pub const BINDING_CARE_OF: u8 = 2;

/// [`TunnelValue::role`]: this end is the home agent; decapsulated packets
/// must come from the tunnel's home address.
pub const ROLE_HOME_AGENT: u8 = 1;
/// [`TunnelValue::role`]: this end is the care-of side; decapsulated packets
/// must go to the tunnel's home address.
pub const ROLE_CARE_OF: u8 = 2;

/// Which end of a tunnel this gateway is: the one owner of the concept. The
/// maps carry it as the `u8` encodings above (the XDP programs match on
/// those); everything else uses this enum.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "user",
    derive(serde::Deserialize, serde::Serialize),
    serde(rename_all = "kebab-case")
)]
pub enum Role {
    /// The home agent: tunnels traffic for a home address to the care-of
    /// address and receives the reverse tunnel.
    HomeAgent,
    /// The care-of side (the mobile node): reverse-tunnels the unit's traffic
    /// to the home agent and receives the forward tunnel.
    CareOf,
}

impl Role {
    /// The [`TunnelValue::role`] encoding.
    pub const fn tunnel_role(self) -> u8 {
        match self {
            Role::HomeAgent => ROLE_HOME_AGENT,
            Role::CareOf => ROLE_CARE_OF,
        }
    }

    /// The [`BindingKey::kind`] encoding.
    pub const fn binding_kind(self) -> u8 {
        match self {
            Role::HomeAgent => BINDING_HOME_AGENT,
            Role::CareOf => BINDING_CARE_OF,
        }
    }

    /// From the [`TunnelValue::role`] encoding; `None` for an unknown value.
    pub const fn from_tunnel_role(r: u8) -> Option<Self> {
        match r {
            ROLE_HOME_AGENT => Some(Role::HomeAgent),
            ROLE_CARE_OF => Some(Role::CareOf),
            _ => None,
        }
    }

    /// From the [`BindingKey::kind`] encoding; `None` for an unknown value.
    pub const fn from_binding_kind(k: u8) -> Option<Self> {
        match k {
            BINDING_HOME_AGENT => Some(Role::HomeAgent),
            BINDING_CARE_OF => Some(Role::CareOf),
            _ => None,
        }
    }
}

/// An expiry that never comes.
pub const NEVER_EXPIRES: u64 = u64::MAX;

/// Key of [`BINDINGS`]. 8 bytes, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BindingKey {
    /// The unit's home address (network order).
    pub addr: [u8; 4],
    /// [`BINDING_HOME_AGENT`] or [`BINDING_CARE_OF`].
    pub kind: u8,
    /// Zero.
    pub pad: [u8; 3],
}

impl BindingKey {
    pub const fn new(addr: [u8; 4], kind: u8) -> Self {
        BindingKey {
            addr,
            kind,
            pad: [0; 3],
        }
    }
}

/// Value of [`BINDINGS`]. 16 bytes, no implicit padding. Replacing a binding
/// (handover) is one map update, atomic for the data plane.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BindingValue {
    /// Outer destination: the care-of address on a home agent, the home
    /// agent's address on the care-of side (network order).
    pub remote: [u8; 4],
    /// The tunnel to use, as it appears on the wire (network order).
    pub spi: [u8; 4],
    /// `CLOCK_BOOTTIME` nanoseconds (`bpf_ktime_get_boot_ns`) after which the
    /// binding is dead; [`NEVER_EXPIRES`] for none.
    pub expires_ns: u64,
}

/// Key of [`TUNNELS`]: the SPI as it appears on the wire.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TunnelKey {
    pub spi: [u8; 4],
}

/// Value of [`TUNNELS`]. 104 bytes, no implicit padding (checked by a test).
///
/// `tx_seq` and `rx` are updated by the XDP program with atomic operations;
/// userspace writes a tunnel once (with `tx_seq = 0` and a zero window) and
/// then only replaces it whole on rekey.
#[repr(C)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TunnelValue {
    /// SipHash-2-4 key for packets this end sends (docs/wire.md, "Keys").
    pub key_tx: [u8; 16],
    /// SipHash-2-4 key for packets this end receives.
    pub key_rx: [u8; 16],
    /// This end's tunnel address: the outer source of what it sends.
    pub local: [u8; 4],
    /// The unit's home address this tunnel carries (anti-spoofing check).
    pub home: [u8; 4],
    /// Outer UDP source port of what this end sends (network order), 434.
    pub src_port: [u8; 2],
    /// Outer UDP destination port of what this end sends (network order).
    /// Must be 434: receivers recognise tunnel data by that port alone.
    pub dst_port: [u8; 2],
    /// Largest outer IPv4 total length in either direction (host order).
    pub mtu: u16,
    /// [`ROLE_HOME_AGENT`] or [`ROLE_CARE_OF`].
    pub role: u8,
    /// Zero.
    pub pad: u8,
    /// `CLOCK_BOOTTIME` ns after which the tunnel is dead.
    pub expires_ns: u64,
    /// Last sequence number sent (the next packet carries `tx_seq + 1`).
    pub tx_seq: u64,
    /// Replay window of the receive direction.
    pub rx: crate::replay::ReplayWindow,
}

// Keys never reach a log.
impl core::fmt::Debug for TunnelValue {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TunnelValue")
            .field("key_tx", &"<redacted>")
            .field("key_rx", &"<redacted>")
            .field("local", &self.local)
            .field("home", &self.home)
            .field("src_port", &u16::from_be_bytes(self.src_port))
            .field("dst_port", &u16::from_be_bytes(self.dst_port))
            .field("mtu", &self.mtu)
            .field("role", &self.role)
            .field("expires_ns", &self.expires_ns)
            .field("tx_seq", &self.tx_seq)
            .field("rx", &self.rx)
            .finish()
    }
}

/// Key of [`VOICE_PORTS`]: a destination (address, UDP port). 8 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VoicePortKey {
    pub addr: [u8; 4],
    pub port: [u8; 2],
    /// Zero.
    pub pad: [u8; 2],
}

/// Key of [`VOICE_FLOWS`]: the 5-tuple (protocol always 17) plus the RTP
/// SSRC, all in network order. 20 bytes, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VoiceFlowKey {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub src_port: [u8; 2],
    pub dst_port: [u8; 2],
    /// 17 (UDP).
    pub proto: u8,
    /// Zero.
    pub pad: [u8; 3],
    pub ssrc: [u8; 4],
}

impl VoiceFlowKey {
    /// The key of a UDP flow (fields in network order). Built as five
    /// words: built field by field, the three-byte zero pad became a call to
    /// the byte-loop `memset` in the XDP program's voice path.
    #[inline(always)]
    pub fn udp(
        src: [u8; 4],
        dst: [u8; 4],
        src_port: [u8; 2],
        dst_port: [u8; 2],
        ssrc: [u8; 4],
    ) -> Self {
        let w = [
            u32::from_ne_bytes(src),
            u32::from_ne_bytes(dst),
            u32::from_ne_bytes([src_port[0], src_port[1], dst_port[0], dst_port[1]]),
            u32::from_ne_bytes([crate::wire::ipv4::PROTO_UDP, 0, 0, 0]),
            u32::from_ne_bytes(ssrc),
        ];
        // SAFETY: both types are 20 bytes of plain data (the size test),
        // every bit pattern is a valid key, and `from_ne_bytes` keeps each
        // word's bytes in memory order.
        unsafe { core::mem::transmute::<[u32; 5], VoiceFlowKey>(w) }
    }
}

/// Value of [`VOICE_FLOWS`]. 48 bytes, no implicit padding.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoiceFlowValue {
    /// `CLOCK_BOOTTIME` ns after which the flow is no longer authorised.
    pub expires_ns: u64,
    /// Replay window over extended RTP indices ([`crate::flow::extend_rtp_seq`]).
    pub window: crate::replay::ReplayWindow,
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: each type is repr(C), Copy, made of integers and byte arrays,
    // with no implicit padding (see the size tests), so every bit pattern is
    // valid and no byte is uninitialised.
    unsafe impl aya::Pod for BindingKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for BindingValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for TunnelKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for TunnelValue {}
    // SAFETY: as above.
    unsafe impl aya::Pod for VoicePortKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for VoiceFlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for VoiceFlowValue {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    #[test]
    fn role_encodings_round_trip() {
        for r in [Role::HomeAgent, Role::CareOf] {
            assert_eq!(Role::from_tunnel_role(r.tunnel_role()), Some(r));
            assert_eq!(Role::from_binding_kind(r.binding_kind()), Some(r));
        }
        assert_eq!(Role::from_tunnel_role(0), None);
        assert_eq!(Role::from_binding_kind(3), None);
    }

    #[test]
    fn binding_filter_slots_are_in_range_and_spread() {
        // Home addresses of one /16 and both kinds: all in range, and a
        // dense block of 4 096 keys lands on (nearly) as many slots.
        // Distinct slots, counted without std: a 65 536-bit bitmap.
        let mut seen = [0u64; (BINDING_FILTER_SLOTS / 64) as usize];
        let mut distinct = 0;
        for i in 0..2048u32 {
            for kind in [BINDING_HOME_AGENT, BINDING_CARE_OF] {
                let a = (0x0a0a_0000 + i).to_be_bytes();
                let slot = binding_filter_slot(&BindingKey::new(a, kind));
                assert!(slot < BINDING_FILTER_SLOTS);
                let (w, b) = ((slot / 64) as usize, 1u64 << (slot % 64));
                if seen[w] & b == 0 {
                    seen[w] |= b;
                    distinct += 1;
                }
            }
        }
        assert!(distinct > 3_900, "only {distinct} distinct slots");
        // The kind takes part: the two keys of one address differ.
        let a = [10, 0, 0, 5];
        assert_ne!(
            binding_filter_slot(&BindingKey::new(a, BINDING_HOME_AGENT)),
            binding_filter_slot(&BindingKey::new(a, BINDING_CARE_OF))
        );
    }

    /// The sum of the field sizes equals the struct size: no padding.
    #[test]
    fn no_implicit_padding() {
        assert_eq!(size_of::<BindingKey>(), 4 + 1 + 3);
        assert_eq!(size_of::<BindingValue>(), 4 + 4 + 8);
        assert_eq!(size_of::<TunnelKey>(), 4);
        assert_eq!(
            size_of::<TunnelValue>(),
            16 + 16 + 4 + 4 + 2 + 2 + 2 + 1 + 1 + 8 + 8 + (8 + 32)
        );
        assert_eq!(size_of::<VoicePortKey>(), 8);
        assert_eq!(size_of::<VoiceFlowKey>(), 4 + 4 + 2 + 2 + 1 + 3 + 4);
        assert_eq!(size_of::<VoiceFlowValue>(), 8 + 40);
        assert_eq!(align_of::<TunnelValue>(), 8);
    }

    #[test]
    fn udp_voice_key_puts_every_field_in_place() {
        let k = VoiceFlowKey::udp(
            [1, 2, 3, 4],
            [5, 6, 7, 8],
            [9, 10],
            [11, 12],
            [13, 14, 15, 16],
        );
        assert_eq!(
            k,
            VoiceFlowKey {
                src: [1, 2, 3, 4],
                dst: [5, 6, 7, 8],
                src_port: [9, 10],
                dst_port: [11, 12],
                proto: 17,
                pad: [0; 3],
                ssrc: [13, 14, 15, 16],
            }
        );
    }

    #[test]
    fn map_names_fit_the_kernel_limit() {
        for n in [
            COUNTERS,
            BINDINGS,
            TUNNELS,
            VOICE_PORTS,
            VOICE_FLOWS,
            VOICE_PORT_BITS,
            BINDING_FILTER,
            INSIDE_IFS,
        ] {
            assert!(n.len() < 16, "{n}");
        }
    }

    #[test]
    fn tunnel_debug_redacts_keys() {
        extern crate std;
        let t = TunnelValue {
            key_tx: [0xab; 16],
            key_rx: [0xcd; 16],
            local: [1, 2, 3, 4],
            home: [5, 6, 7, 8],
            src_port: 434u16.to_be_bytes(),
            dst_port: 434u16.to_be_bytes(),
            mtu: 1500,
            role: ROLE_HOME_AGENT,
            pad: 0,
            expires_ns: NEVER_EXPIRES,
            tx_seq: 0,
            rx: Default::default(),
        };
        let s = std::format!("{t:?}");
        assert!(s.contains("redacted"));
        assert!(!s.contains("171") && !s.contains("ab"), "{s}");
    }
}
