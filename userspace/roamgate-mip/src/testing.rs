//! Test support: a service ticket for the home agent, sealed as a KDC would
//! seal it, with the home agent's key set. Used by this crate's tests, its
//! integration tests and benchmarks; not for production use.

use std::time::{Duration, SystemTime};

use rasn_kerberos::{EncTicketPart, Ticket, TransitedEncoding};
use roamgate_krb::ap::KeySet;
use roamgate_krb::client::Credential;
use roamgate_krb::messages::{self, int, ticket_flags};
use roamgate_krb::{usage, Principal};
use roamgate_krb_crypto::{Etype, Key};

/// A ticket from `client` for `service`, valid from `start` for `life`,
/// under a fresh service key (kvno 1) returned in the key set.
pub fn issue_ticket(
    client: &str,
    service: &str,
    etype: Etype,
    start: SystemTime,
    life: Duration,
) -> (Credential, KeySet) {
    let svc = Principal::parse(service).expect("valid service principal");
    let cli = Principal::parse(client).expect("valid client principal");
    let service_key = Key::random(etype);
    let session = Key::random(etype);
    let (cname, crealm) = messages::to_principal_name(&cli).expect("client name");
    let (sname, srealm) = messages::to_principal_name(&svc).expect("service name");
    let end = start + life;
    let part = EncTicketPart {
        flags: messages::ticket_flags(ticket_flags::FORWARDABLE),
        key: messages::key_to_wire(&session),
        crealm,
        cname,
        transited: TransitedEncoding {
            r#type: 1,
            contents: Vec::new().into(),
        },
        auth_time: messages::to_kerberos_time(start).expect("time"),
        start_time: None,
        end_time: messages::to_kerberos_time(end).expect("time"),
        renew_till: None,
        caddr: None,
        authorization_data: None,
    };
    let ticket = Ticket {
        tkt_vno: int(5),
        realm: srealm,
        sname,
        enc_part: messages::seal(&service_key, usage::KDC_REP_TICKET, Some(1), &part),
    };
    (
        Credential {
            client: cli,
            server: svc.clone(),
            session_key: session,
            auth_time: start,
            start_time: None,
            end_time: end,
            renew_till: None,
            flags: ticket_flags::FORWARDABLE,
            ticket,
        },
        KeySet(vec![(svc, 1, service_key)]),
    )
}
