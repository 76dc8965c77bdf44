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
