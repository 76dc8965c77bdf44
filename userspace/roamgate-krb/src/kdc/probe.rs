//! A minimal, I/O-free request builder and reply reader for the AS and TGS
//! exchanges: what the KDC's own tests, the fuzz seeds and the benchmark's
//! load generator need. The full client (ccache, keytab, retries, KDC
//! discovery) lives in `crate::client`.

use std::time::SystemTime;

use rasn_kerberos::{
    ApReq, AsRep, AsReq, Authenticator, Checksum, EncAsRepPart, EncKdcRepPart, EncTgsRepPart,
    EncryptedData, KdcReq, KdcReqBody, PaData, PaEncTsEnc, TgsRep, TgsReq, Ticket,
};
use roamgate_krb_crypto::Key;

use crate::messages::{
    self, decode, encode, int, kdc_options, msg_type, pa_type, to_kerberos_time,
    to_kerberos_time_usec, to_principal_name, PVNO,
};
use crate::principal::Principal;
use crate::usage;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ProbeError {
    #[error("the KDC answered with error {0} ({name})", name = messages::error_code::name(*.0))]
    KrbError(i32),
    #[error("reply does not decode: {0}")]
    Malformed(String),
    #[error("reply's encrypted part does not decrypt with the expected key")]
    Decrypt,
    #[error("reply's nonce does not match the request's")]
    NonceMismatch,
    #[error("request field cannot be encoded: {0}")]
    Encode(String),
}

fn enc_err(e: messages::MessageError) -> ProbeError {
    ProbeError::Encode(e.to_string())
}

/// What an AS-REQ or TGS-REQ asks for.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    pub client: Principal,
    pub server: Principal,
    pub etypes: Vec<i32>,
    /// KDC options, as `messages::kdc_options` masks.
    pub options: u32,
    pub till: SystemTime,
    pub rtime: Option<SystemTime>,
    pub nonce: u32,
}

fn req_body(spec: &RequestSpec, with_cname: bool) -> Result<KdcReqBody, ProbeError> {
    let (cname, _) = to_principal_name(&spec.client).map_err(enc_err)?;
    let (sname, realm) = to_principal_name(&spec.server).map_err(enc_err)?;
    Ok(KdcReqBody {
        kdc_options: kdc_options(spec.options),
        cname: with_cname.then_some(cname),
        realm,
        sname: Some(sname),
        from: None,
        till: to_kerberos_time(spec.till).map_err(enc_err)?,
        rtime: spec
            .rtime
            .map(to_kerberos_time)
            .transpose()
            .map_err(enc_err)?,
        nonce: spec.nonce,
        etype: spec.etypes.clone(),
        addresses: None,
        enc_authorization_data: None,
        additional_tickets: None,
    })
}

/// An AS-REQ with the given padata (none for the first, probing request).
pub fn as_req(spec: &RequestSpec, padata: Vec<PaData>) -> Result<Vec<u8>, ProbeError> {
    let req = AsReq(KdcReq {
        pvno: int(PVNO),
        msg_type: int(msg_type::AS_REQ),
        padata: (!padata.is_empty()).then_some(padata),
        req_body: req_body(spec, true)?,
    });
    Ok(encode(&req))
}

/// PA-ENC-TIMESTAMP proving `key` at `now`.
pub fn enc_timestamp(key: &Key, now: SystemTime) -> Result<PaData, ProbeError> {
    let (t, usec) = to_kerberos_time_usec(now).map_err(enc_err)?;
    let ts = PaEncTsEnc {
        patimestamp: t,
        pausec: Some(int(i64::from(usec))),
    };
    let ed = EncryptedData {
        etype: key.etype().to_i32(),
        kvno: None,
        cipher: key
            .encrypt(usage::AS_REQ_PA_ENC_TIMESTAMP, &encode(&ts))
            .into(),
    };
    Ok(messages::padata(pa_type::ENC_TIMESTAMP, encode(&ed)))
}

/// A ticket and the client's view of it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub ticket: Ticket,
    pub ticket_der: Vec<u8>,
    pub enc: EncKdcRepPart,
    pub session: Key,
    pub padata: Vec<PaData>,
}

/// The error code of a KRB-ERROR reply, if it is one.
pub fn error_code(reply: &[u8]) -> Option<i32> {
    messages::recognise_error(reply)
        .ok()
        .flatten()
        .map(|e| e.error_code)
}

/// The salt and s2kparams of the first PA-ETYPE-INFO2 entry in a
/// KDC_ERR_PREAUTH_REQUIRED reply.
pub fn etype_info2(reply: &[u8]) -> Option<rasn_kerberos::EtypeInfo2Entry> {
    let err = messages::recognise_error(reply).ok().flatten()?;
    let md = messages::error_method_data(&err);
    let pa = md.iter().find(|p| p.r#type == pa_type::ETYPE_INFO2)?;
    decode::<Vec<rasn_kerberos::EtypeInfo2Entry>>(&pa.value)
        .ok()?
        .into_iter()
        .next()
}

fn issued(
    rep: rasn_kerberos::KdcRep,
    enc: EncKdcRepPart,
    nonce: u32,
) -> Result<Issued, ProbeError> {
    if enc.nonce != nonce {
        return Err(ProbeError::NonceMismatch);
    }
    let session = Key::from_raw(enc.key.r#type, &enc.key.value).map_err(|_| ProbeError::Decrypt)?;
    Ok(Issued {
        ticket_der: encode(&rep.ticket),
        ticket: rep.ticket,
        enc,
        session,
        padata: rep.padata.unwrap_or_default(),
    })
}

/// Reads an AS-REP, decrypting it with the client's key.
pub fn read_as_rep(reply: &[u8], key: &Key, nonce: u32) -> Result<Issued, ProbeError> {
    if let Some(code) = error_code(reply) {
        return Err(ProbeError::KrbError(code));
    }
    let AsRep(rep) = decode::<AsRep>(reply).map_err(|e| ProbeError::Malformed(e.to_string()))?;
    if rep.enc_part.etype != key.etype().to_i32() {
        return Err(ProbeError::Decrypt);
    }
    let plain = key
        .decrypt(usage::AS_REP_ENC_PART, &rep.enc_part.cipher)
        .map_err(|_| ProbeError::Decrypt)?;
    // MIT accepts either application tag here; so do we.
    let enc = match decode::<EncAsRepPart>(&plain) {
        Ok(EncAsRepPart(e)) => e,
        Err(_) => decode::<EncTgsRepPart>(&plain)
            .map(|EncTgsRepPart(e)| e)
            .map_err(|e| ProbeError::Malformed(e.to_string()))?,
    };
    issued(rep, enc, nonce)
}

/// A TGS-REQ presenting `tgt` (with its session key) for `spec.server`.
/// With `subkey`, the authenticator carries it and the reply is encrypted
/// in it.
pub fn tgs_req(
    spec: &RequestSpec,
    tgt: &Ticket,
    tgt_session: &Key,
    subkey: Option<&Key>,
    now: SystemTime,
) -> Result<Vec<u8>, ProbeError> {
    let body = req_body(spec, false)?;
    let body_der = encode(&body);
    let (cname, crealm) = to_principal_name(&spec.client).map_err(enc_err)?;
    let (ctime, cusec) = to_kerberos_time_usec(now).map_err(enc_err)?;
    let auth = Authenticator {
        authenticator_vno: int(PVNO),
        crealm,
        cname,
        cksum: Some(Checksum {
            r#type: tgt_session.etype().checksum_type(),
            checksum: tgt_session
                .checksum(usage::TGS_REQ_PA_TGS_REQ_CKSUM, &body_der)
                .into(),
        }),
        cusec: int(i64::from(cusec)),
        ctime,
        subkey: subkey.map(|k| messages::encryption_key(k.etype().to_i32(), k.as_bytes())),
        seq_number: None,
        authorization_data: None,
    };
    let ap = ApReq {
        pvno: int(PVNO),
        msg_type: int(msg_type::AP_REQ),
        ap_options: rasn_kerberos::ApOptions(messages::flags(0)),
        ticket: tgt.clone(),
        authenticator: EncryptedData {
            etype: tgt_session.etype().to_i32(),
            kvno: None,
            cipher: tgt_session
                .encrypt(usage::TGS_REQ_PA_TGS_REQ_AUTHENTICATOR, &encode(&auth))
                .into(),
        },
    };
    let req = TgsReq(KdcReq {
        pvno: int(PVNO),
        msg_type: int(msg_type::TGS_REQ),
        padata: Some(vec![messages::padata(pa_type::TGS_REQ, encode(&ap))]),
        req_body: body,
    });
    Ok(encode(&req))
}

/// Reads a TGS-REP, decrypting it with the subkey (if one was sent) or the
/// TGT session key.
pub fn read_tgs_rep(
    reply: &[u8],
    tgt_session: &Key,
    subkey: Option<&Key>,
    nonce: u32,
) -> Result<Issued, ProbeError> {
    if let Some(code) = error_code(reply) {
        return Err(ProbeError::KrbError(code));
    }
    let TgsRep(rep) = decode::<TgsRep>(reply).map_err(|e| ProbeError::Malformed(e.to_string()))?;
    let (key, usage) = match subkey {
        Some(k) => (k, usage::TGS_REP_ENC_PART_SUBKEY),
        None => (tgt_session, usage::TGS_REP_ENC_PART_SESSION_KEY),
    };
    if rep.enc_part.etype != key.etype().to_i32() {
        return Err(ProbeError::Decrypt);
    }
    let plain = key
        .decrypt(usage, &rep.enc_part.cipher)
        .map_err(|_| ProbeError::Decrypt)?;
    let EncTgsRepPart(enc) =
        decode::<EncTgsRepPart>(&plain).map_err(|e| ProbeError::Malformed(e.to_string()))?;
    issued(rep, enc, nonce)
}

/// Decrypts a ticket with the service's key, as the service would.
pub fn open_ticket(
    ticket: &Ticket,
    service_key: &Key,
) -> Result<rasn_kerberos::EncTicketPart, ProbeError> {
    if ticket.enc_part.etype != service_key.etype().to_i32() {
        return Err(ProbeError::Decrypt);
    }
    let plain = service_key
        .decrypt(usage::KDC_REP_TICKET, &ticket.enc_part.cipher)
        .map_err(|_| ProbeError::Decrypt)?;
    decode(&plain).map_err(|e| ProbeError::Malformed(e.to_string()))
}
