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

use crate::{
    error::Error,
    packet::{bounded, load_u64, opaque},
};

/// Largest inner packet the program handles; bigger ones are over-MTU.
pub const MAX_INNER_LEN: usize = 2048;
/// Words absorbed per iteration of the main loop.
const UNROLL: usize = 4;
const BLOCK: usize = 8 * UNROLL;

/// The two SipHash key words of a map value's 16-byte key. The key fields
/// of `TunnelValue` sit at 8-byte aligned offsets (0 and 16) of an 8-byte
/// aligned value, so these are two aligned loads instead of sixteen byte
/// loads.
///
/// # Safety
/// `key` must be valid for reads and 8-byte aligned.
#[inline(always)]
pub unsafe fn key_words(key: *const [u8; 16]) -> (u64, u64) {
    let p = key as *const u64;
    // SAFETY: the caller's contract.
    unsafe { (p.read(), p.add(1).read()) }
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
        let p = opaque(ctx.data() + bounded(off + i * BLOCK));
        if p + BLOCK > ctx.data_end() {
            return Err(Error::Truncated);
        }
        // SAFETY: [p, p + 32) is inside the frame (checked above).
        let (w0, w1, w2, w3) = unsafe {
            (
                load_u64::<0>(p),
                load_u64::<8>(p),
                load_u64::<16>(p),
                load_u64::<24>(p),
            )
        };
        s.compress(w0);
        s.compress(w1);
        s.compress(w2);
        s.compress(w3);
        i += 1;
    }
    let done = blocks * BLOCK;
    let words = (len % BLOCK) / 8;
    let mut j = 0;
    while j < UNROLL - 1 {
        if j >= words {
            break;
        }
        let p = opaque(ctx.data() + bounded(off + done + j * 8));
        if p + 8 > ctx.data_end() {
            return Err(Error::Truncated);
        }
        // SAFETY: [p, p + 8) is inside the frame (checked above).
        s.compress(unsafe { load_u64::<0>(p) });
        j += 1;
    }
    let p = opaque(ctx.data() + bounded(off + (len & !7)));
    if p + 8 > ctx.data_end() {
        return Err(Error::Truncated);
    }
    // SAFETY: [p, p + 8) is inside the frame (checked above).
    let partial = unsafe { load_u64::<0>(p) };
    Ok(s.finish128(tail_word(partial, MAC_PREFIX_LEN + len)))
}
