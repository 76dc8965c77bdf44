//! The one bounds-checked way to reach packet memory.

use aya_ebpf::programs::XdpContext;
use roamgate_common::wire::Header;

/// Why the program could not read what it needed.
#[derive(Clone, Copy)]
pub enum Error {
    PacketTooShort,
}

/// A typed reference to the header at `offset`, or `PacketTooShort` when the
/// frame ends before the header does.
#[inline(always)]
pub fn header<T: Header>(ctx: &XdpContext, offset: usize) -> Result<&T, Error> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + T::LEN > end {
        return Err(Error::PacketTooShort);
    }
    // SAFETY: [start + offset, start + offset + LEN) lies inside the frame, the
    // verifier has seen the comparison above, and `Header` types have
    // alignment 1 and accept any bit pattern.
    Ok(unsafe { &*((start + offset) as *const T) })
}

/// Mutable variant of [`header`].
#[allow(dead_code)]
#[inline(always)]
pub fn header_mut<T: Header>(ctx: &XdpContext, offset: usize) -> Result<&mut T, Error> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + offset + T::LEN > end {
        return Err(Error::PacketTooShort);
    }
    // SAFETY: as in `header`; XDP frames are writable.
    Ok(unsafe { &mut *((start + offset) as *mut T) })
}
