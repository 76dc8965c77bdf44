//! Anti-replay sliding window (RFC 6479 style) over 64-bit sequence numbers.
//!
//! The window is a ring of [`BLOCKS`] 64-bit blocks. Sequence `s` lives in bit
//! `s % 64` of block `(s / 64) % BLOCKS`. Advancing the window clears only the
//! blocks it moves over, one store each, instead of shifting a bitmap. One
//! block is kept as slack, so the guaranteed window is [`WINDOW`] =
//! `(BLOCKS - 1) * 64` = 192 sequence numbers behind the highest accepted one.
//!
//! Sequence 0 is never valid: senders start at 1, and a fresh window (all
//! zero) therefore accepts 1 and above.
//!
//! The same state is shared by every CPU that runs the XDP program, so the
//! update is written with atomics on the map value ([`accept_shared`]): a
//! compare-and-swap moves `top`, and a fetch-or sets the bit, so two CPUs
//! cannot both accept one sequence number. One race remains and is
//! documented in docs/wire.md: a CPU that advances the window from a stale
//! `top` may clear a bit that another CPU set a moment before, letting one
//! copy of that packet through a second time. RSS steers a tunnel (one outer
//! 5-tuple) to one RX queue, so in practice a window is updated from one CPU.

#[cfg(target_has_atomic = "64")]
use core::sync::atomic::{AtomicU64, Ordering};

/// Blocks in the ring.
pub const BLOCKS: usize = 4;
/// Bits per block.
pub const BLOCK_BITS: u64 = 64;
/// Guaranteed window: sequences in `(top - WINDOW, top]` are tracked.
pub const WINDOW: u64 = (BLOCKS as u64 - 1) * BLOCK_BITS;
/// Compare-and-swap attempts before giving up on a contended advance.
const CAS_TRIES: usize = 4;

/// Replay state of one direction of one tunnel (or one voice SSRC).
/// 40 bytes, `#[repr(C)]`, no padding; all zero is the fresh state.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplayWindow {
    /// Highest sequence accepted so far (0: none yet).
    pub top: u64,
    /// The ring of bitmaps.
    pub bitmap: [u64; BLOCKS],
}

/// Why a sequence number was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayError {
    /// Already accepted once.
    Duplicate,
    /// Zero, or more than [`WINDOW`] behind the highest accepted sequence.
    TooOld,
    /// Other CPUs kept moving the window; the packet is refused rather than
    /// retried without bound.
    Contended,
}

impl core::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            ReplayError::Duplicate => "duplicate sequence number",
            ReplayError::TooOld => "sequence number outside the replay window",
            ReplayError::Contended => "replay window contended",
        })
    }
}

impl ReplayWindow {
    /// Checks `seq` and, if it is fresh, records it. Call only after the
    /// packet's MAC has been verified.
    #[inline(always)]
    pub fn accept(&mut self, seq: u64) -> Result<(), ReplayError> {
        // SAFETY: `self` is a valid, aligned, exclusively borrowed window.
        unsafe { accept_shared::<Exclusive>(self, seq) }
    }

    /// Whether `seq` would be accepted, without recording it.
    pub fn would_accept(&self, seq: u64) -> Result<(), ReplayError> {
        if seq == 0 {
            return Err(ReplayError::TooOld);
        }
        if seq > self.top {
            return Ok(());
        }
        if self.top - seq >= WINDOW {
            return Err(ReplayError::TooOld);
        }
        let (block, bit) = position(seq);
        if self.bitmap[block] & bit != 0 {
            return Err(ReplayError::Duplicate);
        }
        Ok(())
    }
}

#[inline(always)]
fn position(seq: u64) -> (usize, u64) {
    (
        ((seq / BLOCK_BITS) as usize) % BLOCKS,
        1u64 << (seq % BLOCK_BITS),
    )
}

/// The four operations the shared update needs on one 8-byte word. The host
/// uses [`CoreAtomics`]; the BPF target has no compare-and-swap in `core`,
/// so the XDP program supplies an implementation with the BPF atomic
/// instructions; [`Exclusive`] serves a window borrowed mutably.
pub trait SharedU64 {
    /// # Safety
    /// `p` is valid for reads and writes and 8-byte aligned.
    unsafe fn load(p: *mut u64) -> u64;
    /// # Safety
    /// As [`SharedU64::load`].
    unsafe fn store(p: *mut u64, v: u64);
    /// Replaces `current` with `new`; returns the value found (`Ok` if it
    /// was `current`).
    ///
    /// # Safety
    /// As [`SharedU64::load`].
    unsafe fn compare_exchange(p: *mut u64, current: u64, new: u64) -> Result<u64, u64>;
    /// Ors `v` in and returns the previous value.
    ///
    /// # Safety
    /// As [`SharedU64::load`].
    unsafe fn fetch_or(p: *mut u64, v: u64) -> u64;
}

/// Plain loads and stores, for a window nobody else can see.
pub struct Exclusive;

impl SharedU64 for Exclusive {
    #[inline(always)]
    unsafe fn load(p: *mut u64) -> u64 {
        // SAFETY: the caller guarantees `p` is valid and aligned.
        unsafe { *p }
    }
    #[inline(always)]
    unsafe fn store(p: *mut u64, v: u64) {
        // SAFETY: as above.
        unsafe { *p = v }
    }
    #[inline(always)]
    unsafe fn compare_exchange(p: *mut u64, current: u64, new: u64) -> Result<u64, u64> {
        // SAFETY: as above.
        unsafe {
            let v = *p;
            if v == current {
                *p = new;
                Ok(v)
            } else {
                Err(v)
            }
        }
    }
    #[inline(always)]
    unsafe fn fetch_or(p: *mut u64, v: u64) -> u64 {
        // SAFETY: as above.
        unsafe {
            let old = *p;
            *p = old | v;
            old
        }
    }
}

/// `core::sync::atomic`, where the target has 64-bit compare-and-swap.
#[cfg(target_has_atomic = "64")]
pub struct CoreAtomics;

#[cfg(target_has_atomic = "64")]
impl SharedU64 for CoreAtomics {
    #[inline(always)]
    unsafe fn load(p: *mut u64) -> u64 {
        // SAFETY: the caller guarantees `p` is valid and 8-byte aligned.
        unsafe { AtomicU64::from_ptr(p) }.load(Ordering::Acquire)
    }
    #[inline(always)]
    unsafe fn store(p: *mut u64, v: u64) {
        // SAFETY: as above.
        unsafe { AtomicU64::from_ptr(p) }.store(v, Ordering::Release)
    }
    #[inline(always)]
    unsafe fn compare_exchange(p: *mut u64, current: u64, new: u64) -> Result<u64, u64> {
        // SAFETY: as above.
        unsafe { AtomicU64::from_ptr(p) }.compare_exchange(
            current,
            new,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
    }
    #[inline(always)]
    unsafe fn fetch_or(p: *mut u64, v: u64) -> u64 {
        // SAFETY: as above.
        unsafe { AtomicU64::from_ptr(p) }.fetch_or(v, Ordering::AcqRel)
    }
}

/// [`ReplayWindow::accept`] on a window that other CPUs may update at the
/// same time (a BPF map value), with the word operations of `A`.
///
/// # Safety
/// `win` must point to a valid `ReplayWindow`, 8-byte aligned, that stays
/// valid for the call and, while shared, is only accessed through `A`.
#[inline(always)]
pub unsafe fn accept_shared<A: SharedU64>(
    win: *mut ReplayWindow,
    seq: u64,
) -> Result<(), ReplayError> {
    if seq == 0 {
        return Err(ReplayError::TooOld);
    }
    // SAFETY: the caller guarantees `win` is valid; no reference is made.
    let (top_p, blocks) = unsafe {
        (
            core::ptr::addr_of_mut!((*win).top),
            core::ptr::addr_of_mut!((*win).bitmap) as *mut u64,
        )
    };
    // SAFETY: `bitmap` is `[u64; BLOCKS]`; `i % BLOCKS` keeps the pointer in it.
    let block_p = |i: usize| unsafe { blocks.add(i % BLOCKS) };

    // SAFETY (this block and below): the caller guarantees `win` is valid
    // and aligned, so are its fields.
    let mut top = unsafe { A::load(top_p) };
    let mut tries = 0;
    while seq > top {
        if tries == CAS_TRIES {
            return Err(ReplayError::Contended);
        }
        tries += 1;
        // Clear the blocks the window moves over: (top/64, seq/64].
        let moved = seq / BLOCK_BITS - top / BLOCK_BITS;
        let mut i = 0;
        while i < BLOCKS {
            if (i as u64) < moved {
                // SAFETY: see above.
                unsafe { A::store(block_p((top / BLOCK_BITS + 1 + i as u64) as usize), 0) };
            }
            i += 1;
        }
        // SAFETY: see above.
        match unsafe { A::compare_exchange(top_p, top, seq) } {
            Ok(_) => top = seq,
            Err(now) => top = now,
        }
    }
    if top - seq >= WINDOW {
        return Err(ReplayError::TooOld);
    }
    let (block, bit) = position(seq);
    // SAFETY: see above.
    if unsafe { A::fetch_or(block_p(block), bit) } & bit != 0 {
        return Err(ReplayError::Duplicate);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_window_accepts_one_and_refuses_zero() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.accept(0), Err(ReplayError::TooOld));
        assert_eq!(w.accept(1), Ok(()));
        assert_eq!(w.top, 1);
    }

    #[test]
    fn duplicate_is_refused() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.accept(5), Ok(()));
        assert_eq!(w.accept(5), Err(ReplayError::Duplicate));
        assert_eq!(w.accept(3), Ok(()));
        assert_eq!(w.accept(3), Err(ReplayError::Duplicate));
    }

    #[test]
    fn window_edges() {
        let mut w = ReplayWindow::default();
        let top = 1000;
        assert_eq!(w.accept(top), Ok(()));
        // Oldest sequence still inside the window, and the first one outside.
        assert_eq!(w.would_accept(top - WINDOW + 1), Ok(()));
        assert_eq!(w.would_accept(top - WINDOW), Err(ReplayError::TooOld));
        assert_eq!(w.accept(top - WINDOW + 1), Ok(()));
        assert_eq!(w.accept(top - WINDOW), Err(ReplayError::TooOld));
        assert_eq!(w.accept(top - WINDOW + 1), Err(ReplayError::Duplicate));
    }

    #[test]
    fn window_advance_forgets_old_bits() {
        let mut w = ReplayWindow::default();
        for s in 1..=64 {
            assert_eq!(w.accept(s), Ok(()));
        }
        // Jump far ahead: every block is cleared, old sequences are too old.
        assert_eq!(w.accept(10_000), Ok(()));
        assert_eq!(w.accept(64), Err(ReplayError::TooOld));
        // A sequence that maps onto an old block's bit is fresh again.
        let alias = 10_000 - 64;
        assert_eq!(w.accept(alias), Ok(()));
        assert_eq!(w.accept(alias), Err(ReplayError::Duplicate));
    }

    #[test]
    fn advance_by_one_block_keeps_window() {
        let mut w = ReplayWindow::default();
        assert_eq!(w.accept(130), Ok(()));
        assert_eq!(w.accept(100), Ok(()));
        assert_eq!(w.accept(200), Ok(()));
        // 100 and 130 are still within 192 of 200 and must stay marked.
        assert_eq!(w.accept(100), Err(ReplayError::Duplicate));
        assert_eq!(w.accept(130), Err(ReplayError::Duplicate));
        assert_eq!(w.accept(150), Ok(()));
    }

    #[test]
    fn every_sequence_once_in_shuffled_order() {
        // Deterministic reordering within the window: each accepted once.
        let mut w = ReplayWindow::default();
        let mut accepted = 0;
        for base in (1..5000u64).step_by(50) {
            for k in (0..50).rev() {
                if w.accept(base + k).is_ok() {
                    accepted += 1;
                }
                assert_eq!(w.accept(base + k), Err(ReplayError::Duplicate));
            }
        }
        assert_eq!(accepted, 5000);
    }

    #[test]
    fn shared_update_matches_exclusive() {
        let mut a = ReplayWindow::default();
        let mut b = ReplayWindow::default();
        for seq in [1u64, 3, 2, 3, 500, 309, 308, 309, 100, 1000, 999, 5000] {
            // SAFETY: `b` is a valid local window.
            let shared = unsafe { accept_shared::<CoreAtomics>(&mut b, seq) };
            assert_eq!(a.accept(seq), shared, "seq {seq}");
        }
        assert_eq!(a, b);
    }

    #[test]
    fn matches_a_naive_model() {
        // A set-based model of "accept once, within WINDOW of the max".
        extern crate std;
        use std::collections::BTreeSet;
        let mut w = ReplayWindow::default();
        let mut seen = BTreeSet::new();
        let mut max = 0u64;
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let seq = (max + 40).saturating_sub(x % 300);
            let want = if seq == 0 || (seq <= max && max - seq >= WINDOW) {
                Err(ReplayError::TooOld)
            } else if seen.contains(&seq) {
                Err(ReplayError::Duplicate)
            } else {
                Ok(())
            };
            assert_eq!(w.would_accept(seq), want, "seq {seq} max {max}");
            assert_eq!(w.accept(seq), want, "seq {seq} max {max}");
            if want.is_ok() {
                seen.insert(seq);
                max = max.max(seq);
            }
        }
    }
}
