//! Writes the committed fuzz seeds, `<dir>/<target>/<name>`: a few valid
//! inputs per fuzz target, made by roamgate's own encoders with the keys,
//! names and clock the targets use, so that fuzzing starts past the first
//! checks of each parser: a tunnel frame whose MAC verifies, an AP-REQ the
//! service accepts, an AS-REP the client decrypts, a registration that
//! reaches the MN-HA check.
//!
//! `cargo xtask fuzz --write-seeds` runs it; `cargo xtask fuzz` hands each
//! target's seed directory to cargo-fuzz after its corpus.
//!
//! Kerberos messages carry random confounders, keys and nonces, so each
//! run writes different bytes of the same shape.

use roamgate_attach::proxy_op::{CallEventKind, Media, ProxyOp, ProxyReply, Role};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _, Result};
use roamgate_common::wire::ipv4::{self, Ipv4Hdr, PROTO_ICMP, PROTO_UDP};
use roamgate_common::wire::tunnel::{self, EncapRepr, MIP_PORT, OVERHEAD};
use roamgate_common::wire::udp::UdpHdr;
use roamgate_common::wire::Header;
use roamgate_krb::ap::{self, AcceptParams, ApReqParams, KeySet};
use roamgate_krb::ccache::CCache;
use roamgate_krb::cli::krb::to_ccache;
use roamgate_krb::client::{AsExchange, AsOptions, AsStep, ClientSecret, Credential, TgsExchange};
use roamgate_krb::cred::build_krb_cred;
use roamgate_krb::kdc::db::{KeyEntry, MemoryStore, PrincipalEntry, PrincipalFlags};
use roamgate_krb::kdc::probe::{self, RequestSpec};
use roamgate_krb::kdc::{Kdc, KdcConfig};
use roamgate_krb::keytab::{Keytab, KeytabEntry};
use roamgate_krb::priv_safe::{Direction, ReplayMode, SecureChannel};
use roamgate_krb::replay::ReplayCache;
use roamgate_krb::Principal;
use roamgate_krb_crypto::{Etype, Key};
use roamgate_mip::auth::SecurityAssociation;
use roamgate_mip::home_agent::{HomeAgent, HomeAgentConfig, NodeConfig};
use roamgate_mip::mobile_node::{MobileNode, MobileNodeConfig};
use roamgate_testkit::mip::issue_ticket;

/// The clock of every fuzz target.
fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

/// fuzz_targets/tunnel.rs: the tunnel key.
const TUNNEL_KEY: [u8; 16] = *b"fuzzing key 16 B";

/// fuzz_targets/krb_reply.rs: the client and its password; ap_req.rs: the
/// service, its key and the application data the authenticator covers.
const REPLY_REALM: &str = "FUZZ.TEST";
const REPLY_CLIENT: &str = "alice@FUZZ.TEST";
const REPLY_PASSWORD: &str = "fuzz";
const AP_SERVICE: &str = "svc/host@FUZZ.TEST";
const AP_SERVICE_KEY: (Etype, [u8; 16]) = (Etype::Aes128CtsHmacSha196, [0x42; 16]);
const AP_APP_DATA: &[u8] = b"fuzz";

/// fuzz_targets/kdc_request.rs: the KDC's realm and principals.
const KDC_REALM: &str = "EXAMPLE.COM";
const KDC_CLIENT: &str = "alice@EXAMPLE.COM";
const KDC_SERVICE: &str = "host/svc@EXAMPLE.COM";

/// fuzz_targets/krb_priv.rs and krb_cred.rs: the keys.
const PRIV_KEY: (Etype, [u8; 32]) = (Etype::Aes256CtsHmacSha196, [0x17; 32]);
const CRED_KEY: (Etype, [u8; 16]) = (Etype::Aes128CtsHmacSha256128, [0x33; 16]);

/// fuzz_targets/mip_registration.rs: the home agent, its nodes (10.0.0.6
/// requires Kerberos) and their SPIs. The seeds are authenticated with
/// another key than the target's: a request that authenticated would make
/// the home agent act, which the target treats as a failure.
const MIP_HA: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const MIP_NODES: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 0, 5), Ipv4Addr::new(10, 0, 0, 6)];
const MIP_SPIS: [u32; 2] = [0x100, 0x8000_0000];
const MIP_SEED_KEY: &[u8] = b"seed key, not the target's";
const MIP_CARE_OF: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const MIP_SERVICE: &str = "mip/ha@FUZZ.TEST";

/// Where the seeds go.
struct Seeds {
    dir: PathBuf,
    written: usize,
}

impl Seeds {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) -> Result<()> {
        let dir = self.dir.join(target);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        self.written += 1;
        Ok(())
    }
}

fn main() -> Result<()> {
    let dir = std::env::args_os()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: roamgate-fuzz-seedgen <seed directory>")?;
    let mut seeds = Seeds { dir, written: 0 };
    tunnel_and_ipv4(&mut seeds)?;
    mip_registration(&mut seeds)?;
    kdc_request(&mut seeds)?;
    krb_client_side(&mut seeds)?;
    krb_priv(&mut seeds)?;
    attach_frame(&mut seeds)?;
    proxy_op(&mut seeds)?;
    srtp_unprotect(&mut seeds)?;
    call_message(&mut seeds)?;
    radius_accounting(&mut seeds)?;
    billing_request(&mut seeds)?;
    eprintln!(
        "wrote {} seeds under {}",
        seeds.written,
        seeds.dir.display()
    );
    Ok(())
}

// ---------------------------------------------------------------------------
// Data plane

/// An option-less IPv4 packet around `payload`, checksummed.
fn ipv4_packet(src: [u8; 4], dst: [u8; 4], proto: u8, payload: &[u8]) -> Result<Vec<u8>> {
    let mut p = vec![0u8; Ipv4Hdr::LEN + payload.len()];
    let len = u16::try_from(p.len())?;
    let h = Ipv4Hdr::from_bytes_mut(&mut p).context("IPv4 header")?;
    h.version_ihl = 0x45;
    h.ttl = 64;
    h.proto = proto;
    h.src = src;
    h.dst = dst;
    h.set_total_len(len);
    h.fill_checksum();
    p[Ipv4Hdr::LEN..].copy_from_slice(payload);
    Ok(p)
}

/// A UDP datagram (checksum 0: none, as IPv4 allows).
fn udp(src_port: u16, dst_port: u16, data: &[u8]) -> Result<Vec<u8>> {
    let mut d = vec![0u8; UdpHdr::LEN + data.len()];
    let len = u16::try_from(d.len())?;
    let h = UdpHdr::from_bytes_mut(&mut d).context("UDP header")?;
    h.src_port = src_port.to_be_bytes();
    h.dst_port = dst_port.to_be_bytes();
    h.len = len.to_be_bytes();
    d[UdpHdr::LEN..].copy_from_slice(data);
    Ok(d)
}

/// An ICMP echo request.
fn icmp_echo(id: u16, seq: u16, data: &[u8]) -> Vec<u8> {
    let mut m = vec![8, 0, 0, 0];
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&seq.to_be_bytes());
    m.extend_from_slice(data);
    let c = ipv4::checksum(&m);
    m[2..4].copy_from_slice(&c.to_be_bytes());
    m
}

fn tunnel_and_ipv4(seeds: &mut Seeds) -> Result<()> {
    let home = [10, 0, 0, 5];
    let peer = [10, 9, 0, 1];
    let voice: Vec<u8> = (0..172u8).collect();
    let inners = [
        (
            "udp-voice",
            ipv4_packet(peer, home, PROTO_UDP, &udp(40000, 5004, &voice)?)?,
        ),
        (
            "icmp-echo",
            ipv4_packet(home, peer, PROTO_ICMP, &icmp_echo(7, 1, &[0xab; 56]))?,
        ),
        // The smallest inner packet: a bare header.
        ("bare-header", ipv4_packet(home, peer, 253, &[])?),
    ];
    for (i, (name, inner)) in inners.iter().enumerate() {
        let repr = EncapRepr {
            src: [192, 0, 2, 1],
            dst: [198, 51, 100, 7],
            src_port: MIP_PORT,
            dst_port: MIP_PORT,
            spi: [0, 0, 1, u8::try_from(i)?],
            seq: 1 << (8 * i),
        };
        let mut buf = vec![0u8; inner.len() + OVERHEAD];
        let n = tunnel::emit(&repr, &TUNNEL_KEY, inner, &mut buf)
            .map_err(|e| anyhow!("tunnel emit of {name}: {e:?}"))?;
        let frame = &buf[..n];
        // What the target checks first: it parses and its MAC verifies.
        let parsed = tunnel::parse(frame).map_err(|e| anyhow!("{name}: {e:?}"))?;
        parsed
            .verify(&TUNNEL_KEY)
            .map_err(|e| anyhow!("{name}: {e:?}"))?;
        seeds.put("tunnel", name, frame)?;
        seeds.put("ipv4", &format!("tunnel-{name}"), frame)?;
        seeds.put("ipv4", name, inner)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Mobile IP

fn mip_registration(seeds: &mut Seeds) -> Result<()> {
    let (cred, keys) = issue_ticket(
        "mn@FUZZ.TEST",
        MIP_SERVICE,
        Etype::Aes256CtsHmacSha196,
        now() - Duration::from_secs(60),
        Duration::from_secs(36_000),
    );
    // A home agent that knows the seed key answers the requests, so that
    // the replies are real too.
    let nodes = MIP_NODES
        .iter()
        .map(|&home| {
            Ok(NodeConfig {
                home_address: home,
                security_associations: MIP_SPIS
                    .iter()
                    .map(|&spi| SecurityAssociation::new(spi, MIP_SEED_KEY))
                    .collect::<Result<_, _>>()?,
                principal: None,
                require_kerberos: false,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let mut config = HomeAgentConfig::new(MIP_HA);
    config.service = Some(Principal::parse(MIP_SERVICE)?);
    let mut ha = HomeAgent::new(config, nodes, Arc::new(keys));
    let src = IpAddr::V4(MIP_CARE_OF);

    // (name, node, SPI, AP-REQ credential, the low bits of Identification)
    let cases = [
        ("request-md5", MIP_NODES[0], MIP_SPIS[0], None, 1),
        ("request-sha256", MIP_NODES[0], MIP_SPIS[1], None, 2),
        ("request-kerberos", MIP_NODES[1], MIP_SPIS[0], Some(cred), 3),
    ];
    for (name, home, spi, credential, nonce) in cases {
        let mut mn = MobileNode::new(
            MobileNodeConfig {
                home_address: home,
                home_agent: MIP_HA,
                security_association: SecurityAssociation::new(spi, MIP_SEED_KEY)?,
                credential,
                lifetime: 300,
                reverse_tunnel: true,
                co_located: true,
                tunnel_grace: Duration::from_secs(5),
            },
            Box::new(move || nonce),
        );
        let request = mn
            .register(MIP_CARE_OF, now())?
            .send
            .context("the mobile node sends a registration")?;
        seeds.put("mip_registration", name, &request)?;
        let reply = ha
            .handle_request(&request, src, now())
            .reply
            .context("the home agent replies")?;
        seeds.put("mip_registration", &format!("reply-to-{name}"), &reply)?;
        if name == "request-md5" {
            // The same request again: refused (133, Identification).
            let again = ha
                .handle_request(&request, src, now())
                .reply
                .context("the home agent replies to a replay")?;
            seeds.put("mip_registration", "reply-identification-mismatch", &again)?;
            let dereg = mn
                .deregister(now())?
                .send
                .context("the mobile node sends a deregistration")?;
            seeds.put("mip_registration", "deregistration", &dereg)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Kerberos

/// A KDC core for `realm` with a krbtgt, `users` (name, password; they must
/// pre-authenticate) and `services` (name, its only key).
fn kdc(realm: &str, users: &[(&str, &str)], services: &[(&str, &Key)]) -> Result<Kdc> {
    let store = Arc::new(MemoryStore::new(realm));
    store.add_random(
        &Principal::krbtgt(realm),
        &Etype::ALL,
        PrincipalFlags(PrincipalFlags::DEFAULT.0 & !PrincipalFlags::REQUIRES_PREAUTH),
    );
    for (name, password) in users {
        store.add_password(
            &Principal::parse(name)?,
            password.as_bytes(),
            &Etype::ALL,
            PrincipalFlags::DEFAULT,
        )?;
    }
    for (name, key) in services {
        let principal = Principal::parse(name)?;
        store.insert(PrincipalEntry {
            kvno: 1,
            flags: PrincipalFlags::DEFAULT,
            max_life: Duration::ZERO,
            max_renew: Duration::ZERO,
            keys: vec![KeyEntry {
                kvno: 1,
                key: (*key).clone(),
                salt: principal.default_salt(),
                s2kparams: key.etype().default_s2kparams(),
            }],
            principal,
        });
    }
    Ok(Kdc::new(store, KdcConfig::default()))
}

fn ask(kdc: &Kdc, request: &[u8]) -> Result<Vec<u8>> {
    kdc.handle(request, now())
        .context("the KDC dropped a request")
}

/// An AS exchange: what the client sent, what the KDC answered, the TGT.
struct AsRun {
    requests: Vec<Vec<u8>>,
    replies: Vec<Vec<u8>>,
    tgt: Credential,
}

/// The AS exchange as the client runs it.
fn as_exchange(kdc: &Kdc, client: &str, password: &str) -> Result<AsRun> {
    let mut ex = AsExchange::new(
        Principal::parse(client)?,
        ClientSecret::password(password),
        AsOptions {
            forwardable: true,
            renewable: Some(Duration::from_secs(7 * 86_400)),
            ..AsOptions::default()
        },
    )?;
    let mut requests = vec![ex.first_request(now())?];
    let mut replies = Vec::new();
    loop {
        let reply = ask(kdc, requests.last().context("a request")?)?;
        let step = ex.handle_reply(&reply, now())?;
        replies.push(reply);
        match step {
            AsStep::Send(next) => requests.push(next),
            AsStep::Done(tgt) => {
                return Ok(AsRun {
                    requests,
                    replies,
                    tgt: *tgt,
                })
            }
        }
    }
}

/// A service ticket with `tgt`: (request, reply, ticket).
fn tgs_exchange(
    kdc: &Kdc,
    tgt: &Credential,
    service: &str,
    options: u32,
) -> Result<(Vec<u8>, Vec<u8>, Credential)> {
    let ex = TgsExchange::new(tgt, Principal::parse(service)?, options)?;
    let request = ex.request(now())?;
    let reply = ask(kdc, &request)?;
    let ticket = ex.handle_reply(&reply)?;
    Ok((request, reply, ticket))
}

/// What the KDC target receives: AS-REQs with and without pre-auth, for
/// the TGS and for a service, and a TGS-REQ.
fn kdc_request(seeds: &mut Seeds) -> Result<()> {
    const T: &str = "kdc_request";
    let kdc = kdc(KDC_REALM, &[(KDC_CLIENT, "kdc seed password")], &[])?;
    let AsRun { requests, tgt, .. } = as_exchange(&kdc, KDC_CLIENT, "kdc seed password")?;
    seeds.put(T, "as-req", &requests[0])?;
    seeds.put(
        T,
        "as-req-enc-timestamp",
        requests.last().context("AS-REQ")?,
    )?;
    let spec = RequestSpec {
        client: Principal::parse(KDC_CLIENT)?,
        server: Principal::parse(KDC_SERVICE)?,
        etypes: vec![17, 18, 19, 20],
        options: roamgate_krb::messages::kdc_options::FORWARDABLE,
        till: now() + Duration::from_secs(3600),
        rtime: None,
        nonce: 1,
    };
    seeds.put(T, "as-req-service", &probe::as_req(&spec, vec![])?)?;
    // A TGS-REQ for the service. The target's KDC has other keys: it gets
    // as far as decrypting the TGT.
    let request = TgsExchange::new(&tgt, Principal::parse(KDC_SERVICE)?, 0)?.request(now())?;
    seeds.put(T, "tgs-req", &request)?;
    Ok(())
}

/// What a client receives (krb_reply), what a service receives (ap_req),
/// forwarded tickets (krb_cred) and the files (keytab, ccache).
fn krb_client_side(seeds: &mut Seeds) -> Result<()> {
    let service_key = Key::new(AP_SERVICE_KEY.0, &AP_SERVICE_KEY.1)?;
    let kdc = kdc(
        REPLY_REALM,
        &[(REPLY_CLIENT, REPLY_PASSWORD)],
        &[(AP_SERVICE, &service_key)],
    )?;
    let AsRun { replies, tgt, .. } = as_exchange(&kdc, REPLY_CLIENT, REPLY_PASSWORD)?;
    let [preauth_required, as_rep] = replies.as_slice() else {
        bail!("the AS exchange took {} replies, not 2", replies.len());
    };
    seeds.put("krb_reply", "krb-error-preauth-required", preauth_required)?;
    seeds.put("krb_reply", "as-rep", as_rep)?;
    let unknown = AsExchange::new(
        Principal::parse(&format!("nobody@{REPLY_REALM}"))?,
        ClientSecret::password(REPLY_PASSWORD),
        AsOptions::default(),
    )?
    .first_request(now())?;
    seeds.put(
        "krb_reply",
        "krb-error-client-unknown",
        &ask(&kdc, &unknown)?,
    )?;
    let (_, tgs_rep, service_ticket) = tgs_exchange(&kdc, &tgt, AP_SERVICE, 0)?;
    seeds.put("krb_reply", "tgs-rep", &tgs_rep)?;
    let forwarded = TgsExchange::forwarded_tgt(&tgt)?;
    let fwd_reply = ask(&kdc, &forwarded.request(now())?)?;
    let forwarded_tgt = forwarded.handle_reply(&fwd_reply)?;

    // AP-REQs the target's service accepts, and the AP-REPs.
    let service = Principal::parse(AP_SERVICE)?;
    let keys = KeySet(vec![(service.clone(), 1, service_key)]);
    let cases = [
        (
            "mutual-subkey-seq",
            ApReqParams {
                mutual: true,
                subkey: true,
                seq_number: Some(1),
                app_data: Some(AP_APP_DATA),
            },
        ),
        (
            "plain",
            ApReqParams {
                app_data: Some(AP_APP_DATA),
                ..ApReqParams::default()
            },
        ),
    ];
    for (name, params) in cases {
        let (req, _) = ap::build_ap_req(&service_ticket, &params, now())?;
        let accepted = ap::accept_ap_req(
            &req,
            &keys,
            &AcceptParams {
                service: Some(&service),
                app_data: Some(AP_APP_DATA),
                ..AcceptParams::default()
            },
            &mut ReplayCache::new(Duration::from_secs(300), 16),
            now(),
        )?;
        seeds.put("ap_req", &format!("ap-req-{name}"), &req)?;
        let rep = accepted.ap_rep(Some(&accepted.new_subkey()), params.seq_number);
        seeds.put("ap_req", &format!("ap-rep-{name}"), &rep)?;
        seeds.put("krb_reply", &format!("ap-rep-{name}"), &rep)?;
    }

    let cred_key = Key::new(CRED_KEY.0, &CRED_KEY.1)?;
    seeds.put(
        "krb_cred",
        "forwarded-tgt",
        &build_krb_cred(std::slice::from_ref(&forwarded_tgt), &cred_key, now())?,
    )?;
    seeds.put(
        "krb_cred",
        "tgt-and-service-ticket",
        &build_krb_cred(&[tgt.clone(), service_ticket.clone()], &cred_key, now())?,
    )?;

    let mut keytab = Keytab::new();
    let client = Principal::parse(REPLY_CLIENT)?;
    for etype in Etype::ALL {
        keytab.push(KeytabEntry::from_password(
            client.clone(),
            1,
            etype,
            REPLY_PASSWORD.as_bytes(),
            1_800_000_000,
        )?);
    }
    seeds.put("keytab", "password-keys", &keytab.to_bytes()?)?;
    let mut keytab = Keytab::new();
    keytab.push(KeytabEntry {
        principal: service.clone(),
        timestamp: 1_800_000_000,
        kvno: 1,
        key: Key::new(AP_SERVICE_KEY.0, &AP_SERVICE_KEY.1)?,
    });
    keytab.push(KeytabEntry {
        principal: service,
        timestamp: 1_800_000_000,
        kvno: 300,
        key: Key::random(Etype::Aes256CtsHmacSha384192),
    });
    seeds.put("keytab", "service-keys", &keytab.to_bytes()?)?;

    let mut ccache = CCache::new(client);
    ccache.store(to_ccache(&tgt));
    seeds.put("ccache", "tgt", &ccache.to_bytes()?)?;
    ccache.store(to_ccache(&service_ticket));
    ccache.store(to_ccache(&forwarded_tgt));
    seeds.put("ccache", "tgt-and-tickets", &ccache.to_bytes()?)?;
    directory_request(seeds, &service_ticket)?;
    Ok(())
}

/// fuzz_targets/directory_request.rs: the code its one unit has.
const DIRECTORY_CODE: [u8; 16] = [0x5e; 16];

/// Directory requests the target's directory serves (its unit's code) and
/// refuses (another code), with the ap_req target's service ticket.
fn directory_request(seeds: &mut Seeds, ticket: &Credential) -> Result<()> {
    for (name, code) in [("own-code", DIRECTORY_CODE), ("other-code", [0x01; 16])] {
        let (req, _) = roamgate_directory::client::build_request(
            ticket,
            roamgate_directory::IdentityCode::from_bytes(code),
            now(),
        )?;
        seeds.put("directory_request", name, &req)?;
    }
    // Resolves (kind 4): the target's unit's number, and one no unit has.
    for (name, number) in [("resolve-known", "+4930555"), ("resolve-unknown", "+15550000")] {
        let (req, _) = roamgate_directory::client::build_resolve_request(
            ticket,
            &roamgate_directory::DialledNumber::parse(number)?,
            now(),
        )?;
        seeds.put("directory_request", name, &req)?;
    }
    Ok(())
}

/// KRB-PRIV and KRB-SAFE that the target's channels open: with sequence
/// numbers from the initiator, with timestamps from the acceptor.
fn krb_priv(seeds: &mut Seeds) -> Result<()> {
    let key = Key::new(PRIV_KEY.0, &PRIV_KEY.1)?;
    let seq = SecureChannel::new(
        key.clone(),
        Direction::Initiator,
        ReplayMode::Sequence {
            local: 0,
            remote: 0,
        },
    );
    let ts = SecureChannel::new(key, Direction::Acceptor, ReplayMode::Timestamp);
    for (mode, mut channel, data) in [
        ("seq", seq, &b"call setup"[..]),
        ("timestamp", ts, &b"charge 1"[..]),
    ] {
        let sealed = channel.seal_priv(data, now())?;
        seeds.put("krb_priv", &format!("priv-{mode}"), &sealed)?;
        let sealed = channel.seal_safe(data, now())?;
        seeds.put("krb_priv", &format!("safe-{mode}"), &sealed)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Attach protocol

/// fuzz_targets/attach_frame.rs: frames of a real switch-on, switch-off and
/// status exchange, made with another proxy-manager key than the target's
/// (a frame that verified would fail the target).
fn attach_frame(seeds: &mut Seeds) -> Result<()> {
    use roamgate_attach::manager::Verified;
    use roamgate_attach::wire::{ProxyState, StatusBody};
    use roamgate_attach::{BaseStation, Unit, UnitCredentials, Verifier};
    const T: &str = "attach_frame";
    const PM: &str = "attach/pm@FUZZ.TEST";
    let seed_key = Key::new(Etype::Aes128CtsHmacSha196, &[0x24; 16])?;
    let kdc = kdc(
        "FUZZ.TEST",
        &[("unit@FUZZ.TEST", "fuzz")],
        &[(PM, &seed_key)],
    )?;
    let tgt = as_exchange(&kdc, "unit@FUZZ.TEST", "fuzz")?.tgt;
    let (_, _, manager_ticket) = tgs_exchange(&kdc, &tgt, PM, 0)?;
    let fwd = TgsExchange::forwarded_tgt(&tgt)?;
    let forwarded_tgt = fwd.handle_reply(&ask(&kdc, &fwd.request(now())?)?)?;
    let creds = UnitCredentials {
        manager_ticket,
        forwarded_tgt,
    };
    let identity = roamgate_directory::IdentityCode::from_bytes([0x5a; 16]);
    let mut unit = Unit::new(identity, creds)?;
    let pm_principal = Principal::parse(PM)?;
    let mut pm = Verifier::new(
        pm_principal.clone(),
        KeySet(vec![(pm_principal, 1, seed_key)]),
    );
    let bs = BaseStation::new(1, "FUZZ.TEST")?;
    let addr = std::net::SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 4000);

    let on = unit.switch_on(now())?;
    seeds.put(T, "switch-on", &on)?;
    let relayed = bs.from_unit(&on, addr)?;
    seeds.put(T, "relayed-switch-on", &relayed)?;
    let Ok(Verified::SwitchOn(s)) = pm.verify(&on, now()) else {
        bail!("the seed switch-on did not verify");
    };
    let ack = s.ack()?;
    seeds.put(T, "switch-on-ack", &ack)?;
    let relay = roamgate_attach::wire::RelayRepr::parse_bytes(&relayed)?;
    seeds.put(
        T,
        "relayed-ack",
        &roamgate_attach::relay::answer_relay(&relay, &ack)?,
    )?;
    let refusal = pm.verify(&on, now()).err().context("a replay is refused")?;
    seeds.put(T, "refused", &refusal.frame().context("a refusal frame")?)?;
    let status = unit.status_request(now())?;
    seeds.put(T, "status-request", &status)?;
    let Ok(Verified::Status(r)) = pm.verify(&status, now()) else {
        bail!("the seed status request did not verify");
    };
    let body = StatusBody {
        state: ProxyState::Attached,
        home_address: Ipv4Addr::new(10, 0, 0, 5),
        care_of: Ipv4Addr::new(192, 0, 2, 1),
        tgt_expiry: 1_800_036_000,
        registration_expiry: 1_800_000_600,
    };
    seeds.put(T, "status-body", &body.to_bytes())?;
    seeds.put(T, "status-answer", &r.status_answer(&body, now())?)?;
    let off = unit.switch_off(now())?;
    seeds.put(T, "switch-off", &off)?;
    let Ok(Verified::SwitchOff(r)) = pm.verify(&off, now()) else {
        bail!("the seed switch-off did not verify");
    };
    seeds.put(T, "switch-off-ack", &r.switch_off_ack()?)?;

    let op = ProxyOp::CallTicket {
        number: "4940123456",
    }
    .to_bytes()?;
    let req = unit.proxy_request(&op, now())?;
    seeds.put(T, "proxy-request", &req)?;
    let Ok(Verified::Proxy(r)) = pm.verify(&req, now()) else {
        bail!("the seed proxy request did not verify");
    };
    let reply = ProxyReply::Failed { op: 1, cause: 1 };
    seeds.put(T, "proxy-answer", &r.answer(&reply, now())?)?;
    Ok(())
}

/// fuzz_targets/proxy_op.rs: each op and answer.
fn proxy_op(seeds: &mut Seeds) -> Result<()> {
    const T: &str = "proxy_op";
    let media = Media {
        local: "10.1.0.51:40000".parse()?,
        remote: "10.1.0.52:40002".parse()?,
        ssrc_out: 1,
        ssrc_in: 2,
    };
    let ops = [
        ("call-ticket", ProxyOp::CallTicket { number: "4940123456" }),
        (
            "accept-call",
            ProxyOp::AcceptCall {
                call_id: [7; 16],
                number: "4940123456",
                ap_req: b"\x6e\x03\x02\x01\x05",
            },
        ),
        (
            "call-event",
            ProxyOp::CallEvent {
                call_id: [7; 16],
                kind: CallEventKind::Connected,
                cause: 0,
                role: Role::Caller,
                media,
            },
        ),
    ];
    for (name, op) in ops {
        seeds.put(T, name, &op.to_bytes()?)?;
    }
    let answers = [
        (
            "call-ticket-answer",
            ProxyReply::CallTicket {
                home_address: Ipv4Addr::new(10, 1, 0, 52),
                krb_cred: b"\x76\x03\x02\x01\x05",
            },
        ),
        (
            "call-accepted",
            ProxyReply::CallAccepted {
                caller: "unit1@FUZZ.TEST",
                etype: 18,
                caller_subkey: vec![1; 32].into(),
                callee_subkey: vec![2; 32].into(),
                ap_rep: b"\x6f\x03\x02\x01\x05",
            },
        ),
        ("event-noted", ProxyReply::EventNoted { max_seconds: None }),
        (
            "event-noted-limit",
            ProxyReply::EventNoted {
                max_seconds: Some(60),
            },
        ),
        ("failed", ProxyReply::Failed { op: 2, cause: 21 }),
    ];
    for (name, a) in answers {
        seeds.put(T, name, &a.to_bytes()?)?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// SRTP

/// fuzz_targets/srtp_unprotect.rs: SRTP and SRTCP of both profiles,
/// protected under the target's own master key and salt (an accepted packet
/// is no failure there), so that mutations start from genuine packets.
fn srtp_unprotect(seeds: &mut Seeds) -> Result<()> {
    use roamgate_srtp::{Context, MasterKey, MasterSalt, Profile};
    const KEY: [u8; 16] = [0x5a; 16];
    const SALT: [u8; 14] = [0xa5; 14];
    for (profile, name) in [
        (Profile::AesCm128HmacSha1_80, "cm"),
        (Profile::AeadAes128Gcm, "gcm"),
    ] {
        let salt = MasterSalt::from_slice(&SALT[..profile.master_salt_len()])?;
        let mut ctx = Context::new(profile, &MasterKey::new(KEY), &salt)?;
        // RTP: plain header; then two CSRCs and a one-octet-header extension.
        let mut plain = vec![
            0x80, 0x00, 0x12, 0x34, 0, 0, 0x0c, 0x80, 0xca, 0xfe, 0xba, 0xbe,
        ];
        plain.extend_from_slice(&[0xd5; 160]);
        let mut rich = vec![
            0x92, 0x08, 0xff, 0xff, 0, 0, 0x0c, 0x80, 0xca, 0xfe, 0xba, 0xbe,
        ];
        rich.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 2, 0xbe, 0xde, 0, 1, 0x10, 0xff, 0, 0]);
        rich.extend_from_slice(&[0x55; 80]);
        for (kind, mut pkt) in [("rtp", plain), ("rtp-csrc-ext", rich)] {
            ctx.protect_rtp(&mut pkt)?;
            seeds.put("srtp_unprotect", &format!("{name}-{kind}"), &pkt)?;
        }
        // RTCP: an empty receiver report, then one with an SDES CNAME.
        let rr = vec![0x80, 201, 0, 1, 0xca, 0xfe, 0xba, 0xbe];
        let mut sdes = rr.clone();
        sdes.extend_from_slice(&[0x81, 202, 0, 3, 0xca, 0xfe, 0xba, 0xbe, 1, 4, b'u', b'n']);
        sdes.extend_from_slice(&[b'i', b't', 0, 0]);
        for (kind, mut pkt) in [("rtcp-rr", rr), ("rtcp-rr-sdes", sdes)] {
            ctx.protect_rtcp(&mut pkt)?;
            seeds.put("srtp_unprotect", &format!("{name}-{kind}"), &pkt)?;
        }
    }
    Ok(())
}

/// fuzz_targets/call_message.rs: the key its messages are signed with.
const CALL_KEY: &[u8] = b"roamgate call fuzz key";

/// The five messages of a call, each signed with the target's key, and a
/// refusal with an H.235 security error.
fn call_message(seeds: &mut Seeds) -> Result<()> {
    use roamgate_call::wire::{
        h235, CallMessage, Channel, Codec, MessageBody, ReleaseReason, TokenFields,
    };
    use std::net::SocketAddrV4;
    let chan = |codec, n, port| Channel {
        logical_channel: n,
        codec,
        frames_per_packet: 20,
        session_id: 1,
        media: Some(SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 10), port)),
        media_control: Some(SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 10), port + 1)),
    };
    let msg = |body, from_destination| CallMessage {
        call_reference: 0x0101,
        from_destination,
        call_identifier: *b"fuzz-call-ident.",
        display: None,
        kerberos: None,
        integrity: None,
        body,
    };
    let conference_id = *b"fuzz-conference.";
    let messages = [
        (
            "setup",
            msg(
                MessageBody::Setup {
                    conference_id,
                    calling_number: Some("4401".into()),
                    called_number: "4402".into(),
                    fast_start: vec![
                        chan(Codec::G711Ulaw, 1, 40000),
                        chan(Codec::G711Alaw, 2, 40000),
                    ],
                },
                false,
            )
            .with_kerberos_token(&[0x6e, 0x03, 1, 2, 3]),
        ),
        ("call-proceeding", msg(MessageBody::CallProceeding, true)),
        ("alerting", msg(MessageBody::Alerting, true)),
        (
            "connect",
            msg(
                MessageBody::Connect {
                    conference_id,
                    fast_start: vec![chan(Codec::G711Ulaw, 1, 50000)],
                },
                true,
            )
            .with_kerberos_token(&[0x6f, 0x02, 1, 2]),
        ),
        (
            "release-complete",
            msg(
                MessageBody::ReleaseComplete {
                    cause: Some(16),
                    reason: Some(ReleaseReason::UndefinedReason),
                },
                false,
            ),
        ),
        (
            "release-complete-security",
            msg(
                MessageBody::ReleaseComplete {
                    cause: Some(21),
                    reason: Some(ReleaseReason::SecurityIntegrityFailed),
                },
                true,
            ),
        ),
    ];
    for (i, (name, m)) in messages.iter().enumerate() {
        let fields = TokenFields {
            timestamp: 1_800_000_000,
            random: i as u32 + 1,
            general_id: "callee".into(),
            senders_id: "caller".into(),
        };
        let bytes = h235::sign(m, &fields, CALL_KEY).map_err(|e| anyhow!("{name}: {e}"))?;
        seeds.put("call_message", name, &bytes)?;
    }
    Ok(())
}

/// fuzz_targets/radius_accounting.rs: its secret; Start and Stop requests
/// signed with it, and an Accounting-Response.
const RADIUS_SECRET: &[u8] = b"fuzz radius secret";

fn radius_accounting(seeds: &mut Seeds) -> Result<()> {
    use roamgate_billing::radius::{self, AccountingRequest, AcctStatusType, Charge, Nas};
    const T: &str = "radius_accounting";
    let start = AccountingRequest {
        status: AcctStatusType::Start,
        session_id: b"00112233445566778899aabbccddeeff",
        user_name: b"alice",
        session_time: None,
        delay_time: Some(0),
        nas: Nas::IpAddress(Ipv4Addr::new(192, 0, 2, 1)),
        event_timestamp: Some(1_800_000_000),
        charge: None,
    };
    let stop = AccountingRequest {
        status: AcctStatusType::Stop,
        session_time: Some(30),
        delay_time: Some(12),
        nas: Nas::Identifier(b"imu-1"),
        charge: Some(Charge {
            minor_units: 160,
            currency: *b"EUR",
        }),
        ..start
    };
    let start = start.to_bytes(1, RADIUS_SECRET)?;
    let stop = stop.to_bytes(2, RADIUS_SECRET)?;
    seeds.put(T, "start", &start)?;
    seeds.put(T, "stop", &stop)?;
    seeds.put(
        T,
        "response",
        &radius::build_response(&stop, RADIUS_SECRET)?,
    )?;
    Ok(())
}

/// fuzz_targets/billing_request.rs: a well-framed request (its AP-REQ and
/// KRB-PRIV are stand-ins: the framing is what is fuzzed), an answer, an
/// error answer, and the sealed bodies.
fn billing_request(seeds: &mut Seeds) -> Result<()> {
    use roamgate_billing::wire::{self, Answer, Op, OpBody, OpResult, Reason, Request, ResultBody};
    const T: &str = "billing_request";
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    seeds.put(
        T,
        "request",
        &Request {
            nonce: 7,
            ap_req: &[0x6e; 40],
            krb_priv: &[0x75; 40],
        }
        .encode(),
    )?;
    seeds.put(
        T,
        "answer",
        &Answer {
            nonce: 7,
            ap_rep: &[0x6f; 20],
            krb_priv: &[0x75; 20],
        }
        .encode(),
    )?;
    seeds.put(
        T,
        "error",
        &wire::encode_error(7, Reason::AuthenticationFailed),
    )?;
    seeds.put(
        T,
        "op",
        &OpBody {
            nonce: 7,
            op: Op::CloseCharge {
                call_id: [1; 16],
                ended_at: t,
            },
        }
        .encode(),
    )?;
    seeds.put(
        T,
        "result",
        &ResultBody {
            nonce: 7,
            call_id: [1; 16],
            result: OpResult::Closed {
                amount: 70,
                seconds: 30,
            },
        }
        .encode(),
    )?;
    Ok(())
}
