//! One end's media in a connected call, sans-IO: G.711 frames out as SRTP,
//! SRTP and SRTCP in (RTP and RTCP multiplexed on one port, RFC 5761), the
//! receiver's RFC 3550 statistics, and RTCP reports whose round trip
//! (§6.4.1) the statistics carry. Keys from the call's handshake
//! ([`CallKeys`]); the caller supplies the clocks.

use std::net::SocketAddrV4;
use std::time::Duration;

use roamgate_common::flow::is_rtcp_pt;
use roamgate_srtp::{Context, MasterKey, MasterSalt, Profile};

use super::g711::Law;
use super::rtcp::{ntp_middle, round_trip, Report, SenderInfo};
use super::rtp::RtpRepr;
use super::stream::{Received, Receiver, Sender};
use crate::handshake::CallKeys;

/// Frames the receiver keeps: a call of up to 2 hours at 20 ms.
pub const MAX_FRAMES: usize = 360_000;

/// Why a datagram was dropped (counted in [`CallStats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    #[error("SRTP: {0}")]
    Srtp(roamgate_srtp::Error),
    #[error("not RTP or RTCP")]
    NotMedia,
}

/// A call's media statistics, as `roamgate unit status` and the metrics
/// show them.
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct CallStats {
    pub packets_sent: u64,
    pub packets_received: u64,
    pub packets_expected: u64,
    pub packets_lost: i64,
    pub jitter_ms: f64,
    pub jitter_ms_max: f64,
    pub rtt_ms: Option<f64>,
    /// SRTP/SRTCP packets whose tag did not verify.
    pub srtp_forged: u64,
    /// SRTP/SRTCP packets refused as replays (or older than the window).
    pub srtp_replayed: u64,
    pub rtcp_received: u64,
}

/// One end's media.
pub struct MediaSession {
    tx: Context,
    rx: Context,
    sender: Sender,
    receiver: Receiver,
    remote: SocketAddrV4,
    /// The NTP time of our last SR: the peer's report block echoes its
    /// middle bits.
    last_sr_ntp: Option<u64>,
    /// The middle bits of the peer's last SR and when it arrived (NTP).
    peer_sr: Option<(u32, u64)>,
    stats: CallStats,
}

impl std::fmt::Debug for MediaSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaSession")
            .field("remote", &self.remote)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn contexts(keys: &CallKeys, profile: Profile) -> Result<(Context, Context), roamgate_srtp::Error> {
    let (kl, sl) = (profile.master_key_len(), profile.master_salt_len());
    let make = |m: crate::handshake::SrtpMaster| {
        Context::new(
            profile,
            &MasterKey::from_slice(&m.key)?,
            &MasterSalt::from_slice(&m.salt)?,
        )
    };
    Ok((make(keys.send_srtp(kl, sl))?, make(keys.recv_srtp(kl, sl))?))
}

impl MediaSession {
    /// `ssrc`, `seq` and `timestamp` start at random values (RFC 3550).
    pub fn new(
        keys: &CallKeys,
        profile: Profile,
        law: Law,
        remote: SocketAddrV4,
        ssrc: u32,
        seq: u16,
        timestamp: u32,
    ) -> Result<Self, MediaError> {
        let (tx, rx) = contexts(keys, profile).map_err(MediaError::Srtp)?;
        Ok(Self {
            tx,
            rx,
            sender: Sender::new(law, ssrc, seq, timestamp),
            receiver: Receiver::new(MAX_FRAMES),
            remote,
            last_sr_ntp: None,
            peer_sr: None,
            stats: CallStats::default(),
        })
    }

    pub fn remote(&self) -> SocketAddrV4 {
        self.remote
    }

    /// The peer moved (its media now comes from, and goes to, `remote`).
    pub fn set_remote(&mut self, remote: SocketAddrV4) {
        self.remote = remote;
    }

    pub fn ssrc(&self) -> u32 {
        self.sender.ssrc()
    }

    /// The SRTP packet of the next 20 ms frame.
    pub fn send_frame(&mut self, frame: &[i16]) -> Result<Vec<u8>, MediaError> {
        let mut pkt = Vec::with_capacity(12 + frame.len() + roamgate_srtp::MAX_TRAILER_LEN);
        self.sender.packet(frame, &mut pkt);
        self.tx.protect_rtp(&mut pkt).map_err(MediaError::Srtp)?;
        self.stats.packets_sent += 1;
        Ok(pkt)
    }

    fn count(&mut self, e: roamgate_srtp::Error) -> MediaError {
        match e {
            roamgate_srtp::Error::AuthFailed => self.stats.srtp_forged += 1,
            roamgate_srtp::Error::Replayed | roamgate_srtp::Error::TooOld => {
                self.stats.srtp_replayed += 1
            }
            _ => {}
        }
        MediaError::Srtp(e)
    }

    /// A datagram from the peer. `arrival` is the receiver's clock in
    /// 1/8000 s (for jitter), `now_ntp` its NTP time (for RTCP).
    pub fn receive(
        &mut self,
        mut datagram: Vec<u8>,
        arrival: u32,
        now_ntp: u64,
    ) -> Result<Option<Received>, MediaError> {
        let pt = *datagram.get(1).ok_or(MediaError::NotMedia)?;
        if is_rtcp_pt(pt) {
            if let Err(e) = self.rx.unprotect_rtcp(&mut datagram) {
                return Err(self.count(e));
            }
            self.stats.rtcp_received += 1;
            if let Ok(report) = Report::parse(&datagram) {
                if let Some(s) = report.sender {
                    self.peer_sr = Some((ntp_middle(s.ntp), now_ntp));
                }
                if let Some(b) = report.blocks.iter().find(|b| b.ssrc == self.sender.ssrc()) {
                    if let Some(rtt) = round_trip(now_ntp, b) {
                        self.stats.rtt_ms = Some(rtt.as_secs_f64() * 1e3);
                    }
                }
            }
            return Ok(None);
        }
        if let Err(e) = self.rx.unprotect_rtp(&mut datagram) {
            return Err(self.count(e));
        }
        let rtp = RtpRepr::parse(&datagram).map_err(|_| MediaError::NotMedia)?;
        let r = self.receiver.receive(&rtp, arrival);
        self.stats.packets_received = u64::from(self.receiver.received());
        Ok(Some(r))
    }

    /// An SRTCP sender report with a block for the peer's stream.
    pub fn report(&mut self, now_ntp: u64) -> Result<Vec<u8>, MediaError> {
        let (lsr, dlsr) = match self.peer_sr {
            Some((lsr, at)) => {
                // Delay since that SR in 1/65536 s.
                let d = now_ntp.saturating_sub(at) >> 16;
                (lsr, d.min(u64::from(u32::MAX)) as u32)
            }
            None => (0, 0),
        };
        let report = Report {
            ssrc: self.sender.ssrc(),
            sender: Some(SenderInfo {
                ntp: now_ntp,
                rtp_timestamp: self.sender.timestamp(),
                packets: self.sender.packets,
                octets: self.sender.octets,
            }),
            blocks: self.receiver.report_block(lsr, dlsr).into_iter().collect(),
        };
        let mut out = Vec::new();
        report.emit(&mut out);
        self.tx.protect_rtcp(&mut out).map_err(MediaError::Srtp)?;
        self.last_sr_ntp = Some(now_ntp);
        Ok(out)
    }

    pub fn stats(&self) -> CallStats {
        let mut s = self.stats;
        s.packets_expected = u64::from(self.receiver.expected());
        s.packets_lost = self.receiver.lost();
        s.jitter_ms = self.receiver.jitter_ms();
        s.jitter_ms_max = self.receiver.jitter_q4_max as f64 / 16.0 * 1000.0 / 8000.0;
        s
    }

    /// The samples received, with silence for lost frames, and how many
    /// frames were lost.
    pub fn samples(&self) -> (Vec<i16>, usize) {
        self.receiver.samples()
    }
}

/// A 64-bit NTP timestamp (RFC 5905) of a duration since 1900-01-01.
pub fn ntp(since_1900: Duration) -> u64 {
    (since_1900.as_secs() << 32) | ((u64::from(since_1900.subsec_nanos()) << 32) / 1_000_000_000)
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddrV4;
    use std::time::Duration;

    use roamgate_krb::replay::ReplayCache;

    use super::*;
    use crate::handshake::{answer, Caller};
    use crate::media::stream::FRAME_SAMPLES;
    use crate::test_realm::*;

    fn keys() -> (CallKeys, CallKeys) {
        let realm = Realm::new();
        let ticket = realm.ticket(CALLEE, at(0));
        let (ap_req, caller) = Caller::start(&ticket, CALL, NUMBER, at(1)).unwrap();
        let a = answer(
            &ap_req,
            &realm.keys(CALLEE),
            &p(CALLEE),
            CALL,
            NUMBER,
            &mut ReplayCache::default(),
            at(1),
        )
        .unwrap();
        (caller.finish(&a.ap_rep).unwrap(), a.keys)
    }

    fn addr(last: u8) -> SocketAddrV4 {
        SocketAddrV4::new(std::net::Ipv4Addr::new(10, 1, 0, last), 40000)
    }

    fn pair(profile: Profile) -> (MediaSession, MediaSession) {
        let (k1, k2) = keys();
        (
            MediaSession::new(&k1, profile, Law::Mu, addr(52), 0x1111, 100, 5000).unwrap(),
            MediaSession::new(&k2, profile, Law::Mu, addr(51), 0x2222, 900, 77).unwrap(),
        )
    }

    fn tone(n: usize) -> Vec<i16> {
        use crate::media::g711::{ulaw_decode, ulaw_encode};
        (0..n)
            .map(|i| ulaw_decode(ulaw_encode(((i * 977) % 60000) as i16)))
            .collect()
    }

    #[test]
    fn speech_arrives_identical_but_for_lost_frames_in_both_profiles() {
        for profile in [Profile::AesCm128HmacSha1_80, Profile::AeadAes128Gcm] {
            let (mut a, mut b) = pair(profile);
            let input = tone(FRAME_SAMPLES * 30);
            for (i, frame) in input.chunks(FRAME_SAMPLES).enumerate() {
                let pkt = a.send_frame(frame).unwrap();
                // Speech is not in clear on the wire.
                let mut plain = Vec::new();
                Law::Mu.encode(frame, &mut plain);
                assert_ne!(&pkt[12..12 + plain.len()], &plain[..]);
                if i == 7 {
                    continue; // lost
                }
                b.receive(pkt, 160 * i as u32, 0).unwrap();
            }
            let (got, lost) = b.samples();
            assert_eq!(lost, 1, "{profile:?}");
            for (i, (x, y)) in input
                .chunks(FRAME_SAMPLES)
                .zip(got.chunks(FRAME_SAMPLES))
                .enumerate()
            {
                if i != 7 {
                    assert_eq!(x, y, "{profile:?} frame {i}");
                }
            }
            let s = b.stats();
            assert_eq!(
                (s.packets_received, s.packets_expected, s.packets_lost),
                (29, 30, 1)
            );
        }
    }

    #[test]
    fn forged_and_replayed_packets_are_dropped_and_counted() {
        let (mut a, mut b) = pair(Profile::AeadAes128Gcm);
        let frame = tone(FRAME_SAMPLES);
        let pkt = a.send_frame(&frame).unwrap();
        let mut forged = pkt.clone();
        forged[20] ^= 1;
        assert_eq!(
            b.receive(forged, 0, 0),
            Err(MediaError::Srtp(roamgate_srtp::Error::AuthFailed))
        );
        b.receive(pkt.clone(), 0, 0).unwrap();
        assert_eq!(
            b.receive(pkt, 0, 0),
            Err(MediaError::Srtp(roamgate_srtp::Error::Replayed))
        );
        let s = b.stats();
        assert_eq!(
            (s.srtp_forged, s.srtp_replayed, s.packets_received),
            (1, 1, 1)
        );
        // A packet from A's own direction (reflected) does not verify at A.
        let own = a.send_frame(&frame).unwrap();
        assert!(a.receive(own, 0, 0).is_err());
    }

    #[test]
    fn rtcp_reports_give_the_round_trip() {
        let (mut a, mut b) = pair(Profile::AesCm128HmacSha1_80);
        let t = |ms: u64| ntp(Duration::from_secs(3_900_000_000) + Duration::from_millis(ms));
        // A's SR at 0 ms reaches B at 10 ms; B reports at 510 ms; A hears it at 520 ms.
        let sr = a.report(t(0)).unwrap();
        assert!(b.receive(sr, 0, t(10)).unwrap().is_none());
        // B needs A's stream in its receiver for a block: one frame.
        let pkt = a.send_frame(&tone(FRAME_SAMPLES)).unwrap();
        b.receive(pkt, 0, t(11)).unwrap();
        let rr = b.report(t(510)).unwrap();
        a.receive(rr, 0, t(520)).unwrap();
        let rtt = a.stats().rtt_ms.unwrap();
        assert!((rtt - 20.0).abs() < 0.1, "{rtt}");
        assert_eq!(a.stats().rtcp_received, 1);
    }
}
