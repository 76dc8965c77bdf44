//! What the AS and TGS exchanges share: the checks of a request's header
//! and of the service it names, the times the client asked for and, once a
//! request is granted, the new ticket and the KDC-REP (RFC 4120 §3.1.3,
//! §3.3.3): a fresh session key, the ticket sealed in the service's key,
//! the client's EncKdcRepPart and the reply around them.

use rasn::types::Integer;
use rasn_kerberos::{
    AuthorizationData, EncKdcRepPart, EncTicketPart, EncryptedData, HostAddresses, KdcRep,
    KdcReqBody, KerberosTime, LastReq, PaData, PrincipalName, Realm, Ticket, TransitedEncoding,
};
use roamgate_krb_crypto::{Etype, Key};

use super::db::{KeyEntry, PrincipalEntry, PrincipalFlags};
use super::errors::KdcError;
use super::policy::{Granted, Requested};
use super::{ktime, ktime_secs, seal, Failure, Kdc};
use crate::messages::{self, int, int_value, kdc_options as opt, PVNO};
use crate::principal::Principal;
use crate::usage;

/// Checks a message's pvno and that its msg-type is `expected`.
pub(crate) fn check_header(
    pvno: &Integer,
    msg_type: &Integer,
    expected: i64,
) -> Result<(), KdcError> {
    let pvno = int_value(pvno).unwrap_or(-1);
    if pvno != PVNO {
        return Err(KdcError::BadProtocolVersion(pvno));
    }
    let mt = int_value(msg_type).unwrap_or(-1);
    if mt != expected {
        return Err(KdcError::WrongMessageType(mt));
    }
    Ok(())
}

/// Turns a [`KdcError`] into a [`Failure`] whose KRB-ERROR names `client`
/// and `server`.
pub(crate) fn failing<'a>(
    client: &'a Principal,
    server: &'a Principal,
) -> impl Fn(KdcError) -> Failure + 'a {
    move |e| Failure::from(e).with_client(client).with_server(server)
}

/// A principal's database entry; `unknown` when there is none.
pub(crate) fn lookup(
    kdc: &Kdc,
    principal: &Principal,
    unknown: KdcError,
) -> Result<std::sync::Arc<PrincipalEntry>, KdcError> {
    kdc.store()
        .get(principal)
        .map_err(|_| KdcError::Database)?
        .ok_or(unknown)
}

/// The entry of a service tickets are asked for: it must exist, be enabled
/// and be allowed to be a service.
pub(crate) fn service_entry(
    kdc: &Kdc,
    server: &Principal,
) -> Result<std::sync::Arc<PrincipalEntry>, KdcError> {
    let entry = lookup(kdc, server, KdcError::ServerUnknown)?;
    check_service(&entry)?;
    Ok(entry)
}

/// A service entry is enabled and allowed to be a service.
pub(crate) fn check_service(entry: &PrincipalEntry) -> Result<(), KdcError> {
    if entry.flags.has(PrincipalFlags::DISABLED) || !entry.flags.has(PrincipalFlags::ALLOW_SERVICE)
    {
        return Err(KdcError::ServiceRevoked);
    }
    Ok(())
}

/// The times a request body asks for, with its KDCOptions bits `options`.
pub(crate) fn requested(body: &KdcReqBody, options: u32) -> Requested {
    Requested {
        from: body.from.as_ref().map(ktime_secs),
        till: ktime_secs(&body.till),
        rtime: body.rtime.as_ref().map(ktime_secs),
        renewable: options & opt::RENEWABLE != 0,
        renewable_ok: options & opt::RENEWABLE_OK != 0,
    }
}

/// A ticket to issue: what the AS and TGS exchanges fill in differently.
pub(crate) struct NewTicket<'a> {
    /// TicketFlags bits, of the ticket and of the reply.
    pub flags: u32,
    pub session_etype: Etype,
    pub crealm: &'a Realm,
    pub cname: &'a PrincipalName,
    pub srealm: &'a Realm,
    pub sname: &'a PrincipalName,
    pub transited: TransitedEncoding,
    pub auth_time: KerberosTime,
    pub granted: Granted,
    pub caddr: Option<HostAddresses>,
    pub authorization_data: Option<AuthorizationData>,
    /// The service's long-term key the ticket is sealed in.
    pub ticket_key: &'a KeyEntry,
}

/// An issued ticket and the client's part of the reply, not yet sealed.
pub(crate) struct Issued<'a> {
    crealm: &'a Realm,
    cname: &'a PrincipalName,
    ticket: Ticket,
    enc_rep: EncKdcRepPart,
}

impl<'a> NewTicket<'a> {
    /// Draws a fresh session key, seals the ticket in the service's key and
    /// builds the EncKdcRepPart for the request's `nonce`.
    pub(crate) fn issue(self, nonce: u32, last_req: LastReq) -> Result<Issued<'a>, KdcError> {
        let session = Key::random(self.session_etype);
        let key = messages::encryption_key(self.session_etype.to_i32(), session.as_bytes());
        let start_time = ktime(self.granted.start)?;
        let end_time = ktime(self.granted.end)?;
        let renew_till = self.granted.renew_till.map(ktime).transpose()?;
        let enc_ticket = EncTicketPart {
            flags: messages::ticket_flags(self.flags),
            key: key.clone(),
            crealm: self.crealm.clone(),
            cname: self.cname.clone(),
            transited: self.transited,
            auth_time: self.auth_time.clone(),
            start_time: Some(start_time.clone()),
            end_time: end_time.clone(),
            renew_till: renew_till.clone(),
            caddr: self.caddr.clone(),
            authorization_data: self.authorization_data,
        };
        let ticket = Ticket {
            tkt_vno: int(PVNO),
            realm: self.srealm.clone(),
            sname: self.sname.clone(),
            enc_part: seal(
                &self.ticket_key.key,
                usage::KDC_REP_TICKET,
                Some(self.ticket_key.kvno),
                &enc_ticket,
            ),
        };
        let enc_rep = EncKdcRepPart {
            key,
            last_req,
            nonce,
            key_expiration: None,
            flags: messages::ticket_flags(self.flags),
            auth_time: self.auth_time,
            start_time: Some(start_time),
            end_time,
            renew_till,
            srealm: self.srealm.clone(),
            sname: self.sname.clone(),
            caddr: self.caddr,
            encrypted_pa_data: None,
        };
        Ok(Issued {
            crealm: self.crealm,
            cname: self.cname,
            ticket,
            enc_rep,
        })
    }
}

impl Issued<'_> {
    /// The KDC-REP of `msg_type`. `seal_enc_part` seals the client's part
    /// (as an EncAsRepPart or EncTgsRepPart) in the reply key.
    pub(crate) fn reply(
        self,
        msg_type: i64,
        padata: Option<Vec<PaData>>,
        seal_enc_part: impl FnOnce(EncKdcRepPart) -> EncryptedData,
    ) -> KdcRep {
        KdcRep {
            pvno: int(PVNO),
            msg_type: int(msg_type),
            padata,
            crealm: self.crealm.clone(),
            cname: self.cname.clone(),
            ticket: self.ticket,
            enc_part: seal_enc_part(self.enc_rep),
        }
    }
}
