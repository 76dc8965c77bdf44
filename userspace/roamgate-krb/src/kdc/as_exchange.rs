//! The AS exchange (RFC 4120 §3.1) with required pre-authentication:
//! a first request without PA-ENC-TIMESTAMP gets KDC_ERR_PREAUTH_REQUIRED
//! carrying PA-ETYPE-INFO2 (salt and s2kparams); the second proves the key
//! with an encrypted timestamp. Padata types the KDC does not know (MIT
//! sends PA-REQ-ENC-PA-REP, PA-FX-FAST, PA-PAC-REQUEST, ...) are ignored.

use std::time::SystemTime;

use rasn_kerberos::{AsRep, AsReq, EncAsRepPart, LastReqValue, PaEncTsEnc, TransitedEncoding};
use roamgate_krb_crypto::Etype;

use super::db::{PrincipalEntry, PrincipalFlags};
use super::errors::KdcError;
use super::exchange::{check_header, check_service, failing, lookup, requested, NewTicket};
use super::{
    choose_etype, etype_info2, ktime, ktime_secs, principal_of, seal, unix_secs, unseal, Failure,
    Kdc,
};
use crate::messages::{
    self, decode, encode, flags_value, kdc_options as opt, msg_type, pa_type, ticket_flags as tf,
};
use crate::usage;

/// TransitedEncoding type DOMAIN-X500-COMPRESS (RFC 4120 §3.3.3.2).
pub(crate) const TR_DOMAIN_X500_COMPRESS: i32 = 1;

pub(crate) fn handle(kdc: &Kdc, raw: &[u8], now: SystemTime) -> Result<Vec<u8>, Failure> {
    let AsReq(req) = decode::<AsReq>(raw).map_err(|_| KdcError::MalformedRequest)?;
    check_header(&req.pvno, &req.msg_type, msg_type::AS_REQ)?;
    let body = &req.req_body;
    let cname = body.cname.as_ref().ok_or(KdcError::MissingClientName)?;
    let sname = body.sname.as_ref().ok_or(KdcError::MissingServerName)?;
    let client = principal_of(cname, &body.realm, "cname")?;
    let server = principal_of(sname, &body.realm, "sname")?;
    let fail = failing(&client, &server);
    if client.realm != kdc.realm() {
        return Err(fail(KdcError::WrongRealm(client.realm.clone())));
    }

    let c_entry = lookup(kdc, &client, KdcError::ClientUnknown).map_err(&fail)?;
    let s_entry = lookup(kdc, &server, KdcError::ServerUnknown).map_err(&fail)?;
    if c_entry.flags.has(PrincipalFlags::DISABLED) {
        return Err(fail(KdcError::ClientRevoked));
    }
    check_service(&s_entry).map_err(&fail)?;

    // The client's reply key: the first requested etype it has a key for.
    let reply_etype = choose_etype(&body.etype, |e| c_entry.key(e).is_some())
        .ok_or_else(|| fail(KdcError::EtypeNotSupported))?;
    // The session key: the first requested etype the server supports.
    let session_etype = choose_etype(&body.etype, |e| s_entry.key(e).is_some())
        .ok_or_else(|| fail(KdcError::EtypeNotSupported))?;
    let ticket_key = s_entry
        .strongest_key()
        .ok_or_else(|| fail(KdcError::EtypeNotSupported))?;

    let policy = kdc.policy();
    let now_s = unix_secs(now);

    // Options an AS-REQ may not carry.
    let options = flags_value(&body.kdc_options.0);
    if options & (opt::ENC_TKT_IN_SKEY | opt::RENEW | opt::VALIDATE | opt::FORWARDED | opt::PROXY)
        != 0
    {
        return Err(fail(KdcError::BadOption("not valid in an AS-REQ")));
    }

    // Pre-authentication.
    let method_data = || {
        let mut md = Vec::new();
        if let Some(p) = etype_info2(&c_entry, reply_etype) {
            md.push(p);
        }
        md.push(messages::padata(pa_type::ENC_TIMESTAMP, Vec::new()));
        encode(&md)
    };
    let enc_ts = messages::find_padata(req.padata.as_deref(), pa_type::ENC_TIMESTAMP);
    let mut reply_key = c_entry
        .key(reply_etype)
        .map(|k| (k.key.clone(), k.kvno))
        .ok_or_else(|| fail(KdcError::EtypeNotSupported))?;
    let mut preauthenticated = false;
    match enc_ts {
        Some(pa) => {
            let failed = || Failure {
                e_data: Some(method_data()),
                ..fail(KdcError::PreauthFailed)
            };
            let ed = decode::<rasn_kerberos::EncryptedData>(&pa.value).map_err(|_| failed())?;
            let etype = Etype::from_i32(ed.etype).ok_or_else(failed)?;
            // Only the client's current key proves who it is, whatever kvno
            // the request names: an older key may be one that leaked and was
            // rotated away (MIT krb5kdc also tries the newest kvno only).
            let k = c_entry.key(etype).ok_or_else(failed)?;
            let plain = unseal(&k.key, usage::AS_REQ_PA_ENC_TIMESTAMP, &ed).ok_or_else(failed)?;
            let ts = decode::<PaEncTsEnc>(&plain).map_err(|_| failed())?;
            if !policy.within_skew(ktime_secs(&ts.patimestamp), now_s) {
                return Err(fail(KdcError::ClockSkew));
            }
            // The reply is encrypted in the key the client proved.
            reply_key = (k.key.clone(), k.kvno);
            preauthenticated = true;
        }
        None if c_entry.flags.has(PrincipalFlags::REQUIRES_PREAUTH) => {
            return Err(Failure {
                e_data: Some(method_data()),
                ..fail(KdcError::PreauthRequired)
            });
        }
        None => {}
    }

    // Times.
    let requested = requested(body, options);
    let renewable_allowed = c_entry.flags.has(PrincipalFlags::ALLOW_RENEWABLE)
        && s_entry.flags.has(PrincipalFlags::ALLOW_RENEWABLE);
    let granted = policy
        .grant(
            now_s,
            &requested,
            &[c_entry.max_life, s_entry.max_life],
            &[c_entry.max_renew, s_entry.max_renew],
            renewable_allowed,
            None,
            None,
        )
        .map_err(&fail)?;

    let mut flags = tf::INITIAL;
    if preauthenticated {
        flags |= tf::PRE_AUTHENT;
    }
    if options & opt::FORWARDABLE != 0 && forwardable_allowed(&c_entry, &s_entry) {
        flags |= tf::FORWARDABLE;
    }
    if options & opt::PROXIABLE != 0 && forwardable_allowed(&c_entry, &s_entry) {
        flags |= tf::PROXIABLE;
    }
    if granted.renew_till.is_some() {
        flags |= tf::RENEWABLE;
    }

    let last_req = vec![LastReqValue {
        r#type: 0,
        value: ktime(0).map_err(&fail)?,
    }];
    let issued = NewTicket {
        flags,
        session_etype,
        crealm: &body.realm,
        cname,
        srealm: &body.realm,
        sname,
        transited: TransitedEncoding {
            r#type: TR_DOMAIN_X500_COMPRESS,
            contents: Vec::new().into(),
        },
        auth_time: ktime(now_s).map_err(&fail)?,
        granted,
        caddr: body.addresses.clone(),
        authorization_data: None,
        ticket_key,
    }
    .issue(body.nonce, last_req)
    .map_err(&fail)?;
    // The reply is sealed in the key the client proved (or, without
    // pre-authentication, its key of the first etype it asked for).
    let (rkey, rkvno) = reply_key;
    let padata = etype_info2(&c_entry, rkey.etype()).map(|p| vec![p]);
    let rep = issued.reply(msg_type::AS_REP, padata, |enc| {
        seal(
            &rkey,
            usage::AS_REP_ENC_PART,
            Some(rkvno),
            &EncAsRepPart(enc),
        )
    });
    Ok(encode(&AsRep(rep)))
}

fn forwardable_allowed(c: &PrincipalEntry, s: &PrincipalEntry) -> bool {
    c.flags.has(PrincipalFlags::ALLOW_FORWARDABLE) && s.flags.has(PrincipalFlags::ALLOW_FORWARDABLE)
}
