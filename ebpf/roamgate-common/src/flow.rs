//! Voice flow rules: how the data plane recognises RTP and RTCP (RFC 3550,
//! SRTP per RFC 3711 keeps the same header in clear) on an authorised port,
//! and how a 16-bit RTP sequence number becomes a 64-bit index for the
//! per-SSRC replay window.
//!
//! The rules (docs/wire.md, "Voice flows"):
//! - A UDP datagram whose destination (address, port) is a voice port must
//!   carry RTP version 2 with at least the 12-byte fixed header, or RTCP
//!   (RFC 5761 multiplexing: payload-type byte 192..=223) with at least 8
//!   bytes. Otherwise it is refused as unauthorised.
//! - Its (5-tuple, SSRC) must be an authorised voice flow. For RTCP the SSRC
//!   is the sender SSRC in bytes 4..8.
//! - RTP is checked against the flow's own replay window using the extended
//!   index from [`extend_rtp_seq`]; RTCP is not sequence-checked (SRTCP
//!   carries its own index, authenticated end to end).

use crate::wire::Header;

/// The fixed RTP header (RFC 3550 section 5.1), CSRCs and extensions not
/// included.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpHdr {
    pub vpxcc: u8,
    pub mpt: u8,
    pub seq: [u8; 2],
    pub timestamp: [u8; 4],
    pub ssrc: [u8; 4],
}

// SAFETY: repr(C), u8 and u8 arrays only.
unsafe impl Header for RtpHdr {}

/// What a datagram on a voice port turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoicePacket {
    /// RTP (or SRTP): SSRC and 16-bit sequence number.
    Rtp { ssrc: [u8; 4], seq: u16 },
    /// RTCP (or SRTCP) multiplexed on the RTP port: sender SSRC.
    Rtcp { ssrc: [u8; 4] },
}

/// Why a datagram on a voice port is not voice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VoiceError {
    /// Shorter than the RTP fixed header (or the RTCP sender SSRC).
    Truncated,
    /// RTP version field is not 2.
    Version,
}

/// RTP version 2 in the top two bits of the first byte.
pub const RTP_VERSION: u8 = 2;

impl RtpHdr {
    /// Classifies the header of a datagram on a voice port, given the UDP
    /// payload length (`available`).
    #[inline(always)]
    pub fn classify(&self, available: usize) -> Result<VoicePacket, VoiceError> {
        if available < Self::LEN {
            // An 8-byte RTCP packet is shorter than the RTP header.
            if available >= 8 && self.vpxcc >> 6 == RTP_VERSION && is_rtcp_pt(self.mpt) {
                return Ok(VoicePacket::Rtcp {
                    ssrc: self.timestamp,
                });
            }
            return Err(VoiceError::Truncated);
        }
        if self.vpxcc >> 6 != RTP_VERSION {
            return Err(VoiceError::Version);
        }
        if is_rtcp_pt(self.mpt) {
            // RTCP: bytes 4..8 (the RTP "timestamp" slot) hold the sender SSRC.
            return Ok(VoicePacket::Rtcp {
                ssrc: self.timestamp,
            });
        }
        Ok(VoicePacket::Rtp {
            ssrc: self.ssrc,
            seq: u16::from_be_bytes(self.seq),
        })
    }
}

/// RFC 5761 section 4: RTCP packet types 192..=223 in the second byte.
#[inline(always)]
pub fn is_rtcp_pt(b: u8) -> bool {
    (192..=223).contains(&b)
}

/// Extends a 16-bit RTP sequence number to a 64-bit index for the replay
/// window, by choosing the rollover count that puts it closest to `top`
/// (the highest index accepted so far), as in RFC 3711 section 3.3.1.
///
/// Indices start at 2^16 (rollover count 1), so they are never 0, which the
/// replay window refuses; `top == 0` means no packet was accepted yet.
#[inline(always)]
pub fn extend_rtp_seq(top: u64, seq: u16) -> u64 {
    const ROLL: u64 = 1 << 16;
    const HALF: u64 = 1 << 15;
    if top < ROLL {
        return ROLL | seq as u64;
    }
    let cand = (top & !(ROLL - 1)) | seq as u64;
    if cand > top && cand - top > HALF && cand >= 2 * ROLL {
        // Late packet from before the last rollover.
        cand - ROLL
    } else if cand < top && top - cand > HALF {
        // The sequence rolled over.
        cand + ROLL
    } else {
        cand
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ssrc: u32) -> [u8; 12] {
        let mut b = [0u8; 12];
        b[0] = 0x80;
        b[1] = 0x00; // PT 0 (PCMU)
        b[2..4].copy_from_slice(&seq.to_be_bytes());
        b[4..8].copy_from_slice(&1234u32.to_be_bytes());
        b[8..12].copy_from_slice(&ssrc.to_be_bytes());
        b
    }

    #[test]
    fn classify_rtp() {
        let b = rtp(0x1234, 0xdead_beef);
        let h = RtpHdr::from_bytes(&b).unwrap();
        assert_eq!(
            h.classify(12),
            Ok(VoicePacket::Rtp {
                ssrc: 0xdead_beefu32.to_be_bytes(),
                seq: 0x1234
            })
        );
        assert_eq!(h.classify(11), Err(VoiceError::Truncated));
    }

    #[test]
    fn classify_rtcp_mux() {
        // Receiver report, RC 0: 8 bytes, sender SSRC in bytes 4..8.
        let mut b = [0u8; 12];
        b[..8].copy_from_slice(&[0x80, 201, 0x00, 0x01, 0xca, 0xfe, 0xba, 0xbe]);
        let h = RtpHdr::from_bytes(&b).unwrap();
        let want = Ok(VoicePacket::Rtcp {
            ssrc: [0xca, 0xfe, 0xba, 0xbe],
        });
        assert_eq!(h.classify(8), want);
        assert_eq!(h.classify(12), want);
        assert_eq!(h.classify(7), Err(VoiceError::Truncated));
    }

    #[test]
    fn classify_rejects_other_versions() {
        let mut b = rtp(1, 1);
        b[0] = 0x40;
        assert_eq!(
            RtpHdr::from_bytes(&b).unwrap().classify(12),
            Err(VoiceError::Version)
        );
    }

    #[test]
    fn extended_sequence() {
        assert_eq!(extend_rtp_seq(0, 0), 0x1_0000);
        assert_eq!(extend_rtp_seq(0, 7), 0x1_0007);
        // In order and slightly late.
        assert_eq!(extend_rtp_seq(0x1_0007, 8), 0x1_0008);
        assert_eq!(extend_rtp_seq(0x1_0008, 3), 0x1_0003);
        // Rollover forwards.
        assert_eq!(extend_rtp_seq(0x1_fffe, 2), 0x2_0002);
        // A late packet from before the rollover.
        assert_eq!(extend_rtp_seq(0x2_0002, 0xfffd), 0x1_fffd);
        // Never below the first rollover count.
        assert_eq!(extend_rtp_seq(0x1_0002, 0xfff0), 0x1_fff0);
    }
}
