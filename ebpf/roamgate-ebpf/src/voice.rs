//! The voice fast path: UDP to a voice port must be an authorised
//! (5-tuple, SSRC) with a fresh RTP sequence number; accepted voice is marked
//! DSCP EF. Rules in roamgate_common::flow and docs/wire.md.

use aya_ebpf::programs::XdpContext;
use roamgate_common::{
    flow::{extend_rtp_seq, RtpHdr, VoicePacket},
    maps::{voice_port_bit, VoiceFlowKey, VoicePortKey},
    replay::accept_shared,
    wire::{
        ipv4::{Ipv4Hdr, PROTO_UDP},
        udp::UdpHdr,
        Header,
    },
};

use crate::{
    atomic::BpfAtomics,
    error::Error,
    maps::{VOICE_FLOWS, VOICE_PORTS, VOICE_PORT_BITS},
    packet::header,
};

/// Classifies the IPv4 packet at frame offset `ip_off`. `Ok(true)`: accepted
/// voice, to be marked EF; `Ok(false)`: not for a voice port.
///
/// `authenticated`: the tunnel's MAC proved who sent this RTP (the unit's
/// packets at the home agent's decap), so its sequence number is checked
/// against and moves the flow's replay window. Otherwise only the flow's
/// authorisation is checked: an unauthenticated sequence number must not
/// move state the genuine stream depends on (docs/wire.md §7).
#[inline(always)]
pub fn check(
    ctx: &XdpContext,
    ip_off: usize,
    now: u64,
    authenticated: bool,
) -> Result<bool, Error> {
    let ip: &Ipv4Hdr = header(ctx, ip_off)?;
    if ip.proto != PROTO_UDP || ip.fragment_offset() != 0 {
        return Ok(false);
    }
    let hl = ip.header_len();
    let udp_off = ip_off + hl;
    let Ok(udp) = header::<UdpHdr>(ctx, udp_off) else {
        return Ok(false);
    };
    // The port bitmap first: an inlined array lookup, where the hash
    // lookup below is a helper call.
    let (word, bit) = voice_port_bit(u16::from_be_bytes(udp.dst_port));
    match VOICE_PORT_BITS.get(word) {
        Some(w) if *w & bit != 0 => {}
        _ => return Ok(false),
    }
    let port = VoicePortKey {
        addr: ip.dst,
        port: udp.dst_port,
        pad: [0; 2],
    };
    if VOICE_PORTS.get_ptr(port).is_none() {
        return Ok(false);
    }
    // A voice port: from here on, anything but authorised voice is dropped.
    let tot = ip.total_len() as usize;
    if ip.more_fragments() || tot < hl || udp.check(tot - hl).is_err() {
        return Err(Error::VoiceUnauthorised);
    }
    let payload_len = udp.len() as usize - UdpHdr::LEN;
    let rtp: &RtpHdr = header(ctx, udp_off + UdpHdr::LEN).map_err(|_| Error::VoiceUnauthorised)?;
    let (ssrc, seq) = match rtp.classify(payload_len) {
        Ok(VoicePacket::Rtp { ssrc, seq }) => (ssrc, Some(seq)),
        Ok(VoicePacket::Rtcp { ssrc }) => (ssrc, None),
        Err(_) => return Err(Error::VoiceUnauthorised),
    };
    let key = VoiceFlowKey::udp(ip.src, ip.dst, udp.src_port, udp.dst_port, ssrc);
    let flow = VOICE_FLOWS
        .get_ptr_mut(key)
        .ok_or(Error::VoiceUnauthorised)?;
    // SAFETY: a live map value; `expires_ns` is only written by userspace
    // when it replaces the flow.
    if now >= unsafe { (*flow).expires_ns } {
        return Err(Error::VoiceUnauthorised);
    }
    if let (true, Some(seq)) = (authenticated, seq) {
        // SAFETY: a live, 8-byte aligned map value; the window is only
        // touched atomically while shared.
        let win = unsafe { core::ptr::addr_of_mut!((*flow).window) };
        // SAFETY: as above; a racy read of `top` only affects the rollover
        // guess, never memory safety.
        let top = unsafe { core::ptr::read_volatile(core::ptr::addr_of!((*win).top)) };
        // SAFETY: as above.
        unsafe { accept_shared::<BpfAtomics>(win, extend_rtp_seq(top, seq)) }
            .map_err(|_| Error::VoiceReplayed)?;
    }
    Ok(true)
}
