//! SipHash-2-4-128 over packet memory: the prefix words come from the
//! caller, the inner packet is absorbed with 8-byte little-endian loads, and
//! the last partial word over-reads into the trailer, which always follows
//! the inner packet (the mask in `tail_word` removes those bytes).
//!
//! Verifier cost: the loops are bounded by constants and every pointer is
//! re-derived from `ctx.data()` and a counter, so no pointer or counter is
//! live after a loop. The states at the loop exits are then equivalent and
//! the verifier walks the code after the MAC once, not once per length.

use aya_ebpf::programs::XdpContext;
use roamgate_common::{
    siphash::{tail_word, SipHash24},
    wire::tunnel::MAC_PREFIX_LEN,
};

use crate::{error::Error, packet::opaque};

/// Largest inner packet the program handles; bigger ones are over-MTU.
pub const MAX_INNER_LEN: usize = 2048;
/// Words absorbed per iteration of the main loop.
const UNROLL: usize = 4;
const BLOCK: usize = 8 * UNROLL;

#[inline(always)]
fn read(p: usize) -> u64 {
    // SAFETY: every caller checked `p + 8 <= data_end` (or a wider range).
    unsafe { core::ptr::read_unaligned(p as *const u64) }
}

/// Absorbs the `len` (≤ [`MAX_INNER_LEN`]) bytes at frame offset `off` into
/// `s` and returns the tag words. The frame must hold at least 8 bytes past
/// `off + len`.
#[inline(always)]
pub fn finish_over_packet(
    ctx: &XdpContext,
    mut s: SipHash24,
    off: usize,
    len: usize,
) -> Result<(u64, u64), Error> {
    let len = len & (MAX_INNER_LEN * 2 - 1);
    let blocks = len / BLOCK;
    let mut i = 0;
    while i < MAX_INNER_LEN / BLOCK {
        if i >= blocks {
            break;
        }
        let p = opaque(ctx.data() + off + i * BLOCK);
        if p + BLOCK > ctx.data_end() {
            return Err(Error::Truncated);
        }
        s.compress(read(p));
        s.compress(read(p + 8));
        s.compress(read(p + 16));
        s.compress(read(p + 24));
        i += 1;
    }
    let done = blocks * BLOCK;
    let words = (len % BLOCK) / 8;
    let mut j = 0;
    while j < UNROLL - 1 {
        if j >= words {
            break;
        }
        let p = opaque(ctx.data() + off + done + j * 8);
        if p + 8 > ctx.data_end() {
            return Err(Error::Truncated);
        }
        s.compress(read(p));
        j += 1;
    }
    let p = opaque(ctx.data() + off + (len & !7));
    if p + 8 > ctx.data_end() {
        return Err(Error::Truncated);
    }
    Ok(s.finish128(tail_word(read(p), MAC_PREFIX_LEN + len)))
}
