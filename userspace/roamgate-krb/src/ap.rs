//! AP exchange (RFC 4120 §3.2): AP-REQ and AP-REP, with mutual
//! authentication and subkeys.
//!
//! Client side: [`build_ap_req`] turns a service ticket ([`Credential`]) into
//! an AP-REQ and an [`ApClient`] that verifies the service's AP-REP.
//!
//! Service side: [`accept_ap_req`] decrypts the ticket with the service's
//! long-term key (found by principal, etype and kvno through
//! [`ServiceKeys`]), checks the server name, the ticket's times, the
//! authenticator's time against the 300 s skew limit, the replay cache and
//! the authenticator checksum, and returns what was [`Accepted`]. Its
//! [`Accepted::ap_rep`] builds the AP-REP for mutual authentication.
//!
//! No I/O; time is passed in.

use std::time::{Duration, SystemTime};

use rasn_kerberos::{ApRep, ApReq, Authenticator, EncApRepPart, EncTicketPart, KerberosTime};
use roamgate_krb_crypto::{Etype, Key};

use crate::credential::Credential;
use crate::messages::{
    self, ap_options, decode, encode, error_code, flags, flags_value, int, int_value, msg_type,
    ticket_flags, MessageError, PVNO,
};
use crate::principal::Principal;
use crate::replay::{skew_between, AuthenticatorId, ReplayCache, ReplayError, CLOCK_SKEW};
use crate::usage;

/// Why an AP-REQ or AP-REP was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ApError {
    #[error("malformed AP message: {0}")]
    Malformed(#[from] MessageError),
    #[error("wrong protocol version or message type in {0}")]
    BadVersion(&'static str),
    #[error("ticket for another service: the ticket is for {ticket_for}, this is {we_are}")]
    NotUs {
        ticket_for: Principal,
        we_are: Principal,
    },
    #[error("no key for {service} with etype {etype}{}", kvno.map(|k| format!(" and kvno {k}")).unwrap_or_default())]
    NoKey {
        service: Principal,
        etype: i32,
        kvno: Option<u32>,
    },
    #[error("ticket does not decrypt with the key of {0} (wrong key version or forged)")]
    BadTicketIntegrity(Principal),
    #[error("authenticator does not decrypt with the ticket's session key")]
    BadAuthenticatorIntegrity,
    #[error("authenticator client {authenticator} does not match ticket client {ticket}")]
    BadMatch {
        ticket: Principal,
        authenticator: Principal,
    },
    #[error("clock skew too great: authenticator time is {skew_secs} s from ours (limit {limit_secs} s)")]
    Skew { skew_secs: u64, limit_secs: u64 },
    #[error("ticket not yet valid")]
    TicketNotYetValid,
    #[error("ticket expired")]
    TicketExpired,
    #[error("ticket is marked invalid")]
    TicketInvalid,
    #[error("replayed authenticator from {0}")]
    Replay(Principal),
    #[error("replay cache full; refusing authenticators until old ones expire")]
    ReplayCacheFull,
    #[error("authenticator carries no checksum over the application data")]
    ChecksumMissing,
    #[error("authenticator checksum does not match the application data")]
    ChecksumMismatch,
    #[error("mutual authentication failed: the AP-REP does not answer our authenticator")]
    MutualFailed,
}

/// The KRB-ERROR a service sends back when it refuses an AP-REQ.
pub fn error_reply(
    err: &ApError,
    service: &Principal,
    now: SystemTime,
) -> Result<Vec<u8>, MessageError> {
    let e_text = err.to_string();
    let reply = |e_text| {
        messages::krb_error(
            &messages::ErrorSpec {
                code: err.error_code(),
                server: service,
                client: None,
                ctime: None,
                e_text,
                e_data: None,
            },
            now,
        )
    };
    // The text may hold characters a KerberosString cannot carry.
    reply(Some(&e_text))
        .or_else(|_| reply(None))
        .map(|e| encode(&e))
}

impl ApError {
    /// The KRB-ERROR code a service sends back for this error.
    pub fn error_code(&self) -> i32 {
        use error_code::*;
        match self {
            ApError::Malformed(_) => KRB_AP_ERR_MSG_TYPE,
            ApError::BadVersion(_) => KRB_AP_ERR_BADVERSION,
            ApError::NotUs { .. } => KRB_AP_ERR_NOT_US,
            ApError::NoKey { kvno: Some(_), .. } => KRB_AP_ERR_BADKEYVER,
            ApError::NoKey { kvno: None, .. } => KRB_AP_ERR_NOKEY,
            ApError::BadTicketIntegrity(_) | ApError::BadAuthenticatorIntegrity => {
                KRB_AP_ERR_BAD_INTEGRITY
            }
            ApError::BadMatch { .. } => KRB_AP_ERR_BADMATCH,
            ApError::Skew { .. } => KRB_AP_ERR_SKEW,
            ApError::TicketNotYetValid | ApError::TicketInvalid => KRB_AP_ERR_TKT_NYV,
            ApError::TicketExpired => KRB_AP_ERR_TKT_EXPIRED,
            ApError::Replay(_) => KRB_AP_ERR_REPEAT,
            ApError::ReplayCacheFull => KRB_ERR_GENERIC,
            ApError::ChecksumMissing => KRB_AP_ERR_INAPP_CKSUM,
            ApError::ChecksumMismatch => KRB_AP_ERR_MODIFIED,
            ApError::MutualFailed => KRB_AP_ERR_MUT_FAIL,
        }
    }
}

/// Where a service finds its long-term keys (a keytab, a KDC database).
pub trait ServiceKeys {
    /// The key of `service` for `etype`; at `kvno` if the ticket names
    /// one, else the newest.
    fn service_key(&self, service: &Principal, etype: i32, kvno: Option<u32>) -> Option<Key>;
}

/// An in-memory set of service keys: (principal, kvno, key).
#[derive(Clone, Debug, Default)]
pub struct KeySet(pub Vec<(Principal, u32, Key)>);

impl ServiceKeys for KeySet {
    fn service_key(&self, service: &Principal, etype: i32, kvno: Option<u32>) -> Option<Key> {
        self.0
            .iter()
            .filter(|(p, k, key)| {
                messages::same_principal(p, service)
                    && key.etype().to_i32() == etype
                    && kvno.is_none_or(|v| v == *k)
            })
            .max_by_key(|(_, k, _)| *k)
            .map(|(_, _, key)| key.clone())
    }
}

/// A keytab serves its keys: of the named kvno, else the newest.
impl ServiceKeys for crate::keytab::Keytab {
    fn service_key(&self, service: &Principal, etype: i32, kvno: Option<u32>) -> Option<Key> {
        let etype = Etype::from_i32(etype)?;
        self.find(service, Some(etype), kvno).map(|e| e.key.clone())
    }
}

impl KeySet {
    /// The principals with keys in this set (each once).
    pub fn principals(&self) -> Vec<Principal> {
        let mut v: Vec<Principal> = Vec::new();
        for (p, _, _) in &self.0 {
            if !v.iter().any(|q| messages::same_principal(q, p)) {
                v.push(p.clone());
            }
        }
        v
    }
}

// ---------------------------------------------------------------------------
// Client side

/// Options for [`build_ap_req`].
#[derive(Clone, Debug, Default)]
pub struct ApReqParams<'a> {
    /// Ask the service to prove itself with an AP-REP.
    pub mutual: bool,
    /// Send a fresh subkey of the session key's etype.
    pub subkey: bool,
    /// Initial sequence number for KRB-SAFE/KRB-PRIV.
    pub seq_number: Option<u32>,
    /// Application data bound into the authenticator's checksum.
    pub app_data: Option<&'a [u8]>,
}

/// The client's state between sending an AP-REQ and reading the AP-REP.
#[derive(Debug)]
pub struct ApClient {
    session_key: Key,
    ctime: KerberosTime,
    cusec: u32,
    subkey: Option<Key>,
    seq_number: Option<u32>,
}

/// What the AP-REP told the client.
#[derive(Debug)]
pub struct ApRepInfo {
    /// The key for KRB-PRIV/KRB-SAFE: the service's subkey if it sent
    /// one, else ours, else the session key (RFC 4120 §3.2.6).
    pub key: Key,
    /// The service's initial sequence number.
    pub seq_number: Option<u32>,
}

/// Builds an authenticator for `cred` stamped `now`.
pub(crate) fn authenticator(
    cred: &Credential,
    cksum: Option<rasn_kerberos::Checksum>,
    subkey: Option<&Key>,
    seq_number: Option<u32>,
    now: SystemTime,
) -> Result<(Authenticator, KerberosTime, u32), MessageError> {
    let (cname, crealm) = messages::to_principal_name(&cred.client)?;
    let (ctime, cusec) = messages::to_kerberos_time_usec(now)?;
    Ok((
        Authenticator {
            authenticator_vno: int(PVNO),
            crealm,
            cname,
            cksum,
            cusec: int(i64::from(cusec)),
            ctime: ctime.clone(),
            subkey: subkey.map(messages::key_to_wire),
            seq_number,
            authorization_data: None,
        },
        ctime,
        cusec,
    ))
}

/// Wraps a ticket and a sealed authenticator into an AP-REQ.
pub(crate) fn ap_req(
    cred: &Credential,
    options: u32,
    auth: &Authenticator,
    auth_usage: u32,
) -> ApReq {
    ApReq {
        pvno: int(PVNO),
        msg_type: int(msg_type::AP_REQ),
        ap_options: rasn_kerberos::ApOptions(flags(options)),
        ticket: cred.ticket.clone(),
        authenticator: messages::seal(&cred.session_key, auth_usage, None, auth),
    }
}

/// Builds an AP-REQ for the service ticket `cred`.
pub fn build_ap_req(
    cred: &Credential,
    params: &ApReqParams<'_>,
    now: SystemTime,
) -> Result<(Vec<u8>, ApClient), ApError> {
    let subkey = params.subkey.then(|| Key::random(cred.session_key.etype()));
    let cksum = params
        .app_data
        .map(|d| messages::checksum(&cred.session_key, usage::AP_REQ_AUTHENTICATOR_CKSUM, d));
    let (auth, ctime, cusec) = authenticator(cred, cksum, subkey.as_ref(), params.seq_number, now)?;
    let opts = if params.mutual {
        ap_options::MUTUAL_REQUIRED
    } else {
        0
    };
    let req = ap_req(cred, opts, &auth, usage::AP_REQ_AUTHENTICATOR);
    Ok((
        encode(&req),
        ApClient {
            session_key: cred.session_key.clone(),
            ctime,
            cusec,
            subkey,
            seq_number: params.seq_number,
        },
    ))
}

impl ApClient {
    /// Our subkey, if we sent one.
    pub fn subkey(&self) -> Option<&Key> {
        self.subkey.as_ref()
    }

    /// Our initial sequence number, if we sent one.
    pub fn seq_number(&self) -> Option<u32> {
        self.seq_number
    }

    /// The key to use when no AP-REP comes back (no mutual auth).
    pub fn key_without_ap_rep(&self) -> Key {
        self.subkey
            .clone()
            .unwrap_or_else(|| self.session_key.clone())
    }

    /// Verifies the service's AP-REP: it must decrypt with the session key
    /// and echo our ctime and cusec.
    pub fn verify_ap_rep(&self, bytes: &[u8]) -> Result<ApRepInfo, ApError> {
        let rep: ApRep = decode(bytes)?;
        if !messages::is_version(&rep.pvno, &rep.msg_type, msg_type::AP_REP) {
            return Err(ApError::BadVersion("AP-REP"));
        }
        let part: messages::Wiped<EncApRepPart> =
            messages::open_wiped(&self.session_key, usage::AP_REP_ENC_PART, &rep.enc_part)
                .map_err(|e| match e {
                    e if e.is_integrity_failure() => ApError::MutualFailed,
                    other => ApError::Malformed(other),
                })?;
        if part.ctime != self.ctime || int_value(&part.cusec) != Some(i64::from(self.cusec)) {
            return Err(ApError::MutualFailed);
        }
        let key = match &part.subkey {
            Some(k) => messages::key_from_wire(k)?,
            None => self.key_without_ap_rep(),
        };
        Ok(ApRepInfo {
            key,
            seq_number: part.seq_number,
        })
    }
}

// ---------------------------------------------------------------------------
// Service side

/// An AP-REQ the service accepted.
#[derive(Debug)]
pub struct Accepted {
    pub client: Principal,
    /// The service principal the ticket was for.
    pub server: Principal,
    pub session_key: Key,
    /// The client's subkey, if it sent one.
    pub subkey: Option<Key>,
    /// The client's initial sequence number.
    pub seq_number: Option<u32>,
    pub mutual_required: bool,
    pub ticket_flags: u32,
    pub auth_time: SystemTime,
    pub end_time: SystemTime,
    ctime: KerberosTime,
    cusec: i64,
}

/// How [`accept_ap_req`] checks a request.
#[derive(Clone, Debug)]
pub struct AcceptParams<'a> {
    /// The service principal the ticket must be for; `None` accepts any
    /// principal the keys know.
    pub service: Option<&'a Principal>,
    /// Application data the authenticator checksum must cover; `None`
    /// does not require a checksum.
    pub app_data: Option<&'a [u8]>,
    /// Clock-skew limit.
    pub skew: Duration,
}

impl Default for AcceptParams<'_> {
    fn default() -> Self {
        Self {
            service: None,
            app_data: None,
            skew: CLOCK_SKEW,
        }
    }
}

/// Verifies an AP-REQ on the service side.
pub fn accept_ap_req<K: ServiceKeys + ?Sized>(
    bytes: &[u8],
    keys: &K,
    params: &AcceptParams<'_>,
    replay: &mut ReplayCache,
    now: SystemTime,
) -> Result<Accepted, ApError> {
    let req: ApReq = decode(bytes)?;
    accept_decoded(&req, keys, params, replay, now, usage::AP_REQ_AUTHENTICATOR)
}

/// [`accept_ap_req`] for a decoded AP-REQ and a given authenticator key
/// usage (11 for AP-REQ, 7 inside PA-TGS-REQ).
pub fn accept_decoded<K: ServiceKeys + ?Sized>(
    req: &ApReq,
    keys: &K,
    params: &AcceptParams<'_>,
    replay: &mut ReplayCache,
    now: SystemTime,
    auth_usage: u32,
) -> Result<Accepted, ApError> {
    if !messages::is_version(&req.pvno, &req.msg_type, msg_type::AP_REQ) {
        return Err(ApError::BadVersion("AP-REQ"));
    }
    if int_value(&req.ticket.tkt_vno) != Some(PVNO) {
        return Err(ApError::BadVersion("Ticket"));
    }
    let server =
        messages::from_principal_name("ticket sname", &req.ticket.sname, &req.ticket.realm)?;
    if let Some(want) = params.service {
        if !messages::same_principal(want, &server) {
            return Err(ApError::NotUs {
                ticket_for: server,
                we_are: want.clone(),
            });
        }
    }
    let enc = &req.ticket.enc_part;
    let key = keys
        .service_key(&server, enc.etype, enc.kvno)
        .ok_or_else(|| ApError::NoKey {
            service: server.clone(),
            etype: enc.etype,
            kvno: enc.kvno,
        })?;
    let tkt: messages::Wiped<EncTicketPart> =
        messages::open_wiped(&key, usage::KDC_REP_TICKET, enc).map_err(|e| match e {
            MessageError::Decrypt { .. } => ApError::BadTicketIntegrity(server.clone()),
            other => ApError::Malformed(other),
        })?;
    let session_key = messages::key_from_wire(&tkt.key)?;
    let auth: messages::Wiped<Authenticator> =
        messages::open_wiped(&session_key, auth_usage, &req.authenticator).map_err(
            |e| match e {
                e if e.is_integrity_failure() => ApError::BadAuthenticatorIntegrity,
                other => ApError::Malformed(other),
            },
        )?;
    if int_value(&auth.authenticator_vno) != Some(PVNO) {
        return Err(ApError::BadVersion("Authenticator"));
    }
    let client = messages::from_principal_name("ticket cname", &tkt.cname, &tkt.crealm)?;
    let auth_client =
        messages::from_principal_name("authenticator cname", &auth.cname, &auth.crealm)?;
    if !messages::same_principal(&client, &auth_client) {
        return Err(ApError::BadMatch {
            ticket: client,
            authenticator: auth_client,
        });
    }
    // Authenticator time within the skew limit.
    let ctime = messages::from_kerberos_time_usec(&auth.ctime, &auth.cusec);
    let skew = skew_between(ctime, now);
    if skew > params.skew {
        return Err(ApError::Skew {
            skew_secs: skew.as_secs(),
            limit_secs: params.skew.as_secs(),
        });
    }
    // Ticket validity, allowing for the skew.
    let tflags = flags_value(&tkt.flags.0);
    if tflags & ticket_flags::INVALID != 0 {
        return Err(ApError::TicketInvalid);
    }
    let auth_time = messages::from_kerberos_time(&tkt.auth_time);
    let start = tkt
        .start_time
        .as_ref()
        .map(messages::from_kerberos_time)
        .unwrap_or(auth_time);
    let end_time = messages::from_kerberos_time(&tkt.end_time);
    if start > now + params.skew {
        return Err(ApError::TicketNotYetValid);
    }
    if now > end_time + params.skew {
        return Err(ApError::TicketExpired);
    }
    // Checksum over application data.
    if let Some(data) = params.app_data {
        let ck = auth.cksum.as_ref().ok_or(ApError::ChecksumMissing)?;
        messages::verify_checksum(
            &session_key,
            usage::AP_REQ_AUTHENTICATOR_CKSUM,
            data,
            ck,
            "authenticator checksum",
        )
        .map_err(|_| ApError::ChecksumMismatch)?;
    }
    // Replay cache last, so that forged or stale requests cannot fill it.
    replay
        .check_and_insert(
            &AuthenticatorId {
                client: &client.to_string(),
                server: &server.to_string(),
                ctime: messages::from_kerberos_time(&auth.ctime),
                cusec: messages::usec_value(&auth.cusec),
                ciphertext: &req.authenticator.cipher,
            },
            now,
        )
        .map_err(|e| match e {
            ReplayError::Replay => ApError::Replay(client.clone()),
            ReplayError::Full(_) | ReplayError::ClientFull(_) => ApError::ReplayCacheFull,
        })?;
    let subkey = auth
        .subkey
        .as_ref()
        .map(messages::key_from_wire)
        .transpose()?;
    Ok(Accepted {
        client,
        server,
        session_key,
        subkey,
        seq_number: auth.seq_number,
        mutual_required: flags_value(&req.ap_options.0) & ap_options::MUTUAL_REQUIRED != 0,
        ticket_flags: tflags,
        auth_time,
        end_time,
        ctime: auth.ctime.clone(),
        // Echoed in the AP-REP as it came.
        cusec: int_value(&auth.cusec).unwrap_or(0),
    })
}

impl Accepted {
    /// The key for KRB-PRIV/KRB-SAFE when the service sends no subkey of
    /// its own: the client's subkey, else the session key.
    pub fn key(&self) -> Key {
        self.subkey
            .clone()
            .unwrap_or_else(|| self.session_key.clone())
    }

    /// Builds the AP-REP, echoing the authenticator's ctime and cusec,
    /// optionally with a service subkey and initial sequence number.
    pub fn ap_rep(&self, subkey: Option<&Key>, seq_number: Option<u32>) -> Vec<u8> {
        let part = EncApRepPart {
            ctime: self.ctime.clone(),
            cusec: int(self.cusec),
            subkey: subkey.map(messages::key_to_wire),
            seq_number,
        };
        encode(&ApRep {
            pvno: int(PVNO),
            msg_type: int(msg_type::AP_REP),
            enc_part: messages::seal(&self.session_key, usage::AP_REP_ENC_PART, None, &part),
        })
    }

    /// A fresh subkey of the session key's etype, for [`Accepted::ap_rep`].
    pub fn new_subkey(&self) -> Key {
        Key::random(self.session_key.etype())
    }

    /// The session key's etype.
    pub fn etype(&self) -> Etype {
        self.session_key.etype()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{accept_once, at, issue};

    #[test]
    fn mutual_auth_with_subkeys_for_every_etype() {
        for etype in Etype::ALL {
            let (cred, keys) = issue("host/gw.example.com@EXAMPLE.COM", etype);
            let params = ApReqParams {
                mutual: true,
                subkey: true,
                seq_number: Some(42),
                app_data: Some(b"channel binding"),
            };
            let (req, client) = build_ap_req(&cred, &params, at(2000)).unwrap();
            let mut rc = ReplayCache::default();
            let accepted = accept_ap_req(
                &req,
                &keys,
                &AcceptParams {
                    service: Some(&cred.server),
                    app_data: Some(b"channel binding"),
                    ..Default::default()
                },
                &mut rc,
                at(2010),
            )
            .unwrap();
            assert_eq!(accepted.client.to_string(), "alice@EXAMPLE.COM");
            assert!(accepted.mutual_required);
            assert_eq!(accepted.seq_number, Some(42));
            assert_eq!(accepted.subkey.as_ref(), client.subkey());
            let server_subkey = accepted.new_subkey();
            let rep = accepted.ap_rep(Some(&server_subkey), Some(7));
            let info = client.verify_ap_rep(&rep).unwrap();
            assert_eq!(info.key, server_subkey);
            assert_eq!(info.seq_number, Some(7));
        }
    }

    #[test]
    fn replayed_authenticator_is_rejected() {
        let (cred, keys) = issue("svc/a@EXAMPLE.COM", Etype::Aes256CtsHmacSha196);
        let (req, _) = build_ap_req(&cred, &ApReqParams::default(), at(2000)).unwrap();
        let mut rc = ReplayCache::default();
        let p = AcceptParams::default();
        accept_ap_req(&req, &keys, &p, &mut rc, at(2000)).unwrap();
        let err = accept_ap_req(&req, &keys, &p, &mut rc, at(2001)).unwrap_err();
        assert!(matches!(err, ApError::Replay(_)));
        assert_eq!(err.error_code(), error_code::KRB_AP_ERR_REPEAT);
    }

    #[test]
    fn ticket_for_another_service_is_rejected() {
        let (cred, keys) = issue("svc/a@EXAMPLE.COM", Etype::Aes128CtsHmacSha196);
        let (req, _) = build_ap_req(&cred, &ApReqParams::default(), at(2000)).unwrap();
        let other = Principal::parse("svc/b@EXAMPLE.COM").unwrap();
        let err = accept_once(
            &req,
            &keys,
            &AcceptParams {
                service: Some(&other),
                ..Default::default()
            },
            at(2000),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("ticket for another service"),
            "{err}"
        );
        assert_eq!(err.error_code(), error_code::KRB_AP_ERR_NOT_US);
        // Without a fixed service name, a keytab without that principal has
        // no key for it.
        let (_, other_keys) = issue("svc/b@EXAMPLE.COM", Etype::Aes128CtsHmacSha196);
        let err = accept_once(&req, &other_keys, &AcceptParams::default(), at(2000)).unwrap_err();
        assert!(matches!(err, ApError::NoKey { .. }), "{err}");
    }

    #[test]
    fn skewed_clock_is_rejected() {
        let (cred, keys) = issue("svc/a@EXAMPLE.COM", Etype::Aes128CtsHmacSha256128);
        let (req, _) = build_ap_req(&cred, &ApReqParams::default(), at(2000)).unwrap();
        let mut rc = ReplayCache::default();
        let p = AcceptParams::default();
        let err = accept_ap_req(&req, &keys, &p, &mut rc, at(2301)).unwrap_err();
        assert_eq!(
            err,
            ApError::Skew {
                skew_secs: 301,
                limit_secs: 300
            }
        );
        let err = accept_ap_req(&req, &keys, &p, &mut rc, at(1699)).unwrap_err();
        assert!(matches!(err, ApError::Skew { .. }));
        // Within 300 s: accepted.
        accept_ap_req(&req, &keys, &p, &mut rc, at(2300)).unwrap();
    }

    #[test]
    fn expired_ticket_is_rejected() {
        let (cred, keys) = issue("svc/a@EXAMPLE.COM", Etype::Aes256CtsHmacSha384192);
        let (req, _) = build_ap_req(&cred, &ApReqParams::default(), at(37400)).unwrap();
        let err = accept_once(&req, &keys, &AcceptParams::default(), at(37400)).unwrap_err();
        assert_eq!(err, ApError::TicketExpired);
    }

    #[test]
    fn wrong_key_and_tampering_are_rejected() {
        let (cred, _) = issue("svc/a@EXAMPLE.COM", Etype::Aes256CtsHmacSha196);
        let wrong = KeySet(vec![(
            cred.server.clone(),
            3,
            Key::random(Etype::Aes256CtsHmacSha196),
        )]);
        let (req, _) = build_ap_req(&cred, &ApReqParams::default(), at(2000)).unwrap();
        let err = accept_once(&req, &wrong, &AcceptParams::default(), at(2000)).unwrap_err();
        assert!(matches!(err, ApError::BadTicketIntegrity(_)));
        // Wrong kvno.
        let (_, keys) = issue("svc/a@EXAMPLE.COM", Etype::Aes256CtsHmacSha196);
        let moved = KeySet(keys.0.into_iter().map(|(p, _, k)| (p, 4, k)).collect());
        let err = accept_once(&req, &moved, &AcceptParams::default(), at(2000)).unwrap_err();
        assert_eq!(err.error_code(), error_code::KRB_AP_ERR_BADKEYVER);
    }

    #[test]
    fn checksum_binds_application_data() {
        let (cred, keys) = issue("svc/a@EXAMPLE.COM", Etype::Aes128CtsHmacSha196);
        let params = ApReqParams {
            app_data: Some(b"hello"),
            ..Default::default()
        };
        // The service requires a checksum over `app_data`.
        let refuse = |req: &[u8], app_data: &[u8]| {
            let params = AcceptParams {
                app_data: Some(app_data),
                ..Default::default()
            };
            accept_once(req, &keys, &params, at(2000)).unwrap_err()
        };
        let (req, _) = build_ap_req(&cred, &params, at(2000)).unwrap();
        assert_eq!(refuse(&req, b"HELLO"), ApError::ChecksumMismatch);
        let (req, _) = build_ap_req(&cred, &ApReqParams::default(), at(2000)).unwrap();
        assert_eq!(refuse(&req, b"hello"), ApError::ChecksumMissing);
    }

    #[test]
    fn forged_ap_rep_fails_mutual_auth() {
        let (cred, keys) = issue("svc/a@EXAMPLE.COM", Etype::Aes128CtsHmacSha196);
        let mutual = ApReqParams {
            mutual: true,
            ..Default::default()
        };
        let (req1, client1) = build_ap_req(&cred, &mutual, at(2000)).unwrap();
        let (_, client2) = build_ap_req(&cred, &mutual, at(2005)).unwrap();
        let acc = accept_once(&req1, &keys, &AcceptParams::default(), at(2000)).unwrap();
        let rep = acc.ap_rep(None, None);
        client1.verify_ap_rep(&rep).unwrap();
        // An AP-REP for another authenticator does not verify.
        assert_eq!(
            client2.verify_ap_rep(&rep).unwrap_err(),
            ApError::MutualFailed
        );
        assert!(matches!(
            client1.verify_ap_rep(&rep[..rep.len() - 1]),
            Err(ApError::Malformed(_))
        ));
    }

    #[test]
    fn keytab_serves_keys_by_kvno_and_etype() {
        use crate::keytab::{Keytab, KeytabEntry};
        let (cred, keys) = issue("svc/a@EXAMPLE.COM", Etype::Aes256CtsHmacSha196);
        let (p, kvno, key) = keys.0[0].clone();
        let mut kt = Keytab::new();
        // An older key first, then the ticket's (kvno 3).
        kt.push(KeytabEntry {
            principal: p.clone(),
            timestamp: 0,
            kvno: 2,
            key: Key::random(Etype::Aes256CtsHmacSha196),
        });
        kt.push(KeytabEntry {
            principal: p.clone(),
            timestamp: 0,
            kvno,
            key,
        });
        let (req, _) = build_ap_req(&cred, &ApReqParams::default(), at(2000)).unwrap();
        let acc = accept_once(
            &req,
            &kt,
            &AcceptParams {
                service: Some(&p),
                ..Default::default()
            },
            at(2000),
        )
        .unwrap();
        assert_eq!(acc.server, p);
        assert!(kt.service_key(&p, 17, None).is_none());
        assert!(kt.service_key(&p, 99, None).is_none());
    }

    #[test]
    fn garbage_never_panics() {
        let (_, keys) = issue("svc/a@EXAMPLE.COM", Etype::Aes128CtsHmacSha196);
        let mut rc = ReplayCache::default();
        for input in [
            &[][..],
            &[0x6e],
            &[0x6e, 0x00],
            &[0x6e, 0x82, 0xff],
            &[0x30, 0x00],
        ] {
            assert!(accept_ap_req(input, &keys, &AcceptParams::default(), &mut rc, at(0)).is_err());
        }
    }
}
