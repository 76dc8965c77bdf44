//! The Kerberos handshake of a call, and every key a call uses.
//!
//! The caller's proxy holds a service ticket for the callee's call
//! principal. Its SETUP carries an AP-REQ (mutual authentication required,
//! a fresh subkey) whose authenticator checksum covers the call's
//! identifier and the dialled number, so that the AP-REQ cannot be moved
//! into another call. The callee's proxy accepts it against its keys and
//! its replay cache, and answers with an AP-REP that carries a subkey of
//! its own.
//!
//! Keys (docs/call.md, "Keys"):
//! - The SETUP's integrity key comes from the caller's subkey alone, since
//!   the callee's subkey does not exist yet:
//!   `PRF+(caller_subkey, "roamgate-call setup" | 0 | call_id)`.
//! - After the AP-REP, the call key is RFC 6113 KRB-FX-CF2 of both
//!   subkeys (peppers "roamgate-call caller" and "roamgate-call callee"),
//!   so neither side alone chooses it.
//! - Every other key is `PRF+(call_key, label | 0 | call_id)`, one label
//!   per direction and use: signalling integrity (20 bytes, HMAC-SHA1-96
//!   as H.235.1 uses it) and the SRTP master key and salt of each
//!   direction. No key crosses the wire, not even encrypted: only the
//!   subkeys do, inside the Kerberos messages.

use std::time::SystemTime;

use roamgate_krb::ap::{
    accept_ap_req, build_ap_req, AcceptParams, ApClient, ApError, ApReqParams, ServiceKeys,
};
use roamgate_krb::credential::Credential;
use roamgate_krb::replay::ReplayCache;
use roamgate_krb::Principal;
use roamgate_krb_crypto::{cf2, Key};
use zeroize::{Zeroize, Zeroizing};

/// A call's unique identifier: H.225.0's callIdentifier GUID.
pub type CallId = [u8; 16];

/// Length of a signalling integrity key (an HMAC-SHA1 key).
pub const SIGNALLING_KEY_LEN: usize = 20;

const LABEL_SETUP: &[u8] = b"roamgate-call setup";
const PEPPER_CALLER: &[u8] = b"roamgate-call caller";
const PEPPER_CALLEE: &[u8] = b"roamgate-call callee";
const LABEL_SIG_CALLER: &[u8] = b"roamgate-call signalling caller-to-callee";
const LABEL_SIG_CALLEE: &[u8] = b"roamgate-call signalling callee-to-caller";
const LABEL_SRTP_CALLER: &[u8] = b"roamgate-call srtp caller-to-callee";
const LABEL_SRTP_CALLEE: &[u8] = b"roamgate-call srtp callee-to-caller";

/// Why a call's handshake failed.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("building the AP-REQ for {callee}: {source}")]
    Build {
        callee: Principal,
        source: Box<ApError>,
    },
    #[error("the caller's AP-REQ was refused: {0}")]
    Refused(Box<ApError>),
    #[error("the callee's AP-REP does not prove the callee: {0}")]
    MutualFailed(Box<ApError>),
    #[error("the callee's AP-REP carries no subkey; this profile needs one from each side")]
    NoCalleeSubkey,
    #[error("the caller's AP-REQ carries no subkey; this profile needs one from each side")]
    NoCallerSubkey,
    #[error("the caller's AP-REQ does not ask for mutual authentication")]
    NotMutual,
}

impl HandshakeError {
    /// The Q.850 cause a callee sends in RELEASE COMPLETE for this error:
    /// 21 (call rejected) for anything that fails authentication, 111
    /// (protocol error) for a handshake that breaks this profile.
    pub fn q850_cause(&self) -> u8 {
        match self {
            Self::NotMutual | Self::NoCallerSubkey => 111,
            Self::Refused(e) => match **e {
                ApError::Malformed(_) | ApError::BadVersion(_) => 111,
                ApError::ReplayCacheFull => 47, // resource unavailable
                _ => 21,
            },
            _ => 21,
        }
    }
}

/// Which end of the call a key set belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Caller,
    Callee,
}

/// A signalling integrity key, wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SignallingKey(Zeroizing<[u8; SIGNALLING_KEY_LEN]>);

impl SignallingKey {
    pub fn as_bytes(&self) -> &[u8; SIGNALLING_KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for SignallingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SignallingKey(..)")
    }
}

/// An SRTP master key and salt, wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct SrtpMaster {
    pub key: Zeroizing<Vec<u8>>,
    pub salt: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SrtpMaster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SrtpMaster({} byte key, {} byte salt)",
            self.key.len(),
            self.salt.len()
        )
    }
}

/// The keys of an established call, seen from one end.
pub struct CallKeys {
    role: Role,
    call_id: CallId,
    call_key: Key,
}

impl std::fmt::Debug for CallKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CallKeys")
            .field("role", &self.role)
            .field("call_id", &self.call_id)
            .finish_non_exhaustive()
    }
}

impl CallKeys {
    /// The keys of a call whose AP exchange carried these two subkeys.
    /// (A unit gets them from its proxy, which did the exchange for it.)
    pub fn new(role: Role, call_id: CallId, caller_subkey: &Key, callee_subkey: &Key) -> Self {
        Self {
            role,
            call_id,
            call_key: cf2(caller_subkey, callee_subkey, PEPPER_CALLER, PEPPER_CALLEE),
        }
    }

    pub fn role(&self) -> Role {
        self.role
    }

    pub fn call_id(&self) -> &CallId {
        &self.call_id
    }

    fn derive(&self, label: &[u8], len: usize) -> Zeroizing<Vec<u8>> {
        Zeroizing::new(self.call_key.prf_plus(&input(label, &self.call_id), len))
    }

    fn signalling(&self, label: &[u8]) -> SignallingKey {
        signalling_key(&self.derive(label, SIGNALLING_KEY_LEN))
    }

    fn srtp(&self, label: &[u8], key_len: usize, salt_len: usize) -> SrtpMaster {
        let both = self.derive(label, key_len + salt_len);
        SrtpMaster {
            key: Zeroizing::new(both[..key_len].to_vec()),
            salt: Zeroizing::new(both[key_len..].to_vec()),
        }
    }

    fn labels(&self, outbound: bool) -> (&'static [u8], &'static [u8]) {
        let caller_side = (self.role == Role::Caller) == outbound;
        if caller_side {
            (LABEL_SIG_CALLER, LABEL_SRTP_CALLER)
        } else {
            (LABEL_SIG_CALLEE, LABEL_SRTP_CALLEE)
        }
    }

    /// The key that protects the signalling this end sends.
    pub fn send_signalling(&self) -> SignallingKey {
        self.signalling(self.labels(true).0)
    }

    /// The key that checks the signalling this end receives.
    pub fn recv_signalling(&self) -> SignallingKey {
        self.signalling(self.labels(false).0)
    }

    /// The SRTP master key and salt of the media this end sends. Lengths
    /// are the profile's: 16 and 14 for AES_CM_128_HMAC_SHA1_80, 16 and
    /// 12 for AEAD_AES_128_GCM.
    pub fn send_srtp(&self, key_len: usize, salt_len: usize) -> SrtpMaster {
        self.srtp(self.labels(true).1, key_len, salt_len)
    }

    /// The SRTP master key and salt of the media this end receives.
    pub fn recv_srtp(&self, key_len: usize, salt_len: usize) -> SrtpMaster {
        self.srtp(self.labels(false).1, key_len, salt_len)
    }
}

fn input(label: &[u8], call_id: &CallId) -> Vec<u8> {
    let mut v = Vec::with_capacity(label.len() + 1 + call_id.len());
    v.extend_from_slice(label);
    v.push(0);
    v.extend_from_slice(call_id);
    v
}

fn signalling_key(bytes: &[u8]) -> SignallingKey {
    let mut k = Zeroizing::new([0u8; SIGNALLING_KEY_LEN]);
    k.copy_from_slice(&bytes[..SIGNALLING_KEY_LEN]);
    SignallingKey(k)
}

/// The key of the SETUP's hashed token, from the caller's subkey.
pub fn setup_key(caller_subkey: &Key, call_id: &CallId) -> SignallingKey {
    let mut b = caller_subkey.prf_plus(&input(LABEL_SETUP, call_id), SIGNALLING_KEY_LEN);
    let k = signalling_key(&b);
    b.zeroize();
    k
}

/// What the caller's authenticator checksum covers: the call and the
/// number dialled, so that an AP-REQ is good for this call only.
pub fn bound_data(call_id: &CallId, called_number: &str) -> Vec<u8> {
    let mut v = Vec::with_capacity(16 + 1 + called_number.len());
    v.extend_from_slice(call_id);
    v.push(0);
    v.extend_from_slice(called_number.as_bytes());
    v
}

/// The caller between its SETUP and the callee's AP-REP.
#[derive(Debug)]
pub struct Caller {
    client: ApClient,
    call_id: CallId,
    setup_key: SignallingKey,
}

impl Caller {
    /// Starts a call with the service ticket `ticket` for the callee's call
    /// principal. Returns the AP-REQ for the SETUP.
    pub fn start(
        ticket: &Credential,
        call_id: CallId,
        called_number: &str,
        now: SystemTime,
    ) -> Result<(Vec<u8>, Self), HandshakeError> {
        let bound = bound_data(&call_id, called_number);
        let params = ApReqParams {
            mutual: true,
            subkey: true,
            seq_number: None,
            app_data: Some(&bound),
        };
        let (ap_req, client) =
            build_ap_req(ticket, &params, now).map_err(|source| HandshakeError::Build {
                callee: ticket.server.clone(),
                source: Box::new(source),
            })?;
        let subkey = client.subkey().ok_or(HandshakeError::NoCallerSubkey)?;
        let setup_key = setup_key(subkey, &call_id);
        Ok((
            ap_req,
            Self {
                client,
                call_id,
                setup_key,
            },
        ))
    }

    /// The key that protects the SETUP.
    pub fn setup_key(&self) -> &SignallingKey {
        &self.setup_key
    }

    /// Checks the callee's AP-REP and derives the call's keys.
    pub fn finish(self, ap_rep: &[u8]) -> Result<CallKeys, HandshakeError> {
        let info = self
            .client
            .verify_ap_rep(ap_rep)
            .map_err(|e| HandshakeError::MutualFailed(Box::new(e)))?;
        let ours = self.client.subkey().ok_or(HandshakeError::NoCallerSubkey)?;
        // verify_ap_rep falls back to our own subkey when the AP-REP has
        // none; a call needs the callee's contribution.
        if info.key == *ours {
            return Err(HandshakeError::NoCalleeSubkey);
        }
        Ok(CallKeys::new(Role::Caller, self.call_id, ours, &info.key))
    }
}

/// A call the callee accepted.
#[derive(Debug)]
pub struct Answered {
    /// The caller's principal, from its ticket.
    pub caller: Principal,
    /// The AP-REP for the callee's first answer.
    pub ap_rep: Vec<u8>,
    /// The key that checks the caller's SETUP.
    pub setup_key: SignallingKey,
    pub keys: CallKeys,
    /// Both subkeys, for the unit the proxy answered for.
    pub caller_subkey: Key,
    pub callee_subkey: Key,
}

/// The callee's side: accepts the SETUP's AP-REQ for `callee` (the
/// callee's call principal) with its keys and replay cache.
pub fn answer<K: ServiceKeys + ?Sized>(
    ap_req: &[u8],
    keys: &K,
    callee: &Principal,
    call_id: CallId,
    called_number: &str,
    replay: &mut ReplayCache,
    now: SystemTime,
) -> Result<Answered, HandshakeError> {
    let bound = bound_data(&call_id, called_number);
    let params = AcceptParams {
        service: Some(callee),
        app_data: Some(&bound),
        ..AcceptParams::default()
    };
    let accepted = accept_ap_req(ap_req, keys, &params, replay, now)
        .map_err(|e| HandshakeError::Refused(Box::new(e)))?;
    if !accepted.mutual_required {
        return Err(HandshakeError::NotMutual);
    }
    let caller_subkey = accepted
        .subkey
        .clone()
        .ok_or(HandshakeError::NoCallerSubkey)?;
    let ours = accepted.new_subkey();
    let ap_rep = accepted.ap_rep(Some(&ours), None);
    Ok(Answered {
        caller: accepted.client.clone(),
        ap_rep,
        setup_key: setup_key(&caller_subkey, &call_id),
        keys: CallKeys::new(Role::Callee, call_id, &caller_subkey, &ours),
        caller_subkey,
        callee_subkey: ours,
    })
}

#[cfg(test)]
mod tests;
