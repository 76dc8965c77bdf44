//! The AS exchange (RFC 4120 §3.1) with required pre-authentication:
//! a first request without PA-ENC-TIMESTAMP gets KDC_ERR_PREAUTH_REQUIRED
//! carrying PA-ETYPE-INFO2 (salt and s2kparams); the second proves the key
//! with an encrypted timestamp. Padata types the KDC does not know (MIT
//! sends PA-REQ-ENC-PA-REP, PA-FX-FAST, PA-PAC-REQUEST, ...) are ignored.

use std::time::SystemTime;

use rasn_kerberos::{
    AsRep, AsReq, EncAsRepPart, EncKdcRepPart, EncTicketPart, KdcRep, LastReqValue, PaEncTsEnc,
    Ticket, TransitedEncoding,
};
use roamgate_krb_crypto::{Etype, Key};

use super::db::{PrincipalEntry, PrincipalFlags};
use super::errors::KdcError;
use super::policy::Requested;
use super::{
    choose_etype, etype_info2, ktime, ktime_secs, principal_of, seal, unix_secs, unseal, Failure,
    Kdc,
};
use crate::messages::{
    self, decode, encode, flags_value, int, int_value, kdc_options as opt, msg_type, pa_type,
    ticket_flags as tf, PVNO,
};
use crate::usage;

/// TransitedEncoding type DOMAIN-X500-COMPRESS (RFC 4120 §3.3.3.2).
pub(crate) const TR_DOMAIN_X500_COMPRESS: i32 = 1;

pub(crate) fn handle(kdc: &Kdc, raw: &[u8], now: SystemTime) -> Result<Vec<u8>, Failure> {
    let AsReq(req) = decode::<AsReq>(raw).map_err(|_| KdcError::MalformedRequest)?;
    let pvno = int_value(&req.pvno).unwrap_or(-1);
    if pvno != PVNO {
        return Err(KdcError::BadProtocolVersion(pvno).into());
    }
    let mt = int_value(&req.msg_type).unwrap_or(-1);
    if mt != msg_type::AS_REQ {
        return Err(KdcError::WrongMessageType(mt).into());
    }
    let body = &req.req_body;
    let cname = body.cname.as_ref().ok_or(KdcError::MissingClientName)?;
    let sname = body.sname.as_ref().ok_or(KdcError::MissingServerName)?;
    let client = principal_of(cname, &body.realm, "cname")?;
    let server = principal_of(sname, &body.realm, "sname")?;
    let fail = |e: KdcError| Failure::from(e).with_client(&client).with_server(&server);
    if client.realm != kdc.realm() {
        return Err(fail(KdcError::WrongRealm(client.realm.clone())));
    }

    let store = kdc.store();
    let c_entry = store
        .get(&client)
        .map_err(|_| fail(KdcError::Database))?
        .ok_or_else(|| fail(KdcError::ClientUnknown))?;
    let s_entry = store
        .get(&server)
        .map_err(|_| fail(KdcError::Database))?
        .ok_or_else(|| fail(KdcError::ServerUnknown))?;
    if c_entry.flags.has(PrincipalFlags::DISABLED) {
        return Err(fail(KdcError::ClientRevoked));
    }
    if s_entry.flags.has(PrincipalFlags::DISABLED)
        || !s_entry.flags.has(PrincipalFlags::ALLOW_SERVICE)
    {
        return Err(fail(KdcError::ServiceRevoked));
    }

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
            let k = c_entry
                .key_version(etype, ed.kvno)
                .or_else(|| c_entry.key(etype));
            let k = k.ok_or_else(failed)?;
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
    let requested = Requested {
        from: body.from.as_ref().map(ktime_secs),
        till: ktime_secs(&body.till),
        rtime: body.rtime.as_ref().map(ktime_secs),
        renewable: options & opt::RENEWABLE != 0,
        renewable_ok: options & opt::RENEWABLE_OK != 0,
    };
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
        .map_err(fail)?;

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

    let session = Key::random(session_etype);
    let session_wire = messages::encryption_key(session_etype.to_i32(), session.as_bytes());
    let fail_internal = |_| fail(KdcError::Internal);
    let authtime = ktime(now_s).map_err(fail_internal)?;
    let starttime = ktime(granted.start).map_err(fail_internal)?;
    let endtime = ktime(granted.end).map_err(fail_internal)?;
    let renew_till = granted
        .renew_till
        .map(ktime)
        .transpose()
        .map_err(fail_internal)?;

    let enc_ticket = EncTicketPart {
        flags: messages::ticket_flags(flags),
        key: session_wire.clone(),
        crealm: body.realm.clone(),
        cname: cname.clone(),
        transited: TransitedEncoding {
            r#type: TR_DOMAIN_X500_COMPRESS,
            contents: Vec::new().into(),
        },
        auth_time: authtime.clone(),
        start_time: Some(starttime.clone()),
        end_time: endtime.clone(),
        renew_till: renew_till.clone(),
        caddr: body.addresses.clone(),
        authorization_data: None,
    };
    let ticket = Ticket {
        tkt_vno: int(PVNO),
        realm: body.realm.clone(),
        sname: sname.clone(),
        enc_part: seal(
            &ticket_key.key,
            usage::KDC_REP_TICKET,
            Some(ticket_key.kvno),
            &enc_ticket,
        ),
    };
    let enc_rep = EncAsRepPart(EncKdcRepPart {
        key: session_wire,
        last_req: vec![LastReqValue {
            r#type: 0,
            value: ktime(0).map_err(fail_internal)?,
        }],
        nonce: body.nonce,
        key_expiration: None,
        flags: messages::ticket_flags(flags),
        auth_time: authtime,
        start_time: Some(starttime),
        end_time: endtime,
        renew_till,
        srealm: body.realm.clone(),
        sname: sname.clone(),
        caddr: body.addresses.clone(),
        encrypted_pa_data: None,
    });
    let (rkey, rkvno) = reply_key;
    let padata = etype_info2(&c_entry, rkey.etype()).map(|p| vec![p]);
    let rep = AsRep(KdcRep {
        pvno: int(PVNO),
        msg_type: int(msg_type::AS_REP),
        padata,
        crealm: body.realm.clone(),
        cname: cname.clone(),
        ticket,
        enc_part: seal(&rkey, usage::AS_REP_ENC_PART, Some(rkvno), &enc_rep),
    });
    Ok(encode(&rep))
}

fn forwardable_allowed(c: &PrincipalEntry, s: &PrincipalEntry) -> bool {
    c.flags.has(PrincipalFlags::ALLOW_FORWARDABLE) && s.flags.has(PrincipalFlags::ALLOW_FORWARDABLE)
}
