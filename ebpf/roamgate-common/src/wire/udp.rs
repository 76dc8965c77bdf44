//! UDP header (RFC 768).

use super::Header;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpHdr {
    pub src_port: [u8; 2],
    pub dst_port: [u8; 2],
    pub len: [u8; 2],
    pub check: [u8; 2],
}

// SAFETY: repr(C), u8 arrays only.
unsafe impl Header for UdpHdr {}

/// Why a UDP header was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UdpError {
    /// Length field shorter than the header, or longer than the buffer.
    Len,
}

impl UdpHdr {
    #[inline(always)]
    pub fn src_port(&self) -> u16 {
        u16::from_be_bytes(self.src_port)
    }

    #[inline(always)]
    pub fn dst_port(&self) -> u16 {
        u16::from_be_bytes(self.dst_port)
    }

    /// Header plus payload, in bytes.
    #[inline(always)]
    pub fn len(&self) -> u16 {
        u16::from_be_bytes(self.len)
    }

    /// True if the length field is zero (always invalid).
    #[inline(always)]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks the length field against the bytes available from the start of
    /// this header (the IPv4 payload length).
    #[inline(always)]
    pub fn check(&self, available: usize) -> Result<(), UdpError> {
        let l = self.len() as usize;
        if l < Self::LEN || l > available {
            return Err(UdpError::Len);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deconstruct() {
        let b = [0x01, 0xb2, 0x01, 0xb2, 0x00, 0x0c, 0x00, 0x00, 1, 2, 3, 4];
        let h = UdpHdr::from_bytes(&b).unwrap();
        assert_eq!(UdpHdr::LEN, 8);
        assert_eq!(h.src_port(), 434);
        assert_eq!(h.dst_port(), 434);
        assert_eq!(h.len(), 12);
        assert_eq!(h.check(12), Ok(()));
        assert_eq!(h.check(11), Err(UdpError::Len));
    }

    #[test]
    fn short_length_field() {
        let b = [0, 1, 0, 2, 0x00, 0x07, 0, 0];
        assert_eq!(UdpHdr::from_bytes(&b).unwrap().check(8), Err(UdpError::Len));
        assert!(UdpHdr::from_bytes(&b[..7]).is_none());
    }
}
