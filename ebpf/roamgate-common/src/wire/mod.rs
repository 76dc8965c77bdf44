//! Packet headers as fixed-layout views.
//!
//! Each header is a `#[repr(C)]` struct of byte arrays (alignment 1, no padding),
//! so the eBPF program can take a reference to it straight from packet memory
//! after one bounds check against `data_end`, and userspace can view a byte
//! slice the same way through [`Header::from_bytes`]. Multi-byte fields are
//! network order and read through accessors.

pub mod ethernet;
pub mod ipv4;
pub mod tunnel;
pub mod udp;

/// A fixed-size header that may be viewed over any byte buffer of at least
/// [`Header::LEN`] bytes.
///
/// # Safety
/// Implementors must be `#[repr(C)]`, contain only `u8` arrays (alignment 1, no
/// padding) and accept every bit pattern.
pub unsafe trait Header: Sized {
    const LEN: usize = core::mem::size_of::<Self>();

    /// Views the start of `buf` as this header, or `None` if `buf` is short.
    #[inline(always)]
    fn from_bytes(buf: &[u8]) -> Option<&Self> {
        if buf.len() < Self::LEN {
            return None;
        }
        // SAFETY: the buffer holds at least LEN bytes, and the trait's contract
        // makes every bit pattern valid with alignment 1.
        Some(unsafe { &*(buf.as_ptr() as *const Self) })
    }

    /// Mutable view of the start of `buf`, or `None` if `buf` is short.
    #[inline(always)]
    fn from_bytes_mut(buf: &mut [u8]) -> Option<&mut Self> {
        if buf.len() < Self::LEN {
            return None;
        }
        // SAFETY: as in `from_bytes`, and `buf` is borrowed mutably.
        Some(unsafe { &mut *(buf.as_mut_ptr() as *mut Self) })
    }
}
