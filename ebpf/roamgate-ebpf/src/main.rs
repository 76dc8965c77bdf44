//! roamgate XDP data plane.
//!
//! `main.rs` stays thin: the entry point counts every frame, calls
//! `try_roamgate`, maps its result to an action in one place, and counts the
//! final action, so no path can forget to count.
#![no_std]
#![no_main]

mod packet;

use aya_ebpf::{
    bindings::xdp_action,
    macros::{map, xdp},
    maps::PerCpuArray,
    programs::XdpContext,
};
use aya_log_ebpf::debug;
use roamgate_common::{
    counters,
    wire::{
        ethernet::{EthHdr, ETHERTYPE_IPV4},
        ipv4::Ipv4Hdr,
    },
};

use crate::packet::{header, Error};

#[map(name = "RG_COUNTERS")]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::pinned(counters::MAX_COUNTERS, 0);

#[inline(always)]
fn count(idx: u32, n: u64) {
    if let Some(slot) = COUNTERS.get_ptr_mut(idx) {
        // SAFETY: per-CPU slot, only this CPU writes it while the program runs.
        unsafe { *slot += n };
    }
}

#[xdp]
pub fn roamgate(ctx: XdpContext) -> u32 {
    count(counters::RX_PACKETS, 1);
    count(
        counters::RX_BYTES,
        (ctx.data_end() as u64).wrapping_sub(ctx.data() as u64),
    );
    let action = match try_roamgate(&ctx) {
        Ok(action) => action,
        // Not ours, or too short to be ours: the stack decides.
        Err(Error::PacketTooShort) => {
            count(counters::RX_TRUNCATED, 1);
            xdp_action::XDP_PASS
        }
    };
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
    debug!(ctx, "ipv4 proto {}", ip.proto);
    Ok(xdp_action::XDP_PASS)
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[link_section = "license"]
#[no_mangle]
static LICENSE: [u8; 4] = *b"GPL\0";
