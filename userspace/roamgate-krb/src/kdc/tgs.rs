//! The TGS exchange (RFC 4120 §3.3): a ticket-granting ticket of this
//! realm, presented in PA-TGS-REQ, buys a service ticket. Forwardable and
//! forwarded tickets (for delegation), renewal and renewable tickets are
//! supported; postdating, validation, proxies and user-to-user are not and
//! get KDC_ERR_BADOPTION.

use std::time::SystemTime;

use rasn_kerberos::{
    ApReq, Authenticator, AuthorizationData, EncTgsRepPart, EncTicketPart, TgsRep, TgsReq,
};
use roamgate_krb_crypto::{Etype, Key};

use super::db::PrincipalFlags;
use super::errors::KdcError;
use super::exchange::{check_header, failing, lookup, requested, service_entry, NewTicket};
use super::policy::Granted;
use super::{
    choose_etype, from_unix_secs, ktime_secs, principal_of, raw_req_body, seal, unix_secs, unseal,
};
use super::{Failure, Kdc};
use crate::messages::{
    self, decode, encode, flags_value, kdc_options as opt, msg_type, pa_type, same_principal,
    ticket_flags as tf, Wiped,
};
use crate::replay::AuthenticatorId;
use crate::usage;

/// The TGT and authenticator of a PA-TGS-REQ, verified.
struct VerifiedTgt {
    tgt: Wiped<EncTicketPart>,
    session: Key,
    subkey: Option<Key>,
}

fn verify_ap_req(
    kdc: &Kdc,
    raw: &[u8],
    req_padata: Option<&[rasn_kerberos::PaData]>,
    now_s: i64,
) -> Result<VerifiedTgt, Failure> {
    let pa = messages::find_padata(req_padata, pa_type::TGS_REQ).ok_or(KdcError::MissingApReq)?;
    let ap: ApReq = decode(&pa.value).map_err(|_| KdcError::MalformedRequest)?;
    check_header(&ap.pvno, &ap.msg_type, msg_type::AP_REQ)?;
    let tkt_server = principal_of(&ap.ticket.sname, &ap.ticket.realm, "ticket sname")?;
    if !same_principal(&tkt_server, kdc.tgs_principal()) {
        return Err(Failure::from(KdcError::NotOurTgt).with_server(&tkt_server));
    }
    let tgs_entry = lookup(kdc, kdc.tgs_principal(), KdcError::Internal)?;
    let etype = Etype::from_i32(ap.ticket.enc_part.etype).ok_or(KdcError::EtypeNotSupported)?;
    let tkey = tgs_entry
        .key_version(etype, ap.ticket.enc_part.kvno)
        .ok_or(KdcError::BadKeyVersion(
            ap.ticket.enc_part.kvno.unwrap_or(0),
        ))?;
    let plain = unseal(&tkey.key, usage::KDC_REP_TICKET, &ap.ticket.enc_part)
        .ok_or(KdcError::BadIntegrity)?;
    let tgt: Wiped<EncTicketPart> = Wiped(decode(&plain).map_err(|_| KdcError::BadIntegrity)?);
    let client = principal_of(&tgt.cname, &tgt.crealm, "ticket cname")?;
    let fail = |e: KdcError| Failure::from(e).with_client(&client);

    let session =
        Key::from_raw(tgt.key.r#type, &tgt.key.value).map_err(|_| fail(KdcError::BadIntegrity))?;
    let auth_plain = unseal(
        &session,
        usage::TGS_REQ_PA_TGS_REQ_AUTHENTICATOR,
        &ap.authenticator,
    )
    .ok_or_else(|| fail(KdcError::BadIntegrity))?;
    let auth: Wiped<Authenticator> =
        Wiped(decode(&auth_plain).map_err(|_| fail(KdcError::BadIntegrity))?);
    let auth_client = principal_of(&auth.cname, &auth.crealm, "authenticator cname")?;
    if !same_principal(&auth_client, &client) {
        return Err(fail(KdcError::ClientMismatch));
    }
    let policy = kdc.policy();
    if !policy.within_skew(ktime_secs(&auth.ctime), now_s) {
        return Err(fail(KdcError::ClockSkew));
    }
    let skew = i64::try_from(policy.clock_skew.as_secs()).unwrap_or(0);
    let tflags = flags_value(&tgt.flags.0);
    let start = tgt.start_time.as_ref().unwrap_or(&tgt.auth_time);
    if ktime_secs(start) > now_s + skew || tflags & tf::INVALID != 0 {
        return Err(fail(KdcError::TicketNotYetValid));
    }
    if ktime_secs(&tgt.end_time) + skew < now_s {
        return Err(fail(KdcError::TicketExpired));
    }

    // The authenticator's checksum binds it to this request body.
    let cksum = auth
        .cksum
        .as_ref()
        .ok_or_else(|| fail(KdcError::InappropriateChecksum))?;
    if Etype::from_checksum_type(cksum.r#type).is_none() {
        return Err(fail(KdcError::ChecksumTypeNotSupported(cksum.r#type)));
    }
    if cksum.r#type != session.etype().checksum_type() {
        return Err(fail(KdcError::InappropriateChecksum));
    }
    let body_bytes = match raw_req_body(raw) {
        Some(b) => b.to_vec(),
        None => {
            let TgsReq(req) = decode::<TgsReq>(raw).map_err(|_| KdcError::MalformedRequest)?;
            encode(&req.req_body)
        }
    };
    session
        .verify_checksum(
            usage::TGS_REQ_PA_TGS_REQ_CKSUM,
            &body_bytes,
            &cksum.checksum,
        )
        .map_err(|_| fail(KdcError::Modified))?;

    // Each authenticator is good for one request (a retransmission of the
    // whole request is answered from the lookaside cache before this).
    kdc.replay_check(
        &AuthenticatorId {
            client: &client.to_string(),
            server: &kdc.tgs_principal().to_string(),
            ctime: messages::from_kerberos_time(&auth.ctime),
            cusec: messages::usec_value(&auth.cusec),
            ciphertext: &ap.authenticator.cipher,
        },
        from_unix_secs(now_s),
    )
    .map_err(fail)?;

    let subkey = match &auth.subkey {
        Some(k) => {
            Some(Key::from_raw(k.r#type, &k.value).map_err(|_| fail(KdcError::BadIntegrity))?)
        }
        None => None,
    };
    Ok(VerifiedTgt {
        tgt,
        session,
        subkey,
    })
}

pub(crate) fn handle(kdc: &Kdc, raw: &[u8], now: SystemTime) -> Result<Vec<u8>, Failure> {
    let TgsReq(req) = decode::<TgsReq>(raw).map_err(|_| KdcError::MalformedRequest)?;
    check_header(&req.pvno, &req.msg_type, msg_type::TGS_REQ)?;
    let now_s = unix_secs(now);
    let VerifiedTgt {
        tgt,
        session,
        subkey,
    } = verify_ap_req(kdc, raw, req.padata.as_deref(), now_s)?;
    let client = principal_of(&tgt.cname, &tgt.crealm, "ticket cname")?;

    let body = &req.req_body;
    let sname = body.sname.as_ref().ok_or(KdcError::MissingServerName)?;
    let server = principal_of(sname, &body.realm, "sname")?;
    let fail = failing(&client, &server);
    if server.realm != kdc.realm() {
        return Err(fail(KdcError::WrongRealm(server.realm.clone())));
    }
    let s_entry = service_entry(kdc, &server).map_err(&fail)?;
    // A client disabled since its TGT was issued gets nothing more.
    if let Ok(Some(c)) = kdc.store().get(&client) {
        if c.flags.has(PrincipalFlags::DISABLED) {
            return Err(fail(KdcError::ClientRevoked));
        }
    }

    let options = flags_value(&body.kdc_options.0);
    if options
        & (opt::ENC_TKT_IN_SKEY | opt::VALIDATE | opt::PROXY | opt::POSTDATED | opt::ALLOW_POSTDATE)
        != 0
    {
        return Err(fail(KdcError::BadOption("not supported by this KDC")));
    }
    let tflags = flags_value(&tgt.flags.0);
    let policy = kdc.policy();

    let session_etype = choose_etype(&body.etype, |e| s_entry.key(e).is_some())
        .ok_or_else(|| fail(KdcError::EtypeNotSupported))?;
    let ticket_key = s_entry
        .strongest_key()
        .ok_or_else(|| fail(KdcError::EtypeNotSupported))?;

    // Flags of the new ticket.
    let mut flags = tflags & (tf::PRE_AUTHENT | tf::HW_AUTHENT | tf::FORWARDED);
    let service_allows_fwd = s_entry.flags.has(PrincipalFlags::ALLOW_FORWARDABLE);
    if options & opt::FORWARDABLE != 0 {
        if tflags & tf::FORWARDABLE == 0 {
            return Err(fail(KdcError::BadOption(
                "FORWARDABLE requested, TGT is not",
            )));
        }
        if service_allows_fwd {
            flags |= tf::FORWARDABLE;
        }
    }
    let mut caddr = tgt.caddr.clone();
    if options & opt::FORWARDED != 0 {
        if tflags & tf::FORWARDABLE == 0 {
            return Err(fail(KdcError::BadOption(
                "FORWARDED requested, TGT is not forwardable",
            )));
        }
        flags |= tf::FORWARDED;
        caddr = body.addresses.clone();
    }
    if options & opt::PROXIABLE != 0 && tflags & tf::PROXIABLE != 0 {
        flags |= tf::PROXIABLE;
    }

    let tgt_start = ktime_secs(tgt.start_time.as_ref().unwrap_or(&tgt.auth_time));
    let tgt_end = ktime_secs(&tgt.end_time);
    let tgt_renew = tgt.renew_till.as_ref().map(ktime_secs);
    let granted = if options & opt::RENEW != 0 {
        // Renewal: the same ticket with a new lifetime, only for the
        // service the ticket is for.
        let renew_till = match tgt_renew {
            Some(r) if tflags & tf::RENEWABLE != 0 => r,
            _ => {
                return Err(fail(KdcError::BadOption(
                    "RENEW of a ticket that is not renewable",
                )))
            }
        };
        if !same_principal(&server, kdc.tgs_principal()) {
            return Err(fail(KdcError::BadOption(
                "RENEW for another service than the ticket's",
            )));
        }
        if renew_till <= now_s {
            return Err(fail(KdcError::TicketExpired));
        }
        flags |= tflags & (tf::FORWARDABLE | tf::PROXIABLE | tf::RENEWABLE);
        let life = (tgt_end - tgt_start).max(1);
        Granted {
            start: now_s,
            end: (now_s + life).min(renew_till),
            renew_till: Some(renew_till),
        }
    } else {
        let requested = requested(body, options);
        let renewable_allowed =
            tflags & tf::RENEWABLE != 0 && s_entry.flags.has(PrincipalFlags::ALLOW_RENEWABLE);
        let g = policy
            .grant(
                now_s,
                &requested,
                &[s_entry.max_life],
                &[s_entry.max_renew],
                renewable_allowed,
                Some(tgt_end),
                tgt_renew,
            )
            .map_err(&fail)?;
        if g.renew_till.is_some() {
            flags |= tf::RENEWABLE;
        }
        g
    };

    // Authorization data the client asks to be put into the ticket.
    let mut authz: Option<AuthorizationData> = tgt.authorization_data.clone();
    if let Some(ead) = &body.enc_authorization_data {
        let plain = match &subkey {
            Some(sk) => unseal(sk, usage::TGS_REQ_AUTHDATA_SUBKEY, ead),
            None => unseal(&session, usage::TGS_REQ_AUTHDATA_SESSION_KEY, ead),
        }
        .ok_or_else(|| fail(KdcError::BadIntegrity))?;
        let extra: AuthorizationData =
            decode(&plain).map_err(|_| fail(KdcError::MalformedRequest))?;
        authz.get_or_insert_with(Vec::new).extend(extra);
    }

    let issued = NewTicket {
        flags,
        session_etype,
        crealm: &tgt.crealm,
        cname: &tgt.cname,
        srealm: &body.realm,
        sname,
        transited: tgt.transited.clone(),
        auth_time: tgt.auth_time.clone(),
        granted,
        caddr,
        authorization_data: authz,
        ticket_key,
    }
    .issue(body.nonce, Vec::new())
    .map_err(&fail)?;
    // The reply is sealed in the authenticator's subkey if it has one, else
    // in the TGT's session key.
    let rep = issued.reply(msg_type::TGS_REP, None, |enc| {
        let enc = EncTgsRepPart(enc);
        match &subkey {
            Some(sk) => seal(sk, usage::TGS_REP_ENC_PART_SUBKEY, None, &enc),
            None => seal(&session, usage::TGS_REP_ENC_PART_SESSION_KEY, None, &enc),
        }
    });
    Ok(encode(&TgsRep(rep)))
}
