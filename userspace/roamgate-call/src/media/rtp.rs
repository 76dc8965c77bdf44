//! RTP packets (RFC 3550 §5.1): a plain `Repr` over a byte buffer, with
//! checked lengths. The fixed header is the data plane's own view
//! (`roamgate_common::flow::RtpHdr`), so the two never disagree on it.

use roamgate_common::flow::{is_rtcp_pt, RtpHdr, RTP_VERSION};
use roamgate_common::wire::Header;

/// The fixed header's length.
pub const HEADER_LEN: usize = 12;

/// Why a datagram is not an RTP packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RtpError {
    #[error("RTP packet truncated: {len} bytes, the header needs {need}")]
    Truncated { len: usize, need: usize },
    #[error("RTP version {0}, not 2")]
    Version(u8),
    #[error("payload type {0} is RTCP's range (RFC 5761), not RTP")]
    Rtcp(u8),
    #[error("RTP padding count {pad} exceeds the {available} bytes after the header")]
    BadPadding { pad: usize, available: usize },
}

/// An RTP packet, CSRCs and header extension skipped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpRepr<'a> {
    pub marker: bool,
    pub payload_type: u8,
    pub seq: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload: &'a [u8],
}

impl<'a> RtpRepr<'a> {
    pub fn parse(buf: &'a [u8]) -> Result<Self, RtpError> {
        let hdr = RtpHdr::from_bytes(buf).ok_or(RtpError::Truncated {
            len: buf.len(),
            need: HEADER_LEN,
        })?;
        let version = hdr.vpxcc >> 6;
        if version != RTP_VERSION {
            return Err(RtpError::Version(version));
        }
        if is_rtcp_pt(hdr.mpt) {
            return Err(RtpError::Rtcp(hdr.mpt));
        }
        let mut off = HEADER_LEN + 4 * usize::from(hdr.vpxcc & 0x0f);
        if hdr.vpxcc & 0x10 != 0 {
            // Extension: 16-bit profile, 16-bit length in 32-bit words.
            let ext = buf.get(off..off + 4).ok_or(RtpError::Truncated {
                len: buf.len(),
                need: off + 4,
            })?;
            off += 4 + 4 * usize::from(u16::from_be_bytes([ext[2], ext[3]]));
        }
        if buf.len() < off {
            return Err(RtpError::Truncated {
                len: buf.len(),
                need: off,
            });
        }
        let mut end = buf.len();
        if hdr.vpxcc & 0x20 != 0 {
            let pad = usize::from(buf[end - 1]);
            if pad == 0 || pad > end - off {
                return Err(RtpError::BadPadding {
                    pad,
                    available: end - off,
                });
            }
            end -= pad;
        }
        Ok(Self {
            marker: hdr.mpt & 0x80 != 0,
            payload_type: hdr.mpt & 0x7f,
            seq: u16::from_be_bytes(hdr.seq),
            timestamp: u32::from_be_bytes(hdr.timestamp),
            ssrc: u32::from_be_bytes(hdr.ssrc),
            payload: &buf[off..end],
        })
    }

    /// The packet's length on the wire.
    pub fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }

    /// Appends the packet to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) {
        out.push(RTP_VERSION << 6);
        out.push(u8::from(self.marker) << 7 | (self.payload_type & 0x7f));
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&self.timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        out.extend_from_slice(self.payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // RTP, PCMU, marker, seq 0x1234, ts 0xdeadbeef, ssrc 0xcafebabe,
    // payload "abc": byte for byte.
    const PACKET: [u8; 15] = [
        0x80, 0x80, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0xca, 0xfe, 0xba, 0xbe, b'a', b'b', b'c',
    ];

    #[test]
    fn emit_and_parse_are_inverse_and_byte_exact() {
        let r = RtpRepr {
            marker: true,
            payload_type: 0,
            seq: 0x1234,
            timestamp: 0xdead_beef,
            ssrc: 0xcafe_babe,
            payload: b"abc",
        };
        let mut out = Vec::new();
        r.emit(&mut out);
        assert_eq!(out, PACKET);
        assert_eq!(r.buffer_len(), PACKET.len());
        assert_eq!(RtpRepr::parse(&PACKET).unwrap(), r);
    }

    #[test]
    fn csrcs_extension_and_padding_are_skipped() {
        let mut p = vec![0xb1, 0x08, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3];
        p.extend_from_slice(&[9, 9, 9, 9]); // one CSRC
        p.extend_from_slice(&[0xbe, 0xde, 0, 1, 1, 2, 3, 4]); // extension, 1 word
        p.extend_from_slice(b"voice");
        p.extend_from_slice(&[0, 0, 3]); // 3 bytes of padding
        let r = RtpRepr::parse(&p).unwrap();
        assert_eq!((r.payload_type, r.seq, r.payload), (8, 1, &b"voice"[..]));
    }

    #[test]
    fn bad_packets_get_typed_errors() {
        assert_eq!(
            RtpRepr::parse(&PACKET[..11]),
            Err(RtpError::Truncated { len: 11, need: 12 })
        );
        let mut v1 = PACKET;
        v1[0] = 0x40;
        assert_eq!(RtpRepr::parse(&v1), Err(RtpError::Version(1)));
        let mut rtcp = PACKET;
        rtcp[1] = 200;
        assert_eq!(RtpRepr::parse(&rtcp), Err(RtpError::Rtcp(200)));
        let mut csrc = PACKET;
        csrc[0] = 0x81; // one CSRC, but only 3 bytes follow
        assert!(matches!(
            RtpRepr::parse(&csrc),
            Err(RtpError::Truncated { need: 16, .. })
        ));
        let mut ext = PACKET;
        ext[0] = 0x90; // extension header cut short
        assert!(matches!(
            RtpRepr::parse(&ext),
            Err(RtpError::Truncated { need: 16, .. })
        ));
        let mut pad = PACKET;
        pad[0] = 0xa0;
        pad[14] = 4; // more padding than payload
        assert_eq!(
            RtpRepr::parse(&pad),
            Err(RtpError::BadPadding {
                pad: 4,
                available: 3
            })
        );
        pad[14] = 0;
        assert!(matches!(
            RtpRepr::parse(&pad),
            Err(RtpError::BadPadding { pad: 0, .. })
        ));
    }
}
