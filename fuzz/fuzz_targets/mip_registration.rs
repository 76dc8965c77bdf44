//! Mobile IP registration parser and home-agent core: any input either
//! fails with a typed error or parses to a message whose re-encoding parses
//! back the same; the home agent never panics and never acts on it.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use roamgate_krb::ap::KeySet;
use roamgate_mip::auth::SecurityAssociation;
use roamgate_mip::home_agent::{HomeAgent, HomeAgentConfig, NodeConfig, RateLimit};
use roamgate_mip::wire::{self, ExtensionRepr};

fn reencode(header: &[u8], exts: &[(usize, ExtensionRepr<'_>)]) -> Vec<u8> {
    let mut out = header.to_vec();
    for (_, e) in exts {
        e.emit(&mut out).expect("a parsed extension re-encodes");
    }
    out
}

fn home_agent() -> &'static Mutex<HomeAgent> {
    static HA: OnceLock<Mutex<HomeAgent>> = OnceLock::new();
    HA.get_or_init(|| {
        let ha = Ipv4Addr::new(10, 0, 0, 1);
        let mut nodes = Vec::new();
        for (i, k) in [(5u8, false), (6, true)] {
            nodes.push(NodeConfig {
                home_address: Ipv4Addr::new(10, 0, 0, i),
                security_associations: vec![
                    SecurityAssociation::new(0x100, b"fuzz key").unwrap(),
                    SecurityAssociation::new(0x8000_0000, b"fuzz key").unwrap(),
                ],
                principal: None,
                require_kerberos: k,
            });
        }
        let mut config = HomeAgentConfig::new(ha);
        // Every input reaches the parser and the checks.
        config.rate_limit = RateLimit {
            burst: u32::MAX,
            per_second: u32::MAX,
            max_sources: 16,
        };
        Mutex::new(HomeAgent::new(config, nodes, Arc::new(KeySet::default())))
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = wire::parse_request(data) {
        let again = reencode(&req.repr.to_bytes(), &req.extensions);
        let req2 = wire::parse_request(&again).expect("own encoding parses");
        assert_eq!(req2.repr, req.repr);
        assert_eq!(req2.extensions.len(), req.extensions.len());
    }
    if let Ok(rep) = wire::parse_reply(data) {
        let again = reencode(&rep.repr.to_bytes(), &rep.extensions);
        let rep2 = wire::parse_reply(&again).expect("own encoding parses");
        assert_eq!(rep2.repr, rep.repr);
    }
    let mut ha = home_agent().lock().unwrap();
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let out = ha.handle_request(data, IpAddr::from([192, 0, 2, 1]), now);
    // Without the MN-HA key nothing random authenticates.
    assert!(out.actions.is_empty());
});
