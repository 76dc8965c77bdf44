//! Between the call state machine's [`Signal`]s and the bytes on the
//! H.225.0 TCP connection: a signal becomes a [`CallMessage`] (TPKT, Q.931,
//! H.225.0), signed with the H.235.1 hashed token under the sender's
//! signalling key, whose `random` is the signal's sequence number and whose
//! timestamp is the signal's; and back.

use std::net::SocketAddrV4;

use crate::call::{cause, Channel, Kind, Signal};
use crate::handshake::SignallingKey;
use crate::media::g711::Law;
use crate::wire::{self, h235, CallMessage, Codec, Error, MessageBody, ReleaseReason, TokenFields};

/// The identities in each hashed token (`generalID`: the receiver,
/// `sendersID`: the sender), as the two ends name themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ends {
    pub sender: String,
    pub receiver: String,
}

fn wire_channel(c: &Channel, n: u16) -> wire::Channel {
    wire::Channel {
        logical_channel: n,
        codec: match c.law {
            Law::Mu => Codec::G711Ulaw,
            Law::A => Codec::G711Alaw,
        },
        frames_per_packet: 20,
        session_id: 1,
        media: Some(c.rtp),
        // RTCP shares the RTP port (RFC 5761).
        media_control: Some(c.rtp),
    }
}

fn channel(c: &wire::Channel) -> Result<Channel, Error> {
    let rtp: SocketAddrV4 = c.media.ok_or(Error::MissingField("mediaChannel"))?;
    Ok(Channel {
        law: match c.codec {
            Codec::G711Ulaw => Law::Mu,
            Codec::G711Alaw => Law::A,
        },
        rtp,
    })
}

/// The H.225.0 release reason that goes with a Q.850 cause.
fn reason(q850: u8) -> ReleaseReason {
    match q850 {
        cause::UNALLOCATED_NUMBER => ReleaseReason::UnreachableDestination,
        cause::SUBSCRIBER_ABSENT => ReleaseReason::CalledPartyNotRegistered,
        cause::CALL_REJECTED => ReleaseReason::SecurityDenied,
        cause::USER_BUSY => ReleaseReason::InConf,
        cause::INCOMPATIBLE_DESTINATION => ReleaseReason::DestinationRejection,
        _ => ReleaseReason::UndefinedReason,
    }
}

/// The message bytes of `sig`, signed under `key` (unsigned only for a
/// refusal sent before any key exists). `call_reference` is the Q.931 call
/// reference (15 bits), `from_callee` its flag.
pub fn encode(
    sig: &Signal,
    call_reference: u16,
    from_callee: bool,
    key: Option<&SignallingKey>,
    ends: &Ends,
) -> Result<Vec<u8>, Error> {
    let channels = |cs: &[Channel]| -> Vec<wire::Channel> {
        cs.iter()
            .enumerate()
            .map(|(i, c)| wire_channel(c, i as u16 + 1))
            .collect()
    };
    let body = match sig.kind {
        Kind::Setup => MessageBody::Setup {
            conference_id: sig.call_id,
            calling_number: sig.calling_number.clone(),
            called_number: sig
                .called_number
                .clone()
                .ok_or(Error::MissingField("called number"))?,
            fast_start: channels(&sig.channels),
        },
        Kind::CallProceeding => MessageBody::CallProceeding,
        Kind::Alerting => MessageBody::Alerting,
        Kind::Connect => MessageBody::Connect {
            conference_id: sig.call_id,
            fast_start: channels(&sig.channels),
        },
        Kind::ReleaseComplete => MessageBody::ReleaseComplete {
            cause: sig.cause,
            reason: sig.cause.map(reason),
        },
    };
    let msg = CallMessage {
        call_reference,
        from_destination: from_callee,
        call_identifier: sig.call_id,
        display: None,
        kerberos: sig.kerberos.clone(),
        integrity: None,
        body,
    };
    match key {
        Some(k) => h235::sign(
            &msg,
            &TokenFields {
                timestamp: sig.timestamp.max(1),
                random: sig.seq,
                general_id: ends.receiver.clone(),
                senders_id: ends.sender.clone(),
            },
            k.as_bytes(),
        ),
        None => msg.to_bytes(),
    }
}

/// A message as received: its signal, and what the state machine needs to
/// check it.
#[derive(Debug, Clone)]
pub struct Received {
    pub signal: Signal,
    pub call_reference: u16,
    pub from_callee: bool,
    /// The sender's name in the hashed token (`sendersID`).
    pub sender: Option<String>,
    bytes: Vec<u8>,
}

impl Received {
    /// Whether the message's hashed token verifies under `key`.
    pub fn verify(&self, key: &SignallingKey) -> bool {
        h235::verify(&self.bytes, key.as_bytes()).is_ok()
    }
}

/// Parses one whole message (one TPKT).
pub fn decode(bytes: &[u8]) -> Result<Received, Error> {
    let m = CallMessage::parse(bytes)?;
    let (seq, timestamp, sender) = match &m.integrity {
        Some(i) => (
            i.fields.random,
            i.fields.timestamp,
            Some(i.fields.senders_id.clone()),
        ),
        None => (0, 0, None),
    };
    let mut signal = Signal {
        kind: Kind::Setup,
        call_id: m.call_identifier,
        called_number: None,
        calling_number: None,
        kerberos: m.kerberos.clone(),
        channels: Vec::new(),
        cause: None,
        seq,
        timestamp,
    };
    match &m.body {
        MessageBody::Setup {
            calling_number,
            called_number,
            fast_start,
            ..
        } => {
            signal.called_number = Some(called_number.clone());
            signal.calling_number = calling_number.clone();
            signal.channels = fast_start.iter().map(channel).collect::<Result<_, _>>()?;
        }
        MessageBody::CallProceeding => signal.kind = Kind::CallProceeding,
        MessageBody::Alerting => signal.kind = Kind::Alerting,
        MessageBody::Connect { fast_start, .. } => {
            signal.kind = Kind::Connect;
            signal.channels = fast_start.iter().map(channel).collect::<Result<_, _>>()?;
        }
        MessageBody::ReleaseComplete { cause, .. } => {
            signal.kind = Kind::ReleaseComplete;
            signal.cause = *cause;
        }
    }
    Ok(Received {
        signal,
        call_reference: m.call_reference,
        from_callee: m.from_destination,
        sender,
        bytes: bytes.to_vec(),
    })
}

#[cfg(test)]
mod tests;
