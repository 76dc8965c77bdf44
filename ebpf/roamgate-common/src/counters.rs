//! Per-CPU counters of the data plane.
//!
//! One `PerCpuArray<u64>` (`COUNTERS`) holds every counter; the constants below
//! index it. Userspace sums each index over all CPUs. Adding a counter means
//! adding a constant and its row in [`NAMES`]; a unit test keeps the two in step.

/// Every frame the program saw.
pub const RX_PACKETS: u32 = 0;
/// Bytes of every frame the program saw.
pub const RX_BYTES: u32 = 1;
/// Frames that are not IPv4 (ARP, IPv6, ...): passed untouched.
pub const RX_NON_IPV4: u32 = 2;
/// IPv4 frames with a well-formed header.
pub const RX_IPV4: u32 = 3;
/// Frames too short for the header they announce: passed to the stack, which
/// owns the error accounting for traffic that is not ours.
pub const RX_TRUNCATED: u32 = 4;
/// Final action XDP_ABORTED.
pub const ACTION_ABORTED: u32 = 5;
/// Final action XDP_DROP.
pub const ACTION_DROP: u32 = 6;
/// Final action XDP_PASS.
pub const ACTION_PASS: u32 = 7;
/// Final action XDP_TX.
pub const ACTION_TX: u32 = 8;
/// Final action XDP_REDIRECT.
pub const ACTION_REDIRECT: u32 = 9;

// Tunnel and voice traffic. Every drop reason has its own counter; a dropped
// frame is also counted once in ACTION_DROP.

/// Tunnel data dropped: inconsistent lengths or unsupported header values.
pub const DROP_MALFORMED: u32 = 10;
/// Tunnel data dropped: the frame ends before its lengths say.
pub const DROP_TRUNCATED: u32 = 11;
/// Tunnel data dropped: first fragment of a fragmented outer packet (the
/// tunnel never fragments; see docs/wire.md).
pub const DROP_FRAGMENTED: u32 = 12;
/// Tunnel data dropped: no tunnel with this SPI.
pub const DROP_UNKNOWN_SPI: u32 = 13;
/// Tunnel data dropped: the MAC does not verify.
pub const DROP_BAD_MAC: u32 = 14;
/// Tunnel data dropped: sequence number already accepted.
pub const DROP_REPLAYED: u32 = 15;
/// Tunnel data dropped: sequence number behind the replay window (or 0).
pub const DROP_TOO_OLD: u32 = 16;
/// Dropped: the binding or tunnel has expired.
pub const DROP_EXPIRED: u32 = 17;
/// Dropped: inner TTL 0 or 1, cannot be forwarded.
pub const DROP_TTL: u32 = 18;
/// Dropped: the tunnel packet would exceed (or exceeds) the tunnel MTU.
pub const DROP_OVER_MTU: u32 = 19;
/// Dropped after decapsulation: inner addresses do not match the tunnel's
/// home address (a unit spoofing another address).
pub const DROP_SPOOFED: u32 = 20;
/// Dropped: datagram on a voice port that is not an authorised voice flow
/// (unknown SSRC, expired flow, not RTP/RTCP, or an inner fragment).
pub const DROP_VOICE_UNAUTHORISED: u32 = 21;
/// Dropped: RTP packet duplicated, or behind its SSRC's window.
pub const DROP_VOICE_REPLAYED: u32 = 22;
/// Dropped: a binding points at an SPI with no tunnel (control-plane bug).
pub const DROP_NO_TUNNEL: u32 = 23;
/// Aborted: the frame could not be resized (no head- or tailroom).
pub const ABORT_RESIZE: u32 = 24;
/// Tunnel packets built and sent.
pub const TUNNEL_ENCAP: u32 = 25;
/// Tunnel packets verified and decapsulated.
pub const TUNNEL_DECAP: u32 = 26;
/// Voice packets accepted on the fast path (marked DSCP EF).
pub const VOICE_FORWARDED: u32 = 27;
/// Mobile IP control messages (registration) on UDP 434: passed to the stack.
pub const RX_MIP_CONTROL: u32 = 28;
/// Forwarded packets handed to the stack because the FIB lookup did not
/// give a resolved next hop (no neighbour, local, unreachable, ...).
pub const FIB_PASS: u32 = 29;
/// Dropped: another CPU kept moving the replay window (see replay.rs).
pub const DROP_REPLAY_CONTENDED: u32 = 30;
/// `bpf_fib_lookup` calls: forwarded packets whose next hop was not in the
/// per-CPU next-hop cache (see fib.rs), and transit checks.
pub const FIB_LOOKUPS: u32 = 31;
/// Tunnel frames addressed to another host (an SPI this gateway does not
/// hold, or one whose MAC it cannot verify, on its way through): passed to
/// the stack to be routed, never dropped here.
pub const RX_TRANSIT: u32 = 32;
/// Dropped on the care-of side: a frame with a bound home address as its
/// source that arrived on an interface not marked as the node's inside
/// ([`crate::maps::INSIDE_IFS`]), e.g. a host on the same hotspot spoofing
/// the unit. Never tunnelled.
pub const DROP_SPOOFED_UPLINK: u32 = 33;

/// Number of slots in the `COUNTERS` array. Kept larger than the highest index
/// so later counters do not change the map's definition.
pub const MAX_COUNTERS: u32 = 64;

/// Operator-facing names, indexed by counter, used for logs and Prometheus.
pub const NAMES: &[(u32, &str)] = &[
    (RX_PACKETS, "rx_packets"),
    (RX_BYTES, "rx_bytes"),
    (RX_NON_IPV4, "rx_non_ipv4"),
    (RX_IPV4, "rx_ipv4"),
    (RX_TRUNCATED, "rx_truncated"),
    (ACTION_ABORTED, "action_aborted"),
    (ACTION_DROP, "action_drop"),
    (ACTION_PASS, "action_pass"),
    (ACTION_TX, "action_tx"),
    (ACTION_REDIRECT, "action_redirect"),
    (DROP_MALFORMED, "drop_malformed"),
    (DROP_TRUNCATED, "drop_truncated"),
    (DROP_FRAGMENTED, "drop_fragmented"),
    (DROP_UNKNOWN_SPI, "drop_unknown_spi"),
    (DROP_BAD_MAC, "drop_bad_mac"),
    (DROP_REPLAYED, "drop_replayed"),
    (DROP_TOO_OLD, "drop_too_old"),
    (DROP_EXPIRED, "drop_expired"),
    (DROP_TTL, "drop_ttl"),
    (DROP_OVER_MTU, "drop_over_mtu"),
    (DROP_SPOOFED, "drop_spoofed"),
    (DROP_VOICE_UNAUTHORISED, "drop_voice_unauthorised"),
    (DROP_VOICE_REPLAYED, "drop_voice_replayed"),
    (DROP_NO_TUNNEL, "drop_no_tunnel"),
    (ABORT_RESIZE, "abort_resize"),
    (TUNNEL_ENCAP, "tunnel_encap"),
    (TUNNEL_DECAP, "tunnel_decap"),
    (VOICE_FORWARDED, "voice_forwarded"),
    (RX_MIP_CONTROL, "rx_mip_control"),
    (FIB_PASS, "fib_pass"),
    (DROP_REPLAY_CONTENDED, "drop_replay_contended"),
    (FIB_LOOKUPS, "fib_lookups"),
    (RX_TRANSIT, "rx_transit"),
    (DROP_SPOOFED_UPLINK, "drop_spoofed_uplink"),
];

/// The counter that records a final XDP action (`xdp_action` numbering).
pub const fn action_counter(action: u32) -> u32 {
    match action {
        0 => ACTION_ABORTED,
        1 => ACTION_DROP,
        2 => ACTION_PASS,
        3 => ACTION_TX,
        4 => ACTION_REDIRECT,
        _ => ACTION_ABORTED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_in_range() {
        for (i, (idx, name)) in NAMES.iter().enumerate() {
            assert!(*idx < MAX_COUNTERS, "{name} out of range");
            for (jdx, other) in &NAMES[i + 1..] {
                assert_ne!(idx, jdx, "{name} and {other} share an index");
                assert_ne!(name, other, "duplicate name {name}");
            }
        }
    }

    #[test]
    fn every_action_has_a_counter() {
        assert_eq!(action_counter(0), ACTION_ABORTED);
        assert_eq!(action_counter(1), ACTION_DROP);
        assert_eq!(action_counter(2), ACTION_PASS);
        assert_eq!(action_counter(3), ACTION_TX);
        assert_eq!(action_counter(4), ACTION_REDIRECT);
        assert_eq!(action_counter(99), ACTION_ABORTED);
    }
}
