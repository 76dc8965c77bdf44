//! Every way `try_roamgate` can end other than with an action. `main.rs`
//! maps each variant to its action and counter in one exhaustive match.

/// Why the program stopped.
#[derive(Clone, Copy)]
pub enum Error {
    /// The frame ends before a header we needed to decide whether the
    /// packet is ours: the stack decides (XDP_PASS).
    PacketTooShort,
    /// Tunnel data with inconsistent lengths or unsupported header values.
    Malformed,
    /// Tunnel data (or a bound packet) that ends before its lengths say.
    Truncated,
    /// Tunnel data in an outer fragment.
    Fragmented,
    /// No tunnel with this SPI.
    UnknownSpi,
    /// The MAC does not verify.
    BadMac,
    /// The sequence number was already accepted.
    Replayed,
    /// The sequence number is behind the replay window.
    TooOld,
    /// The replay window kept moving under us.
    ReplayContended,
    /// The binding or tunnel has expired.
    Expired,
    /// Inner TTL 0 or 1.
    Ttl,
    /// Larger than the tunnel MTU (or than the program handles).
    OverMtu,
    /// Decapsulated addresses do not match the tunnel's home address.
    Spoofed,
    /// Care-of side: a bound home address as source on an interface that is
    /// not the node's inside (an uplink).
    SpoofedUplink,
    /// A datagram on a voice port that is not an authorised voice flow.
    VoiceUnauthorised,
    /// A replayed or duplicated RTP packet.
    VoiceReplayed,
    /// A binding names an SPI that has no tunnel.
    NoTunnel,
    /// bpf_xdp_adjust_head/tail refused to resize the frame.
    Resize,
}
