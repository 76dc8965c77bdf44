//! Forwarding: `bpf_fib_lookup` for the packet now at the front of the
//! frame, then XDP_TX (same interface) or XDP_REDIRECT, or XDP_PASS when the
//! kernel has to help (neighbour unresolved, local destination, no route,
//! forwarding disabled, MTU).

use aya_ebpf::{
    bindings::{bpf_fib_lookup, xdp_action, BPF_FIB_LKUP_RET_SUCCESS},
    helpers::{bpf_fib_lookup as fib_lookup, bpf_redirect},
    programs::XdpContext,
    EbpfContext,
};
use roamgate_common::{counters, wire::ethernet::EthHdr};

use crate::{error::Error, maps::count, packet::header_mut};

const AF_INET: u8 = 2;

/// What the forwarding step needs to know about the IPv4 packet that now
/// follows the Ethernet header.
pub struct Route {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub tos: u8,
    pub tot_len: u16,
}

/// Looks the packet up and returns the action; rewrites the Ethernet
/// addresses on success.
#[inline(always)]
pub fn forward(ctx: &XdpContext, r: &Route) -> Result<u32, Error> {
    // SAFETY: bpf_fib_lookup is plain data; all zero is a valid start.
    let mut p: bpf_fib_lookup = unsafe { core::mem::zeroed() };
    p.family = AF_INET;
    p.__bindgen_anon_1.tot_len = r.tot_len;
    p.ifindex = ctx.ingress_ifindex() as u32;
    p.__bindgen_anon_2.tos = r.tos;
    p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(r.src);
    p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(r.dst);
    // SAFETY: `p` is a valid, writable bpf_fib_lookup of the size passed.
    let rc = unsafe {
        fib_lookup(
            ctx.as_ptr(),
            &mut p,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    if rc != BPF_FIB_LKUP_RET_SUCCESS as i64 {
        count(counters::FIB_PASS, 1);
        return Ok(xdp_action::XDP_PASS);
    }
    let eth: &mut EthHdr = header_mut(ctx, 0)?;
    eth.dst = p.dmac;
    eth.src = p.smac;
    if p.ifindex == ctx.ingress_ifindex() as u32 {
        return Ok(xdp_action::XDP_TX);
    }
    // SAFETY: helper call with a plain ifindex; returns XDP_REDIRECT, or
    // XDP_ABORTED if the target is invalid.
    Ok(unsafe { bpf_redirect(p.ifindex, 0) } as u32)
}
