//! BPF atomic instructions (kernel ≥ 5.12). `core` has no compare-and-swap
//! for the BPF target, so the shared replay window and the send counter use
//! these, written as inline assembly.

use core::arch::asm;

use roamgate_common::replay::SharedU64;

/// [`SharedU64`] with BPF_ATOMIC instructions, for map values.
pub struct BpfAtomics;

impl SharedU64 for BpfAtomics {
    #[inline(always)]
    unsafe fn load(p: *mut u64) -> u64 {
        // SAFETY: the caller guarantees `p` is valid and aligned; an aligned
        // 8-byte load is single-copy atomic in BPF.
        unsafe { core::ptr::read_volatile(p) }
    }

    #[inline(always)]
    unsafe fn store(p: *mut u64, v: u64) {
        // SAFETY: as above, for an aligned 8-byte store.
        unsafe { core::ptr::write_volatile(p, v) }
    }

    #[inline(always)]
    unsafe fn compare_exchange(p: *mut u64, current: u64, new: u64) -> Result<u64, u64> {
        let prev: u64;
        // SAFETY: `p` is a valid, aligned map-value word (caller contract);
        // BPF_CMPXCHG compares with r0 and leaves the old value in r0.
        unsafe {
            asm!(
                "r0 = cmpxchg_64({p} + 0, r0, {new})",
                p = in(reg) p,
                new = in(reg) new,
                inout("r0") current => prev,
                options(nostack),
            );
        }
        if prev == current {
            Ok(prev)
        } else {
            Err(prev)
        }
    }

    #[inline(always)]
    unsafe fn fetch_or(p: *mut u64, v: u64) -> u64 {
        let mut v = v;
        // SAFETY: as above; BPF_OR | BPF_FETCH returns the old value.
        unsafe {
            asm!(
                "{v} = atomic_fetch_or((u64 *)({p} + 0), {v})",
                p = in(reg) p,
                v = inout(reg) v,
                options(nostack),
            );
        }
        v
    }
}

/// Atomically adds `v` to `*p` and returns the previous value.
///
/// # Safety
/// `p` must be a valid, 8-byte aligned word of a map value.
#[inline(always)]
pub unsafe fn fetch_add(p: *mut u64, v: u64) -> u64 {
    let mut v = v;
    // SAFETY: the caller's contract; BPF_ADD | BPF_FETCH returns the old value.
    unsafe {
        asm!(
            "{v} = atomic_fetch_add((u64 *)({p} + 0), {v})",
            p = in(reg) p,
            v = inout(reg) v,
            options(nostack),
        );
    }
    v
}
