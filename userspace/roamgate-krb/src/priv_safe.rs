//! KRB-PRIV and KRB-SAFE (RFC 4120 §5.6, §5.7): messages protected by the
//! key an AP exchange agreed on (a subkey, or the session key).
//!
//! A [`SecureChannel`] holds that key, which side of the exchange we are,
//! and the replay protection: sequence numbers (each side counts from the
//! initial number it announced in its authenticator or AP-REP, wrapping at
//! 2^32) or timestamps (within the clock-skew window, plus a replay cache).
//! Sender addresses are RFC 4120 directional addresses (type 3): the
//! initiator is 0, the acceptor 1, so a message reflected back at its
//! sender is refused.
//!
//! No I/O; time is passed in.

use std::time::{Duration, SystemTime};

use rasn_kerberos::{EncKrbPrivPart, HostAddress, KrbPriv, KrbSafe, KrbSafeBody};
use roamgate_krb_crypto::Key;

use crate::messages::{
    self, decode, encode, error_code, int, msg_type, MessageError, OctetString, PVNO,
};
use crate::replay::{skew_between, AuthenticatorId, ReplayCache, ReplayError, CLOCK_SKEW};
use crate::usage;

/// Which side of the AP exchange this end was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Sent the AP-REQ.
    Initiator,
    /// Accepted the AP-REQ.
    Acceptor,
}

impl Direction {
    fn address(self) -> HostAddress {
        let v: u32 = match self {
            Direction::Initiator => 0,
            Direction::Acceptor => 1,
        };
        HostAddress {
            addr_type: HostAddress::DIRECTIONAL,
            address: OctetString::from(v.to_be_bytes().to_vec()),
        }
    }

    fn peer(self) -> Self {
        match self {
            Direction::Initiator => Direction::Acceptor,
            Direction::Acceptor => Direction::Initiator,
        }
    }
}

/// How replays are detected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayMode {
    /// Sequence numbers: `local` is the next number we send, `remote` the
    /// next we expect.
    Sequence { local: u32, remote: u32 },
    /// Timestamps within the skew window and a replay cache.
    Timestamp,
}

impl ReplayMode {
    /// Sequence numbers if both sides announced an initial one in the AP
    /// exchange (`local` ours, `remote` the peer's), else timestamps.
    fn negotiated(local: Option<u32>, remote: Option<u32>) -> Self {
        match (local, remote) {
            (Some(local), Some(remote)) => ReplayMode::Sequence { local, remote },
            _ => ReplayMode::Timestamp,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrivSafeError {
    #[error("malformed message: {0}")]
    Malformed(#[from] MessageError),
    #[error("wrong protocol version or message type in {0}")]
    BadVersion(&'static str),
    #[error("{0} failed its integrity check (modified, or wrong key)")]
    Integrity(&'static str),
    #[error("out-of-order message: expected sequence number {expected}, got {got:?}")]
    BadSequence { expected: u32, got: Option<u32> },
    #[error("message carries no timestamp")]
    MissingTimestamp,
    #[error("clock skew too great: message time is {0} s from ours")]
    Skew(u64),
    #[error("replayed message")]
    Replay,
    #[error("replay cache full")]
    ReplayCacheFull,
    #[error("message comes from the wrong direction (reflected back at its sender?)")]
    BadDirection,
}

impl PrivSafeError {
    /// The KRB-ERROR code to report for this error.
    pub fn error_code(&self) -> i32 {
        use error_code::*;
        match self {
            PrivSafeError::Malformed(_) => KRB_AP_ERR_MSG_TYPE,
            PrivSafeError::BadVersion(_) => KRB_AP_ERR_BADVERSION,
            PrivSafeError::Integrity(_) => KRB_AP_ERR_MODIFIED,
            PrivSafeError::BadSequence { .. } => KRB_AP_ERR_BADORDER,
            PrivSafeError::MissingTimestamp | PrivSafeError::Skew(_) => KRB_AP_ERR_SKEW,
            PrivSafeError::Replay => KRB_AP_ERR_REPEAT,
            PrivSafeError::ReplayCacheFull => KRB_ERR_GENERIC,
            PrivSafeError::BadDirection => KRB_AP_ERR_BADDIRECTION,
        }
    }
}

/// Protection for one application channel after an AP exchange.
#[derive(Debug)]
pub struct SecureChannel {
    key: Key,
    direction: Direction,
    mode: ReplayMode,
    skew: Duration,
    replay: ReplayCache,
}

/// The fields common to KRB-PRIV and KRB-SAFE bodies.
struct Stamp {
    timestamp: Option<rasn_kerberos::KerberosTime>,
    usec: Option<rasn::types::Integer>,
    seq_number: Option<u32>,
}

impl SecureChannel {
    /// A channel with replay protection `mode`.
    pub fn new(key: Key, direction: Direction, mode: ReplayMode) -> Self {
        Self {
            key,
            direction,
            mode,
            skew: CLOCK_SKEW,
            replay: ReplayCache::new(CLOCK_SKEW, 10_000),
        }
    }

    /// The initiator's channel after a mutual AP exchange: the key the
    /// AP-REP settled on, sequence numbers if both sides sent one, else
    /// timestamps.
    pub fn for_initiator(client: &crate::ap::ApClient, rep: &crate::ap::ApRepInfo) -> Self {
        let mode = ReplayMode::negotiated(client.seq_number(), rep.seq_number);
        Self::new(rep.key.clone(), Direction::Initiator, mode)
    }

    /// The acceptor's channel after answering `accepted` with an AP-REP
    /// that carried `subkey` (or none) and `seq_number` (or none).
    pub fn for_acceptor(
        accepted: &crate::ap::Accepted,
        subkey: Option<&Key>,
        seq_number: Option<u32>,
    ) -> Self {
        let key = subkey.cloned().unwrap_or_else(|| accepted.key());
        let mode = ReplayMode::negotiated(seq_number, accepted.seq_number);
        Self::new(key, Direction::Acceptor, mode)
    }

    /// The next sequence number we will send, in sequence mode.
    pub fn next_send_seq(&self) -> Option<u32> {
        match self.mode {
            ReplayMode::Sequence { local, .. } => Some(local),
            ReplayMode::Timestamp => None,
        }
    }

    fn stamp(&mut self, now: SystemTime) -> Result<Stamp, MessageError> {
        Ok(match &mut self.mode {
            ReplayMode::Sequence { local, .. } => {
                let seq = *local;
                *local = local.wrapping_add(1);
                Stamp {
                    timestamp: None,
                    usec: None,
                    seq_number: Some(seq),
                }
            }
            ReplayMode::Timestamp => {
                let (t, us) = messages::to_kerberos_time_usec(now)?;
                Stamp {
                    timestamp: Some(t),
                    usec: Some(int(i64::from(us))),
                    seq_number: None,
                }
            }
        })
    }

    fn check(
        &mut self,
        stamp: &Stamp,
        sender: &HostAddress,
        ciphertext: &[u8],
        now: SystemTime,
    ) -> Result<(), PrivSafeError> {
        if *sender != self.direction.peer().address() {
            return Err(PrivSafeError::BadDirection);
        }
        match &mut self.mode {
            ReplayMode::Sequence { remote, .. } => {
                if stamp.seq_number != Some(*remote) {
                    return Err(PrivSafeError::BadSequence {
                        expected: *remote,
                        got: stamp.seq_number,
                    });
                }
                *remote = remote.wrapping_add(1);
                Ok(())
            }
            ReplayMode::Timestamp => {
                let ts = stamp
                    .timestamp
                    .as_ref()
                    .ok_or(PrivSafeError::MissingTimestamp)?;
                let usec = stamp.usec.clone().unwrap_or_else(|| int(0));
                let skew = skew_between(messages::from_kerberos_time_usec(ts, &usec), now);
                if skew > self.skew {
                    return Err(PrivSafeError::Skew(skew.as_secs()));
                }
                let peer = format!("{:?}", self.direction.peer());
                self.replay
                    .check_and_insert(
                        &AuthenticatorId {
                            client: &peer,
                            server: "krb-priv-safe",
                            ctime: messages::from_kerberos_time(ts),
                            cusec: messages::usec_value(&usec),
                            ciphertext,
                        },
                        now,
                    )
                    .map_err(|e| match e {
                        ReplayError::Replay => PrivSafeError::Replay,
                        ReplayError::Full(_) | ReplayError::ClientFull(_) => {
                            PrivSafeError::ReplayCacheFull
                        }
                    })
            }
        }
    }

    /// Encrypts `data` into a KRB-PRIV.
    pub fn seal_priv(&mut self, data: &[u8], now: SystemTime) -> Result<Vec<u8>, PrivSafeError> {
        let stamp = self.stamp(now)?;
        let part = EncKrbPrivPart {
            user_data: OctetString::from(data.to_vec()),
            timestamp: stamp.timestamp,
            usec: stamp.usec,
            seq_number: stamp.seq_number,
            sender_address: self.direction.address(),
            recipient_address: None,
        };
        Ok(encode(&KrbPriv {
            pvno: int(PVNO),
            msg_type: int(msg_type::KRB_PRIV),
            enc_part: messages::seal(&self.key, usage::KRB_PRIV_ENC_PART, None, &part),
        }))
    }

    /// Decrypts and checks a KRB-PRIV from the peer.
    pub fn open_priv(&mut self, bytes: &[u8], now: SystemTime) -> Result<Vec<u8>, PrivSafeError> {
        let msg: KrbPriv = decode(bytes)?;
        if !messages::is_version(&msg.pvno, &msg.msg_type, msg_type::KRB_PRIV) {
            return Err(PrivSafeError::BadVersion("KRB-PRIV"));
        }
        let part: EncKrbPrivPart =
            messages::open(&self.key, usage::KRB_PRIV_ENC_PART, &msg.enc_part).map_err(
                |e| match e {
                    e if e.is_integrity_failure() => PrivSafeError::Integrity("KRB-PRIV"),
                    other => PrivSafeError::Malformed(other),
                },
            )?;
        let stamp = Stamp {
            timestamp: part.timestamp,
            usec: part.usec,
            seq_number: part.seq_number,
        };
        self.check(&stamp, &part.sender_address, &msg.enc_part.cipher, now)?;
        Ok(part.user_data.to_vec())
    }

    /// Checksums `data` into a KRB-SAFE (integrity only, not secrecy).
    pub fn seal_safe(&mut self, data: &[u8], now: SystemTime) -> Result<Vec<u8>, PrivSafeError> {
        let stamp = self.stamp(now)?;
        let body = KrbSafeBody {
            user_data: OctetString::from(data.to_vec()),
            timestamp: stamp.timestamp,
            usec: stamp.usec,
            seq_number: stamp.seq_number,
            s_address: self.direction.address(),
            r_address: None,
        };
        let cksum = messages::checksum(&self.key, usage::KRB_SAFE_CKSUM, &encode(&body));
        Ok(encode(&KrbSafe {
            pvno: int(PVNO),
            msg_type: int(msg_type::KRB_SAFE),
            body,
            cksum,
        }))
    }

    /// Verifies a KRB-SAFE from the peer and returns its data.
    pub fn open_safe(&mut self, bytes: &[u8], now: SystemTime) -> Result<Vec<u8>, PrivSafeError> {
        let msg: KrbSafe = decode(bytes)?;
        if !messages::is_version(&msg.pvno, &msg.msg_type, msg_type::KRB_SAFE) {
            return Err(PrivSafeError::BadVersion("KRB-SAFE"));
        }
        messages::verify_checksum(
            &self.key,
            usage::KRB_SAFE_CKSUM,
            &encode(&msg.body),
            &msg.cksum,
            "KRB-SAFE",
        )
        .map_err(|_| PrivSafeError::Integrity("KRB-SAFE"))?;
        let body = msg.body;
        let stamp = Stamp {
            timestamp: body.timestamp,
            usec: body.usec,
            seq_number: body.seq_number,
        };
        self.check(&stamp, &body.s_address, &msg.cksum.checksum, now)?;
        Ok(body.user_data.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::at;
    use roamgate_krb_crypto::Etype;

    fn pair(mode_a: ReplayMode, mode_b: ReplayMode) -> (SecureChannel, SecureChannel) {
        let key = Key::random(Etype::Aes256CtsHmacSha384192);
        (
            SecureChannel::new(key.clone(), Direction::Initiator, mode_a),
            SecureChannel::new(key, Direction::Acceptor, mode_b),
        )
    }

    #[test]
    fn priv_and_safe_round_trip_with_sequence_numbers() {
        let (mut a, mut b) = pair(
            ReplayMode::Sequence {
                local: 100,
                remote: u32::MAX,
            },
            ReplayMode::Sequence {
                local: u32::MAX,
                remote: 100,
            },
        );
        let m1 = a.seal_priv(b"secret", at(0)).unwrap();
        assert!(!m1.windows(6).any(|w| w == b"secret"));
        assert_eq!(b.open_priv(&m1, at(0)).unwrap(), b"secret");
        let m2 = a.seal_safe(b"public", at(0)).unwrap();
        assert_eq!(b.open_safe(&m2, at(0)).unwrap(), b"public");
        // Replay of m1: the sequence number is old.
        assert_eq!(
            b.open_priv(&m1, at(0)).unwrap_err(),
            PrivSafeError::BadSequence {
                expected: 102,
                got: Some(100)
            }
        );
        // The other way, wrapping at 2^32.
        let r1 = b.seal_priv(b"x", at(0)).unwrap();
        let r2 = b.seal_priv(b"y", at(0)).unwrap();
        assert_eq!(a.open_priv(&r1, at(0)).unwrap(), b"x");
        assert_eq!(a.open_priv(&r2, at(0)).unwrap(), b"y");
    }

    #[test]
    fn channels_from_an_ap_exchange_agree() {
        use crate::ap::{build_ap_req, AcceptParams, ApReqParams};
        use crate::test_support::{accept_once, issue};
        let (cred, keys) = issue("dir/x@EXAMPLE.COM", Etype::Aes128CtsHmacSha196);
        for (subkeys, seqs) in [(true, true), (false, false), (true, false)] {
            let (req, client) = build_ap_req(
                &cred,
                &ApReqParams {
                    mutual: true,
                    subkey: subkeys,
                    seq_number: seqs.then_some(5),
                    app_data: None,
                },
                at(2000),
            )
            .unwrap();
            let acc = accept_once(&req, &keys, &AcceptParams::default(), at(2000)).unwrap();
            let sk = subkeys.then(|| acc.new_subkey());
            let seq = seqs.then_some(900);
            let rep = acc.ap_rep(sk.as_ref(), seq);
            let info = client.verify_ap_rep(&rep).unwrap();
            let mut a = SecureChannel::for_initiator(&client, &info);
            let mut b = SecureChannel::for_acceptor(&acc, sk.as_ref(), seq);
            assert_eq!(a.next_send_seq(), seqs.then_some(5));
            let m = a.seal_priv(b"directory query", at(2001)).unwrap();
            assert_eq!(b.open_priv(&m, at(2001)).unwrap(), b"directory query");
            let r = b.seal_safe(b"answer", at(2002)).unwrap();
            assert_eq!(a.open_safe(&r, at(2002)).unwrap(), b"answer");
        }
    }

    #[test]
    fn reflection_is_refused() {
        let (mut a, _) = pair(ReplayMode::Timestamp, ReplayMode::Timestamp);
        let m = a.seal_priv(b"hi", at(10)).unwrap();
        assert_eq!(
            a.open_priv(&m, at(10)).unwrap_err(),
            PrivSafeError::BadDirection
        );
    }

    #[test]
    fn timestamps_skew_and_replay() {
        let (mut a, mut b) = pair(ReplayMode::Timestamp, ReplayMode::Timestamp);
        let m = a.seal_safe(b"hi", at(1000)).unwrap();
        assert_eq!(b.open_safe(&m, at(1001)).unwrap(), b"hi");
        assert_eq!(
            b.open_safe(&m, at(1002)).unwrap_err(),
            PrivSafeError::Replay
        );
        let late = a.seal_priv(b"late", at(1000)).unwrap();
        assert_eq!(
            b.open_priv(&late, at(1400)).unwrap_err(),
            PrivSafeError::Skew(400)
        );
    }

    #[test]
    fn tampering_and_wrong_keys_are_detected() {
        let (mut a, mut b) = pair(ReplayMode::Timestamp, ReplayMode::Timestamp);
        let mut m = a.seal_safe(b"pay 10", at(0)).unwrap();
        let pos = m.windows(6).position(|w| w == b"pay 10").unwrap();
        m[pos + 4] = b'9';
        assert_eq!(
            b.open_safe(&m, at(0)).unwrap_err(),
            PrivSafeError::Integrity("KRB-SAFE")
        );
        let mut other = SecureChannel::new(
            Key::random(Etype::Aes256CtsHmacSha384192),
            Direction::Acceptor,
            ReplayMode::Timestamp,
        );
        let p = a.seal_priv(b"x", at(0)).unwrap();
        assert_eq!(
            other.open_priv(&p, at(0)).unwrap_err(),
            PrivSafeError::Integrity("KRB-PRIV")
        );
        for n in 0..p.len() {
            assert!(b.open_priv(&p[..n], at(0)).is_err());
        }
    }
}
