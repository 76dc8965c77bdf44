//! Zero-copy views of the RTP and RTCP headers SRTP needs (RFC 3550 §5.1,
//! §5.3.1, §6.4): the version, the sequence number, the SSRC and where the
//! header ends.
//!
//! Once [`RtpPacket::new_checked`] / [`RtcpPacket::new_checked`] succeed,
//! no accessor panics.

use crate::Error;

mod field {
    use std::ops::Range;

    pub const VERSION_FLAGS: usize = 0;
    pub const SEQ: Range<usize> = 2..4;
    pub const SSRC: Range<usize> = 8..12;
    /// The fixed RTP header ends with the SSRC.
    pub const RTP_FIXED_END: usize = SSRC.end;
    /// A CSRC identifier.
    pub const CSRC_LEN: usize = 4;
    /// Header extension: profile-defined (2), length in 32-bit words (2).
    pub const EXT_LEN: Range<usize> = 2..4;
    pub const EXT_HEADER_LEN: usize = EXT_LEN.end;

    /// RTCP: the sender SSRC follows the 4-octet common header.
    pub const RTCP_SSRC: Range<usize> = 4..8;
    pub const RTCP_HEADER_END: usize = RTCP_SSRC.end;
}

/// The octets of an RTCP packet that SRTCP leaves in the clear.
pub const RTCP_HEADER_LEN: usize = field::RTCP_HEADER_END;

const RTP_VERSION: u8 = 2;

fn version(first: u8) -> u8 {
    first >> 6
}

/// A view of an RTP packet.
#[derive(Debug, Clone, Copy)]
pub struct RtpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RtpPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        RtpPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Version 2, and the buffer holds the fixed header, the CSRCs and the
    /// header extension.
    pub fn check_len(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        let first = *b.first().ok_or(Error::Truncated)?;
        if version(first) != RTP_VERSION {
            return Err(Error::BadVersion);
        }
        if b.len() < field::RTP_FIXED_END {
            return Err(Error::Truncated);
        }
        if self.header_len_unchecked().is_none_or(|len| len > b.len()) {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// None if the extension header itself is cut off.
    fn header_len_unchecked(&self) -> Option<usize> {
        let b = self.buffer.as_ref();
        let first = b[field::VERSION_FLAGS];
        let mut len = field::RTP_FIXED_END + field::CSRC_LEN * usize::from(first & 0x0f);
        if first & 0x10 != 0 {
            let ext = b.get(len..len + field::EXT_HEADER_LEN)?;
            let words =
                u16::from_be_bytes([ext[field::EXT_LEN.start], ext[field::EXT_LEN.start + 1]]);
            len += field::EXT_HEADER_LEN + 4 * usize::from(words);
        }
        Some(len)
    }

    /// Fixed header, CSRCs and header extension: what SRTP leaves in the
    /// clear.
    pub fn header_len(&self) -> usize {
        // check_len passed: the extension header is present.
        self.header_len_unchecked().unwrap_or(field::RTP_FIXED_END)
    }

    pub fn sequence_number(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::SEQ];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn ssrc(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::SSRC];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
}

/// A view of an RTCP packet (the first of a compound packet).
#[derive(Debug, Clone, Copy)]
pub struct RtcpPacket<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RtcpPacket<T> {
    pub fn new_unchecked(buffer: T) -> Self {
        RtcpPacket { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self, Error> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// Version 2, and the buffer holds the header and the sender SSRC.
    pub fn check_len(&self) -> Result<(), Error> {
        let b = self.buffer.as_ref();
        let first = *b.first().ok_or(Error::Truncated)?;
        if version(first) != RTP_VERSION {
            return Err(Error::BadVersion);
        }
        if b.len() < field::RTCP_HEADER_END {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    pub fn ssrc(&self) -> u32 {
        let b = &self.buffer.as_ref()[field::RTCP_SSRC];
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// V=2, X=1, CC=2, seq 0x1234, SSRC cafebabe, two CSRCs, a one-word
    /// extension, then 3 octets of payload.
    static RTP_RICH: [u8; 35] = [
        0x92, 0x08, 0x12, 0x34, 0, 0, 0x0c, 0x80, 0xca, 0xfe, 0xba, 0xbe, 0, 0, 0, 1, 0, 0, 0, 2,
        0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0, 0xaa, 0xbb, 0xcc, 0, 0, 0, 0,
    ];
    static RTCP_RR: [u8; 8] = [0x80, 201, 0, 1, 0x4d, 0x61, 0x72, 0x73];

    #[test]
    fn deconstruct_rtp() {
        let p = RtpPacket::new_checked(&RTP_RICH[..]).expect("valid");
        assert_eq!(p.header_len(), 28);
        assert_eq!(p.sequence_number(), 0x1234);
        assert_eq!(p.ssrc(), 0xcafe_babe);
        let plain = RtpPacket::new_checked(&RTP_RICH[..12]);
        assert_eq!(plain.map(|p| p.header_len()).err(), Some(Error::Truncated));
        let mut no_x = RTP_RICH;
        no_x[0] = 0x80;
        let p = RtpPacket::new_checked(&no_x[..12]).expect("valid");
        assert_eq!(p.header_len(), 12);
    }

    #[test]
    fn truncated_rtp() {
        for len in 0..28 {
            assert_eq!(
                RtpPacket::new_checked(&RTP_RICH[..len]).err(),
                Some(Error::Truncated),
                "{len}"
            );
        }
        let mut v1 = RTP_RICH;
        v1[0] = 0x52;
        assert_eq!(
            RtpPacket::new_checked(&v1[..]).err(),
            Some(Error::BadVersion)
        );
    }

    #[test]
    fn deconstruct_rtcp() {
        let p = RtcpPacket::new_checked(&RTCP_RR[..]).expect("valid");
        assert_eq!(p.ssrc(), 0x4d61_7273);
        for len in 0..8 {
            assert_eq!(
                RtcpPacket::new_checked(&RTCP_RR[..len]).err(),
                Some(Error::Truncated)
            );
        }
        let mut v0 = RTCP_RR;
        v0[0] = 0x00;
        assert_eq!(
            RtcpPacket::new_checked(&v0[..]).err(),
            Some(Error::BadVersion)
        );
    }
}
