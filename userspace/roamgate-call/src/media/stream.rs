//! One direction of a call's speech: G.711 at 8 kHz in packets of 20 ms
//! (160 samples), and what the receiver makes of them: the samples in
//! order, silence for each frame that never came (counted as lost), and
//! the RFC 3550 statistics (Appendix A.1 sequence accounting, A.8 jitter).

use super::g711::Law;
use super::rtcp::ReportBlock;
use super::rtp::RtpRepr;

/// Samples a second, and a packet.
pub const CLOCK_HZ: u32 = 8000;
pub const FRAME_SAMPLES: usize = 160;

/// The sending side: cuts samples into frames and numbers them.
#[derive(Debug)]
pub struct Sender {
    law: Law,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    pub packets: u32,
    pub octets: u32,
}

impl Sender {
    /// `seq` and `timestamp` start where RFC 3550 wants them: random.
    pub fn new(law: Law, ssrc: u32, seq: u16, timestamp: u32) -> Self {
        Self {
            law,
            ssrc,
            seq,
            timestamp,
            packets: 0,
            octets: 0,
        }
    }

    /// The RTP packet for the next 20 ms frame (shorter at the end of a
    /// file; the timestamp still advances a whole frame).
    pub fn packet(&mut self, frame: &[i16], out: &mut Vec<u8>) {
        let mut payload = Vec::with_capacity(frame.len());
        self.law.encode(frame, &mut payload);
        RtpRepr {
            marker: self.packets == 0,
            payload_type: self.law.payload_type(),
            seq: self.seq,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            payload: &payload,
        }
        .emit(out);
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(FRAME_SAMPLES as u32);
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload.len() as u32);
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }
}

/// What the receiver did with a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    Played,
    /// Another SSRC, a payload type that is not G.711, or a frame already
    /// played (SRTP's replay check normally drops these first).
    Ignored,
    /// Further back or ahead than the receiver keeps frames for.
    OutOfRange,
}

/// The receiving side of one stream.
#[derive(Debug, Default)]
pub struct Receiver {
    ssrc: Option<u32>,
    base_ts: u32,
    // Sequence accounting (RFC 3550 A.1).
    base_seq: u32,
    max_seq: u16,
    cycles: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    // Jitter (A.8), in timestamp units scaled by 16.
    transit: Option<i64>,
    jitter_q4: u64,
    /// The highest jitter seen, in timestamp units scaled by 16.
    pub jitter_q4_max: u64,
    frames: Vec<Option<Vec<i16>>>,
    max_frames: usize,
}

impl Receiver {
    /// Keeps at most `max_frames` frames (a 10-minute call is 30,000).
    pub fn new(max_frames: usize) -> Self {
        Self {
            max_frames,
            ..Self::default()
        }
    }

    /// Takes an RTP packet that arrived at `arrival` (in 1/8000 s on the
    /// receiver's own clock).
    pub fn receive(&mut self, pkt: &RtpRepr<'_>, arrival: u32) -> Received {
        let Some(law) = Law::from_payload_type(pkt.payload_type) else {
            return Received::Ignored;
        };
        match self.ssrc {
            None => {
                self.ssrc = Some(pkt.ssrc);
                self.base_ts = pkt.timestamp;
                self.base_seq = u32::from(pkt.seq);
                self.max_seq = pkt.seq;
            }
            Some(s) if s != pkt.ssrc => return Received::Ignored,
            Some(_) => {}
        }
        let index = pkt.timestamp.wrapping_sub(self.base_ts) as usize / FRAME_SAMPLES;
        if index >= self.max_frames {
            return Received::OutOfRange;
        }
        if self.frames.len() <= index {
            self.frames.resize(index + 1, None);
        }
        if self.frames[index].is_some() {
            return Received::Ignored;
        }
        let mut samples = Vec::with_capacity(pkt.payload.len());
        law.decode(pkt.payload, &mut samples);
        self.frames[index] = Some(samples);

        // A.1: a sequence number ahead of the highest (mod 2^16) extends it.
        let delta = pkt.seq.wrapping_sub(self.max_seq);
        if delta != 0 && delta < 0x8000 {
            if pkt.seq < self.max_seq {
                self.cycles = self.cycles.wrapping_add(1 << 16);
            }
            self.max_seq = pkt.seq;
        }
        self.received += 1;

        // A.8: D(i-1, i) from transit times, J += (|D| - J) / 16.
        let transit = i64::from(arrival) - i64::from(pkt.timestamp);
        if let Some(prev) = self.transit {
            let d = (transit - prev).unsigned_abs();
            // J(q4) += |D| - J(q4)/16, the A.8 integer form.
            self.jitter_q4 = self.jitter_q4 + d - ((self.jitter_q4 + 8) >> 4);
            self.jitter_q4_max = self.jitter_q4_max.max(self.jitter_q4);
        }
        self.transit = Some(transit);
        Received::Played
    }

    pub fn ssrc(&self) -> Option<u32> {
        self.ssrc
    }

    /// Highest sequence number with its cycle count (A.1).
    pub fn extended_max(&self) -> u32 {
        self.cycles | u32::from(self.max_seq)
    }

    pub fn received(&self) -> u32 {
        self.received
    }

    /// Packets expected from the first to the highest sequence number.
    pub fn expected(&self) -> u32 {
        if self.ssrc.is_none() {
            return 0;
        }
        self.extended_max()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }

    /// Packets lost so far (A.3); duplicates can make it negative.
    pub fn lost(&self) -> i64 {
        i64::from(self.expected()) - i64::from(self.received)
    }

    /// Interarrival jitter in timestamp units (as RTCP carries it).
    pub fn jitter(&self) -> u32 {
        (self.jitter_q4 >> 4) as u32
    }

    /// Interarrival jitter in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.jitter_q4 as f64 / 16.0 * 1000.0 / f64::from(CLOCK_HZ)
    }

    /// The report block for this stream, with the fraction lost since the
    /// last block (A.3). `lsr` and `dlsr` come from the caller, who knows
    /// when the last SR arrived.
    pub fn report_block(&mut self, lsr: u32, dlsr: u32) -> Option<ReportBlock> {
        let ssrc = self.ssrc?;
        let expected = self.expected();
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction_lost = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        Some(ReportBlock {
            ssrc,
            fraction_lost,
            cumulative_lost: self.lost().clamp(-(1 << 23), (1 << 23) - 1) as i32,
            highest_seq: self.extended_max(),
            jitter: self.jitter(),
            lsr,
            dlsr,
        })
    }

    /// The frames in order; `None` for each frame that never came.
    pub fn frames(&self) -> &[Option<Vec<i16>>] {
        &self.frames
    }

    /// The samples, with silence for each lost frame, and the number of
    /// frames lost.
    pub fn samples(&self) -> (Vec<i16>, usize) {
        let mut out = Vec::with_capacity(self.frames.len() * FRAME_SAMPLES);
        let mut lost = 0;
        for f in &self.frames {
            match f {
                Some(s) => out.extend_from_slice(s),
                None => {
                    lost += 1;
                    out.extend(std::iter::repeat_n(0, FRAME_SAMPLES));
                }
            }
        }
        (out, lost)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(n: usize) -> Vec<i16> {
        // A sweep that exercises every µ-law segment; exact after one
        // encode/decode pass, so the comparison below is strict.
        (0..n)
            .map(|i| {
                let s = ((i * 613) % 65536) as i32 - 32768;
                super::super::g711::ulaw_decode(super::super::g711::ulaw_encode(s as i16))
            })
            .collect()
    }

    fn send_all(samples: &[i16], seq0: u16, ts0: u32) -> Vec<Vec<u8>> {
        let mut s = Sender::new(Law::Mu, 0x5eed, seq0, ts0);
        samples
            .chunks(FRAME_SAMPLES)
            .map(|f| {
                let mut out = Vec::new();
                s.packet(f, &mut out);
                out
            })
            .collect()
    }

    #[test]
    fn samples_arrive_identical_except_the_frames_counted_lost() {
        let input = tone(FRAME_SAMPLES * 50);
        // Across a sequence and a timestamp wrap.
        let packets = send_all(&input, 65530, u32::MAX - 800);
        let mut rx = Receiver::new(30_000);
        let dropped = [3usize, 4, 20];
        // Out of order: packet 10 arrives after 11.
        let mut order: Vec<usize> = (0..packets.len())
            .filter(|i| !dropped.contains(i))
            .collect();
        order.swap(9, 10);
        for (n, &i) in order.iter().enumerate() {
            let r = RtpRepr::parse(&packets[i]).unwrap();
            assert_eq!(rx.receive(&r, 160 * n as u32), Received::Played);
        }
        // A duplicate is not played twice.
        let dup = RtpRepr::parse(&packets[0]).unwrap();
        assert_eq!(rx.receive(&dup, 0), Received::Ignored);

        let (got, lost) = rx.samples();
        assert_eq!(lost, dropped.len());
        assert_eq!(got.len(), input.len());
        for (i, (a, b)) in input
            .chunks(FRAME_SAMPLES)
            .zip(got.chunks(FRAME_SAMPLES))
            .enumerate()
        {
            if dropped.contains(&i) {
                assert!(b.iter().all(|&s| s == 0), "frame {i} is silence");
            } else {
                assert_eq!(a, b, "frame {i}");
            }
        }
        assert_eq!(rx.expected(), 50);
        assert_eq!(rx.received(), 47);
        assert_eq!(rx.lost(), 3);
        let block = rx.report_block(0, 0).unwrap();
        assert_eq!(block.cumulative_lost, 3);
        assert_eq!(
            block.highest_seq,
            (1 << 16) | u32::from(65530u16.wrapping_add(49))
        );
        assert_eq!(block.fraction_lost, (3 * 256 / 50) as u8);
        // Nothing more lost since the last block.
        assert_eq!(rx.report_block(0, 0).unwrap().fraction_lost, 0);
    }

    #[test]
    fn jitter_follows_rfc3550_a8() {
        let packets = send_all(&tone(FRAME_SAMPLES * 3), 1, 0);
        let mut rx = Receiver::new(10);
        // Arrivals 0, 160+40, 320: transit differences 40, then 40.
        for (p, at) in packets.iter().zip([0u32, 200, 320]) {
            rx.receive(&RtpRepr::parse(p).unwrap(), at);
        }
        // J1 = 40/16 = 2.5; J2 = 2.5 + (40 - 2.5)/16 = 4.84 (timestamp units).
        let j = rx.jitter_q4_max as f64 / 16.0;
        assert!((j - 4.84375).abs() < 0.07, "{j}");
        assert_eq!(rx.jitter(), 4);
        assert!((rx.jitter_ms() - 0.605).abs() < 0.01);
    }

    #[test]
    fn other_streams_and_far_frames_are_not_played() {
        let packets = send_all(&tone(FRAME_SAMPLES * 2), 1, 0);
        let mut rx = Receiver::new(1);
        let p0 = RtpRepr::parse(&packets[0]).unwrap();
        assert_eq!(rx.receive(&p0, 0), Received::Played);
        let p1 = RtpRepr::parse(&packets[1]).unwrap();
        assert_eq!(rx.receive(&p1, 160), Received::OutOfRange);
        let other = RtpRepr { ssrc: 1, ..p0 };
        assert_eq!(rx.receive(&other, 0), Received::Ignored);
        let video = RtpRepr {
            payload_type: 96,
            ..p0
        };
        assert_eq!(rx.receive(&video, 0), Received::Ignored);
    }
}
