//! The embedded KDC: AS and TGS exchanges (RFC 4120 §3.1, §3.3), wire
//! compatible with MIT krb5 clients.
//!
//! [`Kdc`] is a protocol core without I/O: [`Kdc::handle`] takes the bytes
//! of one request and the current time and returns the bytes of the reply
//! (or `None` to drop input that is not a Kerberos request at all).
//! [`server`] is the thin tokio layer around it (UDP and TCP on one port).
//!
//! Modules:
//! - [`db`]: the principal database (SQLite behind [`db::PrincipalStore`]).
//! - [`as_exchange`], [`tgs`]: the two exchanges; `exchange`: what they
//!   share (request checks, issuing the ticket, the KDC-REP).
//! - [`policy`]: ticket lifetime, renew-until and clock-skew policy.
//! - [`errors`]: KRB-ERROR codes and the typed failures behind them.
//! - [`cache`]: the bounded lookaside cache of replies; TGS authenticators
//!   go through the crate's one [`crate::replay::ReplayCache`].
//! - [`probe`]: a minimal request builder for tests and load generation.

pub mod as_exchange;
pub mod cache;
pub mod db;
pub mod errors;
mod exchange;
mod pktinfo;
pub mod policy;
pub mod probe;
pub mod server;
pub mod tgs;

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rasn_kerberos::{EncryptedData, EtypeInfo2Entry, PaData};
use roamgate_krb_crypto::{Etype, Key};

use crate::messages::{self, encode, pa_type, MessageKind};
use crate::principal::Principal;
use crate::replay::{AuthenticatorId, ReplayCache, ReplayError};
use cache::{Fingerprinter, Lookaside};
use db::{PrincipalEntry, PrincipalStore};
pub use errors::KdcError;
pub use policy::Policy;

/// Tunables of the KDC core.
#[derive(Debug, Clone)]
pub struct KdcConfig {
    pub policy: Policy,
    /// Replies kept for retransmitted requests.
    pub lookaside_capacity: usize,
    /// TGS authenticators remembered for replay detection. When full of
    /// live entries, new TGS authenticators are refused
    /// (KDC_ERR_SVC_UNAVAILABLE) until entries age out.
    pub replay_capacity: usize,
    /// Live TGS authenticators one client principal may hold in the replay
    /// cache once it is half full; past it only that client is refused, so
    /// that one flooding client cannot deny the others.
    pub replay_per_client: usize,
}

impl Default for KdcConfig {
    fn default() -> Self {
        Self {
            policy: Policy::default(),
            lookaside_capacity: 8192,
            // Entries live for the clock-skew window (5 min): 4096 is
            // over 13 TGS requests a second from one principal, and 64
            // principals must flood at once to fill the cache.
            replay_capacity: 262_144,
            replay_per_client: 4096,
        }
    }
}

/// How long a reply stays in the lookaside cache, in seconds. Clients
/// retransmit within seconds; MIT keeps replies for two minutes.
const LOOKASIDE_LIFETIME_SECS: i64 = 120;

/// A failed request, with what the KRB-ERROR should name.
#[derive(Debug)]
pub(crate) struct Failure {
    pub err: KdcError,
    pub client: Option<Box<Principal>>,
    pub server: Option<Box<Principal>>,
    pub e_data: Option<Vec<u8>>,
}

impl From<KdcError> for Failure {
    fn from(err: KdcError) -> Self {
        Failure {
            err,
            client: None,
            server: None,
            e_data: None,
        }
    }
}

impl Failure {
    pub(crate) fn with_client(mut self, c: &Principal) -> Self {
        self.client = Some(Box::new(c.clone()));
        self
    }
    pub(crate) fn with_server(mut self, s: &Principal) -> Self {
        self.server = Some(Box::new(s.clone()));
        self
    }
}

/// Counters, readable while serving.
#[derive(Debug, Default)]
pub struct Stats {
    pub as_ok: std::sync::atomic::AtomicU64,
    pub tgs_ok: std::sync::atomic::AtomicU64,
    pub errors: std::sync::atomic::AtomicU64,
    pub dropped: std::sync::atomic::AtomicU64,
    pub lookaside_hits: std::sync::atomic::AtomicU64,
    /// New TGS authenticators refused because the replay cache, or the
    /// client's share of it, was full of live entries.
    pub replay_cache_refusals: std::sync::atomic::AtomicU64,
}

/// The KDC protocol core.
pub struct Kdc {
    realm: String,
    tgs_principal: Principal,
    store: Arc<dyn PrincipalStore>,
    config: KdcConfig,
    fingerprint: Fingerprinter,
    lookaside: Mutex<Lookaside>,
    replay: Mutex<ReplayCache>,
    stats: Stats,
}

impl std::fmt::Debug for Kdc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kdc")
            .field("realm", &self.realm)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Unix seconds of a `SystemTime` (negative before 1970).
pub(crate) fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}

/// `SystemTime` of Unix seconds.
pub(crate) fn from_unix_secs(s: i64) -> SystemTime {
    if s >= 0 {
        UNIX_EPOCH + std::time::Duration::from_secs(s.unsigned_abs())
    } else {
        UNIX_EPOCH - std::time::Duration::from_secs(s.unsigned_abs())
    }
}

pub(crate) fn ktime(s: i64) -> Result<rasn_kerberos::KerberosTime, KdcError> {
    messages::to_kerberos_time(from_unix_secs(s)).map_err(|_| KdcError::Internal)
}

pub(crate) fn ktime_secs(t: &rasn_kerberos::KerberosTime) -> i64 {
    t.0.timestamp()
}

/// Encrypts the DER of `value` under `key` into an EncryptedData.
pub(crate) fn seal<T: rasn::Encode>(
    key: &Key,
    usage: u32,
    kvno: Option<u32>,
    value: &T,
) -> EncryptedData {
    EncryptedData {
        etype: key.etype().to_i32(),
        kvno,
        cipher: key.encrypt(usage, &encode(value)).into(),
    }
}

/// Decrypts an EncryptedData under `key`; `None` on any integrity failure.
/// The plaintext is zeroized on drop.
pub(crate) fn unseal(
    key: &Key,
    usage: u32,
    data: &EncryptedData,
) -> Option<zeroize::Zeroizing<Vec<u8>>> {
    if data.etype != key.etype().to_i32() {
        return None;
    }
    key.decrypt(usage, &data.cipher).ok()
}

/// The first etype in the client's list that the KDC supports and that
/// `accept` allows.
pub(crate) fn choose_etype(requested: &[i32], accept: impl Fn(Etype) -> bool) -> Option<Etype> {
    requested
        .iter()
        .filter_map(|e| Etype::from_i32(*e))
        .find(|e| accept(*e))
}

/// PA-ETYPE-INFO2 for a principal's key of `etype`.
pub(crate) fn etype_info2(entry: &PrincipalEntry, etype: Etype) -> Option<PaData> {
    let k = entry.key(etype)?;
    let salt = rasn_kerberos::KerberosString::from_bytes(&k.salt).ok();
    let info: Vec<EtypeInfo2Entry> = vec![EtypeInfo2Entry {
        etype: etype.to_i32(),
        salt,
        s2kparams: Some(k.s2kparams.clone().into()),
    }];
    Some(messages::padata(pa_type::ETYPE_INFO2, encode(&info)))
}

/// The request fields a principal name is built from, checked.
pub(crate) fn principal_of(
    name: &rasn_kerberos::PrincipalName,
    realm: &rasn_kerberos::Realm,
    field: &'static str,
) -> Result<Principal, KdcError> {
    messages::from_principal_name(field, name, realm).map_err(|_| KdcError::MalformedRequest)
}

impl Kdc {
    pub fn new(store: Arc<dyn PrincipalStore>, config: KdcConfig) -> Self {
        let realm = store.realm().to_owned();
        Self {
            tgs_principal: Principal::krbtgt(&realm),
            realm,
            store,
            lookaside: Mutex::new(Lookaside::new(
                config.lookaside_capacity,
                LOOKASIDE_LIFETIME_SECS,
            )),
            replay: Mutex::new(
                ReplayCache::new(config.policy.clock_skew, config.replay_capacity)
                    .with_per_client_limit(config.replay_per_client),
            ),
            config,
            fingerprint: Fingerprinter::default(),
            stats: Stats::default(),
        }
    }

    pub fn realm(&self) -> &str {
        &self.realm
    }

    pub fn policy(&self) -> &Policy {
        &self.config.policy
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    pub(crate) fn store(&self) -> &dyn PrincipalStore {
        &*self.store
    }

    pub(crate) fn tgs_principal(&self) -> &Principal {
        &self.tgs_principal
    }

    /// Records a verified TGS authenticator; refuses a replay, and a new
    /// authenticator that the cache has no room to remember.
    pub(crate) fn replay_check(
        &self,
        id: &AuthenticatorId<'_>,
        now: SystemTime,
    ) -> Result<(), KdcError> {
        let mut rc = self.replay.lock().unwrap_or_else(|p| p.into_inner());
        rc.check_and_insert(id, now).map_err(|e| {
            if e != ReplayError::Replay {
                let refusals = &self.stats.replay_cache_refusals;
                refusals.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            match e {
                ReplayError::Replay => KdcError::Replay,
                ReplayError::Full(_) => KdcError::ReplayCacheFull,
                ReplayError::ClientFull(_) => KdcError::ClientReplayQuota,
            }
        })
    }

    /// Handles one request. Returns the reply (an AS-REP, TGS-REP or
    /// KRB-ERROR), or `None` when the input is not a Kerberos request at all
    /// and is best dropped (so that the KDC is no reflector for garbage).
    pub fn handle(&self, request: &[u8], now: SystemTime) -> Option<Vec<u8>> {
        use std::sync::atomic::Ordering::Relaxed;
        let kind = match MessageKind::of(request) {
            Some(k @ (MessageKind::AsReq | MessageKind::TgsReq)) => k,
            _ => {
                self.stats.dropped.fetch_add(1, Relaxed);
                return None;
            }
        };
        let now_s = unix_secs(now);
        let fp = self.fingerprint.of(&[request]);
        {
            let mut la = self.lookaside.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(reply) = la.get(fp, now_s) {
                self.stats.lookaside_hits.fetch_add(1, Relaxed);
                return Some(reply.as_ref().clone());
            }
        }
        let result = match kind {
            MessageKind::AsReq => as_exchange::handle(self, request, now),
            _ => tgs::handle(self, request, now),
        };
        let reply = match result {
            Ok(r) => {
                let counter = if kind == MessageKind::AsReq {
                    &self.stats.as_ok
                } else {
                    &self.stats.tgs_ok
                };
                counter.fetch_add(1, Relaxed);
                r
            }
            Err(f) => {
                self.stats.errors.fetch_add(1, Relaxed);
                tracing::debug!(code = f.err.code(), error = %f.err, "KDC request refused");
                self.error_reply(&f, now)?
            }
        };
        let reply = Arc::new(reply);
        self.lookaside
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(fp, Arc::clone(&reply), now_s);
        Some(Arc::try_unwrap(reply).unwrap_or_else(|a| a.as_ref().clone()))
    }

    /// A KRB-ERROR for a failure.
    pub(crate) fn error_reply(&self, f: &Failure, now: SystemTime) -> Option<Vec<u8>> {
        let server = f.server.as_deref().unwrap_or(&self.tgs_principal);
        let text = f.err.to_string();
        let spec = messages::ErrorSpec {
            code: f.err.code(),
            server,
            client: f.client.as_deref(),
            ctime: None,
            e_text: Some(&text),
            e_data: f.e_data.clone(),
        };
        let built = messages::krb_error(&spec, now).or_else(|_| {
            // A name from the request that cannot be re-encoded: fall back
            // to naming only ourselves.
            messages::krb_error(
                &messages::ErrorSpec {
                    server: &self.tgs_principal,
                    client: None,
                    ..spec.clone()
                },
                now,
            )
        });
        built.ok().map(|e| encode(&e))
    }

    /// KRB_ERR_RESPONSE_TOO_BIG, sent over UDP when the reply does not fit,
    /// so that the client retries over TCP.
    pub fn response_too_big(&self, now: SystemTime) -> Vec<u8> {
        self.own_error(
            errors::code::KRB_ERR_RESPONSE_TOO_BIG,
            "response too big for UDP, retry with TCP",
            now,
        )
    }

    /// KRB_ERR_FIELD_TOOLONG, for a TCP request longer than the KDC accepts.
    pub fn field_too_long(&self, now: SystemTime) -> Vec<u8> {
        self.own_error(errors::code::KRB_ERR_FIELD_TOOLONG, "request too long", now)
    }

    /// A KRB-ERROR of `code` that names only this KDC.
    fn own_error(&self, code: i32, text: &str, now: SystemTime) -> Vec<u8> {
        let spec = messages::ErrorSpec {
            code,
            server: &self.tgs_principal,
            client: None,
            ctime: None,
            e_text: Some(text),
            e_data: None,
        };
        messages::krb_error(&spec, now)
            .map(|e| encode(&e))
            .unwrap_or_default()
    }
}

/// Locates the DER encoding of the KDC-REQ-BODY inside a raw KDC-REQ, so
/// that the PA-TGS-REQ checksum is verified over the bytes the client sent.
/// Only the definite-length TLV headers are walked; the content is decoded
/// by rasn elsewhere.
pub(crate) fn raw_req_body(req: &[u8]) -> Option<&[u8]> {
    /// (tag byte, header length, content length) of the TLV at `b`.
    fn tlv(b: &[u8]) -> Option<(u8, usize, usize)> {
        let tag = *b.first()?;
        if tag & 0x1f == 0x1f {
            return None;
        }
        let l0 = *b.get(1)?;
        let (hdr, len) = if l0 & 0x80 == 0 {
            (2, usize::from(l0))
        } else {
            let n = usize::from(l0 & 0x7f);
            if n == 0 || n > 4 {
                return None;
            }
            let bytes = b.get(2..2 + n)?;
            (
                2 + n,
                bytes.iter().fold(0usize, |a, x| (a << 8) | usize::from(*x)),
            )
        };
        if b.len() < hdr.checked_add(len)? {
            return None;
        }
        Some((tag, hdr, len))
    }
    let (_, h, l) = tlv(req)?; // [APPLICATION 10/12]
    let inner = req.get(h..h + l)?;
    let (t, h, l) = tlv(inner)?; // SEQUENCE
    if t != 0x30 {
        return None;
    }
    let mut rest = inner.get(h..h + l)?;
    while !rest.is_empty() {
        let (t, h, l) = tlv(rest)?;
        if t == 0xa4 {
            let body = rest.get(h..h + l)?;
            let (bt, bh, bl) = tlv(body)?;
            return (bt == 0x30 && bh + bl == body.len()).then_some(body);
        }
        rest = rest.get(h + l..)?;
    }
    None
}

#[cfg(test)]
mod tests;
