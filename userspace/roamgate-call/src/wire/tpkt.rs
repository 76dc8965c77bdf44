//! RFC 1006 TPKT framing (§6): `version(8) = 3 | reserved(8) | length(16)`,
//! the length counting the 4-byte header.
//!
//! Once [`Packet::check_len`] has passed, no accessor panics.

use super::{Error, MAX_MESSAGE_LEN};

mod field {
    use core::ops::Range;
    pub const VERSION: usize = 0;
    pub const RESERVED: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const PAYLOAD: usize = LENGTH.end;
}

/// The TPKT version (RFC 1006 §6).
pub const VERSION: u8 = 3;
/// The header length.
pub const HEADER_LEN: usize = field::PAYLOAD;

/// A zero-copy view of one TPKT.
#[derive(Debug, Clone, Copy)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// [`Self::new_unchecked`] then [`Self::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The buffer holds exactly one TPKT of version 3 within the size cap.
    pub fn check_len(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        if b.len() > MAX_MESSAGE_LEN {
            return Err(Error::Oversized(b.len()));
        }
        if b.len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        if b[field::VERSION] != VERSION {
            return Err(Error::TpktVersion(b[field::VERSION]));
        }
        let length = usize::from(self.length());
        if length < HEADER_LEN {
            return Err(Error::TpktLength {
                length,
                actual: b.len(),
            });
        }
        if length > b.len() {
            return Err(Error::Truncated);
        }
        if length < b.len() {
            return Err(Error::TpktLength {
                length,
                actual: b.len(),
            });
        }
        Ok(())
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    pub fn reserved(&self) -> u8 {
        self.buffer.as_ref()[field::RESERVED]
    }

    /// The length field, header included.
    pub fn length(&self) -> u16 {
        let b = self.buffer.as_ref();
        u16::from_be_bytes([b[field::LENGTH.start], b[field::LENGTH.start + 1]])
    }

    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD..usize::from(self.length())]
    }
}

/// How many bytes the TPKT at the start of `stream` takes: `Ok(None)` while
/// the header is incomplete, for a reader that splits a TCP byte stream.
pub fn frame_len(stream: &[u8]) -> Result<Option<usize>, Error> {
    if stream.len() < HEADER_LEN {
        return Ok(None);
    }
    if stream[field::VERSION] != VERSION {
        return Err(Error::TpktVersion(stream[field::VERSION]));
    }
    let length = usize::from(u16::from_be_bytes([stream[2], stream[3]]));
    if length > MAX_MESSAGE_LEN {
        return Err(Error::Oversized(length));
    }
    if length < HEADER_LEN {
        return Err(Error::TpktLength {
            length,
            actual: stream.len(),
        });
    }
    Ok(Some(length))
}

/// Frames `payload` in a TPKT.
pub fn emit(payload: &[u8]) -> Result<Vec<u8>, Error> {
    let total = HEADER_LEN + payload.len();
    if total > MAX_MESSAGE_LEN {
        return Err(Error::Oversized(total));
    }
    let mut out = Vec::with_capacity(total);
    out.push(VERSION);
    out.push(0);
    out.extend_from_slice(&(total as u16).to_be_bytes());
    out.extend_from_slice(payload);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    static FRAME: [u8; 7] = [0x03, 0x00, 0x00, 0x07, 0x08, 0x02, 0x00];

    #[test]
    fn deconstruct() {
        let p = Packet::new_checked(&FRAME[..]).unwrap();
        assert_eq!(p.version(), 3);
        assert_eq!(p.reserved(), 0);
        assert_eq!(p.length(), 7);
        assert_eq!(p.payload(), &FRAME[4..]);
    }

    #[test]
    fn construct() {
        assert_eq!(emit(&FRAME[4..]).unwrap(), FRAME);
    }

    #[test]
    fn errors() {
        assert_eq!(
            Packet::new_checked(&FRAME[..3]).unwrap_err(),
            Error::Truncated
        );
        assert_eq!(
            Packet::new_checked(&FRAME[..6]).unwrap_err(),
            Error::Truncated
        );
        let mut v = FRAME;
        v[0] = 2;
        assert_eq!(
            Packet::new_checked(&v[..]).unwrap_err(),
            Error::TpktVersion(2)
        );
        let mut v = FRAME.to_vec();
        v.push(0);
        assert!(matches!(
            Packet::new_checked(&v[..]).unwrap_err(),
            Error::TpktLength {
                length: 7,
                actual: 8
            }
        ));
        let big = vec![0u8; MAX_MESSAGE_LEN + 1];
        assert_eq!(
            emit(&big).unwrap_err(),
            Error::Oversized(MAX_MESSAGE_LEN + 5)
        );
        assert_eq!(frame_len(&FRAME[..2]), Ok(None));
        assert_eq!(frame_len(&FRAME), Ok(Some(7)));
        assert_eq!(
            frame_len(&[3, 0, 0x20, 0x00]),
            Err(Error::Oversized(0x2000))
        );
    }
}
