//! RTCP sender and receiver reports (RFC 3550 §6.4), as much of them as a
//! call's statistics need: the sender info and the report blocks.

/// RTCP packet types.
pub const SR: u8 = 200;
pub const RR: u8 = 201;

const BLOCK_LEN: usize = 24;
const SENDER_INFO_LEN: usize = 20;

/// Why a datagram is not a usable RTCP report.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RtcpError {
    #[error("RTCP packet truncated: {len} bytes, the packet says {need}")]
    Truncated { len: usize, need: usize },
    #[error("RTCP version {0}, not 2")]
    Version(u8),
    #[error("RTCP packet type {0} is neither SR (200) nor RR (201)")]
    NotAReport(u8),
}

/// One report block: what the reporter received from `ssrc`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: u32,
    pub fraction_lost: u8,
    /// Cumulative packets lost: 24 bits, signed.
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    /// Interarrival jitter in timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP timestamp of the last SR received.
    pub lsr: u32,
    /// Delay since that SR, in 1/65536 s.
    pub dlsr: u32,
}

/// A sender or receiver report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub ssrc: u32,
    /// For an SR: NTP timestamp, RTP timestamp, packets and octets sent.
    pub sender: Option<SenderInfo>,
    pub blocks: Vec<ReportBlock>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SenderInfo {
    pub ntp: u64,
    pub rtp_timestamp: u32,
    pub packets: u32,
    pub octets: u32,
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

impl Report {
    /// Parses the first packet of a compound RTCP datagram.
    pub fn parse(buf: &[u8]) -> Result<Self, RtcpError> {
        let truncated = |need| RtcpError::Truncated {
            len: buf.len(),
            need,
        };
        if buf.len() < 8 {
            return Err(truncated(8));
        }
        let version = buf[0] >> 6;
        if version != 2 {
            return Err(RtcpError::Version(version));
        }
        let pt = buf[1];
        if pt != SR && pt != RR {
            return Err(RtcpError::NotAReport(pt));
        }
        let len = 4 * (usize::from(u16::from_be_bytes([buf[2], buf[3]])) + 1);
        if buf.len() < len {
            return Err(truncated(len));
        }
        let count = usize::from(buf[0] & 0x1f);
        let mut off = 8;
        let sender = if pt == SR {
            off += SENDER_INFO_LEN;
            if len < off {
                return Err(truncated(off));
            }
            Some(SenderInfo {
                ntp: u64::from(u32_at(buf, 8)) << 32 | u64::from(u32_at(buf, 12)),
                rtp_timestamp: u32_at(buf, 16),
                packets: u32_at(buf, 20),
                octets: u32_at(buf, 24),
            })
        } else {
            None
        };
        if len < off + count * BLOCK_LEN {
            return Err(truncated(off + count * BLOCK_LEN));
        }
        let blocks = (0..count)
            .map(|n| {
                let b = &buf[off + n * BLOCK_LEN..];
                let lost = u32_at(b, 4);
                ReportBlock {
                    ssrc: u32_at(b, 0),
                    fraction_lost: (lost >> 24) as u8,
                    // Sign-extend the 24-bit count.
                    cumulative_lost: ((lost << 8) as i32) >> 8,
                    highest_seq: u32_at(b, 8),
                    jitter: u32_at(b, 12),
                    lsr: u32_at(b, 16),
                    dlsr: u32_at(b, 20),
                }
            })
            .collect();
        Ok(Self {
            ssrc: u32_at(buf, 4),
            sender,
            blocks,
        })
    }

    /// Appends the report as one RTCP packet (at most 31 blocks are sent).
    pub fn emit(&self, out: &mut Vec<u8>) {
        let blocks = &self.blocks[..self.blocks.len().min(31)];
        let words = 1 + self.sender.map_or(0, |_| 5) + 6 * blocks.len();
        out.push(2 << 6 | blocks.len() as u8);
        out.push(if self.sender.is_some() { SR } else { RR });
        out.extend_from_slice(&(words as u16).to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        if let Some(s) = self.sender {
            out.extend_from_slice(&s.ntp.to_be_bytes());
            out.extend_from_slice(&s.rtp_timestamp.to_be_bytes());
            out.extend_from_slice(&s.packets.to_be_bytes());
            out.extend_from_slice(&s.octets.to_be_bytes());
        }
        for b in blocks {
            out.extend_from_slice(&b.ssrc.to_be_bytes());
            let lost = (b.cumulative_lost.clamp(-(1 << 23), (1 << 23) - 1) as u32) & 0x00ff_ffff;
            out.extend_from_slice(&(u32::from(b.fraction_lost) << 24 | lost).to_be_bytes());
            out.extend_from_slice(&b.highest_seq.to_be_bytes());
            out.extend_from_slice(&b.jitter.to_be_bytes());
            out.extend_from_slice(&b.lsr.to_be_bytes());
            out.extend_from_slice(&b.dlsr.to_be_bytes());
        }
    }
}

/// The middle 32 bits of a 64-bit NTP timestamp, as LSR carries them.
pub fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// Round trip per RFC 3550 §6.4.1: arrival − LSR − DLSR, all in 1/65536 s;
/// `None` when the block names no SR yet (LSR 0).
pub fn round_trip(arrival_ntp: u64, block: &ReportBlock) -> Option<std::time::Duration> {
    if block.lsr == 0 {
        return None;
    }
    let rtt = ntp_middle(arrival_ntp)
        .wrapping_sub(block.lsr)
        .wrapping_sub(block.dlsr);
    // A negative result (clock step, forged block) reads as huge: refuse it.
    (rtt < 1 << 31).then(|| std::time::Duration::from_micros((u64::from(rtt) * 1_000_000) >> 16))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block() -> ReportBlock {
        ReportBlock {
            ssrc: 0x1122_3344,
            fraction_lost: 25,
            cumulative_lost: -3,
            highest_seq: 0x0001_0005,
            jitter: 80,
            lsr: 0xb705_2000,
            dlsr: 0x0005_4000,
        }
    }

    #[test]
    fn rfc3550_round_trip_example() {
        // §6.4.1's figure: A = 0xb710:8000 (46864.500 s), LSR = 0xb705:2000
        // (46853.125 s), DLSR = 0x0005:4000 (5.250 s): RTT 6.125 s.
        let arrival = u64::from(0xb710_8000u32) << 16;
        assert_eq!(
            round_trip(arrival, &block()),
            Some(std::time::Duration::from_millis(6125))
        );
        let no_sr = ReportBlock { lsr: 0, ..block() };
        assert_eq!(round_trip(arrival, &no_sr), None);
    }

    #[test]
    fn sr_and_rr_round_trip_byte_exact() {
        let sr = Report {
            ssrc: 7,
            sender: Some(SenderInfo {
                ntp: 0x0102_0304_0506_0708,
                rtp_timestamp: 160,
                packets: 2,
                octets: 320,
            }),
            blocks: vec![block()],
        };
        let mut out = Vec::new();
        sr.emit(&mut out);
        assert_eq!(out.len(), 52);
        assert_eq!(&out[..4], &[0x81, 200, 0, 12]);
        assert_eq!(&out[32..36], &[25, 0xff, 0xff, 0xfd]);
        assert_eq!(Report::parse(&out).unwrap(), sr);
        let rr = Report {
            ssrc: 9,
            sender: None,
            blocks: vec![],
        };
        out.clear();
        rr.emit(&mut out);
        assert_eq!(out, [0x80, 201, 0, 1, 0, 0, 0, 9]);
        assert_eq!(Report::parse(&out).unwrap(), rr);
    }

    #[test]
    fn bad_reports_get_typed_errors() {
        let mut out = Vec::new();
        Report {
            ssrc: 7,
            sender: None,
            blocks: vec![block()],
        }
        .emit(&mut out);
        for n in 0..out.len() {
            assert!(Report::parse(&out[..n]).is_err(), "{n} bytes");
        }
        let mut lying = out.clone();
        lying[0] = 0x85; // five blocks claimed, one present
        assert!(matches!(
            Report::parse(&lying),
            Err(RtcpError::Truncated { .. })
        ));
        let mut bye = out.clone();
        bye[1] = 203;
        assert_eq!(Report::parse(&bye), Err(RtcpError::NotAReport(203)));
        out[0] = 0x41;
        assert_eq!(Report::parse(&out), Err(RtcpError::Version(1)));
    }
}
