//! Fixtures the crate's unit tests share: a fixed clock and a ticket
//! issued as a KDC would, with its service key.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rasn_kerberos::{EncTicketPart, Ticket, TransitedEncoding};
use roamgate_krb_crypto::{Etype, Key};

use crate::ap::{accept_ap_req, AcceptParams, Accepted, ApError, KeySet, ServiceKeys};
use crate::credential::Credential;
use crate::messages::{self, int, ticket_flags, to_kerberos_time, to_principal_name};
use crate::principal::Principal;
use crate::replay::ReplayCache;
use crate::usage;

pub(crate) fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(s)
}

/// Accepts `req` with a fresh replay cache.
pub(crate) fn accept_once<K: ServiceKeys + ?Sized>(
    req: &[u8],
    keys: &K,
    params: &AcceptParams<'_>,
    now: SystemTime,
) -> Result<Accepted, ApError> {
    accept_ap_req(req, keys, params, &mut ReplayCache::default(), now)
}

/// Asserts that two credentials hold the same ticket, names, session
/// key, end time and flags.
pub(crate) fn assert_same_credential(got: &Credential, want: &Credential) {
    assert_eq!(got.client, want.client);
    assert_eq!(got.server, want.server);
    assert_eq!(got.session_key, want.session_key);
    assert_eq!(got.end_time, want.end_time);
    assert_eq!(got.flags, want.flags);
    assert_eq!(got.ticket, want.ticket);
}

/// A ticket for `service` issued at t=1000 for 10 h, as a KDC would,
/// with its service key.
pub(crate) fn issue(service: &str, etype: Etype) -> (Credential, KeySet) {
    let svc = Principal::parse(service).unwrap();
    let client = Principal::parse("alice@EXAMPLE.COM").unwrap();
    let skey = Key::random(etype);
    let session = Key::random(etype);
    let (cname, crealm) = to_principal_name(&client).unwrap();
    let (sname, srealm) = to_principal_name(&svc).unwrap();
    let etp = EncTicketPart {
        flags: messages::ticket_flags(ticket_flags::FORWARDABLE),
        key: messages::key_to_wire(&session),
        crealm,
        cname,
        transited: TransitedEncoding {
            r#type: 1,
            contents: Default::default(),
        },
        auth_time: to_kerberos_time(at(1000)).unwrap(),
        start_time: None,
        end_time: to_kerberos_time(at(1000 + 36000)).unwrap(),
        renew_till: None,
        caddr: None,
        authorization_data: None,
    };
    let ticket = Ticket {
        tkt_vno: int(5),
        realm: srealm,
        sname,
        enc_part: messages::seal(&skey, usage::KDC_REP_TICKET, Some(3), &etp),
    };
    (
        Credential {
            client,
            server: svc.clone(),
            session_key: session,
            auth_time: at(1000),
            start_time: None,
            end_time: at(37000),
            renew_till: None,
            flags: ticket_flags::FORWARDABLE,
            ticket,
        },
        KeySet(vec![(svc, 3, skey)]),
    )
}
