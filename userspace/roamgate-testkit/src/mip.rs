//! Test support for roamgate-mip: a service ticket for the home agent, sealed
//! as a KDC would seal it, with the home agent's key set. Used by its
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

/// What [`bench_registrations`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BenchResult {
    /// Full registrations per second at the home-agent core: parse, MN-HA
    /// check, Identification, AP-REQ verify (replay cache included), key
    /// derivation, binding update, reply with its MHAE.
    pub registrations_per_s: f64,
    pub registrations: usize,
    pub accepted: usize,
}

/// Measures the home-agent core on `nodes` nodes registering `rounds`
/// times each (first registrations, then re-registrations that rekey),
/// with AES256-CTS-HMAC-SHA1-96 tickets and HMAC-MD5 MN-HA
/// authentication. The requests are built first; only the home agent's
/// handling is timed.
pub fn bench_registrations(nodes: usize, rounds: usize) -> BenchResult {
    use std::net::{IpAddr, Ipv4Addr};
    use std::sync::Arc;
    use std::time::Instant;

    use roamgate_mip::auth::SecurityAssociation;
    use roamgate_mip::home_agent::{HomeAgent, HomeAgentConfig, NodeConfig, RateLimit};
    use roamgate_mip::mobile_node::{MobileNode, MobileNodeConfig};

    let now = SystemTime::now();
    let service = "mip/ha.bench@BENCH";
    let ha_addr = Ipv4Addr::new(10, 0, 0, 1);
    let (cred, keys) = issue_ticket(
        "mn@BENCH",
        service,
        Etype::Aes256CtsHmacSha196,
        now - Duration::from_secs(60),
        Duration::from_secs(3600),
    );
    let home = |i: usize| Ipv4Addr::from(0x0a01_0000u32 + i as u32);
    let sa = SecurityAssociation::new(0x1000, b"bench MN-HA key!").expect("valid SA");
    let mut cfg = HomeAgentConfig::new(ha_addr);
    cfg.service = Some(Principal::parse(service).expect("principal"));
    cfg.identification_skew = Duration::from_secs(300);
    cfg.rate_limit = RateLimit {
        burst: u32::MAX,
        per_second: u32::MAX,
        max_sources: 1 << 20,
    };
    let node_cfgs = (0..nodes)
        .map(|i| NodeConfig {
            home_address: home(i),
            security_associations: vec![sa.clone()],
            principal: None,
            require_kerberos: true,
        })
        .collect();
    let mut ha = HomeAgent::new(cfg, node_cfgs, Arc::new(keys));
    let mut requests = Vec::with_capacity(nodes * rounds);
    let mut mns: Vec<MobileNode> = (0..nodes)
        .map(|i| {
            let mut n = i as u32;
            MobileNode::new(
                MobileNodeConfig {
                    home_address: home(i),
                    home_agent: ha_addr,
                    security_association: sa.clone(),
                    credential: Some(cred.clone()),
                    lifetime: 600,
                    reverse_tunnel: true,
                    co_located: true,
                    tunnel_grace: Duration::from_secs(5),
                },
                Box::new(move || {
                    n = n.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    n
                }),
            )
        })
        .collect();
    for r in 0..rounds {
        for (i, mn) in mns.iter_mut().enumerate() {
            let coa = Ipv4Addr::from(0xc633_6400u32 + (i as u32 % 250) + r as u32);
            let out = mn.register(coa, now).expect("registration builds");
            requests.push((out.send.expect("a request"), IpAddr::V4(coa)));
        }
    }
    let start = Instant::now();
    let mut accepted = 0;
    for (req, src) in &requests {
        let out = ha.handle_request(req, *src, now);
        if out.code == Some(0) {
            accepted += 1;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    BenchResult {
        registrations_per_s: requests.len() as f64 / secs,
        registrations: requests.len(),
        accepted,
    }
}
