//! The unit's side of the attach protocol (docs/attach.md §5), as a
//! protocol core: it builds requests from the unit's Kerberos credentials
//! and checks the proxy manager's answers. No I/O; time is passed in.
//!
//! The credentials come from the unit's own KDC exchanges
//! ([`fetch_credentials`], over `roamgate_krb::client`): a forwardable TGT
//! got with the unit's long-term key, a service ticket for the proxy
//! manager, and a forwarded TGT to hand over. The long-term key is used
//! for the AS exchange only and never leaves the unit.

use std::time::{Duration, SystemTime};

use roamgate_directory::IdentityCode;
use roamgate_krb::ap::{build_ap_req, ApClient, ApError, ApReqParams};
use roamgate_krb::client::{
    get_forwarded_tgt, get_service_ticket, get_tgt, AsOptions, ClientError, ClientSecret,
    KdcTransport,
};
use roamgate_krb::cred::{build_krb_cred, CredError};
use roamgate_krb::credential::Credential;
use roamgate_krb::messages::{self, ticket_flags};
use roamgate_krb::priv_safe::{Direction, PrivSafeError, ReplayMode, SecureChannel};
use roamgate_krb::Principal;
use roamgate_krb_crypto::Key;
use zeroize::Zeroizing;

use crate::wire::{bound_part, Cause, MessageType, Repr, StatusBody, WireError};

/// What a unit holds to switch on: a service ticket for the proxy
/// manager's principal and a forwarded TGT, both in the unit's name.
#[derive(Clone, Debug)]
pub struct UnitCredentials {
    pub manager_ticket: Credential,
    pub forwarded_tgt: Credential,
}

/// Gets a unit's credentials from its KDC: a forwardable TGT with the
/// unit's long-term `keys` (AS), then a ticket for `manager` and a
/// forwarded TGT (TGS).
pub async fn fetch_credentials(
    transport: &KdcTransport,
    unit: Principal,
    keys: Vec<Key>,
    manager: Principal,
    clock: impl Fn() -> SystemTime,
) -> Result<UnitCredentials, ClientError> {
    let opts = AsOptions {
        forwardable: true,
        ..Default::default()
    };
    let tgt = get_tgt(transport, unit, ClientSecret::Keys(keys), opts, &clock).await?;
    let manager_ticket = get_service_ticket(transport, &tgt, manager, &clock).await?;
    let forwarded_tgt = get_forwarded_tgt(transport, &tgt, &clock).await?;
    Ok(UnitCredentials {
        manager_ticket,
        forwarded_tgt,
    })
}

/// Why the unit could not build a request or accept an answer.
#[derive(Debug, thiserror::Error)]
pub enum UnitError {
    #[error("attach frame: {0}")]
    Wire(#[from] WireError),
    #[error("building the AP-REQ failed: {0}")]
    Ap(ApError),
    #[error("building the KRB-CRED failed: {0}")]
    Cred(#[from] CredError),
    #[error(
        "the proxy manager's ticket is for {ticket}, the forwarded TGT for {tgt}: \
         both must be the unit's own; fetch them again with the unit's key"
    )]
    CredentialMismatch { ticket: Principal, tgt: Principal },
    #[error(
        "the credential to forward ({0}) is not a forwarded TGT; \
         get one with a TGS request with the FORWARDED option"
    )]
    NotForwardedTgt(Principal),
    #[error("the unit's {0} has expired or is not yet valid; fetch new credentials")]
    Expired(&'static str),
    #[error("the system random source failed")]
    Random,
    #[error("a {got} arrived, but no matching request is outstanding (stale, or not for us)")]
    Unsolicited { got: MessageType },
    #[error(
        "the proxy manager refused the {request}: {cause:?}{}",
        if *retry_after > 0 { format!(" (retry after {retry_after} s)") } else { String::new() }
    )]
    Refused {
        request: MessageType,
        cause: Cause,
        retry_after: u16,
    },
    #[error(
        "the {0} failed mutual authentication: it does not come from the proxy manager \
         our ticket is for ({1})"
    )]
    Mutual(MessageType, ApError),
    #[error(
        "no answer to the {request} after {attempts} attempts: \
         check the base station address and that its proxy manager runs"
    )]
    NoAnswer { request: MessageType, attempts: u32 },
    #[error("a KRB-PRIV of the exchange did not seal or open: {0}")]
    Status(PrivSafeError),
}

/// What an answer told the unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnitEvent {
    /// The proxy manager proved itself and took the switch-on.
    SwitchedOn,
    /// The proxy manager confirmed the switch-off.
    SwitchedOff,
    /// The proxy's state.
    Status(StatusBody),
    /// The proxy's answer to a proxy request: the plaintext of its
    /// KRB-PRIV, a `proxy_op::ProxyReply` for the request's op.
    Proxy(Zeroizing<Vec<u8>>),
}

#[derive(Debug)]
struct Pending {
    kind: MessageType,
    nonce: u64,
    client: ApClient,
    /// A proxy request's body, sent again in each fresh frame.
    body: Option<Vec<u8>>,
    sent_at: SystemTime,
    /// 1 for the first frame of this request.
    attempt: u32,
}

/// The first retransmission of an unanswered request (docs/attach.md §2).
pub const RETRANSMIT_INITIAL: Duration = Duration::from_secs(1);
/// The retransmission interval stops doubling here.
pub const RETRANSMIT_MAX: Duration = Duration::from_secs(8);
/// Frames sent for one request before the unit gives up (1+2+4+8+8 s).
pub const MAX_ATTEMPTS: u32 = 5;

/// How long after its `attempt`-th frame a request is sent again.
fn retransmit_after(attempt: u32) -> Duration {
    RETRANSMIT_INITIAL
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(RETRANSMIT_MAX)
}

/// The unit's protocol core: at most one request outstanding.
#[derive(Debug)]
pub struct Unit {
    identity: IdentityCode,
    creds: UnitCredentials,
    pending: Option<Pending>,
    switched_on: bool,
    /// The key of the last proxy answer: a KRB-CRED in it is sealed under
    /// it (docs/attach.md §5.1).
    proxy_key: Option<Key>,
}

impl Unit {
    /// A unit with its identity code and credentials; refuses credentials
    /// that could not make a valid switch-on.
    pub fn new(identity: IdentityCode, creds: UnitCredentials) -> Result<Self, UnitError> {
        let (ticket, tgt) = (&creds.manager_ticket, &creds.forwarded_tgt);
        if !messages::same_principal(&ticket.client, &tgt.client) {
            return Err(UnitError::CredentialMismatch {
                ticket: ticket.client.clone(),
                tgt: tgt.client.clone(),
            });
        }
        if !tgt.is_tgt() || tgt.flags & ticket_flags::FORWARDED == 0 {
            return Err(UnitError::NotForwardedTgt(tgt.server.clone()));
        }
        Ok(Self {
            identity,
            creds,
            pending: None,
            switched_on: false,
            proxy_key: None,
        })
    }

    pub fn identity(&self) -> IdentityCode {
        self.identity
    }

    /// The unit's principal.
    pub fn principal(&self) -> &Principal {
        &self.creds.manager_ticket.client
    }

    /// Whether the last switch-on was acknowledged (and not switched off).
    pub fn is_switched_on(&self) -> bool {
        self.switched_on
    }

    /// Replaces the credentials (after renewing them).
    pub fn set_credentials(&mut self, creds: UnitCredentials) -> Result<(), UnitError> {
        let fresh = Self::new(self.identity, creds)?;
        self.creds = fresh.creds;
        Ok(())
    }

    /// Builds a switch-on: an AP-REQ for the proxy manager (mutual, fresh
    /// subkey, checksum over the frame's bound part) and the forwarded TGT
    /// in a KRB-CRED under that subkey.
    pub fn switch_on(&mut self, now: SystemTime) -> Result<Vec<u8>, UnitError> {
        self.send(MessageType::SwitchOn, 1, now)
    }

    /// Builds a switch-off (a fresh AP-REQ bound to it).
    pub fn switch_off(&mut self, now: SystemTime) -> Result<Vec<u8>, UnitError> {
        self.send(MessageType::SwitchOff, 1, now)
    }

    /// Builds a status request (a fresh AP-REQ bound to it).
    pub fn status_request(&mut self, now: SystemTime) -> Result<Vec<u8>, UnitError> {
        self.send(MessageType::StatusRequest, 1, now)
    }

    /// Builds a proxy request carrying `body` (a `proxy_op::ProxyOp`) in
    /// a KRB-PRIV under the AP-REQ's subkey.
    pub fn proxy_request(&mut self, body: &[u8], now: SystemTime) -> Result<Vec<u8>, UnitError> {
        self.send_with(MessageType::ProxyRequest, 1, Some(body.to_vec()), now)
    }

    /// The key of the last proxy answer, which a KRB-CRED in it (a call
    /// ticket) is sealed under; taken once.
    pub fn take_proxy_key(&mut self) -> Option<Key> {
        self.proxy_key.take()
    }

    /// When [`Unit::handle_timeout`] should next be called: the
    /// retransmission time of the outstanding request.
    pub fn poll_timeout(&self) -> Option<SystemTime> {
        self.pending
            .as_ref()
            .map(|p| p.sent_at + retransmit_after(p.attempt))
    }

    /// Past the outstanding request's retransmission time: a fresh frame of
    /// the same request (new nonce and authenticator, since the proxy
    /// manager refuses a resent one), or [`UnitError::NoAnswer`] after
    /// [`MAX_ATTEMPTS`]. `Ok(None)` when nothing is due.
    pub fn handle_timeout(&mut self, now: SystemTime) -> Result<Option<Vec<u8>>, UnitError> {
        let Some(p) = &self.pending else {
            return Ok(None);
        };
        if now < p.sent_at + retransmit_after(p.attempt) {
            return Ok(None);
        }
        let (kind, attempt, body) = (p.kind, p.attempt, p.body.clone());
        if attempt >= MAX_ATTEMPTS {
            self.pending = None;
            return Err(UnitError::NoAnswer {
                request: kind,
                attempts: attempt,
            });
        }
        self.send_with(kind, attempt + 1, body, now).map(Some)
    }

    fn send(
        &mut self,
        kind: MessageType,
        attempt: u32,
        now: SystemTime,
    ) -> Result<Vec<u8>, UnitError> {
        self.send_with(kind, attempt, None, now)
    }

    fn send_with(
        &mut self,
        kind: MessageType,
        attempt: u32,
        body: Option<Vec<u8>>,
        now: SystemTime,
    ) -> Result<Vec<u8>, UnitError> {
        if kind == MessageType::SwitchOn && !self.creds.forwarded_tgt.is_valid_at(now) {
            return Err(UnitError::Expired("forwarded TGT"));
        }
        let (nonce, ap_req, client) = self.ap_req(kind, now)?;
        let identity = self.identity;
        let krb_cred;
        let krb_priv;
        let repr = match kind {
            MessageType::ProxyRequest => {
                let subkey = client
                    .subkey()
                    .ok_or(UnitError::Ap(ApError::MutualFailed))?;
                krb_priv =
                    SecureChannel::new(subkey.clone(), Direction::Initiator, ReplayMode::Timestamp)
                        .seal_priv(body.as_deref().unwrap_or_default(), now)
                        .map_err(UnitError::Status)?;
                Repr::ProxyRequest {
                    identity,
                    nonce,
                    ap_req: &ap_req,
                    krb_priv: &krb_priv,
                }
            }
            MessageType::SwitchOn => {
                let subkey = client
                    .subkey()
                    .ok_or(UnitError::Ap(ApError::MutualFailed))?;
                krb_cred =
                    build_krb_cred(std::slice::from_ref(&self.creds.forwarded_tgt), subkey, now)?;
                Repr::SwitchOn {
                    identity,
                    nonce,
                    ap_req: &ap_req,
                    krb_cred: &krb_cred,
                }
            }
            MessageType::SwitchOff => Repr::SwitchOff {
                identity,
                nonce,
                ap_req: &ap_req,
            },
            _ => Repr::StatusRequest {
                identity,
                nonce,
                ap_req: &ap_req,
            },
        };
        let frame = repr.to_bytes()?;
        self.pending = Some(Pending {
            kind,
            nonce,
            client,
            body,
            sent_at: now,
            attempt,
        });
        Ok(frame)
    }

    fn ap_req(
        &self,
        kind: MessageType,
        now: SystemTime,
    ) -> Result<(u64, Vec<u8>, ApClient), UnitError> {
        if !self.creds.manager_ticket.is_valid_at(now) {
            return Err(UnitError::Expired("proxy manager ticket"));
        }
        let mut n = [0u8; 8];
        messages::random_bytes(&mut n).map_err(|_| UnitError::Random)?;
        let nonce = u64::from_be_bytes(n);
        let bound = bound_part(kind, &self.identity, nonce);
        let (ap_req, client) = build_ap_req(
            &self.creds.manager_ticket,
            &ApReqParams {
                mutual: true,
                subkey: true,
                seq_number: None,
                app_data: Some(&bound),
            },
            now,
        )
        .map_err(UnitError::Ap)?;
        Ok((nonce, ap_req, client))
    }

    /// Handles a datagram from the base station. An answer that does not
    /// match the outstanding request, or fails mutual authentication,
    /// leaves that request outstanding (the genuine answer may follow).
    pub fn handle_input(&mut self, bytes: &[u8], now: SystemTime) -> Result<UnitEvent, UnitError> {
        let repr = Repr::parse_bytes(bytes)?;
        let got = repr.msg_type();
        let Some(p) = self
            .pending
            .as_ref()
            .filter(|p| repr.identity() == self.identity && repr.nonce() == p.nonce)
        else {
            return Err(UnitError::Unsolicited { got });
        };
        let event = match (p.kind, repr) {
            (
                kind,
                Repr::Refused {
                    refused,
                    cause,
                    retry_after,
                    ..
                },
            ) if refused == kind as u8 => {
                // Unauthenticated, like an ICMP error: it can only end an
                // attempt an on-path attacker could stop anyway.
                self.pending = None;
                return Err(UnitError::Refused {
                    request: kind,
                    cause,
                    retry_after,
                });
            }
            (MessageType::SwitchOn, Repr::SwitchOnAck { ap_rep, .. }) => {
                p.client
                    .verify_ap_rep(ap_rep)
                    .map_err(|e| UnitError::Mutual(got, e))?;
                self.switched_on = true;
                UnitEvent::SwitchedOn
            }
            (MessageType::SwitchOff, Repr::SwitchOffAck { ap_rep, .. }) => {
                p.client
                    .verify_ap_rep(ap_rep)
                    .map_err(|e| UnitError::Mutual(got, e))?;
                self.switched_on = false;
                UnitEvent::SwitchedOff
            }
            (
                MessageType::StatusRequest,
                Repr::StatusAnswer {
                    ap_rep, krb_priv, ..
                },
            ) => UnitEvent::Status(StatusBody::parse(
                &open_answer(&p.client, ap_rep, krb_priv, got, now)?.0,
            )?),
            (
                MessageType::ProxyRequest,
                Repr::ProxyAnswer {
                    ap_rep, krb_priv, ..
                },
            ) => {
                let (plain, key) = open_answer(&p.client, ap_rep, krb_priv, got, now)?;
                self.proxy_key = Some(key);
                UnitEvent::Proxy(Zeroizing::new(plain))
            }
            _ => return Err(UnitError::Unsolicited { got }),
        };
        self.pending = None;
        Ok(event)
    }
}

/// An answer's AP-REP (mutual authentication) and the KRB-PRIV it carries.
fn open_answer(
    client: &ApClient,
    ap_rep: &[u8],
    krb_priv: &[u8],
    got: MessageType,
    now: SystemTime,
) -> Result<(Vec<u8>, Key), UnitError> {
    let info = client
        .verify_ap_rep(ap_rep)
        .map_err(|e| UnitError::Mutual(got, e))?;
    let plain = SecureChannel::for_initiator(client, &info)
        .open_priv(krb_priv, now)
        .map_err(UnitError::Status)?;
    Ok((plain, info.key))
}
