//! The one bounds-checked way to reach packet memory.

use aya_ebpf::programs::XdpContext;
use roamgate_common::wire::Header;

use crate::error::Error;

/// Hides `x` from the optimiser. LLVM otherwise drops a bounds check it can
/// prove from an earlier one on another pointer (for example `data + 34`
/// from `data + hl + 22` with `hl >= 20`), which the verifier cannot follow.
/// Costs one register move.
#[inline(always)]
pub fn opaque(mut x: usize) -> usize {
    // SAFETY: an empty asm block that only claims to change `x`.
    unsafe { core::arch::asm!("{0} = {0}", inout(reg) x, options(nomem, nostack)) };
    x
}

/// Bound of every offset into a frame: XDP frames here are one page (no
/// multi-buffer), so no header starts past 8 KiB.
pub const MAX_FRAME_OFF: usize = 0x1fff;

/// `off` masked to [`MAX_FRAME_OFF`] in the register that is then added to
/// the packet pointer. Kernels before 6.3 do not carry a bound learnt on one
/// fill of a spilled scalar over to the next fill of the same stack slot, so
/// a length checked earlier and reloaded for the pointer addition is
/// unbounded to them ("math between pkt pointer and register with unbounded
/// min value"). Masking after `opaque` keeps LLVM from dropping the mask it
/// could prove redundant.
#[inline(always)]
pub fn bounded(off: usize) -> usize {
    opaque(off) & MAX_FRAME_OFF
}

/// One 8-byte load from packet memory at `p + OFF`, as a single BPF
/// instruction. `read_unaligned` would become eight byte loads (the BPF
/// backend assumes strict alignment); the kernel and the x86 JIT do not
/// need it for packet data.
///
/// # Safety
/// The verifier must know `[p + OFF, p + OFF + 8)` is inside the frame: the
/// caller compared a pointer derived from `p` with `data_end`.
#[inline(always)]
pub unsafe fn load_u64<const OFF: i16>(p: usize) -> u64 {
    let v: u64;
    // SAFETY: the caller's contract; a plain load with no side effects.
    unsafe {
        core::arch::asm!(
            "{v} = *(u64 *)({p} + {off})",
            v = lateout(reg) v,
            p = in(reg) p,
            off = const OFF,
            options(readonly, nostack, preserves_flags),
        );
    }
    v
}

/// A typed reference to the header at `offset`, or `PacketTooShort` when the
/// frame ends before the header does.
#[inline(always)]
pub fn header<T: Header>(ctx: &XdpContext, offset: usize) -> Result<&T, Error> {
    // Opaque after the offset is added: the verifier needs `p + LEN`
    // compared with data_end, not `data + (offset + LEN)`.
    let p = opaque(ctx.data() + bounded(offset));
    if p + T::LEN > ctx.data_end() {
        return Err(Error::PacketTooShort);
    }
    // SAFETY: [p, p + LEN) lies inside the frame, the verifier has seen the
    // comparison above, and `Header` types have alignment 1 and accept any
    // bit pattern.
    Ok(unsafe { &*(p as *const T) })
}

/// Mutable variant of [`header`]. The frame is not owned by `ctx` (the
/// context only holds its bounds), hence `&mut` from `&`; callers never hold
/// two overlapping views across a write.
#[allow(clippy::mut_from_ref)]
#[inline(always)]
pub fn header_mut<T: Header>(ctx: &XdpContext, offset: usize) -> Result<&mut T, Error> {
    let p = opaque(ctx.data() + bounded(offset));
    if p + T::LEN > ctx.data_end() {
        return Err(Error::PacketTooShort);
    }
    // SAFETY: as in `header`; XDP frames are writable.
    Ok(unsafe { &mut *(p as *mut T) })
}

/// Bytes in the frame.
#[inline(always)]
pub fn frame_len(ctx: &XdpContext) -> usize {
    ctx.data_end() - ctx.data()
}
