//! Forwarding: the next hop of the packet now at the front of the frame,
//! then XDP_TX (same interface) or XDP_REDIRECT, or XDP_PASS when the
//! kernel has to help (neighbour unresolved, local destination, no route,
//! forwarding disabled, MTU).
//!
//! Next hops come from `bpf_fib_lookup` through a small per-CPU,
//! direct-mapped cache. The helper is the most expensive step of a
//! forwarded packet (a deep call chain, each return paying the CPU's
//! return-stack mitigation), while a tunnel's packets all go to the same
//! few next hops. An entry answers only for the exact (ingress, src, dst,
//! tos) it was filled for, only for packets no longer than one the FIB
//! already accepted (so the route MTU check still holds), and only for
//! [`NEXTHOP_TTL_NS`]: route and neighbour changes take effect within that
//! time. Results that send the packet to the kernel are never cached.

use aya_ebpf::{
    bindings::{
        bpf_fib_lookup, xdp_action, BPF_FIB_LKUP_RET_FRAG_NEEDED, BPF_FIB_LKUP_RET_NO_NEIGH,
        BPF_FIB_LKUP_RET_SUCCESS,
    },
    helpers::{bpf_fib_lookup as fib_lookup, bpf_redirect},
    macros::map,
    maps::PerCpuArray,
    programs::XdpContext,
    EbpfContext,
};
use roamgate_common::{counters, wire::ethernet::EthHdr};

use crate::{error::Error, maps::count, packet::header_mut};

const AF_INET: u8 = 2;

/// How long a cached next hop is trusted.
pub const NEXTHOP_TTL_NS: u64 = 20_000_000;
/// Cache slots per CPU (a power of two).
const NEXTHOP_SLOTS: u32 = 256;

/// What the forwarding step needs to know about the IPv4 packet that now
/// follows the Ethernet header.
pub struct Route {
    pub src: [u8; 4],
    pub dst: [u8; 4],
    pub tos: u8,
    pub tot_len: u16,
}

/// One cached FIB answer.
#[repr(C)]
pub struct NextHop {
    /// `CLOCK_BOOTTIME` ns when filled; 0: empty.
    filled_ns: u64,
    src: [u8; 4],
    dst: [u8; 4],
    ingress: u32,
    /// Egress interface; 0 for a "not forwarded" answer.
    ifindex: u32,
    /// The longest packet the FIB accepted for this route.
    max_len: u16,
    tos: u8,
    _pad: u8,
    dmac: [u8; 6],
    smac: [u8; 6],
}

#[map(name = "RG_NEXTHOPS")]
static NEXTHOPS: PerCpuArray<NextHop> = PerCpuArray::with_max_entries(NEXTHOP_SLOTS, 0);

/// Where a packet goes.
enum Hop {
    /// Out of `ifindex`, with these Ethernet addresses.
    Out {
        ifindex: u32,
        smac: [u8; 6],
        dmac: [u8; 6],
    },
    /// The kernel would forward it, but must help first (neighbour
    /// resolution, fragmentation needed).
    Kernel,
    /// Not forwarded: a local address, no route, blackhole, forwarding
    /// disabled on the ingress interface.
    NotForwarded,
}

#[inline(always)]
fn slot(ingress: u32, r: &Route) -> u32 {
    let h = u32::from_ne_bytes(r.dst) ^ u32::from_ne_bytes(r.src).rotate_left(16) ^ ingress
        ^ r.tos as u32;
    h.wrapping_mul(0x9e37_79b1) >> (32 - NEXTHOP_SLOTS.trailing_zeros())
}

/// The next hop of `r`, from the cache or the FIB.
#[inline(always)]
fn resolve(ctx: &XdpContext, r: &Route, now: u64) -> Hop {
    let ingress = ctx.ingress_ifindex() as u32;
    let entry = NEXTHOPS.get_ptr_mut(slot(ingress, r));
    if let Some(e) = entry {
        // SAFETY: this CPU's slot; nothing else touches it while we run.
        let e = unsafe { &*e };
        if e.filled_ns != 0
            && now.wrapping_sub(e.filled_ns) < NEXTHOP_TTL_NS
            && e.dst == r.dst
            && e.src == r.src
            && e.ingress == ingress
            && e.tos == r.tos
            && r.tot_len <= e.max_len
        {
            if e.ifindex == 0 {
                return Hop::NotForwarded;
            }
            return Hop::Out {
                ifindex: e.ifindex,
                smac: e.smac,
                dmac: e.dmac,
            };
        }
    }

    let mut buf = core::mem::MaybeUninit::<Params>::uninit();
    let p = zeroed_params(&mut buf);
    p.family = AF_INET;
    p.__bindgen_anon_1.tot_len = r.tot_len;
    p.ifindex = ingress;
    p.__bindgen_anon_2.tos = r.tos;
    p.__bindgen_anon_3.ipv4_src = u32::from_ne_bytes(r.src);
    p.__bindgen_anon_4.ipv4_dst = u32::from_ne_bytes(r.dst);
    count(counters::FIB_LOOKUPS, 1);
    // SAFETY: `p` is a valid, writable bpf_fib_lookup of the size passed.
    let rc = unsafe {
        fib_lookup(
            ctx.as_ptr(),
            p,
            core::mem::size_of::<bpf_fib_lookup>() as i32,
            0,
        )
    };
    let hop = if rc == BPF_FIB_LKUP_RET_SUCCESS as i64 {
        Hop::Out {
            ifindex: p.ifindex,
            smac: p.smac,
            dmac: p.dmac,
        }
    } else if rc == BPF_FIB_LKUP_RET_NO_NEIGH as i64 || rc == BPF_FIB_LKUP_RET_FRAG_NEEDED as i64
    {
        return Hop::Kernel;
    } else {
        Hop::NotForwarded
    };
    if let Some(e) = entry {
        // SAFETY: as above.
        let e = unsafe { &mut *e };
        let same = e.filled_ns != 0
            && now.wrapping_sub(e.filled_ns) < NEXTHOP_TTL_NS
            && e.dst == r.dst
            && e.src == r.src
            && e.ingress == ingress
            && e.tos == r.tos;
        e.max_len = if same && e.max_len > r.tot_len {
            e.max_len
        } else {
            r.tot_len
        };
        e.src = r.src;
        e.dst = r.dst;
        e.ingress = ingress;
        e.tos = r.tos;
        match &hop {
            Hop::Out {
                ifindex,
                smac,
                dmac,
            } => {
                e.ifindex = *ifindex;
                copy_mac(&mut e.smac, smac);
                copy_mac(&mut e.dmac, dmac);
            }
            _ => e.ifindex = 0,
        }
        e.filled_ns = if now == 0 { 1 } else { now };
    }
    hop
}

/// Looks the packet up and returns the action; rewrites the Ethernet
/// addresses when it leaves from XDP.
#[inline(always)]
pub fn forward(ctx: &XdpContext, r: &Route, now: u64) -> Result<u32, Error> {
    let Hop::Out {
        ifindex,
        smac,
        dmac,
    } = resolve(ctx, r, now)
    else {
        count(counters::FIB_PASS, 1);
        return Ok(xdp_action::XDP_PASS);
    };
    let eth: &mut EthHdr = header_mut(ctx, 0)?;
    copy_mac(&mut eth.dst, &dmac);
    copy_mac(&mut eth.src, &smac);
    // Out of the interface it came in on too (a home agent sending a unit's
    // packet back into another unit's tunnel): a redirect, not XDP_TX. A
    // veth hands XDP_TX frames to its peer only when the peer runs XDP
    // itself, and otherwise leaves them queued; a redirect goes through
    // ndo_xdp_xmit, which flushes to the peer like any other redirect.
    // SAFETY: helper call with a plain ifindex; returns XDP_REDIRECT, or
    // XDP_ABORTED if the target is invalid.
    Ok(unsafe { bpf_redirect(ifindex, 0) } as u32)
}

/// Whether the kernel would forward a packet of `r` to another host: true
/// for tunnel frames that only pass through this gateway on their way to
/// another endpoint.
#[inline(always)]
pub fn is_transit(ctx: &XdpContext, r: &Route, now: u64) -> bool {
    !matches!(resolve(ctx, r, now), Hop::NotForwarded)
}

/// Room for `bpf_fib_lookup`, 8-byte aligned so it can be zeroed in words.
#[repr(C, align(8))]
union Params {
    p: bpf_fib_lookup,
    w: [u64; 8],
}

const _: () = assert!(core::mem::size_of::<bpf_fib_lookup>() == 64);

/// Zeroes `buf` with eight 8-byte stores and returns it as all-zero
/// `bpf_fib_lookup` parameters, in place. `core::mem::zeroed()` (and any
/// by-value copy of the struct) became a call to the byte-at-a-time
/// `memset`: 64 iterations, about 320 instructions per packet.
#[inline(always)]
fn zeroed_params(buf: &mut core::mem::MaybeUninit<Params>) -> &mut bpf_fib_lookup {
    let w = buf.as_mut_ptr() as *mut u64;
    let mut i = 0;
    while i < 8 {
        // SAFETY: `w` points at the 64 bytes of `buf`, aligned to 8; the
        // volatile stores keep LLVM from merging them back into `memset`.
        unsafe { core::ptr::write_volatile(w.add(i), 0) };
        i += 1;
    }
    // SAFETY: every byte was written above, and all zero is a valid
    // bpf_fib_lookup (plain data).
    unsafe { &mut (*buf.as_mut_ptr()).p }
}

/// Copies a MAC address byte by byte; a plain assignment became a call to
/// the byte-loop `memmove`.
#[inline(always)]
fn copy_mac(dst: &mut [u8; 6], src: &[u8; 6]) {
    let mut i = 0;
    while i < 6 {
        // SAFETY: `i < 6` is inside both arrays.
        unsafe { core::ptr::write_volatile(dst.as_mut_ptr().add(i), src[i]) };
        i += 1;
    }
}
