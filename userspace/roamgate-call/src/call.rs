//! The call state machine of one call, at either end, sans-IO.
//!
//! It speaks in [`Signal`]s, the content of the H.225.0/Q.931 messages it
//! needs (the `wire` module turns them into bytes and back), takes a clock,
//! and returns what to send and what happened. The transport (one TCP
//! connection per call, TPKT framed) is the runner's.
//!
//! Caller: SETUP (AP-REQ, fastStart offer) → the callee's first answer
//! carries the AP-REP, which yields the call's keys; every later message is
//! checked under them → CONNECT (the chosen fastStart channel) → connected
//! → RELEASE COMPLETE from either side.
//!
//! Callee: SETUP → AP-REQ accepted (ticket, replay cache, the checksum
//! binding call and number) and the SETUP's integrity checked under the
//! setup key → CALL PROCEEDING (with the AP-REP), ALERTING → CONNECT when
//! answered.
//!
//! Integrity and replay: every message but a refusal before keys exist
//! carries an H.235 hashed token (`wire`) keyed per direction, with a
//! sequence number that must rise and a timestamp within the clock-skew
//! limit. A message that fails either is dropped and counted, and the call
//! goes on: a forger cannot tear a call down.

use std::net::SocketAddrV4;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use roamgate_krb::ap::ServiceKeys;
use roamgate_krb::credential::Credential;
use roamgate_krb::replay::ReplayCache;
use roamgate_krb::Principal;

use crate::handshake::{self, Answered, CallId, CallKeys, Caller, HandshakeError, SignallingKey};
use crate::media::g711::Law;

/// Clock-skew limit for signalling timestamps (as for Kerberos).
pub const SKEW: Duration = Duration::from_secs(300);
/// Q.931 T303: no answer to a SETUP.
pub const T303: Duration = Duration::from_secs(4);
/// Q.931 T310: CALL PROCEEDING but no ALERTING or CONNECT.
pub const T310: Duration = Duration::from_secs(10);
/// How long a call may ring before the caller gives up (Q.931 T301 is at
/// least 3 minutes).
pub const T301: Duration = Duration::from_secs(180);

/// Q.850 cause values the calls use.
pub mod cause {
    pub const UNALLOCATED_NUMBER: u8 = 1;
    pub const NORMAL_CLEARING: u8 = 16;
    pub const USER_BUSY: u8 = 17;
    pub const NO_ANSWER: u8 = 19;
    pub const SUBSCRIBER_ABSENT: u8 = 20;
    pub const CALL_REJECTED: u8 = 21;
    /// Bearer capability not authorised: the caller may not call, or
    /// no longer (its prepaid balance is used up).
    pub const NOT_AUTHORISED: u8 = 57;
    pub const INCOMPATIBLE_DESTINATION: u8 = 88;
    pub const INVALID_MESSAGE: u8 = 95;
    pub const TIMER_EXPIRY: u8 = 102;
    pub const PROTOCOL_ERROR: u8 = 111;
}

/// The Q.931 messages of a Fast Connect call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Setup,
    CallProceeding,
    Alerting,
    Connect,
    ReleaseComplete,
}

/// One fastStart logical channel: a codec and where its RTP goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Channel {
    pub law: Law,
    /// The RTP address of the channel's receiver (RTCP is multiplexed on
    /// it, RFC 5761).
    pub rtp: SocketAddrV4,
}

/// The content of one signalling message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signal {
    pub kind: Kind,
    pub call_id: CallId,
    /// The dialled number (SETUP).
    pub called_number: Option<String>,
    /// The caller's own number (SETUP).
    pub calling_number: Option<String>,
    /// AP-REQ in SETUP, AP-REP in the callee's first answer.
    pub kerberos: Option<Vec<u8>>,
    /// fastStart: the offer in SETUP (in order of preference), the chosen
    /// channel in CONNECT.
    pub channels: Vec<Channel>,
    /// Q.850 cause (RELEASE COMPLETE).
    pub cause: Option<u8>,
    /// The hashed token's sequence number (its `random`): rises by one per
    /// message in each direction.
    pub seq: u32,
    /// The hashed token's timestamp, seconds since 1970.
    pub timestamp: u32,
}

impl Signal {
    fn new(kind: Kind, call_id: CallId, seq: u32, now: SystemTime) -> Self {
        Self {
            kind,
            call_id,
            called_number: None,
            calling_number: None,
            kerberos: None,
            channels: Vec::new(),
            cause: None,
            seq,
            timestamp: unix_secs(now),
        }
    }

    fn release(call_id: CallId, cause: u8, seq: u32, now: SystemTime) -> Self {
        Self {
            cause: Some(cause),
            ..Self::new(Kind::ReleaseComplete, call_id, seq, now)
        }
    }
}

fn unix_secs(t: SystemTime) -> u32 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0)
}

/// A message to send, and the key its hashed token is made with; `None`
/// for a refusal sent before any key exists.
#[derive(Debug)]
pub struct Outgoing {
    pub signal: Signal,
    pub key: Option<SignallingKey>,
}

/// What happened to a call.
#[derive(Debug)]
pub enum Event {
    /// The callee is being alerted.
    Alerting,
    /// Connected: media flows on `channel`, sent to `remote`, with keys
    /// derived from the handshake (`Call::keys`).
    Connected { channel: Channel, remote: Channel },
    /// The call is over, with the Q.850 cause. `authenticated` is false
    /// only for a peer's refusal that came before any key existed: a hint
    /// that ends a call that never connected, and grants nothing.
    Released {
        cause: u8,
        by_peer: bool,
        authenticated: bool,
    },
}

/// A message the call refused, and why. The call goes on.
#[derive(Debug, thiserror::Error)]
pub enum Dropped {
    #[error("signalling message for another call")]
    OtherCall,
    #[error("{0:?} not expected in state {1:?}")]
    Unexpected(Kind, State),
    #[error("hashed token does not verify under the call's key (forged or altered)")]
    Integrity,
    #[error("replayed or reordered signalling: sequence {got}, last accepted {last}")]
    Replayed { got: u32, last: u32 },
    #[error("signalling timestamp {skew_secs} s from our clock (limit {SKEW:?})")]
    Stale { skew_secs: u64 },
    #[error("the callee's first answer carries no AP-REP")]
    NoApRep,
    #[error("handshake: {0}")]
    Handshake(#[from] HandshakeError),
    #[error("CONNECT chose no channel that was offered")]
    BadChannel,
}

/// Where a call stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// Caller: SETUP sent, nothing back yet.
    SetupSent,
    /// Caller: the callee answered (CALL PROCEEDING) and keys exist.
    Proceeding,
    /// Either side: alerting.
    Alerting,
    Connected,
    Released,
}

/// Why a SETUP was refused; `release` is the RELEASE COMPLETE to send.
#[derive(Debug)]
pub struct Refused {
    pub error: RefuseError,
    pub release: Outgoing,
}

#[derive(Debug, thiserror::Error)]
pub enum RefuseError {
    #[error("SETUP without {0}")]
    Missing(&'static str),
    #[error("the dialled number {0} is not this unit's")]
    UnknownNumber(String),
    #[error("{0}")]
    Handshake(#[from] HandshakeError),
    #[error("the SETUP's hashed token does not verify under the AP-REQ's subkey")]
    Integrity,
    #[error("SETUP timestamp {skew_secs} s from our clock")]
    Stale { skew_secs: u64 },
    #[error("no offered fastStart channel is G.711 µ-law or A-law")]
    NoCodec,
    #[error("the unit's proxy refused the caller (Q.850 cause {0})")]
    Proxy(u8),
}

impl RefuseError {
    /// The Q.850 cause for RELEASE COMPLETE.
    pub fn cause(&self) -> u8 {
        match self {
            Self::Missing(_) => cause::INVALID_MESSAGE,
            Self::UnknownNumber(_) => cause::UNALLOCATED_NUMBER,
            Self::Handshake(h) => h.q850_cause(),
            Self::Integrity | Self::Stale { .. } => cause::CALL_REJECTED,
            Self::NoCodec => cause::INCOMPATIBLE_DESTINATION,
            Self::Proxy(c) => *c,
        }
    }
}

/// One call, from either end.
pub struct Call {
    call_id: CallId,
    state: State,
    caller: Option<Caller>,
    keys: Option<CallKeys>,
    /// The peer's identity: for the callee, the caller's principal.
    pub peer: Option<Principal>,
    send_seq: u32,
    recv_seq: Option<u32>,
    local: Vec<Channel>,
    chosen: Option<(Channel, Channel)>,
    deadline: Option<SystemTime>,
    /// Messages refused by the integrity or replay checks.
    pub dropped: u64,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("call_id", &self.call_id)
            .field("state", &self.state)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

fn skew(timestamp: u32, now: SystemTime) -> u64 {
    u64::from(unix_secs(now).abs_diff(timestamp))
}

impl Call {
    /// Dials: `ticket` is the caller's service ticket for the callee's
    /// call principal; `offer` the fastStart channels this end receives
    /// on, in order of preference.
    pub fn dial(
        ticket: &Credential,
        call_id: CallId,
        called_number: &str,
        calling_number: Option<&str>,
        offer: Vec<Channel>,
        now: SystemTime,
    ) -> Result<(Self, Outgoing), HandshakeError> {
        let (ap_req, caller) = Caller::start(ticket, call_id, called_number, now)?;
        let key = caller.setup_key().clone();
        let mut setup = Signal::new(Kind::Setup, call_id, 1, now);
        setup.called_number = Some(called_number.to_owned());
        setup.calling_number = calling_number.map(str::to_owned);
        setup.kerberos = Some(ap_req);
        setup.channels = offer.clone();
        Ok((
            Self {
                call_id,
                state: State::SetupSent,
                caller: Some(caller),
                keys: None,
                peer: Some(ticket.server.clone()),
                send_seq: 1,
                recv_seq: None,
                local: offer,
                chosen: None,
                deadline: Some(now + T303),
                dropped: 0,
            },
            Outgoing {
                signal: setup,
                key: Some(key),
            },
        ))
    }

    /// The callee's side of a SETUP. `verify` checks the message's hashed
    /// token under a key (the wire module's check of the bytes that came).
    /// On success the call is in `Alerting` and the CALL PROCEEDING (with
    /// the AP-REP) and ALERTING are to be sent.
    #[allow(clippy::too_many_arguments)]
    pub fn answer_setup<K: ServiceKeys + ?Sized>(
        setup: &Signal,
        verify: &dyn Fn(&SignallingKey) -> bool,
        keys: &K,
        callee: &Principal,
        own_number: &str,
        local: &[Channel],
        replay: &mut ReplayCache,
        now: SystemTime,
    ) -> Result<(Self, Vec<Outgoing>), Box<Refused>> {
        let ap_req = Self::setup_ap_req(setup, own_number, now)?;
        let number = setup.called_number.as_deref().unwrap_or_default();
        let answered = handshake::answer(ap_req, keys, callee, setup.call_id, number, replay, now)
            .map_err(|e| Self::refuse(setup, e.into(), None, now))?;
        Self::answer_accepted(setup, verify, answered, local, now)
    }

    /// The RELEASE COMPLETE that refuses `setup` for `error`, under `key`
    /// once the caller can check it.
    pub fn refuse(
        setup: &Signal,
        error: RefuseError,
        key: Option<SignallingKey>,
        now: SystemTime,
    ) -> Box<Refused> {
        Box::new(Refused {
            release: Outgoing {
                signal: Signal::release(setup.call_id, error.cause(), 1, now),
                key,
            },
            error,
        })
    }

    /// The SETUP's AP-REQ, if the SETUP is for `own_number`: what a unit
    /// hands its proxy to accept (docs/call.md, "Where a call runs").
    pub fn setup_ap_req<'s>(
        setup: &'s Signal,
        own_number: &str,
        now: SystemTime,
    ) -> Result<&'s [u8], Box<Refused>> {
        let number = setup.called_number.as_deref().ok_or_else(|| {
            Self::refuse(setup, RefuseError::Missing("a called number"), None, now)
        })?;
        if number != own_number {
            return Err(Self::refuse(
                setup,
                RefuseError::UnknownNumber(number.to_owned()),
                None,
                now,
            ));
        }
        setup
            .kerberos
            .as_deref()
            .ok_or_else(|| Self::refuse(setup, RefuseError::Missing("an AP-REQ"), None, now))
    }

    /// The callee's side of a SETUP whose AP-REQ was accepted (here, or by
    /// the unit's proxy): checks the SETUP under the setup key, picks the
    /// codec, and returns the call in `Alerting` with the CALL PROCEEDING
    /// (carrying the AP-REP) and ALERTING to send.
    pub fn answer_accepted(
        setup: &Signal,
        verify: &dyn Fn(&SignallingKey) -> bool,
        answered: Answered,
        local: &[Channel],
        now: SystemTime,
    ) -> Result<(Self, Vec<Outgoing>), Box<Refused>> {
        let refuse = |error, key| Self::refuse(setup, error, key, now);
        // From here the refusal can be authenticated: the caller knows the
        // setup key.
        let sk = Some(answered.setup_key.clone());
        if !verify(&answered.setup_key) {
            return Err(refuse(RefuseError::Integrity, sk));
        }
        let s = skew(setup.timestamp, now);
        if s > SKEW.as_secs() {
            return Err(refuse(RefuseError::Stale { skew_secs: s }, sk));
        }
        // The caller's first preference that this end can also receive.
        let Some(remote) = setup
            .channels
            .iter()
            .find(|c| local.iter().any(|l| l.law == c.law))
            .copied()
        else {
            return Err(refuse(RefuseError::NoCodec, sk));
        };
        let Some(ours) = local.iter().find(|l| l.law == remote.law).copied() else {
            return Err(refuse(RefuseError::NoCodec, sk));
        };
        let send = answered.keys.send_signalling();
        let mut proceeding = Signal::new(Kind::CallProceeding, setup.call_id, 1, now);
        proceeding.kerberos = Some(answered.ap_rep);
        let alerting = Signal::new(Kind::Alerting, setup.call_id, 2, now);
        Ok((
            Self {
                call_id: setup.call_id,
                state: State::Alerting,
                caller: None,
                keys: Some(answered.keys),
                peer: Some(answered.caller),
                send_seq: 2,
                recv_seq: Some(setup.seq),
                local: vec![ours],
                chosen: Some((ours, remote)),
                deadline: None,
                dropped: 0,
            },
            vec![
                Outgoing {
                    signal: proceeding,
                    key: Some(send.clone()),
                },
                Outgoing {
                    signal: alerting,
                    key: Some(send),
                },
            ],
        ))
    }

    pub fn call_id(&self) -> &CallId {
        &self.call_id
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// The call's keys, once the handshake is done.
    pub fn keys(&self) -> Option<&CallKeys> {
        self.keys.as_ref()
    }

    /// This end's channel and the peer's, once chosen.
    pub fn channels(&self) -> Option<(Channel, Channel)> {
        self.chosen
    }

    /// When [`Call::poll`] wants to be called.
    pub fn deadline(&self) -> Option<SystemTime> {
        self.deadline
    }

    fn next(&mut self, kind: Kind, now: SystemTime) -> Outgoing {
        self.send_seq = self.send_seq.wrapping_add(1);
        Outgoing {
            signal: Signal::new(kind, self.call_id, self.send_seq, now),
            key: self.keys.as_ref().map(CallKeys::send_signalling),
        }
    }

    fn release(&mut self, cause: u8, now: SystemTime) -> Outgoing {
        let mut out = self.next(Kind::ReleaseComplete, now);
        out.signal.cause = Some(cause);
        self.state = State::Released;
        self.deadline = None;
        out
    }

    /// The callee answers: CONNECT with the chosen channel.
    pub fn accept(&mut self, now: SystemTime) -> Option<(Outgoing, Event)> {
        if self.state != State::Alerting || self.caller.is_some() || self.keys.is_none() {
            return None;
        }
        let (ours, remote) = self.chosen?;
        let mut out = self.next(Kind::Connect, now);
        out.signal.channels = vec![ours];
        self.state = State::Connected;
        Some((
            out,
            Event::Connected {
                channel: ours,
                remote,
            },
        ))
    }

    /// Hangs up (or refuses while ringing, with `cause`).
    pub fn hang_up(&mut self, cause: u8, now: SystemTime) -> Option<(Outgoing, Event)> {
        if self.state == State::Released {
            return None;
        }
        Some((
            self.release(cause, now),
            Event::Released {
                cause,
                by_peer: false,
                authenticated: true,
            },
        ))
    }

    /// Timers: the caller gives up on a callee that does not answer.
    pub fn poll(&mut self, now: SystemTime) -> Option<(Outgoing, Event)> {
        let due = self.deadline?;
        if now < due {
            return None;
        }
        let cause = if self.state == State::Alerting {
            cause::NO_ANSWER
        } else {
            cause::TIMER_EXPIRY
        };
        self.hang_up(cause, now)
    }

    /// A message from the peer. `verify` checks its hashed token under a
    /// key; `Err` means it was dropped and the call is unchanged.
    pub fn on_signal(
        &mut self,
        sig: &Signal,
        verify: &dyn Fn(&SignallingKey) -> bool,
        now: SystemTime,
    ) -> Result<Option<Event>, Dropped> {
        let r = self.check(sig, verify, now);
        if r.is_err() {
            self.dropped += 1;
        }
        r
    }

    fn check(
        &mut self,
        sig: &Signal,
        verify: &dyn Fn(&SignallingKey) -> bool,
        now: SystemTime,
    ) -> Result<Option<Event>, Dropped> {
        if sig.call_id != self.call_id {
            return Err(Dropped::OtherCall);
        }
        if self.state == State::Released || sig.kind == Kind::Setup {
            return Err(Dropped::Unexpected(sig.kind, self.state));
        }
        if self.keys.is_none() {
            // The callee's first answer: the AP-REP makes the keys.
            if sig.kind == Kind::ReleaseComplete && sig.kerberos.is_none() {
                // A refusal: under the setup key if the callee got that far,
                // else unauthenticated (a refused AP-REQ leaves no key). It
                // ends a call that never connected, which a forger who sees
                // the SETUP could do with a TCP reset as well.
                let authenticated = self.caller.as_ref().is_some_and(|c| verify(c.setup_key()));
                self.state = State::Released;
                self.deadline = None;
                return Ok(Some(Event::Released {
                    cause: sig.cause.unwrap_or(cause::CALL_REJECTED),
                    by_peer: true,
                    authenticated,
                }));
            }
            let ap_rep = sig.kerberos.as_deref().ok_or(Dropped::NoApRep)?;
            let caller = self.caller.take().ok_or(Dropped::NoApRep)?;
            let keys = match caller.finish(ap_rep) {
                Ok(k) => k,
                Err(e) => {
                    // Keep waiting for the genuine answer.
                    return Err(Dropped::Handshake(e));
                }
            };
            if !verify(&keys.recv_signalling()) {
                return Err(Dropped::Integrity);
            }
            self.keys = Some(keys);
        } else {
            let key = self.keys.as_ref().map(CallKeys::recv_signalling);
            if !key.as_ref().is_some_and(verify) {
                return Err(Dropped::Integrity);
            }
        }
        if let Some(last) = self.recv_seq {
            if sig.seq <= last {
                return Err(Dropped::Replayed { got: sig.seq, last });
            }
        }
        let s = skew(sig.timestamp, now);
        if s > SKEW.as_secs() {
            return Err(Dropped::Stale { skew_secs: s });
        }
        self.recv_seq = Some(sig.seq);
        self.transition(sig, now)
    }

    fn transition(&mut self, sig: &Signal, now: SystemTime) -> Result<Option<Event>, Dropped> {
        match (sig.kind, self.state) {
            (Kind::ReleaseComplete, _) => {
                self.state = State::Released;
                self.deadline = None;
                Ok(Some(Event::Released {
                    cause: sig.cause.unwrap_or(cause::NORMAL_CLEARING),
                    by_peer: true,
                    authenticated: true,
                }))
            }
            (Kind::CallProceeding, State::SetupSent) => {
                self.state = State::Proceeding;
                self.deadline = Some(now + T310);
                Ok(None)
            }
            (Kind::Alerting, State::SetupSent | State::Proceeding) => {
                self.state = State::Alerting;
                self.deadline = Some(now + T301);
                Ok(Some(Event::Alerting))
            }
            (Kind::Connect, State::SetupSent | State::Proceeding | State::Alerting)
                if self.chosen.is_none() =>
            {
                let remote = *sig.channels.first().ok_or(Dropped::BadChannel)?;
                let ours = self
                    .local
                    .iter()
                    .find(|l| l.law == remote.law)
                    .copied()
                    .ok_or(Dropped::BadChannel)?;
                self.chosen = Some((ours, remote));
                self.state = State::Connected;
                self.deadline = None;
                Ok(Some(Event::Connected {
                    channel: ours,
                    remote,
                }))
            }
            (kind, state) => Err(Dropped::Unexpected(kind, state)),
        }
    }
}

#[cfg(test)]
mod tests;
