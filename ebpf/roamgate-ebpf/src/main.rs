//! roamgate XDP data plane.
//!
//! `main.rs` stays thin: the entry point counts every frame, calls
//! `try_roamgate`, maps its result to an action and a counter in one
//! exhaustive match, and counts the final action, so no path can forget to
//! count. Tunnel data goes to `decap`, packets matching a binding to
//! `encap`; everything else passes untouched.
#![no_std]
#![no_main]
#![feature(asm_experimental_arch)]

mod atomic;
mod decap;
mod encap;
mod error;
mod fib;
mod mac;
mod maps;
mod packet;
mod voice;

use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};
use roamgate_common::{
    counters,
    wire::{
        ethernet::{EthHdr, ETHERTYPE_IPV4},
        ipv4::{Ipv4Hdr, PROTO_UDP},
        tunnel::{TunnelHdr, MIP_PORT, TYPE_TUNNEL_DATA},
        udp::UdpHdr,
        Header,
    },
};

use crate::{
    error::Error,
    maps::count,
    packet::{frame_len, header},
};

#[xdp]
pub fn roamgate(ctx: XdpContext) -> u32 {
    count(counters::RX_PACKETS, 1);
    count(counters::RX_BYTES, frame_len(&ctx) as u64);
    let (action, counter) = match try_roamgate(&ctx) {
        Ok(action) => (action, None),
        // Not ours, or too short to tell: the stack decides.
        Err(Error::PacketTooShort) => (xdp_action::XDP_PASS, Some(counters::RX_TRUNCATED)),
        Err(Error::Malformed) => (xdp_action::XDP_DROP, Some(counters::DROP_MALFORMED)),
        Err(Error::Truncated) => (xdp_action::XDP_DROP, Some(counters::DROP_TRUNCATED)),
        Err(Error::Fragmented) => (xdp_action::XDP_DROP, Some(counters::DROP_FRAGMENTED)),
        Err(Error::UnknownSpi) => (xdp_action::XDP_DROP, Some(counters::DROP_UNKNOWN_SPI)),
        Err(Error::BadMac) => (xdp_action::XDP_DROP, Some(counters::DROP_BAD_MAC)),
        Err(Error::Replayed) => (xdp_action::XDP_DROP, Some(counters::DROP_REPLAYED)),
        Err(Error::TooOld) => (xdp_action::XDP_DROP, Some(counters::DROP_TOO_OLD)),
        Err(Error::ReplayContended) => {
            (xdp_action::XDP_DROP, Some(counters::DROP_REPLAY_CONTENDED))
        }
        Err(Error::Expired) => (xdp_action::XDP_DROP, Some(counters::DROP_EXPIRED)),
        Err(Error::Ttl) => (xdp_action::XDP_DROP, Some(counters::DROP_TTL)),
        Err(Error::OverMtu) => (xdp_action::XDP_DROP, Some(counters::DROP_OVER_MTU)),
        Err(Error::Spoofed) => (xdp_action::XDP_DROP, Some(counters::DROP_SPOOFED)),
        Err(Error::SpoofedUplink) => (xdp_action::XDP_DROP, Some(counters::DROP_SPOOFED_UPLINK)),
        Err(Error::VoiceUnauthorised) => (
            xdp_action::XDP_DROP,
            Some(counters::DROP_VOICE_UNAUTHORISED),
        ),
        Err(Error::VoiceReplayed) => (xdp_action::XDP_DROP, Some(counters::DROP_VOICE_REPLAYED)),
        Err(Error::NoTunnel) => (xdp_action::XDP_DROP, Some(counters::DROP_NO_TUNNEL)),
        // The frame may be half rewritten: abort, never forward it.
        Err(Error::Resize) => (xdp_action::XDP_ABORTED, Some(counters::ABORT_RESIZE)),
    };
    if let Some(c) = counter {
        count(c, 1);
    }
    count(counters::action_counter(action), 1);
    action
}

#[inline(always)]
fn try_roamgate(ctx: &XdpContext) -> Result<u32, Error> {
    let eth: &EthHdr = header(ctx, 0)?;
    if eth.ether_type() != ETHERTYPE_IPV4 {
        count(counters::RX_NON_IPV4, 1);
        return Ok(xdp_action::XDP_PASS);
    }
    let ip: &Ipv4Hdr = header(ctx, EthHdr::LEN)?;
    count(counters::RX_IPV4, 1);
    let hl = ip.header_len();
    if ip.version() != 4 || hl < Ipv4Hdr::LEN {
        // Broken IPv4 is the stack's to count.
        return Ok(xdp_action::XDP_PASS);
    }
    if ip.proto == PROTO_UDP && ip.fragment_offset() == 0 {
        if let Ok(udp) = header::<UdpHdr>(ctx, EthHdr::LEN + hl) {
            if udp.dst_port() == MIP_PORT {
                if let Ok(th) = header::<TunnelHdr>(ctx, EthHdr::LEN + hl + UdpHdr::LEN) {
                    if th.msg_type == TYPE_TUNNEL_DATA {
                        return decap::decap(ctx, hl);
                    }
                    // Registration request/reply: the control plane's.
                    count(counters::RX_MIP_CONTROL, 1);
                    return Ok(xdp_action::XDP_PASS);
                }
            }
        }
    }
    Ok(encap::encap(ctx)?.unwrap_or(xdp_action::XDP_PASS))
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
