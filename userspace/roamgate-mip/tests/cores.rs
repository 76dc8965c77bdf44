//! The home-agent and mobile-node cores driven against each other with a
//! fake clock: every reply code path, replay, expiry, re-registration,
//! handover, deregistration, floods and restart from the journal.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use roamgate_krb::ap::KeySet;
use roamgate_krb::client::Credential;
use roamgate_krb::Principal;
use roamgate_krb_crypto::Etype;
use roamgate_mip::auth::SecurityAssociation;
use roamgate_mip::home_agent::{
    HomeAgent, HomeAgentConfig, NodeConfig, Outcome, RateLimit, Rejection, ReverseTunnel,
};
use roamgate_mip::journal::{BindingJournal, JournalOp, SqliteJournal};
use roamgate_mip::mobile_node::{Event, MobileNode, MobileNodeConfig, State};
use roamgate_mip::wire::{self, code, ext_type, flags, ExtensionRepr, RequestRepr};
use roamgate_mip::{identification, Action, Role};
use roamgate_testkit::mip::issue_ticket;

const HOME: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const HOME2: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 11);
const HA: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const COA_A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const COA_B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 30);
const SRC: IpAddr = IpAddr::V4(COA_A);
const SPI: u32 = 0x1000;
const MN_HA_KEY: &[u8] = b"mn-ha shared key 16+";
const SERVICE: &str = "mip/ha.example.com@EXAMPLE.COM";
const CLIENT: &str = "mn10@EXAMPLE.COM";

fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

struct World {
    ha: HomeAgent,
    mn: MobileNode,
    cred: Credential,
    keys: KeySet,
}

fn ha_config() -> HomeAgentConfig {
    let mut c = HomeAgentConfig::new(HA);
    c.service = Some(Principal::parse(SERVICE).unwrap());
    c.max_lifetime = 600;
    c
}

fn node(home: Ipv4Addr, kerberos: bool) -> NodeConfig {
    NodeConfig {
        home_address: home,
        security_associations: vec![SecurityAssociation::new(SPI, MN_HA_KEY).unwrap()],
        principal: kerberos.then(|| Principal::parse(CLIENT).unwrap()),
        require_kerberos: kerberos,
    }
}

fn mn_config(cred: Option<Credential>) -> MobileNodeConfig {
    MobileNodeConfig {
        home_address: HOME,
        home_agent: HA,
        security_association: SecurityAssociation::new(SPI, MN_HA_KEY).unwrap(),
        credential: cred,
        lifetime: 300,
        reverse_tunnel: true,
        co_located: true,
        tunnel_grace: secs(5),
    }
}

fn counter_rng() -> Box<dyn FnMut() -> u32 + Send> {
    let mut n = 0u32;
    Box::new(move || {
        n = n.wrapping_add(0x9e37);
        n
    })
}

fn world_with(config: HomeAgentConfig) -> World {
    let (cred, keys) = issue_ticket(
        CLIENT,
        SERVICE,
        Etype::Aes256CtsHmacSha196,
        t0() - secs(100),
        secs(36_000),
    );
    let ha = HomeAgent::new(
        config,
        vec![node(HOME, true), node(HOME2, false)],
        Arc::new(keys.clone()),
    );
    let mn = MobileNode::new(mn_config(Some(cred.clone())), counter_rng());
    World { ha, mn, cred, keys }
}

fn world() -> World {
    world_with(ha_config())
}

/// A rejection: the right code, a reply, and no action, no binding change.
#[track_caller]
fn assert_rejected(out: &Outcome, want: u8) {
    assert_eq!(out.code, Some(want), "rejection {:?}", out.rejection);
    assert!(out.reply.is_some());
    assert!(
        out.actions.is_empty(),
        "a rejected request acted: {:?}",
        out.actions
    );
    assert!(
        !out.journal
            .iter()
            .any(|op| matches!(op, JournalOp::PutBinding(_) | JournalOp::RemoveBinding(_))),
        "a rejected request changed the binding journal"
    );
    let reply = wire::parse_reply(out.reply.as_ref().unwrap()).unwrap();
    assert_eq!(reply.repr.code, want);
}

fn install_of(actions: &[Action]) -> (u32, Vec<u8>, Role, Ipv4Addr, Ipv4Addr) {
    actions
        .iter()
        .find_map(|a| match a {
            Action::InstallTunnel(t) => Some((
                t.spi,
                t.master_key.as_bytes().to_vec(),
                t.role,
                t.local,
                t.remote,
            )),
            _ => None,
        })
        .expect("an InstallTunnel action")
}

/// Registers the world's node from `coa` at `now` and returns the HA outcome.
fn register(w: &mut World, coa: Ipv4Addr, now: SystemTime) -> Outcome {
    let out = w.mn.register(coa, now).unwrap();
    let req = out.send.unwrap();
    let ha_out = w.ha.handle_request(&req, IpAddr::V4(coa), now);
    let mn_out =
        w.mn.handle_reply(ha_out.reply.as_ref().unwrap(), now)
            .unwrap();
    if ha_out.code == Some(code::ACCEPTED) {
        assert!(matches!(mn_out.events[..], [Event::Registered { .. }]));
    }
    ha_out
}

/// A hand-built request for HOME, authenticated with the node's SA.
fn request(repr: RequestRepr, before_auth: &[ExtensionRepr<'_>]) -> Vec<u8> {
    let mut msg = repr.to_bytes().to_vec();
    for e in before_auth {
        e.emit(&mut msg).unwrap();
    }
    SecurityAssociation::new(SPI, MN_HA_KEY)
        .unwrap()
        .append_mn_ha_auth(msg)
}

fn repr_at(now: SystemTime, home: Ipv4Addr) -> RequestRepr {
    RequestRepr {
        flags: flags::T,
        lifetime: 300,
        home_address: home,
        home_agent: HA,
        care_of_address: COA_A,
        identification: identification::timestamp(now, 7),
    }
}

#[test]
fn registration_accepted_both_ends_derive_the_same_tunnel() {
    let mut w = world();
    let now = t0();
    let out = w.mn.register(COA_A, now).unwrap();
    assert_eq!(w.mn.state(), State::Registering);
    // The node installs its receive side before sending.
    let (mn_spi, mn_key, role, local, remote) = install_of(&out.actions);
    assert_eq!((role, local, remote), (Role::CareOf, COA_A, HA));
    let req = out.send.unwrap();
    let parsed = wire::parse_request(&req).unwrap();
    assert_eq!(parsed.repr.flags, flags::T | flags::D);
    assert!(matches!(
        parsed.extensions[0].1,
        ExtensionRepr::Cvse {
            vendor_id: 32473,
            cvse_type: 1,
            ..
        }
    ));
    assert_eq!(parsed.extensions[1].1.ty(), ext_type::MN_HA_AUTH);

    let ha_out = w.ha.handle_request(&req, SRC, now);
    assert_eq!(ha_out.code, Some(code::ACCEPTED), "{:?}", ha_out.rejection);
    // Tunnel first, then the binding.
    assert!(matches!(ha_out.actions[0], Action::InstallTunnel(_)));
    let (ha_spi, ha_key, role, local, remote) = install_of(&ha_out.actions);
    assert_eq!((role, local, remote), (Role::HomeAgent, HA, COA_A));
    assert_eq!((ha_spi, &ha_key), (mn_spi, &mn_key));
    assert_eq!(
        ha_out.actions[1],
        Action::SetBinding {
            home: HOME,
            role: Role::HomeAgent,
            remote: COA_A,
            spi: ha_spi,
            expires: now + secs(300),
            reverse_tunnel: true,
        }
    );
    assert_eq!(ha_out.actions.len(), 2);
    assert!(matches!(
        ha_out.journal[..],
        [JournalOp::Identification { .. }, JournalOp::PutBinding(_)]
    ));
    let b = w.ha.binding(HOME).unwrap();
    assert_eq!((b.care_of, b.lifetime), (COA_A, 300));
    assert_eq!(b.client.as_deref(), Some(CLIENT));

    let reply = wire::parse_reply(ha_out.reply.as_ref().unwrap()).unwrap();
    assert_eq!(reply.repr.identification, parsed.repr.identification);
    assert_eq!(reply.repr.lifetime, 300);
    let mn_out =
        w.mn.handle_reply(ha_out.reply.as_ref().unwrap(), now)
            .unwrap();
    assert_eq!(
        mn_out.events,
        vec![Event::Registered {
            care_of: COA_A,
            lifetime: 300
        }]
    );
    assert_eq!(
        mn_out.actions,
        vec![Action::SetBinding {
            home: HOME,
            role: Role::CareOf,
            remote: HA,
            spi: mn_spi,
            expires: now + secs(300),
            reverse_tunnel: true,
        }]
    );
    assert_eq!(w.mn.state(), State::Registered);
    // Debug output never shows a key.
    let dbg = format!("{:?} {:?}", ha_out.actions, w.ha.binding(HOME));
    assert!(!dbg.contains(&format!("{:?}", &ha_key[..4])));
    assert!(dbg.contains("redacted"));
}

#[test]
fn every_bit_flip_gets_131_or_134_and_no_action() {
    let mut w = world();
    let now = t0();
    let req = w.mn.register(COA_A, now).unwrap().send.unwrap();
    let mut codes = std::collections::BTreeMap::new();
    for bit in 0..req.len() * 8 {
        let mut bad = req.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let out =
            w.ha.handle_request(&bad, IpAddr::from([192, 0, 2, (bit % 250) as u8]), now);
        assert!(out.actions.is_empty(), "bit {bit}: {:?}", out.actions);
        *codes.entry(out.code).or_insert(0) += 1;
        assert!(w.ha.binding(HOME).is_none());
    }
    // Flipping the type byte makes it not a request (dropped); header bits
    // that change the home address hit an unknown node (131); the rest fail
    // authentication (131) or the structure (134).
    assert!(
        codes.keys().all(|c| matches!(
            c,
            None | Some(code::MN_FAILED_AUTHENTICATION) | Some(code::POORLY_FORMED_REQUEST)
        )),
        "{codes:?}"
    );
    assert!(codes[&Some(code::MN_FAILED_AUTHENTICATION)] > req.len() * 6);
    // The untouched request is still good.
    let out = w.ha.handle_request(&req, SRC, now);
    assert_eq!(out.code, Some(code::ACCEPTED), "{:?}", out.rejection);
}

#[test]
fn replayed_registration_gets_133_with_the_home_agent_time() {
    let mut w = world();
    let now = t0();
    let req = w.mn.register(COA_A, now).unwrap().send.unwrap();
    assert_eq!(w.ha.handle_request(&req, SRC, now).code, Some(0));
    let later = now + secs(2);
    let out = w.ha.handle_request(&req, SRC, later);
    assert_rejected(&out, code::IDENTIFICATION_MISMATCH);
    let reply = wire::parse_reply(out.reply.as_ref().unwrap()).unwrap();
    let req_id = wire::parse_request(&req).unwrap().repr.identification;
    assert_eq!(
        identification::seconds_of(reply.repr.identification),
        identification::ntp_seconds(later)
    );
    assert_eq!(
        reply.repr.identification & 0xffff_ffff,
        req_id & 0xffff_ffff
    );
    assert!(matches!(
        out.rejection,
        Some(Rejection::Identification(
            identification::IdentificationError::NotNewer { .. }
        ))
    ));
}

#[test]
fn skewed_node_resynchronises_after_133() {
    let mut w = world();
    // The node's clock is 1000 s behind the home agent's.
    let ha_now = t0();
    let mn_now = t0() - secs(1000);
    let out = w.mn.register(COA_A, mn_now).unwrap();
    let ha_out = w.ha.handle_request(&out.send.unwrap(), SRC, ha_now);
    assert_rejected(&ha_out, code::IDENTIFICATION_MISMATCH);
    let mn_out =
        w.mn.handle_reply(ha_out.reply.as_ref().unwrap(), mn_now)
            .unwrap();
    assert_eq!(
        mn_out.events,
        vec![Event::Resynchronised { offset_secs: 1000 }]
    );
    // The failed attempt's tunnel goes, a new attempt's tunnel comes.
    assert!(matches!(mn_out.actions[0], Action::RemoveTunnel { .. }));
    assert!(matches!(mn_out.actions[1], Action::InstallTunnel(_)));
    let ha_out = w.ha.handle_request(&mn_out.send.unwrap(), SRC, ha_now);
    assert_eq!(ha_out.code, Some(code::ACCEPTED), "{:?}", ha_out.rejection);
    let mn_out =
        w.mn.handle_reply(ha_out.reply.as_ref().unwrap(), mn_now)
            .unwrap();
    assert!(matches!(mn_out.events[..], [Event::Registered { .. }]));
    assert_eq!(w.mn.clock_offset(), 1000);
}

#[test]
fn forged_authenticator_gets_an_unauthenticated_131_the_node_ignores() {
    let mut w = world();
    let now = t0();
    let mut req = w.mn.register(COA_A, now).unwrap().send.unwrap();
    let n = req.len();
    req[n - 1] ^= 0x01;
    let out = w.ha.handle_request(&req, SRC, now);
    assert_rejected(&out, code::MN_FAILED_AUTHENTICATION);
    // Whoever sent it, the reply speaks for no SA: no MHAE.
    assert_eq!(out.reply.as_ref().unwrap().len(), wire::REPLY_HEADER_LEN);
    let mn_out = w.mn.handle_reply(out.reply.as_ref().unwrap(), now).unwrap();
    assert_eq!(
        mn_out.events,
        vec![Event::Ignored("reply fails MN-HA authentication")]
    );
    assert!(mn_out.actions.is_empty());
    assert_eq!(w.mn.state(), State::Registering);
    assert_eq!(w.mn.ignored_replies(), 1);
}

#[test]
fn authenticated_131_stops_the_node() {
    // A Kerberos failure of an authentic request: the 131 is signed.
    let (other_cred, _) = issue_ticket(
        CLIENT,
        SERVICE,
        Etype::Aes256CtsHmacSha196,
        t0() - secs(100),
        secs(36_000),
    );
    let mut w = world();
    w.mn = MobileNode::new(mn_config(Some(other_cred)), counter_rng());
    let now = t0();
    let req = w.mn.register(COA_A, now).unwrap().send.unwrap();
    let out = w.ha.handle_request(&req, SRC, now);
    assert_rejected(&out, code::MN_FAILED_AUTHENTICATION);
    let mn_out = w.mn.handle_reply(out.reply.as_ref().unwrap(), now).unwrap();
    assert_eq!(mn_out.events, vec![Event::AuthenticationFailed]);
    assert!(matches!(mn_out.actions[..], [Action::RemoveTunnel { .. }]));
    assert_eq!(w.mn.state(), State::Idle);
}

#[test]
fn unknown_node_and_unknown_spi_get_131() {
    let mut w = world();
    let now = t0();
    let stranger = Ipv4Addr::new(10, 1, 0, 99);
    let out =
        w.ha.handle_request(&request(repr_at(now, stranger), &[]), SRC, now);
    assert_rejected(&out, code::MN_FAILED_AUTHENTICATION);
    assert_eq!(out.rejection, Some(Rejection::UnknownNode));
    // Unknown node: no SA to authenticate the reply with.
    assert_eq!(out.reply.as_ref().unwrap().len(), wire::REPLY_HEADER_LEN);

    let msg = SecurityAssociation::new(0x2000, MN_HA_KEY)
        .unwrap()
        .append_mn_ha_auth(repr_at(now, HOME).to_bytes().to_vec());
    let out = w.ha.handle_request(&msg, SRC, now);
    assert_rejected(&out, code::MN_FAILED_AUTHENTICATION);
    // Reserved SPI.
    let mut msg = repr_at(now, HOME).to_bytes().to_vec();
    msg.extend_from_slice(&[32, 20, 0, 0, 0, 5]);
    msg.extend_from_slice(&[0; 16]);
    let out = w.ha.handle_request(&msg, SRC, now);
    assert_rejected(&out, code::MN_FAILED_AUTHENTICATION);
    let _ = &w.cred;
}

#[test]
fn poorly_formed_requests_get_134() {
    let mut w = world();
    let now = t0();
    // No MHAE at all.
    let out =
        w.ha.handle_request(&repr_at(now, HOME).to_bytes(), SRC, now);
    assert_rejected(&out, code::POORLY_FORMED_REQUEST);
    assert_eq!(out.rejection, Some(Rejection::MissingAuth));
    // An unknown non-skippable extension (type 100).
    let good = request(repr_at(now, HOME), &[]);
    let mut bad = good[..24].to_vec();
    bad.extend_from_slice(&[100, 2, 0, 0]);
    bad.extend_from_slice(&good[24..]);
    let out = w.ha.handle_request(&bad, SRC, now);
    assert_rejected(&out, code::POORLY_FORMED_REQUEST);
    assert!(matches!(
        out.rejection,
        Some(Rejection::PoorlyFormed(wire::WireError::UnknownExtension {
            ty: 100,
            offset: 24
        }))
    ));
    // A truncated extension.
    let out = w.ha.handle_request(&good[..good.len() - 3], SRC, now);
    assert_rejected(&out, code::POORLY_FORMED_REQUEST);
}

#[test]
fn skippable_unknown_extension_is_ignored() {
    let mut w = world();
    let now = t0();
    // Node HOME2 does not require Kerberos.
    let out = w.ha.handle_request(
        &request(
            repr_at(now, HOME2),
            &[ExtensionRepr::Skipped {
                ty: 200,
                data: &[1, 2, 3],
            }],
        ),
        SRC,
        now,
    );
    assert_eq!(out.code, Some(code::ACCEPTED), "{:?}", out.rejection);
    let _ = &w.keys;
}

#[test]
fn truncated_oversized_and_foreign_messages_are_dropped_silently() {
    let mut w = world();
    let now = t0();
    let good = request(repr_at(now, HOME2), &[]);
    for n in 0..24 {
        let out = w.ha.handle_request(&good[..n], SRC, now + secs(n as u64));
        assert!(out.reply.is_none() && out.actions.is_empty() && out.dropped.is_some());
    }
    let mut big = good.clone();
    big.resize(wire::MAX_MESSAGE_LEN + 1, 0);
    let out = w.ha.handle_request(&big, SRC, now + secs(30));
    assert!(out.reply.is_none() && out.dropped.is_some());
    let mut reply_type = good.clone();
    reply_type[0] = 3;
    let out = w.ha.handle_request(&reply_type, SRC, now + secs(31));
    assert!(out.reply.is_none() && out.dropped.is_some());
}

#[test]
fn unknown_home_agent_address_gets_136_with_ours() {
    let mut w = world();
    let now = t0();
    let mut r = repr_at(now, HOME2);
    r.home_agent = Ipv4Addr::new(10, 1, 0, 250);
    let out = w.ha.handle_request(&request(r, &[]), SRC, now);
    assert_rejected(&out, code::UNKNOWN_HOME_AGENT);
    let reply = wire::parse_reply(out.reply.as_ref().unwrap()).unwrap();
    assert_eq!(reply.repr.home_agent, HA);
}

#[test]
fn encapsulation_and_reverse_tunnel_policy() {
    let now = t0();
    let mut w = world();
    let mut r = repr_at(now, HOME2);
    r.flags |= flags::G;
    assert_rejected(
        &w.ha.handle_request(&request(r, &[]), SRC, now),
        code::ENCAPSULATION_UNAVAILABLE,
    );
    let mut r = repr_at(now + secs(1), HOME2);
    r.flags |= flags::M;
    assert_rejected(
        &w.ha.handle_request(&request(r, &[]), SRC, now + secs(1)),
        code::ENCAPSULATION_UNAVAILABLE,
    );

    let mut c = ha_config();
    c.reverse_tunnel = ReverseTunnel::Unavailable;
    let mut w = world_with(c);
    assert_rejected(
        &w.ha
            .handle_request(&request(repr_at(now, HOME2), &[]), SRC, now),
        code::REVERSE_TUNNEL_UNAVAILABLE,
    );
    let mut c = ha_config();
    c.reverse_tunnel = ReverseTunnel::Mandatory;
    let mut w = world_with(c);
    let mut r = repr_at(now, HOME2);
    r.flags = 0;
    assert_rejected(
        &w.ha.handle_request(&request(r, &[]), SRC, now),
        code::REVERSE_TUNNEL_MANDATORY,
    );
}

#[test]
fn unknown_cvse_gets_140() {
    let mut w = world();
    let now = t0();
    let out = w.ha.handle_request(
        &request(
            repr_at(now, HOME2),
            &[ExtensionRepr::Cvse {
                vendor_id: 9,
                cvse_type: 1,
                data: b"x",
            }],
        ),
        SRC,
        now,
    );
    assert_rejected(&out, code::UNSUPPORTED_CVSE_FROM_MN);
}

#[test]
fn kerberos_failures_get_131() {
    let now = t0();
    // Missing AP-REQ for a node that requires it.
    let mut w = world();
    let out =
        w.ha.handle_request(&request(repr_at(now, HOME), &[]), SRC, now);
    assert_rejected(&out, code::MN_FAILED_AUTHENTICATION);
    assert_eq!(out.rejection, Some(Rejection::KerberosMissing));

    // A ticket sealed under a key the home agent does not have.
    let (other_cred, _) = issue_ticket(
        CLIENT,
        SERVICE,
        Etype::Aes256CtsHmacSha196,
        t0() - secs(100),
        secs(36_000),
    );
    let mut mn = MobileNode::new(mn_config(Some(other_cred)), counter_rng());
    let req = mn.register(COA_A, now + secs(1)).unwrap().send.unwrap();
    let out = w.ha.handle_request(&req, SRC, now + secs(1));
    assert_rejected(&out, code::MN_FAILED_AUTHENTICATION);
    assert!(matches!(out.rejection, Some(Rejection::Kerberos(_))));

    // A valid ticket of another client.
    let (cred, keys) = issue_ticket(
        "intruder@EXAMPLE.COM",
        SERVICE,
        Etype::Aes128CtsHmacSha256128,
        t0() - secs(100),
        secs(36_000),
    );
    let mut ha = HomeAgent::new(ha_config(), vec![node(HOME, true)], Arc::new(keys));
    let mut mn = MobileNode::new(mn_config(Some(cred)), counter_rng());
    let req = mn.register(COA_A, now).unwrap().send.unwrap();
    let out = ha.handle_request(&req, SRC, now);
    assert_rejected(&out, code::MN_FAILED_AUTHENTICATION);
    assert_eq!(
        out.rejection,
        Some(Rejection::KerberosWrongClient(
            "intruder@EXAMPLE.COM".into()
        ))
    );

    // An expired ticket.
    let mut w = world();
    let late = t0() + secs(40_000);
    let req = w.mn.register(COA_A, late).unwrap().send.unwrap();
    let out = w.ha.handle_request(&req, SRC, late);
    assert_rejected(&out, code::MN_FAILED_AUTHENTICATION);

    // An AP-REQ moved into another registration: its checksum covers the
    // original fixed part (Identification included).
    let mut w = world();
    let req = w.mn.register(COA_A, now).unwrap().send.unwrap();
    let parsed = wire::parse_request(&req).unwrap();
    let ExtensionRepr::Cvse { data, .. } = parsed.extensions[0].1 else {
        panic!("no CVSE");
    };
    let mut r = parsed.repr;
    r.identification += 1;
    let moved = request(
        r,
        &[ExtensionRepr::Cvse {
            vendor_id: 32473,
            cvse_type: 1,
            data,
        }],
    );
    let out = w.ha.handle_request(&moved, SRC, now);
    assert_rejected(&out, code::MN_FAILED_AUTHENTICATION);
    assert!(w.ha.binding(HOME).is_none());
}

#[test]
fn ap_req_without_subkey_gets_131() {
    let mut w = world();
    let now = t0();
    let repr = repr_at(now, HOME);
    let header = repr.to_bytes();
    let (ap, _) = roamgate_krb::ap::build_ap_req(
        &w.cred,
        &roamgate_krb::ap::ApReqParams {
            subkey: false,
            app_data: Some(&header),
            ..Default::default()
        },
        now,
    )
    .unwrap();
    let msg = request(
        repr,
        &[ExtensionRepr::Cvse {
            vendor_id: 32473,
            cvse_type: 1,
            data: &ap,
        }],
    );
    let out = w.ha.handle_request(&msg, SRC, now);
    assert_rejected(&out, code::MN_FAILED_AUTHENTICATION);
    assert_eq!(out.rejection, Some(Rejection::KerberosNoSubkey));
}

#[test]
fn binding_table_full_gets_130() {
    let mut c = ha_config();
    c.max_bindings = 1;
    let mut w = world_with(c);
    let now = t0();
    assert_eq!(register(&mut w, COA_A, now).code, Some(0));
    let out =
        w.ha.handle_request(&request(repr_at(now, HOME2), &[]), SRC, now);
    assert_rejected(&out, code::INSUFFICIENT_RESOURCES);
    assert_eq!(out.rejection, Some(Rejection::TooManyBindings));
    // Re-registering an existing binding is not a new one.
    let out = register(&mut w, COA_A, now + secs(10));
    assert_eq!(out.code, Some(0), "{:?}", out.rejection);
}

#[test]
fn simultaneous_bindings_get_code_1_and_lifetime_is_capped() {
    let mut w = world();
    let now = t0();
    let mut r = repr_at(now, HOME2);
    r.flags |= flags::S;
    r.lifetime = 0xffff;
    let out = w.ha.handle_request(&request(r, &[]), SRC, now);
    assert_eq!(out.code, Some(code::ACCEPTED_NO_SIMULTANEOUS));
    let reply = wire::parse_reply(out.reply.as_ref().unwrap()).unwrap();
    assert_eq!(reply.repr.lifetime, 600);
    assert_eq!(w.ha.binding(HOME2).unwrap().expires, now + secs(600));
}

#[test]
fn node_without_kerberos_derives_the_same_key() {
    let now = t0();
    let mut ha = HomeAgent::new(
        ha_config(),
        vec![node(HOME, false)],
        Arc::new(KeySet::default()),
    );
    let mut mn = MobileNode::new(mn_config(None), counter_rng());
    let out = mn.register(COA_A, now).unwrap();
    let mn_tunnel = install_of(&out.actions);
    let ha_out = ha.handle_request(&out.send.unwrap(), SRC, now);
    assert_eq!(ha_out.code, Some(0), "{:?}", ha_out.rejection);
    let ha_tunnel = install_of(&ha_out.actions);
    assert_eq!((mn_tunnel.0, mn_tunnel.1), (ha_tunnel.0, ha_tunnel.1));
}

#[test]
fn deregistration_removes_everything_at_both_ends() {
    let mut w = world();
    let now = t0();
    let spi = install_of(&register(&mut w, COA_A, now).actions).0;
    let later = now + secs(10);
    let out = w.mn.deregister(later).unwrap();
    assert!(out.actions.is_empty(), "a deregistration installs nothing");
    let req = out.send.unwrap();
    let parsed = wire::parse_request(&req).unwrap();
    assert_eq!(parsed.repr.lifetime, 0);
    assert_eq!(parsed.extensions.len(), 1, "no AP-REQ on deregistration");
    assert_eq!(w.mn.state(), State::Deregistering);
    let ha_out = w.ha.handle_request(&req, SRC, later);
    assert_eq!(ha_out.code, Some(0));
    assert_eq!(
        ha_out.actions,
        vec![
            Action::RemoveBinding {
                home: HOME,
                role: Role::HomeAgent
            },
            Action::RemoveTunnel { spi }
        ]
    );
    assert!(ha_out.journal.contains(&JournalOp::RemoveBinding(HOME)));
    assert_eq!(w.ha.binding_count(), 0);
    let mn_out =
        w.mn.handle_reply(ha_out.reply.as_ref().unwrap(), later)
            .unwrap();
    assert_eq!(mn_out.events, vec![Event::Deregistered]);
    assert_eq!(
        mn_out.actions,
        vec![
            Action::RemoveBinding {
                home: HOME,
                role: Role::CareOf
            },
            Action::RemoveTunnel { spi }
        ]
    );
    assert_eq!(w.mn.state(), State::Idle);

    // Care-of = home address is a deregistration too.
    let now = later + secs(10);
    register(&mut w, COA_A, now);
    let mut r = repr_at(now + secs(1), HOME);
    r.care_of_address = HOME;
    let out = w.ha.handle_request(&request(r, &[]), SRC, now + secs(1));
    assert_eq!(out.code, Some(0));
    assert_eq!(w.ha.binding_count(), 0);
}

/// RFC 5944 §3.8.3.1: a deregistration names the care-of address it ends.
/// A unit's old proxy deregistering after the unit moved (its binding now
/// has the new care-of address) must not cut the new one.
#[test]
fn deregistration_of_an_old_care_of_address_keeps_the_new_binding() {
    let mut w = world();
    let now = t0();
    register(&mut w, COA_B, now);
    let mut r = repr_at(now + secs(1), HOME);
    r.lifetime = 0;
    r.care_of_address = COA_A;
    let out =
        w.ha.handle_request(&request(r, &[]), IpAddr::V4(COA_A), now + secs(1));
    assert_eq!(out.code, Some(0), "accepted: there is nothing to delete");
    assert!(out.actions.is_empty(), "{:?}", out.actions);
    assert!(
        !out.journal.contains(&JournalOp::RemoveBinding(HOME)),
        "{:?}",
        out.journal
    );
    assert_eq!(w.ha.binding(HOME).unwrap().care_of, COA_B);
    assert_eq!(w.ha.stats().deregistered_stale, 1);
    // The current care-of address still ends it.
    let mut r = repr_at(now + secs(2), HOME);
    r.lifetime = 0;
    r.care_of_address = COA_B;
    let out =
        w.ha.handle_request(&request(r, &[]), IpAddr::V4(COA_B), now + secs(2));
    assert_eq!(out.code, Some(0));
    assert_eq!(w.ha.binding_count(), 0);
}

#[test]
fn binding_expires_at_the_home_agent() {
    let mut w = world();
    let now = t0();
    let spi = install_of(&register(&mut w, COA_A, now).actions).0;
    assert_eq!(w.ha.next_wakeup(), Some(now + secs(300)));
    assert!(w.ha.poll(now + secs(299)).actions.is_empty());
    let out = w.ha.poll(now + secs(300));
    assert_eq!(
        out.actions,
        vec![
            Action::RemoveBinding {
                home: HOME,
                role: Role::HomeAgent
            },
            Action::RemoveTunnel { spi }
        ]
    );
    assert_eq!(out.journal, vec![JournalOp::RemoveBinding(HOME)]);
    assert_eq!(w.ha.binding_count(), 0);
    assert_eq!(w.ha.stats().expired, 1);
    // The node notices too, if it never re-registered.
    let out = w.mn.poll(now + secs(300)).unwrap();
    assert!(out.events.contains(&Event::Expired));
}

#[test]
fn re_registration_before_expiry_rekeys_make_before_break() {
    let mut w = world();
    let now = t0();
    let old_spi = install_of(&register(&mut w, COA_A, now).actions).0;
    // 80 % of 300 s.
    assert_eq!(w.mn.next_wakeup(), Some(now + secs(240)));
    assert!(w.mn.poll(now + secs(239)).unwrap().send.is_none());
    let at = now + secs(240);
    let out = w.mn.poll(at).unwrap();
    let new_spi = install_of(&out.actions).0;
    assert_ne!(new_spi, old_spi);
    let ha_out = w.ha.handle_request(&out.send.unwrap(), SRC, at);
    assert_eq!(ha_out.code, Some(0));
    assert_eq!(install_of(&ha_out.actions).0, new_spi);
    assert!(
        !ha_out
            .actions
            .iter()
            .any(|a| matches!(a, Action::RemoveTunnel { .. })),
        "old tunnel stays for the grace period"
    );
    assert_eq!(w.ha.binding(HOME).unwrap().expires, at + secs(300));
    let mn_out =
        w.mn.handle_reply(ha_out.reply.as_ref().unwrap(), at)
            .unwrap();
    assert!(matches!(mn_out.actions[..], [Action::SetBinding { spi, .. }] if spi == new_spi));
    // After the grace, both ends remove the old tunnel.
    let grace = at + secs(5);
    assert_eq!(
        w.ha.poll(grace).actions,
        vec![Action::RemoveTunnel { spi: old_spi }]
    );
    assert_eq!(
        w.mn.poll(grace).unwrap().actions,
        vec![Action::RemoveTunnel { spi: old_spi }]
    );
    assert_eq!(w.ha.binding_count(), 1);
}

#[test]
fn handover_moves_the_binding_to_the_new_care_of_address() {
    let mut w = world();
    let now = t0();
    register(&mut w, COA_A, now);
    // Same address: nothing to do.
    assert!(w
        .mn
        .set_care_of(COA_A, now + secs(1))
        .unwrap()
        .send
        .is_none());
    let at = now + secs(30);
    let out = w.mn.set_care_of(COA_B, at).unwrap();
    let (mn_spi, _, _, local, _) = install_of(&out.actions);
    assert_eq!(local, COA_B);
    let ha_out =
        w.ha.handle_request(&out.send.unwrap(), IpAddr::V4(COA_B), at);
    assert_eq!(ha_out.code, Some(0));
    assert!(ha_out.actions.contains(&Action::SetBinding {
        home: HOME,
        role: Role::HomeAgent,
        remote: COA_B,
        spi: mn_spi,
        expires: at + secs(300),
        reverse_tunnel: true,
    }));
    assert_eq!(w.ha.binding(HOME).unwrap().care_of, COA_B);
    let mn_out =
        w.mn.handle_reply(ha_out.reply.as_ref().unwrap(), at)
            .unwrap();
    assert_eq!(
        mn_out.events,
        vec![Event::Registered {
            care_of: COA_B,
            lifetime: 300
        }]
    );
    assert_eq!(w.mn.binding().unwrap().care_of, COA_B);
}

#[test]
fn mobile_node_retransmits_with_backoff_and_new_identifications() {
    let mut w = world();
    let now = t0();
    let first = w.mn.register(COA_A, now).unwrap();
    let id0 = w.mn.pending_identification().unwrap();
    let spi0 = install_of(&first.actions).0;
    let mut at = now;
    let mut ids = vec![id0];
    let mut removed = Vec::new();
    for backoff in [1, 2, 4, 8, 16, 32, 32] {
        let quiet =
            w.mn.poll(at + secs(backoff) - Duration::from_millis(1))
                .unwrap();
        assert!(quiet.send.is_none(), "sent before {backoff} s");
        at += secs(backoff);
        let out = w.mn.poll(at).unwrap();
        assert!(out.send.is_some(), "no retransmission after {backoff} s");
        for a in quiet.actions.into_iter().chain(out.actions) {
            if let Action::RemoveTunnel { spi } = a {
                removed.push(spi);
            }
        }
        ids.push(w.mn.pending_identification().unwrap());
    }
    assert!(ids.windows(2).all(|p| p[1] > p[0]), "{ids:x?}");
    // Each replaced attempt's tunnel is retired after its grace.
    assert!(removed.contains(&spi0));
    // Replaced at 1, 3, 7, 15, 31, 63 and 95 s; retired 5 s later.
    assert_eq!(removed.len(), 6);
    // A late reply to an old attempt does not match the outstanding request.
    let req = w.mn.register(COA_A, at).unwrap().send.unwrap();
    let stale_reply = {
        let mut r = wire::parse_reply(w.ha.handle_request(&req, SRC, at).reply.as_ref().unwrap())
            .unwrap()
            .repr;
        r.identification = id0;
        SecurityAssociation::new(SPI, MN_HA_KEY)
            .unwrap()
            .append_mn_ha_auth(r.to_bytes().to_vec())
    };
    let out = w.mn.handle_reply(&stale_reply, at).unwrap();
    assert!(matches!(out.events[..], [Event::Ignored(_)]));
}

#[test]
fn mobile_node_ignores_unauthenticated_replies() {
    let mut w = world();
    let now = t0();
    let req = w.mn.register(COA_A, now).unwrap().send.unwrap();
    let mut reply = w.ha.handle_request(&req, SRC, now).reply.unwrap();
    let n = reply.len();
    reply[n - 1] ^= 0x80;
    let out = w.mn.handle_reply(&reply, now).unwrap();
    assert_eq!(
        out.events,
        vec![Event::Ignored("reply fails MN-HA authentication")]
    );
    assert!(out.actions.is_empty());
    assert_eq!(w.mn.state(), State::Registering);
    // An unknown non-skippable extension in a reply: silently discarded.
    reply[n - 1] ^= 0x80;
    let mut with_ext = reply[..20].to_vec();
    with_ext.extend_from_slice(&[99, 0]);
    with_ext.extend_from_slice(&reply[20..]);
    let out = w.mn.handle_reply(&with_ext, now).unwrap();
    assert_eq!(out.events, vec![Event::Ignored("malformed reply")]);
}

#[test]
fn floods_are_rate_limited_with_bounded_memory() {
    let mut c = ha_config();
    c.rate_limit = RateLimit {
        burst: 5,
        per_second: 1,
        max_sources: 100,
    };
    let mut w = world_with(c);
    let now = t0();
    let junk = request(repr_at(now, Ipv4Addr::new(10, 9, 9, 9)), &[]);
    // One source: only the burst is processed.
    let answered = (0..50)
        .filter(|_| w.ha.handle_request(&junk, SRC, now).reply.is_some())
        .count();
    assert_eq!(answered, 5);
    // A second later, one more token.
    assert!(w
        .ha
        .handle_request(&junk, SRC, now + secs(1))
        .reply
        .is_some());
    assert!(w
        .ha
        .handle_request(&junk, SRC, now + secs(1))
        .reply
        .is_none());
    // Many sources: the table never grows past its bound.
    for i in 0..10_000u32 {
        let src = IpAddr::from((0x0a00_0000 + i).to_be_bytes());
        w.ha.handle_request(&junk, src, now + secs(1));
        assert!(w.ha.tracked_sources() <= 100);
    }
    // Idle sources are forgotten: the legitimate node gets through later.
    let later = now + secs(60);
    w.ha.poll(later);
    assert_eq!(register(&mut w, COA_A, later).code, Some(0));
}

#[test]
fn restart_restores_bindings_and_replay_state_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ha.sqlite");
    let mut journal = SqliteJournal::open(&path).unwrap();
    let mut w = world();
    let now = t0();
    let out = w.mn.register(COA_A, now).unwrap();
    let req = out.send.unwrap();
    let ha_out = w.ha.handle_request(&req, SRC, now);
    assert_eq!(ha_out.code, Some(0));
    journal.apply(&ha_out.journal).unwrap();
    // A second node registers, then its binding lapses while we are down.
    let r2 = request(
        RequestRepr {
            lifetime: 20,
            ..repr_at(now, HOME2)
        },
        &[],
    );
    let o2 = w.ha.handle_request(&r2, SRC, now);
    assert_eq!(o2.code, Some(0));
    journal.apply(&o2.journal).unwrap();
    let before = w.ha.binding(HOME).unwrap().clone();
    let spi2 = w.ha.binding(HOME2).unwrap().spi;
    drop(journal);
    drop(w.ha);

    let journal = SqliteJournal::open(&path).unwrap();
    let mut ha = HomeAgent::new(
        ha_config(),
        vec![node(HOME, true), node(HOME2, false)],
        Arc::new(w.keys.clone()),
    );
    let restart = now + secs(30);
    let out = ha.restore(journal.load().unwrap(), restart);
    assert_eq!(ha.binding(HOME), Some(&before));
    assert!(ha.binding(HOME2).is_none());
    assert_eq!(
        out.actions,
        vec![
            Action::RemoveBinding {
                home: HOME2,
                role: Role::HomeAgent
            },
            Action::RemoveTunnel { spi: spi2 }
        ]
    );
    // The pre-restart request replayed after the restart: 133.
    let out = ha.handle_request(&req, SRC, restart);
    assert_rejected(&out, code::IDENTIFICATION_MISMATCH);
    // The node's next registration works and replaces the binding.
    let out = w.mn.register(COA_B, restart).unwrap();
    let ha_out = ha.handle_request(&out.send.unwrap(), SRC, restart);
    assert_eq!(ha_out.code, Some(0), "{:?}", ha_out.rejection);
    assert_eq!(ha.binding(HOME).unwrap().care_of, COA_B);
}

#[test]
fn rapid_re_registration_keeps_at_most_four_retiring_tunnels() {
    let mut w = world();
    let now = t0();
    let mut spis = Vec::new();
    let mut early_removals = Vec::new();
    for i in 0..10 {
        let at = now + Duration::from_millis(100 * i);
        let out = register(&mut w, COA_A, at);
        assert_eq!(out.code, Some(0), "{:?}", out.rejection);
        spis.push(install_of(&out.actions).0);
        early_removals.extend(out.actions.iter().filter_map(|a| match a {
            Action::RemoveTunnel { spi } => Some(*spi),
            _ => None,
        }));
    }
    // 9 replaced tunnels; 4 may wait for the grace, the 5 oldest went at once.
    assert_eq!(early_removals, spis[..5].to_vec());
    let later = w.ha.poll(now + secs(10)).actions;
    assert_eq!(later.len(), 4);
    for spi in &spis[5..9] {
        assert!(later.contains(&Action::RemoveTunnel { spi: *spi }));
    }
    assert_eq!(w.ha.binding(HOME).unwrap().spi, spis[9]);
}

#[test]
fn throughput_harness_registers_everything() {
    let r = roamgate_testkit::mip::bench_registrations(5, 3);
    assert_eq!(r.registrations, 15);
    assert_eq!(r.accepted, 15);
    assert!(r.registrations_per_s > 0.0);
}

#[test]
fn configuration_is_validated() {
    use roamgate_mip::home_agent::ConfigError;
    let c = ha_config();
    assert_eq!(c.validate(&[node(HOME, true), node(HOME2, false)]), Ok(()));
    assert_eq!(
        c.validate(&[node(HOME, true), node(HOME, false)]),
        Err(ConfigError::DuplicateNode(HOME))
    );
    let mut n = node(HOME, true);
    n.security_associations
        .push(n.security_associations[0].clone());
    assert_eq!(
        c.validate(&[n]),
        Err(ConfigError::DuplicateSpi {
            home: HOME,
            spi: SPI
        })
    );
    let mut n = node(HOME, true);
    n.security_associations.clear();
    assert_eq!(
        c.validate(&[n]),
        Err(ConfigError::NoSecurityAssociation(HOME))
    );
    let mut bad = ha_config();
    bad.identification_skew = secs(301);
    assert!(matches!(
        bad.validate(&[]),
        Err(ConfigError::SkewTooLarge(_))
    ));
    let mut bad = ha_config();
    bad.max_bindings = 0;
    assert_eq!(bad.validate(&[]), Err(ConfigError::Zero("max_bindings")));
    let mut bad = ha_config();
    bad.addresses.clear();
    assert_eq!(bad.validate(&[]), Err(ConfigError::NoAddress));
}

#[test]
fn renewed_ticket_is_used_for_the_next_registration() {
    let mut w = world();
    let late = t0() + secs(40_000);
    assert_eq!(
        w.mn.credential_end_time(),
        Some(t0() - secs(100) + secs(36_000))
    );
    let req = w.mn.register(COA_A, late).unwrap().send.unwrap();
    assert_rejected(
        &w.ha.handle_request(&req, SRC, late),
        code::MN_FAILED_AUTHENTICATION,
    );
    // A new ticket under the same service key, as the KDC would issue it.
    let mut cred = w.cred.clone();
    let (fresh, keys) = issue_ticket(
        CLIENT,
        SERVICE,
        Etype::Aes256CtsHmacSha196,
        late - secs(10),
        secs(36_000),
    );
    cred.ticket = fresh.ticket;
    cred.session_key = fresh.session_key;
    cred.end_time = fresh.end_time;
    let mut ha = HomeAgent::new(ha_config(), vec![node(HOME, true)], Arc::new(keys));
    w.mn.set_credential(Some(cred));
    let req = w.mn.register(COA_A, late + secs(1)).unwrap().send.unwrap();
    let out = ha.handle_request(&req, SRC, late + secs(1));
    assert_eq!(out.code, Some(0), "{:?}", out.rejection);
}

/// The node asks for a binding; the home agent accepts it in the core, the
/// daemon applies `applied_actions` of its actions (the rest failed) and
/// rolls it back. Returns (accepted outcome's actions, rollback outcome).
fn accept_then_roll_back(
    w: &mut World,
    coa: Ipv4Addr,
    now: SystemTime,
    applied_actions: usize,
) -> (Vec<Action>, Outcome) {
    let req = w.mn.register(coa, now).unwrap().send.unwrap();
    let mut out = w.ha.handle_request(&req, IpAddr::V4(coa), now);
    assert_eq!(out.code, Some(code::ACCEPTED), "{:?}", out.rejection);
    let undo = out.undo.take().expect("an accepted request can be undone");
    assert_eq!(undo.home(), HOME);
    let rb = w.ha.rollback(undo, &out.actions[..applied_actions], now);
    (out.actions, rb)
}

/// Registers from A at `now`, then the node deregisters at `later`: the
/// binding before and the home agent's outcome (accepted by the core).
fn register_then_deregister(
    w: &mut World,
    now: SystemTime,
    later: SystemTime,
) -> (roamgate_mip::home_agent::Binding, Outcome) {
    register(w, COA_A, now);
    let before = w.ha.binding(HOME).unwrap().clone();
    let req = w.mn.deregister(later).unwrap().send.unwrap();
    let out = w.ha.handle_request(&req, SRC, later);
    assert_eq!(out.code, Some(code::ACCEPTED));
    assert_eq!(w.ha.binding_count(), 0);
    (before, out)
}

#[test]
fn rejections_carry_no_undo() {
    let mut w = world();
    let now = t0();
    let mut r = repr_at(now, HOME);
    r.home_agent = Ipv4Addr::new(10, 9, 9, 9);
    let out = w.ha.handle_request(&request(r, &[]), SRC, now);
    assert_eq!(out.code, Some(code::UNKNOWN_HOME_AGENT));
    assert!(out.undo.is_none());
}

#[test]
fn rollback_of_a_new_binding_whose_binding_update_failed() {
    let mut c = ha_config();
    c.max_bindings = 1;
    let mut w = world_with(c);
    let now = t0();
    // The tunnel went in, the binding did not (a full bindings map).
    let (actions, rb) = accept_then_roll_back(&mut w, COA_A, now, 1);
    let (spi, ..) = install_of(&actions);
    assert_eq!(rb.code, Some(code::INSUFFICIENT_RESOURCES));
    assert_eq!(rb.rejection, Some(Rejection::ApplyFailed));
    assert_eq!(rb.actions, vec![Action::RemoveTunnel { spi }]);
    assert_eq!(rb.journal, vec![JournalOp::RemoveBinding(HOME)]);
    assert!(rb.undo.is_none());
    assert_eq!(w.ha.binding_count(), 0);
    let st = w.ha.stats();
    assert_eq!((st.accepted, st.rejected, st.apply_failed), (0, 1, 1));
    // The reply is authenticated and the node drops its own new tunnel.
    let reply = wire::parse_reply(rb.reply.as_ref().unwrap()).unwrap();
    assert_eq!(reply.repr.code, code::INSUFFICIENT_RESOURCES);
    assert_eq!(reply.repr.lifetime, 0);
    let mn_out = w.mn.handle_reply(rb.reply.as_ref().unwrap(), now).unwrap();
    assert_eq!(mn_out.events, vec![Event::Rejected { code: 130 }]);
    assert_eq!(mn_out.actions, vec![Action::RemoveTunnel { spi }]);
    // The slot (max_bindings = 1) and the SPI are free again.
    let out = register(&mut w, COA_A, now + secs(1));
    assert_eq!(out.code, Some(code::ACCEPTED), "{:?}", out.rejection);
    assert_eq!(w.ha.binding_count(), 1);
}

#[test]
fn rollback_after_a_journal_failure_undoes_nothing_in_the_data_plane() {
    let mut w = world();
    let now = t0();
    let (_, rb) = accept_then_roll_back(&mut w, COA_A, now, 0);
    assert_eq!(rb.code, Some(code::INSUFFICIENT_RESOURCES));
    assert!(rb.actions.is_empty(), "{:?}", rb.actions);
    assert_eq!(w.ha.binding_count(), 0);
    assert_eq!(w.ha.next_wakeup(), None, "nothing left to expire or retire");
}

#[test]
fn rollback_of_a_handover_restores_the_old_binding_before_removing_the_new_tunnel() {
    let mut w = world();
    let now = t0();
    let old_spi = install_of(&register(&mut w, COA_A, now).actions).0;
    let before = w.ha.binding(HOME).unwrap().clone();
    let at = now + secs(30);
    let out = w.mn.set_care_of(COA_B, at).unwrap();
    let mut ha_out =
        w.ha.handle_request(&out.send.unwrap(), IpAddr::V4(COA_B), at);
    assert_eq!(ha_out.code, Some(code::ACCEPTED));
    let new_spi = install_of(&ha_out.actions).0;
    // Tunnel and binding applied, then something after them failed.
    let undo = ha_out.undo.take().unwrap();
    let rb = w.ha.rollback(undo, &ha_out.actions[..2], at);
    assert_eq!(rb.code, Some(code::INSUFFICIENT_RESOURCES));
    assert_eq!(
        rb.actions,
        vec![
            Action::SetBinding {
                home: HOME,
                role: Role::HomeAgent,
                remote: COA_A,
                spi: old_spi,
                expires: before.expires,
                reverse_tunnel: true,
            },
            Action::RemoveTunnel { spi: new_spi },
        ],
        "binding back on its old tunnel first, then the new tunnel goes"
    );
    assert_eq!(w.ha.binding(HOME), Some(&before));
    match &rb.journal[..] {
        [JournalOp::PutBinding(r)] => {
            assert_eq!((r.care_of, r.spi), (COA_A, old_spi));
        }
        other => panic!("journal {other:?}"),
    }
    // The old tunnel is no longer "retiring": the grace period passes
    // without removing it, the binding expires on its own schedule.
    assert_eq!(w.ha.next_wakeup(), Some(before.expires));
    assert!(w.ha.poll(at + secs(6)).actions.is_empty());
    assert_eq!(w.ha.stats().apply_failed, 1);
}

#[test]
fn rollback_of_a_deregistration_keeps_the_binding() {
    let mut w = world();
    let now = t0();
    let later = now + secs(10);
    let (before, mut out) = register_then_deregister(&mut w, now, later);
    let spi = before.spi;
    // The journal write failed: nothing reached the data plane.
    let rb = w.ha.rollback(out.undo.take().unwrap(), &[], later);
    assert_eq!(rb.code, Some(code::INSUFFICIENT_RESOURCES));
    assert!(rb.actions.is_empty());
    assert_eq!(w.ha.binding(HOME), Some(&before));
    assert_eq!(w.ha.stats().deregistered, 0);
    // Retried, it is accepted and removes the binding and its tunnel.
    let mn_out =
        w.mn.handle_reply(rb.reply.as_ref().unwrap(), later)
            .unwrap();
    assert_eq!(mn_out.events, vec![Event::Rejected { code: 130 }]);
    let req = w.mn.deregister(later + secs(1)).unwrap().send.unwrap();
    let out = w.ha.handle_request(&req, SRC, later + secs(1));
    assert_eq!(out.code, Some(code::ACCEPTED));
    assert!(out.actions.contains(&Action::RemoveTunnel { spi }));
    assert_eq!(w.ha.binding_count(), 0);
}

#[test]
fn rollback_of_a_deregistration_whose_tunnel_is_gone_keeps_it_gone() {
    let mut w = world();
    let now = t0();
    let old_spi = install_of(&register(&mut w, COA_A, now).actions).0;
    let at = now + secs(10);
    let out = w.mn.set_care_of(COA_B, at).unwrap();
    let ha_out =
        w.ha.handle_request(&out.send.unwrap(), IpAddr::V4(COA_B), at);
    w.mn.handle_reply(ha_out.reply.as_ref().unwrap(), at)
        .unwrap();
    let later = at + secs(1);
    let req = w.mn.deregister(later).unwrap().send.unwrap();
    let mut out = w.ha.handle_request(&req, SRC, later);
    assert_eq!(out.actions.len(), 3, "{:?}", out.actions);
    assert_eq!(out.actions[2], Action::RemoveTunnel { spi: old_spi });
    // Binding and its tunnel removed; removing the replaced tunnel failed.
    let rb =
        w.ha.rollback(out.undo.take().unwrap(), &out.actions[..2], later);
    assert_eq!(
        rb.actions,
        vec![Action::RemoveBinding {
            home: HOME,
            role: Role::HomeAgent
        }]
    );
    assert_eq!(rb.journal, vec![JournalOp::RemoveBinding(HOME)]);
    assert_eq!(w.ha.binding_count(), 0);
    // The replaced tunnel is still installed: it goes after its grace.
    assert_eq!(w.ha.next_wakeup(), Some(at + secs(5)));
    assert_eq!(
        w.ha.poll(at + secs(5)).actions,
        vec![Action::RemoveTunnel { spi: old_spi }]
    );
}

// Issue 16, finding 4: a forged request must not yield a reply that the
// node takes for the home agent's word.
#[test]
fn forged_request_gets_an_unauthenticated_reply_that_the_node_ignores() {
    let mut w = world();
    let now = t0();
    assert_eq!(register(&mut w, COA_A, now).code, Some(code::ACCEPTED));
    let bound = w.mn.binding().cloned().unwrap();
    let ha_spi = w.ha.binding(HOME).unwrap().spi;
    // The re-registration is due. An attacker on the node's link copies the
    // request's fixed part (Identification included) under a key it guessed,
    // and its forgery reaches the home agent first.
    let later = bound.refresh_at;
    let genuine = w.mn.poll(later).unwrap().send.unwrap();
    let forged = SecurityAssociation::new(SPI, b"the attacker's guess")
        .unwrap()
        .append_mn_ha_auth(genuine[..wire::REQUEST_HEADER_LEN].to_vec());
    let ha_out = w.ha.handle_request(&forged, SRC, later);
    assert_rejected(&ha_out, code::MN_FAILED_AUTHENTICATION);
    let reply = ha_out.reply.unwrap();
    let mn_out = w.mn.handle_reply(&reply, later).unwrap();
    assert!(
        mn_out.actions.is_empty(),
        "a reply to a forged request moved the node's data plane: {:?}",
        mn_out.actions
    );
    assert!(
        matches!(mn_out.events[..], [Event::Ignored(_)]),
        "{:?}",
        mn_out.events
    );
    assert_eq!(w.mn.state(), State::Registering);
    assert_eq!(w.mn.binding(), Some(&bound));
    assert_eq!(w.mn.ignored_replies(), 1);
    assert_eq!(w.ha.binding(HOME).unwrap().spi, ha_spi);
    // RFC 5944 §3.8.3.1: no MN-HA authenticator on a reply to a request
    // that failed authentication.
    assert_eq!(reply.len(), wire::REPLY_HEADER_LEN);
    // The genuine request still completes; both ends agree on the tunnel.
    let ha_out = w.ha.handle_request(&genuine, SRC, later);
    assert_eq!(ha_out.code, Some(code::ACCEPTED));
    let mn_out =
        w.mn.handle_reply(ha_out.reply.as_ref().unwrap(), later)
            .unwrap();
    assert!(matches!(mn_out.events[..], [Event::Registered { .. }]));
    assert_eq!(w.mn.binding().unwrap().spi, w.ha.binding(HOME).unwrap().spi);
}

// RFC 5944 §3.6.2.1: only a 133 reply carries other seconds than the
// request; any other reply must echo the whole Identification.
#[test]
fn mobile_node_ignores_an_authenticated_reply_with_other_seconds() {
    let mut w = world();
    let now = t0();
    w.mn.register(COA_A, now).unwrap();
    let id = w.mn.pending_identification().unwrap();
    let reply = wire::ReplyRepr {
        code: code::ACCEPTED,
        lifetime: 300,
        home_address: HOME,
        home_agent: HA,
        identification: id ^ (1 << 32),
    }
    .to_bytes()
    .to_vec();
    let reply = SecurityAssociation::new(SPI, MN_HA_KEY)
        .unwrap()
        .append_mn_ha_auth(reply);
    let out = w.mn.handle_reply(&reply, now).unwrap();
    assert!(out.actions.is_empty(), "{:?}", out.actions);
    assert!(matches!(out.events[..], [Event::Ignored(_)]));
    assert_eq!(w.mn.state(), State::Registering);
}

/// 2036-02-07T06:28:16Z: NTP era 0 ends, the seconds field wraps to 0.
fn ntp_wrap() -> SystemTime {
    UNIX_EPOCH + secs(2_085_978_496)
}

// Issue 16, finding 8: Identification order across the NTP era wrap.
#[test]
fn re_registration_across_the_2036_ntp_wrap_is_accepted() {
    let mut w = world();
    w.mn = MobileNode::new(
        MobileNodeConfig {
            home_address: HOME2,
            ..mn_config(None)
        },
        counter_rng(),
    );
    let before = ntp_wrap() - secs(3);
    let req = w.mn.register(COA_A, before).unwrap().send.unwrap();
    let out = w.ha.handle_request(&req, SRC, before);
    assert_eq!(out.code, Some(code::ACCEPTED), "{:?}", out.rejection);
    w.mn.handle_reply(out.reply.as_ref().unwrap(), before)
        .unwrap();
    let after = ntp_wrap() + secs(2);
    let req = w.mn.register(COA_B, after).unwrap().send.unwrap();
    let id = w.mn.pending_identification().unwrap();
    assert_eq!(identification::seconds_of(id), 2);
    let out = w.ha.handle_request(&req, IpAddr::V4(COA_B), after);
    assert_eq!(out.code, Some(code::ACCEPTED), "{:?}", out.rejection);
    let mn_out =
        w.mn.handle_reply(out.reply.as_ref().unwrap(), after)
            .unwrap();
    assert!(matches!(mn_out.events[..], [Event::Registered { .. }]));
    // The pre-wrap request replayed after the wrap is still refused.
    let out = w.ha.handle_request(&req, IpAddr::V4(COA_B), after);
    assert_eq!(out.code, Some(code::IDENTIFICATION_MISMATCH));
}

// Issue 16, finding 8: forged traffic from the node's own care-of address
// must not use up the node's share of the rate limit.
#[test]
fn forged_flood_from_the_care_of_address_does_not_starve_the_node() {
    let mut c = ha_config();
    c.rate_limit = RateLimit {
        burst: 5,
        per_second: 1,
        max_sources: 100,
    };
    let mut w = world_with(c);
    let now = t0();
    // A genuine registration an attacker captures and replays later.
    let first = now - secs(3);
    let captured = w.mn.register(COA_A, first).unwrap().send.unwrap();
    let out = w.ha.handle_request(&captured, SRC, first);
    w.mn.handle_reply(out.reply.as_ref().unwrap(), first)
        .unwrap();
    let forged = SecurityAssociation::new(SPI, b"the attacker's guess")
        .unwrap()
        .append_mn_ha_auth(repr_at(now, HOME).to_bytes().to_vec());
    let mut replies = 0;
    for i in 0..1_000 {
        let msg = if i % 2 == 0 { &forged } else { &captured };
        if w.ha.handle_request(msg, SRC, now).reply.is_some() {
            replies += 1;
        }
    }
    // Answers to the flood stay within the source's burst.
    assert!(replies <= 5, "{replies} replies to a forged flood");
    let req = w.mn.register(COA_A, now).unwrap().send.unwrap();
    let out = w.ha.handle_request(&req, SRC, now);
    assert_eq!(out.dropped, None, "the genuine node was refused");
    assert_eq!(out.code, Some(code::ACCEPTED), "{:?}", out.rejection);
}
