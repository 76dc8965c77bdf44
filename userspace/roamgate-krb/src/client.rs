//! Kerberos client: initial tickets (AS exchange, with a password or a
//! keytab key) and service tickets (TGS exchange), and the KDC transport.
//!
//! The exchanges are protocol cores without I/O: [`AsExchange`] and
//! [`TgsExchange`] produce request bytes and consume reply bytes, with the
//! time passed in. [`KdcTransport`] sends a request over UDP and falls back
//! to TCP (4-byte length prefix) when the KDC answers
//! KRB_ERR_RESPONSE_TOO_BIG, when the request is large, or when UDP gets no
//! answer. [`get_tgt`], [`get_service_ticket`] and [`get_forwarded_tgt`]
//! drive the cores over a transport.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use rasn_kerberos::{
    AsRep, AsReq, EncAsRepPart, EncKdcRepPart, EncTgsRepPart, EtypeInfo2Entry, EtypeInfoEntry,
    KdcRep, KdcReq, KdcReqBody, KrbError, PaData, PaEncTsEnc, TgsRep, TgsReq,
};
use roamgate_krb_crypto::{CryptoError, Etype, Key};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use zeroize::Zeroizing;

pub use crate::credential::Credential;
use crate::messages::{
    self, decode, encode, error_code, flags_value, int, kdc_options, msg_type, pa_type,
    MessageError, PVNO,
};
use crate::principal::Principal;
use crate::usage;

/// Default requested ticket lifetime (MIT's default).
pub const DEFAULT_TICKET_LIFETIME: Duration = Duration::from_secs(10 * 3600);
/// Requests larger than this go straight to TCP (MIT's udp_preference_limit).
pub const UDP_PREFERENCE_LIMIT: usize = 1465;
/// Largest reply accepted over TCP.
pub const MAX_TCP_REPLY: usize = 1 << 20;
/// Default overall time allowed for one KDC exchange.
pub const DEFAULT_KDC_TIMEOUT: Duration = Duration::from_secs(10);
/// How many AS round trips a client makes before giving up.
const MAX_AS_ROUND_TRIPS: usize = 3;

/// What went wrong getting a ticket. The Display texts are the one-line
/// errors `roamgate krb` prints.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("preauthentication failed for {0}: wrong password or key")]
    PreauthFailed(Principal),
    #[error("unknown principal {0}: the KDC has no such client")]
    ClientUnknown(Principal),
    #[error("unknown service principal {0}: the KDC has no such service")]
    ServiceUnknown(Principal),
    #[error("clock skew too great between this host and the KDC for {0} (limit 300 s)")]
    Skew(Principal),
    #[error(
        "no common encryption type with the KDC for {0} (roamgate supports etypes 17, 18, 19, 20)"
    )]
    NoCommonEtype(Principal),
    #[error("the TGT for {0} is not forwardable")]
    NotForwardable(Principal),
    #[error("the TGT for {client} expired at {end:?}")]
    TgtExpired { client: Principal, end: SystemTime },
    #[error("the KDC refused {principal}: {name} ({code}){text}")]
    Kdc {
        principal: Principal,
        code: i32,
        name: &'static str,
        text: String,
    },
    #[error("the KDC's reply does not match the request: {0}")]
    Mismatch(&'static str),
    #[error("the KDC kept asking for pre-authentication for {0}")]
    PreauthLoop(Principal),
    #[error("malformed reply from the KDC: {0}")]
    Message(#[from] MessageError),
    #[error("string-to-key for {principal} failed: {source}")]
    StringToKey {
        principal: Principal,
        source: CryptoError,
    },
    #[error(transparent)]
    Transport(#[from] TransportError),
}

impl ClientError {
    fn from_krb_error(err: &KrbError, client: &Principal, server: &Principal) -> Self {
        use error_code::*;
        match err.error_code {
            KDC_ERR_PREAUTH_FAILED | KRB_AP_ERR_BAD_INTEGRITY => {
                ClientError::PreauthFailed(client.clone())
            }
            KDC_ERR_C_PRINCIPAL_UNKNOWN => ClientError::ClientUnknown(client.clone()),
            KDC_ERR_S_PRINCIPAL_UNKNOWN => ClientError::ServiceUnknown(server.clone()),
            KRB_AP_ERR_SKEW => ClientError::Skew(client.clone()),
            KDC_ERR_ETYPE_NOSUPP => ClientError::NoCommonEtype(client.clone()),
            code => ClientError::Kdc {
                principal: client.clone(),
                code,
                name: error_code::name(code),
                text: messages::error_text(err)
                    .map(|t| format!(": {t}"))
                    .unwrap_or_default(),
            },
        }
    }
}

/// The client's long-term secret.
pub enum ClientSecret {
    /// A password; keys are made with the KDC's salt and parameters.
    Password(Zeroizing<Vec<u8>>),
    /// Keys from a keytab (newest kvno per etype).
    Keys(Vec<Key>),
}

impl std::fmt::Debug for ClientSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientSecret::Password(_) => f.write_str("Password(<redacted>)"),
            ClientSecret::Keys(k) => f.debug_tuple("Keys").field(k).finish(),
        }
    }
}

impl ClientSecret {
    pub fn password(pw: &str) -> Self {
        ClientSecret::Password(Zeroizing::new(pw.as_bytes().to_vec()))
    }

    /// The etypes we can use, strongest first.
    pub fn etypes(&self) -> Vec<Etype> {
        match self {
            ClientSecret::Password(_) => Etype::ALL.to_vec(),
            ClientSecret::Keys(keys) => Etype::ALL
                .into_iter()
                .filter(|e| keys.iter().any(|k| k.etype() == *e))
                .collect(),
        }
    }

    fn key(
        &self,
        principal: &Principal,
        etype: Etype,
        salt: Option<&[u8]>,
        s2kparams: Option<&[u8]>,
    ) -> Result<Option<Key>, ClientError> {
        match self {
            ClientSecret::Password(pw) => {
                let default_salt = principal.default_salt();
                let salt = salt.unwrap_or(&default_salt);
                Key::from_password(etype, pw, salt, s2kparams)
                    .map(Some)
                    .map_err(|source| ClientError::StringToKey {
                        principal: principal.clone(),
                        source,
                    })
            }
            ClientSecret::Keys(keys) => Ok(keys.iter().find(|k| k.etype() == etype).cloned()),
        }
    }
}

/// Options for an AS request.
#[derive(Clone, Debug)]
pub struct AsOptions {
    pub lifetime: Duration,
    /// Ask for a renewable ticket for this long.
    pub renewable: Option<Duration>,
    pub forwardable: bool,
    /// Restrict the etypes offered (default: all the secret supports).
    pub etypes: Option<Vec<Etype>>,
    /// Service to ask for (default krbtgt/REALM@REALM).
    pub server: Option<Principal>,
}

impl Default for AsOptions {
    fn default() -> Self {
        Self {
            lifetime: DEFAULT_TICKET_LIFETIME,
            renewable: None,
            forwardable: true,
            etypes: None,
            server: None,
        }
    }
}

/// What to do after handling an AS reply.
#[derive(Debug)]
pub enum AsStep {
    /// Send this request next (pre-authentication asked for).
    Send(Vec<u8>),
    /// Done: the ticket.
    Done(Box<Credential>),
}

/// An etype the KDC offers, with its salt and string-to-key parameters.
type SaltHint = (Etype, Option<Vec<u8>>, Option<Vec<u8>>);

/// The AS exchange as a protocol core (RFC 4120 §3.1, RFC 6113 §2.2 for
/// ETYPE-INFO2 salts).
#[derive(Debug)]
pub struct AsExchange {
    client: Principal,
    server: Principal,
    secret: ClientSecret,
    opts: AsOptions,
    etypes: Vec<Etype>,
    nonce: u32,
    /// The key our PA-ENC-TIMESTAMP used, to decrypt the reply with.
    preauth_key: Option<Key>,
    round_trips: usize,
}

fn body_times(
    now: SystemTime,
    lifetime: Duration,
    renew: Option<Duration>,
) -> Result<
    (
        rasn_kerberos::KerberosTime,
        Option<rasn_kerberos::KerberosTime>,
    ),
    MessageError,
> {
    Ok((
        messages::to_kerberos_time(now + lifetime)?,
        renew
            .map(|r| messages::to_kerberos_time(now + r))
            .transpose()?,
    ))
}

impl AsExchange {
    pub fn new(
        client: Principal,
        secret: ClientSecret,
        opts: AsOptions,
    ) -> Result<Self, ClientError> {
        let supported = secret.etypes();
        let etypes: Vec<Etype> = match &opts.etypes {
            Some(want) => want
                .iter()
                .copied()
                .filter(|e| supported.contains(e))
                .collect(),
            None => supported,
        };
        if etypes.is_empty() {
            return Err(ClientError::NoCommonEtype(client));
        }
        let server = opts
            .server
            .clone()
            .unwrap_or_else(|| Principal::krbtgt(&client.realm));
        Ok(Self {
            client,
            server,
            secret,
            opts,
            etypes,
            nonce: messages::random_nonce()?,
            preauth_key: None,
            round_trips: 0,
        })
    }

    pub fn client(&self) -> &Principal {
        &self.client
    }

    fn request(
        &self,
        padata: Option<Vec<PaData>>,
        now: SystemTime,
    ) -> Result<Vec<u8>, ClientError> {
        let (cname, realm) = messages::to_principal_name(&self.client)?;
        let (sname, _) = messages::to_principal_name(&self.server)?;
        let mut options = 0;
        if self.opts.forwardable {
            options |= kdc_options::FORWARDABLE;
        }
        if self.opts.renewable.is_some() {
            options |= kdc_options::RENEWABLE;
        }
        let (till, rtime) = body_times(now, self.opts.lifetime, self.opts.renewable)?;
        Ok(encode(&AsReq(KdcReq {
            pvno: int(PVNO),
            msg_type: int(msg_type::AS_REQ),
            padata,
            req_body: KdcReqBody {
                kdc_options: messages::kdc_options(options),
                cname: Some(cname),
                realm,
                sname: Some(sname),
                from: None,
                till,
                rtime,
                nonce: self.nonce,
                etype: self.etypes.iter().map(|e| e.to_i32()).collect(),
                addresses: None,
                enc_authorization_data: None,
                additional_tickets: None,
            },
        })))
    }

    /// The first AS-REQ, without pre-authentication.
    pub fn first_request(&mut self, now: SystemTime) -> Result<Vec<u8>, ClientError> {
        self.round_trips = 1;
        self.request(None, now)
    }

    /// Picks etype, salt and s2kparams from the KDC's hints, in the KDC's
    /// order of preference, and makes the key.
    fn key_from_hints(&self, hints: &[PaData], only: Option<Etype>) -> Result<Key, ClientError> {
        let mut candidates: Vec<SaltHint> = Vec::new();
        if let Some(pa) = hints.iter().find(|p| p.r#type == pa_type::ETYPE_INFO2) {
            let entries: Vec<EtypeInfo2Entry> = decode(&pa.value)?;
            for e in entries {
                if let Some(et) = Etype::from_i32(e.etype) {
                    candidates.push((
                        et,
                        e.salt.map(|s| s.as_bytes().to_vec()),
                        e.s2kparams.map(|p| p.to_vec()),
                    ));
                }
            }
        } else if let Some(pa) = hints.iter().find(|p| p.r#type == pa_type::ETYPE_INFO) {
            let entries: Vec<EtypeInfoEntry> = decode(&pa.value)?;
            for e in entries {
                if let Some(et) = Etype::from_i32(e.etype) {
                    candidates.push((et, e.salt.map(|s| s.to_vec()), None));
                }
            }
        } else {
            // No hints: our strongest etype with the default salt.
            candidates.extend(self.etypes.iter().map(|e| (*e, None, None)));
        }
        for (etype, salt, params) in candidates {
            if !self.etypes.contains(&etype) || only.is_some_and(|o| o != etype) {
                continue;
            }
            if let Some(k) =
                self.secret
                    .key(&self.client, etype, salt.as_deref(), params.as_deref())?
            {
                return Ok(k);
            }
        }
        Err(ClientError::NoCommonEtype(self.client.clone()))
    }

    /// Handles the KDC's reply to the last request.
    pub fn handle_reply(&mut self, reply: &[u8], now: SystemTime) -> Result<AsStep, ClientError> {
        if let Some(err) = messages::recognise_error(reply)? {
            if err.error_code != error_code::KDC_ERR_PREAUTH_REQUIRED {
                return Err(ClientError::from_krb_error(
                    &err,
                    &self.client,
                    &self.server,
                ));
            }
            if self.preauth_key.is_some() || self.round_trips >= MAX_AS_ROUND_TRIPS {
                return Err(ClientError::PreauthLoop(self.client.clone()));
            }
            let hints = messages::error_method_data(&err);
            let key = self.key_from_hints(&hints, None)?;
            let (patimestamp, pausec) = messages::to_kerberos_time_usec(now)?;
            let ts = PaEncTsEnc {
                patimestamp,
                pausec: Some(int(i64::from(pausec))),
            };
            let enc = messages::seal(&key, usage::AS_REQ_PA_ENC_TIMESTAMP, None, &ts);
            let padata = vec![messages::padata(pa_type::ENC_TIMESTAMP, encode(&enc))];
            self.preauth_key = Some(key);
            self.round_trips += 1;
            return Ok(AsStep::Send(self.request(Some(padata), now)?));
        }
        let rep: AsRep = decode(reply)?;
        let rep = rep.0;
        // The reply key: the one we pre-authenticated with, or one made
        // from the reply's own ETYPE-INFO2 (no pre-auth was required).
        let key = match &self.preauth_key {
            Some(k) if k.etype().to_i32() == rep.enc_part.etype => k.clone(),
            _ => {
                let etype = Etype::from_i32(rep.enc_part.etype)
                    .ok_or(ClientError::NoCommonEtype(self.client.clone()))?;
                let hints = rep.padata.clone().unwrap_or_default();
                self.key_from_hints(&hints, Some(etype))?
            }
        };
        let enc = open_kdc_rep_part(&key, usage::AS_REP_ENC_PART, &rep).map_err(|e| match e {
            MessageError::Decrypt { .. } => ClientError::PreauthFailed(self.client.clone()),
            other => ClientError::Message(other),
        })?;
        let cred = credential_from_rep(&rep, &enc, self.nonce, &self.client, &self.server)?;
        Ok(AsStep::Done(Box::new(cred)))
    }
}

/// Decrypts a KDC reply's enc-part. RFC 4120 §5.4.2 lets the KDC send
/// EncTGSRepPart (tag 26) in an AS-REP and vice versa; both are accepted.
fn open_kdc_rep_part(
    key: &Key,
    usage: u32,
    rep: &KdcRep,
) -> Result<messages::Wiped<EncKdcRepPart>, MessageError> {
    let plain = messages::open_bytes(key, usage, &rep.enc_part, "EncKDCRepPart")?;
    // EncASRepPart is [APPLICATION 25] (0x79), EncTGSRepPart [APPLICATION 26].
    if plain.first() == Some(&0x79) {
        decode::<EncAsRepPart>(&plain).map(|p| messages::Wiped(p.0))
    } else {
        decode::<EncTgsRepPart>(&plain).map(|p| messages::Wiped(p.0))
    }
}

/// Checks a KDC reply against the request and builds the credential.
fn credential_from_rep(
    rep: &KdcRep,
    enc: &EncKdcRepPart,
    nonce: u32,
    client: &Principal,
    server: &Principal,
) -> Result<Credential, ClientError> {
    if enc.nonce != nonce {
        return Err(ClientError::Mismatch("nonce differs"));
    }
    let rep_client = messages::from_principal_name("cname", &rep.cname, &rep.crealm)?;
    if !messages::same_principal(&rep_client, client) {
        return Err(ClientError::Mismatch("client name differs"));
    }
    let rep_server = messages::from_principal_name("sname", &enc.sname, &enc.srealm)?;
    if !messages::same_principal(&rep_server, server) {
        return Err(ClientError::Mismatch("server name differs"));
    }
    let tkt_server =
        messages::from_principal_name("ticket sname", &rep.ticket.sname, &rep.ticket.realm)?;
    if !messages::same_principal(&tkt_server, server) {
        return Err(ClientError::Mismatch("ticket server name differs"));
    }
    Ok(Credential {
        client: client.clone(),
        server: rep_server,
        session_key: messages::key_from_wire(&enc.key)?,
        auth_time: messages::from_kerberos_time(&enc.auth_time),
        start_time: enc.start_time.as_ref().map(messages::from_kerberos_time),
        end_time: messages::from_kerberos_time(&enc.end_time),
        renew_till: enc.renew_till.as_ref().map(messages::from_kerberos_time),
        flags: flags_value(&enc.flags.0),
        ticket: rep.ticket.clone(),
    })
}

/// The TGS exchange as a protocol core (RFC 4120 §3.3): PA-TGS-REQ with an
/// AP-REQ whose authenticator checksums the request body and carries a
/// subkey; the reply is encrypted in that subkey.
#[derive(Debug)]
pub struct TgsExchange {
    tgt: Credential,
    service: Principal,
    options: u32,
    nonce: u32,
    subkey: Key,
}

impl TgsExchange {
    /// A service ticket for `service`, with KDC options `options`.
    pub fn new(tgt: &Credential, service: Principal, options: u32) -> Result<Self, ClientError> {
        Ok(Self {
            tgt: tgt.clone(),
            service,
            options,
            nonce: messages::random_nonce()?,
            subkey: Key::random(tgt.session_key.etype()),
        })
    }

    /// A forwarded TGT: krbtgt/REALM with FORWARDED (and FORWARDABLE, so it
    /// can be forwarded on).
    pub fn forwarded_tgt(tgt: &Credential) -> Result<Self, ClientError> {
        if !tgt.is_forwardable() {
            return Err(ClientError::NotForwardable(tgt.client.clone()));
        }
        Self::new(
            tgt,
            tgt.server.clone(),
            kdc_options::FORWARDED | kdc_options::FORWARDABLE,
        )
    }

    pub fn request(&self, now: SystemTime) -> Result<Vec<u8>, ClientError> {
        if now >= self.tgt.end_time {
            return Err(ClientError::TgtExpired {
                client: self.tgt.client.clone(),
                end: self.tgt.end_time,
            });
        }
        let (sname, realm) = messages::to_principal_name(&self.service)?;
        let body = KdcReqBody {
            kdc_options: messages::kdc_options(self.options),
            cname: None,
            realm,
            sname: Some(sname),
            from: None,
            till: messages::to_kerberos_time(self.tgt.end_time)?,
            rtime: None,
            nonce: self.nonce,
            etype: Etype::ALL.iter().map(|e| e.to_i32()).collect(),
            addresses: None,
            enc_authorization_data: None,
            additional_tickets: None,
        };
        let cksum = messages::checksum(
            &self.tgt.session_key,
            usage::TGS_REQ_PA_TGS_REQ_CKSUM,
            &encode(&body),
        );
        let (auth, _, _) =
            crate::ap::authenticator(&self.tgt, Some(cksum), Some(&self.subkey), None, now)?;
        let ap_req =
            crate::ap::ap_req(&self.tgt, 0, &auth, usage::TGS_REQ_PA_TGS_REQ_AUTHENTICATOR);
        Ok(encode(&TgsReq(KdcReq {
            pvno: int(PVNO),
            msg_type: int(msg_type::TGS_REQ),
            padata: Some(vec![messages::padata(pa_type::TGS_REQ, encode(&ap_req))]),
            req_body: body,
        })))
    }

    pub fn handle_reply(&self, reply: &[u8]) -> Result<Credential, ClientError> {
        if let Some(err) = messages::recognise_error(reply)? {
            return Err(ClientError::from_krb_error(
                &err,
                &self.tgt.client,
                &self.service,
            ));
        }
        let rep: TgsRep = decode(reply)?;
        let rep = rep.0;
        // Encrypted in our subkey (usage 9); MIT falls back to the session
        // key (usage 8) only when no subkey was sent.
        let enc = open_kdc_rep_part(&self.subkey, usage::TGS_REP_ENC_PART_SUBKEY, &rep)
            .or_else(|_| {
                open_kdc_rep_part(
                    &self.tgt.session_key,
                    usage::TGS_REP_ENC_PART_SESSION_KEY,
                    &rep,
                )
            })
            .map_err(|e| match e {
                MessageError::Decrypt { .. } => {
                    ClientError::Mismatch("TGS-REP does not decrypt with our subkey or session key")
                }
                other => ClientError::Message(other),
            })?;
        credential_from_rep(&rep, &enc, self.nonce, &self.tgt.client, &self.service)
    }
}

// ---------------------------------------------------------------------------
// Transport

/// Why the KDC could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("cannot resolve KDC address {kdc}: {reason}")]
    Resolve { kdc: String, reason: String },
    #[error("KDC {kdc} unreachable: {reason}")]
    Unreachable { kdc: String, reason: String },
    #[error("KDC {kdc} did not answer within {timeout:?}")]
    Timeout { kdc: String, timeout: Duration },
    #[error("KDC {kdc} sent a TCP reply of {len} bytes (limit {MAX_TCP_REPLY})")]
    ReplyTooLarge { kdc: String, len: usize },
}

/// Which transport a request went over (for tests and logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    Udp,
    Tcp,
}

/// A KDC's address and how to talk to it.
#[derive(Clone, Debug)]
pub struct KdcTransport {
    /// `host:port`.
    pub kdc: String,
    /// Time allowed for one exchange (UDP attempts and the TCP fallback).
    pub timeout: Duration,
    /// Skip UDP entirely.
    pub tcp_only: bool,
}

impl KdcTransport {
    pub fn new(kdc: impl Into<String>) -> Self {
        Self {
            kdc: kdc.into(),
            timeout: DEFAULT_KDC_TIMEOUT,
            tcp_only: false,
        }
    }

    async fn resolve(&self) -> Result<SocketAddr, TransportError> {
        let mut addrs =
            tokio::net::lookup_host(&self.kdc)
                .await
                .map_err(|e| TransportError::Resolve {
                    kdc: self.kdc.clone(),
                    reason: e.to_string(),
                })?;
        addrs.next().ok_or_else(|| TransportError::Resolve {
            kdc: self.kdc.clone(),
            reason: "no addresses".to_owned(),
        })
    }

    /// Sends a request and returns the reply, and which transport carried it.
    pub async fn exchange_via(&self, req: &[u8]) -> Result<(Vec<u8>, Transport), TransportError> {
        let addr = self.resolve().await?;
        let deadline = tokio::time::Instant::now() + self.timeout;
        if !self.tcp_only && req.len() <= UDP_PREFERENCE_LIMIT {
            // UDP gets at most half the time, so that TCP still has a go.
            match self.udp(addr, req, self.timeout / 2).await {
                Ok(reply) => {
                    let too_big = messages::recognise_error(&reply)
                        .ok()
                        .flatten()
                        .is_some_and(|e| e.error_code == error_code::KRB_ERR_RESPONSE_TOO_BIG);
                    if !too_big {
                        return Ok((reply, Transport::Udp));
                    }
                    tracing::debug!(kdc = %self.kdc, "KRB_ERR_RESPONSE_TOO_BIG, retrying over TCP");
                }
                Err(e) => tracing::debug!(kdc = %self.kdc, error = %e, "UDP failed, trying TCP"),
            }
        }
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let reply = self
            .tcp(addr, req, left.max(Duration::from_millis(500)))
            .await?;
        Ok((reply, Transport::Tcp))
    }

    /// Sends a request and returns the reply.
    pub async fn exchange(&self, req: &[u8]) -> Result<Vec<u8>, TransportError> {
        self.exchange_via(req).await.map(|(r, _)| r)
    }

    async fn udp(
        &self,
        addr: SocketAddr,
        req: &[u8],
        budget: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        let unreachable = |e: std::io::Error| TransportError::Unreachable {
            kdc: self.kdc.clone(),
            reason: e.to_string(),
        };
        let bind: SocketAddr = if addr.is_ipv4() {
            "0.0.0.0:0".parse().unwrap_or(addr)
        } else {
            "[::]:0".parse().unwrap_or(addr)
        };
        let sock = tokio::net::UdpSocket::bind(bind)
            .await
            .map_err(unreachable)?;
        sock.connect(addr).await.map_err(unreachable)?;
        let mut buf = vec![0u8; 65536];
        // Retransmit with doubling waits within the budget.
        let mut wait = Duration::from_millis(500).min(budget);
        let deadline = tokio::time::Instant::now() + budget;
        loop {
            sock.send(req).await.map_err(unreachable)?;
            match tokio::time::timeout(wait, sock.recv(&mut buf)).await {
                Ok(Ok(n)) => {
                    buf.truncate(n);
                    return Ok(buf);
                }
                Ok(Err(e)) => return Err(unreachable(e)),
                Err(_) => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return Err(TransportError::Timeout {
                            kdc: self.kdc.clone(),
                            timeout: budget,
                        });
                    }
                    wait = (wait * 2).min(deadline - now);
                }
            }
        }
    }

    async fn tcp(
        &self,
        addr: SocketAddr,
        req: &[u8],
        budget: Duration,
    ) -> Result<Vec<u8>, TransportError> {
        let kdc = self.kdc.clone();
        let work = async {
            let unreachable = |e: std::io::Error| TransportError::Unreachable {
                kdc: kdc.clone(),
                reason: e.to_string(),
            };
            let mut s = tokio::net::TcpStream::connect(addr)
                .await
                .map_err(unreachable)?;
            let len = u32::try_from(req.len()).map_err(|_| TransportError::Unreachable {
                kdc: kdc.clone(),
                reason: "request too large".to_owned(),
            })?;
            let mut framed = Vec::with_capacity(req.len() + 4);
            framed.extend_from_slice(&len.to_be_bytes());
            framed.extend_from_slice(req);
            s.write_all(&framed).await.map_err(unreachable)?;
            let mut lenb = [0u8; 4];
            s.read_exact(&mut lenb).await.map_err(unreachable)?;
            let n = u32::from_be_bytes(lenb) as usize;
            if n > MAX_TCP_REPLY {
                return Err(TransportError::ReplyTooLarge {
                    kdc: kdc.clone(),
                    len: n,
                });
            }
            let mut reply = vec![0u8; n];
            s.read_exact(&mut reply).await.map_err(unreachable)?;
            Ok(reply)
        };
        tokio::time::timeout(budget, work)
            .await
            .map_err(|_| TransportError::Timeout {
                kdc: self.kdc.clone(),
                timeout: budget,
            })?
    }
}

// ---------------------------------------------------------------------------
// Drivers

/// Gets a TGT (or, with `opts.server`, another initial ticket).
pub async fn get_tgt(
    transport: &KdcTransport,
    client: Principal,
    secret: ClientSecret,
    opts: AsOptions,
    clock: impl Fn() -> SystemTime,
) -> Result<Credential, ClientError> {
    let mut ex = AsExchange::new(client, secret, opts)?;
    let mut req = ex.first_request(clock())?;
    for _ in 0..MAX_AS_ROUND_TRIPS {
        let reply = transport.exchange(&req).await?;
        match ex.handle_reply(&reply, clock())? {
            AsStep::Send(next) => req = next,
            AsStep::Done(cred) => return Ok(*cred),
        }
    }
    Err(ClientError::PreauthLoop(ex.client().clone()))
}

/// Gets a service ticket for `service` with the TGT `tgt`.
pub async fn get_service_ticket(
    transport: &KdcTransport,
    tgt: &Credential,
    service: Principal,
    clock: impl Fn() -> SystemTime,
) -> Result<Credential, ClientError> {
    tgs_round_trip(transport, TgsExchange::new(tgt, service, 0)?, clock).await
}

/// Gets a forwarded TGT (to put into a KRB-CRED).
pub async fn get_forwarded_tgt(
    transport: &KdcTransport,
    tgt: &Credential,
    clock: impl Fn() -> SystemTime,
) -> Result<Credential, ClientError> {
    tgs_round_trip(transport, TgsExchange::forwarded_tgt(tgt)?, clock).await
}

/// Sends a TGS exchange's request and handles the reply.
async fn tgs_round_trip(
    transport: &KdcTransport,
    ex: TgsExchange,
    clock: impl Fn() -> SystemTime,
) -> Result<Credential, ClientError> {
    let reply = transport.exchange(&ex.request(clock())?).await?;
    ex.handle_reply(&reply)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{ticket_flags, ErrorSpec};
    use crate::test_support::{at, issue};
    use rasn_kerberos::{EncTicketPart, TransitedEncoding};

    fn alice() -> Principal {
        Principal::parse("alice@EXAMPLE.COM").unwrap()
    }

    /// A KRB-ERROR about krbtgt/EXAMPLE.COM, encoded.
    fn krb_error_bytes(
        code: i32,
        client: Option<&Principal>,
        e_text: Option<&str>,
        e_data: Option<Vec<u8>>,
        now: SystemTime,
    ) -> Vec<u8> {
        let tgs = Principal::krbtgt("EXAMPLE.COM");
        let spec = ErrorSpec {
            code,
            server: &tgs,
            client,
            ctime: None,
            e_text,
            e_data,
        };
        encode(&messages::krb_error(&spec, now).unwrap())
    }

    /// A minimal KDC answering one AS exchange, to drive the core.
    struct FakeKdc {
        key: Key,
        salt: Vec<u8>,
        tgs_key: Key,
    }

    impl FakeKdc {
        fn new(etype: Etype, password: &str) -> Self {
            let salt = b"EXAMPLE.COMalice-custom-salt".to_vec();
            Self {
                key: Key::from_password(etype, password.as_bytes(), &salt, None).unwrap(),
                salt,
                tgs_key: Key::random(etype),
            }
        }

        fn handle(&self, req: &[u8], now: SystemTime) -> Vec<u8> {
            let req: AsReq = decode(req).unwrap();
            let tgs = Principal::krbtgt("EXAMPLE.COM");
            let ts = messages::find_padata(req.0.padata.as_deref(), pa_type::ENC_TIMESTAMP);
            let Some(ts) = ts else {
                let info = vec![EtypeInfo2Entry {
                    etype: self.key.etype().to_i32(),
                    salt: Some(
                        messages::kstring("salt", std::str::from_utf8(&self.salt).unwrap())
                            .unwrap(),
                    ),
                    s2kparams: None,
                }];
                let md = vec![messages::padata(pa_type::ETYPE_INFO2, encode(&info))];
                return krb_error_bytes(
                    error_code::KDC_ERR_PREAUTH_REQUIRED,
                    Some(&alice()),
                    None,
                    Some(encode(&md)),
                    now,
                );
            };
            let enc: rasn_kerberos::EncryptedData = decode(&ts.value).unwrap();
            if messages::open::<_, PaEncTsEnc>(&self.key, 1, &enc).is_err() {
                return krb_error_bytes(
                    error_code::KDC_ERR_PREAUTH_FAILED,
                    Some(&alice()),
                    None,
                    None,
                    now,
                );
            }
            let session = Key::random(self.key.etype());
            let (cname, crealm) = messages::to_principal_name(&alice()).unwrap();
            let (sname, srealm) = messages::to_principal_name(&tgs).unwrap();
            let etp = EncTicketPart {
                flags: messages::ticket_flags(ticket_flags::FORWARDABLE | ticket_flags::INITIAL),
                key: messages::key_to_wire(&session),
                crealm: crealm.clone(),
                cname: cname.clone(),
                transited: TransitedEncoding {
                    r#type: 1,
                    contents: Default::default(),
                },
                auth_time: messages::to_kerberos_time(now).unwrap(),
                start_time: None,
                end_time: messages::to_kerberos_time(now + DEFAULT_TICKET_LIFETIME).unwrap(),
                renew_till: None,
                caddr: None,
                authorization_data: None,
            };
            let ticket = rasn_kerberos::Ticket {
                tkt_vno: int(5),
                realm: srealm.clone(),
                sname: sname.clone(),
                enc_part: messages::seal(&self.tgs_key, 2, Some(1), &etp),
            };
            let part = EncAsRepPart(EncKdcRepPart {
                key: messages::key_to_wire(&session),
                last_req: vec![],
                nonce: req.0.req_body.nonce,
                key_expiration: None,
                flags: etp.flags.clone(),
                auth_time: etp.auth_time.clone(),
                start_time: None,
                end_time: etp.end_time.clone(),
                renew_till: None,
                srealm,
                sname,
                caddr: None,
                encrypted_pa_data: None,
            });
            encode(&AsRep(KdcRep {
                pvno: int(5),
                msg_type: int(11),
                padata: None,
                crealm,
                cname,
                ticket,
                enc_part: messages::seal(&self.key, 3, Some(1), &part),
            }))
        }
    }

    /// Runs alice's AS exchange with `password` against `kdc` at t=5000:
    /// the first request, which the KDC answers with PREAUTH_REQUIRED,
    /// then the pre-authenticated one. Returns the outcome of the second.
    fn as_exchange_with_preauth(kdc: &FakeKdc, password: &str) -> Result<AsStep, ClientError> {
        let mut ex = AsExchange::new(
            alice(),
            ClientSecret::password(password),
            AsOptions::default(),
        )
        .unwrap();
        let r1 = ex.first_request(at(5000)).unwrap();
        let AsStep::Send(r2) = ex
            .handle_reply(&kdc.handle(&r1, at(5000)), at(5000))
            .unwrap()
        else {
            panic!("expected a pre-authenticated request");
        };
        ex.handle_reply(&kdc.handle(&r2, at(5000)), at(5000))
    }

    #[test]
    fn as_exchange_with_preauth_and_kdc_salt() {
        for etype in Etype::ALL {
            let kdc = FakeKdc::new(etype, "s3cret");
            let AsStep::Done(cred) = as_exchange_with_preauth(&kdc, "s3cret").unwrap() else {
                panic!("expected a ticket");
            };
            assert_eq!(cred.server, Principal::krbtgt("EXAMPLE.COM"));
            assert!(cred.is_forwardable() && cred.is_tgt());
            assert_eq!(cred.end_time, at(5000) + DEFAULT_TICKET_LIFETIME);
            assert_eq!(cred.session_key.etype(), etype);
        }
    }

    #[test]
    fn wrong_password_names_the_principal() {
        let kdc = FakeKdc::new(Etype::Aes256CtsHmacSha196, "s3cret");
        let err = as_exchange_with_preauth(&kdc, "guess").unwrap_err();
        assert_eq!(
            err.to_string(),
            "preauthentication failed for alice@EXAMPLE.COM: wrong password or key"
        );
    }

    #[test]
    fn keytab_secret_limits_etypes() {
        let key = Key::random(Etype::Aes128CtsHmacSha196);
        let mut ex =
            AsExchange::new(alice(), ClientSecret::Keys(vec![key]), AsOptions::default()).unwrap();
        let r = ex.first_request(at(0)).unwrap();
        let req: AsReq = decode(&r).unwrap();
        assert_eq!(req.0.req_body.etype, vec![17]);
        assert!(
            AsExchange::new(alice(), ClientSecret::Keys(vec![]), AsOptions::default()).is_err()
        );
    }

    #[test]
    fn kdc_errors_map_to_named_causes() {
        let mut ex =
            AsExchange::new(alice(), ClientSecret::password("x"), AsOptions::default()).unwrap();
        ex.first_request(at(0)).unwrap();
        let err = |code| krb_error_bytes(code, None, Some("because"), None, at(0));
        let e = ex.handle_reply(&err(6), at(0)).unwrap_err();
        assert!(
            e.to_string()
                .starts_with("unknown principal alice@EXAMPLE.COM"),
            "{e}"
        );
        let e = ex.handle_reply(&err(37), at(0)).unwrap_err();
        assert!(e.to_string().contains("clock skew"), "{e}");
        let e = ex.handle_reply(&err(12), at(0)).unwrap_err();
        assert!(
            e.to_string().contains("KDC_ERR_POLICY (12): because"),
            "{e}"
        );
        assert!(matches!(
            ex.handle_reply(b"\x01\x02", at(0)),
            Err(ClientError::Message(_))
        ));
    }

    #[test]
    fn tgs_request_checksums_the_body() {
        let (tgt, keys) = issue("krbtgt/EXAMPLE.COM@EXAMPLE.COM", Etype::Aes256CtsHmacSha196);
        let ex =
            TgsExchange::new(&tgt, Principal::parse("host/x@EXAMPLE.COM").unwrap(), 0).unwrap();
        let req: TgsReq = decode(&ex.request(at(2000)).unwrap()).unwrap();
        let pa = messages::find_padata(req.0.padata.as_deref(), pa_type::TGS_REQ).unwrap();
        let ap: rasn_kerberos::ApReq = decode(&pa.value).unwrap();
        let acc = crate::ap::accept_decoded(
            &ap,
            &keys,
            &crate::ap::AcceptParams::default(),
            &mut crate::replay::ReplayCache::default(),
            at(2000),
            usage::TGS_REQ_PA_TGS_REQ_AUTHENTICATOR,
        )
        .unwrap();
        assert!(acc.subkey.is_some());
        // The authenticator's checksum covers the DER request body.
        let auth: rasn_kerberos::Authenticator =
            messages::open(&acc.session_key, 7, &ap.authenticator).unwrap();
        messages::verify_checksum(
            &acc.session_key,
            6,
            &encode(&req.0.req_body),
            auth.cksum.as_ref().unwrap(),
            "body",
        )
        .unwrap();
        // An expired TGT is refused locally.
        assert!(matches!(
            ex.request(at(40000)),
            Err(ClientError::TgtExpired { .. })
        ));
    }

    #[tokio::test]
    async fn unreachable_kdc_is_named() {
        // A port nothing listens on: UDP gets ICMP unreachable, TCP refused.
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = sock.local_addr().unwrap().port();
        drop(sock);
        let mut t = KdcTransport::new(format!("127.0.0.1:{port}"));
        t.timeout = Duration::from_secs(2);
        let e = t.exchange(b"x").await.unwrap_err();
        assert!(
            e.to_string().contains(&format!("KDC 127.0.0.1:{port}")),
            "{e}"
        );
    }

    #[tokio::test]
    async fn response_too_big_retries_over_tcp() {
        use tokio::net::{TcpListener, UdpSocket};
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = tcp.local_addr().unwrap().port();
        let udp = UdpSocket::bind(("127.0.0.1", port)).await.unwrap();
        let too_big = krb_error_bytes(
            error_code::KRB_ERR_RESPONSE_TOO_BIG,
            None,
            None,
            None,
            at(0),
        );
        tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            let (_, peer) = udp.recv_from(&mut buf).await.unwrap();
            udp.send_to(&too_big, peer).await.unwrap();
        });
        tokio::spawn(async move {
            let (mut s, _) = tcp.accept().await.unwrap();
            let mut len = [0u8; 4];
            s.read_exact(&mut len).await.unwrap();
            let mut req = vec![0u8; u32::from_be_bytes(len) as usize];
            s.read_exact(&mut req).await.unwrap();
            let reply = [b"big:".as_slice(), &req].concat();
            s.write_all(&(reply.len() as u32).to_be_bytes())
                .await
                .unwrap();
            s.write_all(&reply).await.unwrap();
        });
        let t = KdcTransport::new(format!("127.0.0.1:{port}"));
        let (reply, via) = t.exchange_via(b"hello").await.unwrap();
        assert_eq!(via, Transport::Tcp);
        assert_eq!(reply, b"big:hello");
    }

    #[tokio::test]
    async fn huge_tcp_length_prefix_is_refused() {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = tcp.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut s, _) = tcp.accept().await.unwrap();
            let mut b = [0u8; 64];
            let _ = s.read(&mut b).await;
            s.write_all(&0x7fff_ffffu32.to_be_bytes()).await.unwrap();
        });
        let mut t = KdcTransport::new(addr.to_string());
        t.tcp_only = true;
        let e = t.exchange(b"x").await.unwrap_err();
        assert!(matches!(e, TransportError::ReplyTooLarge { .. }), "{e}");
    }
}
