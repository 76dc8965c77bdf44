//! The mobile node as a library (issue 11, groundwork for the proxy
//! manager): two `Node`s as tokio tasks in one process, sharing one pinned
//! XDP data plane, against one home agent and one roamgate KDC. Needs root
//! (bpffs, the home agent's port 434).
//!
//! The home agent is the daemon's `Engine` over its own pinned data plane,
//! served on UDP 434 of a loopback address; the KDC is `roamgate kdc`. One
//! node gets its ticket from a keytab (as `roamgate mobile-node` does), the
//! other from a TGT obtained beforehand (as the proxy manager will hold a
//! unit's forwarded TGT).

use std::{
    net::{Ipv4Addr, SocketAddr},
    sync::Arc,
    time::{Duration, SystemTime},
};

use roamgate::{
    dataplane::{maps::Maps, maps::Role, DataPlane},
    home_agent::{Engine, HomeLink},
    mobile_node::{
        CareOfSource, Credentials, Deregistration, Identity, Node, NodeSpec, NodeStatus, Plane,
    },
};
use roamgate_integration::bench::kdc::{RoamgateKdc, RoamgateKdcOptions};
use roamgate_krb::{client, keytab::Keytab, Principal};
use roamgate_mip::{
    auth::SecurityAssociation,
    home_agent::{HomeAgent, HomeAgentConfig, NodeConfig},
    journal::SqliteJournal,
};
use roamgate_testkit::fixture::TestPinDir;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// A loopback address of its own, so port 434 is free.
const HA: Ipv4Addr = Ipv4Addr::new(127, 43, 4, 1);
const HOMES: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 77, 0, 1), Ipv4Addr::new(10, 77, 0, 2)];
const COAS: [Ipv4Addr; 2] = [Ipv4Addr::new(127, 43, 4, 2), Ipv4Addr::new(127, 43, 4, 3)];
const MN_HA_SPIS: [u32; 2] = [256, 257];
const MN_HA_KEYS: [&[u8]; 2] = [b"first node's MN-HA key", b"second node's MN-HA key"];

/// The newest key per etype of `who` in `kt`.
fn client_secret(kt: &Keytab, who: &Principal) -> client::ClientSecret {
    client::ClientSecret::Keys(kt.newest_keys(who))
}

async fn wait_until(
    rx: &mut watch::Receiver<NodeStatus>,
    what: &str,
    f: impl Fn(&NodeStatus) -> bool,
) -> NodeStatus {
    let got = match tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|s| f(s))).await {
        Ok(Ok(s)) => Some(s.clone()),
        _ => None,
    };
    got.unwrap_or_else(|| panic!("{what}: last status {:?}", *rx.borrow()))
}

#[test]
fn two_nodes_in_one_process_register_and_deregister() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kdc = RoamgateKdc::create(&RoamgateKdcOptions::default()).unwrap();
    let realm = RoamgateKdcOptions::default().realm;
    let ha_kt = dir.path().join("ha.keytab");
    let mn_kt = [dir.path().join("mn1.keytab"), dir.path().join("mn2.keytab")];
    kdc.add_random("mip/ha")
        .unwrap()
        .add_random("mn1")
        .unwrap()
        .add_random("mn2")
        .unwrap()
        .export_keytab("mip/ha", &ha_kt)
        .unwrap()
        .export_keytab("mn1", &mn_kt[0])
        .unwrap()
        .export_keytab("mn2", &mn_kt[1])
        .unwrap();
    let kdc = kdc.start().unwrap();
    let principal = |n: &str| Principal::parse(&format!("{n}@{realm}")).unwrap();
    let sas: Vec<SecurityAssociation> = (0..2)
        .map(|i| SecurityAssociation::new(MN_HA_SPIS[i], MN_HA_KEYS[i]).unwrap())
        .collect();

    // The home agent: the daemon's engine over its own pinned data plane.
    let ha_pin = TestPinDir::new("mnlib-ha");
    let _ha_dp = DataPlane::load(ha_pin.path()).expect("home agent data plane loads");
    let nodes: Vec<NodeConfig> = (0..2)
        .map(|i| NodeConfig {
            home_address: HOMES[i],
            security_associations: vec![sas[i].clone()],
            principal: Some(principal(&format!("mn{}", i + 1))),
            require_kerberos: true,
        })
        .collect();
    let mut engine = Engine::new(
        HomeAgent::new(
            HomeAgentConfig::new(HA),
            nodes,
            Arc::new(Keytab::load(&ha_kt).unwrap()),
        ),
        Box::new(SqliteJournal::open(&dir.path().join("bindings.sqlite")).unwrap()),
        Maps::open(ha_pin.path()).unwrap(),
        1500,
        HomeLink::default(),
    );
    // The nodes' one shared data plane.
    let mn_pin = TestPinDir::new("mnlib-mn");
    let _mn_dp = DataPlane::load(mn_pin.path()).expect("node data plane loads");
    let plane = Plane::shared_maps(Maps::open(mn_pin.path()).unwrap());

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let sock = tokio::net::UdpSocket::bind(SocketAddr::new(HA.into(), 434))
            .await
            .expect("binding the home agent's port");
        let ha_stop = CancellationToken::new();
        let ha_task = {
            let stop = ha_stop.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65_536];
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        r = sock.recv_from(&mut buf) => {
                            let (n, src) = r.unwrap();
                            if let Some(reply) = engine.handle(&buf[..n], src.ip(), SystemTime::now()) {
                                sock.send_to(&reply, src).await.unwrap();
                            }
                        }
                    }
                }
                engine
            })
        };

        // One node with a keytab, one with a TGT got beforehand.
        let tgt = client::get_tgt(
            &client::KdcTransport::new(kdc.addr.to_string()),
            principal("mn2"),
            client_secret(&Keytab::load(&mn_kt[1]).unwrap(), &principal("mn2")),
            client::AsOptions::default(),
            SystemTime::now,
        )
        .await
        .expect("a TGT for mn2");
        let credentials = [
            Credentials::Keytab {
                kdc: kdc.addr,
                principal: principal("mn1"),
                keytab: mn_kt[0].clone(),
                service: principal("mip/ha"),
            },
            Credentials::Tgt {
                kdc: kdc.addr,
                tgt: Box::new(tgt),
                service: principal("mip/ha"),
            },
        ];
        let stop = CancellationToken::new();
        let mut status = Vec::new();
        let mut tasks = Vec::new();
        for (i, credentials) in credentials.into_iter().enumerate() {
            let node = Node::new(NodeSpec {
                identity: Identity {
                    home_address: HOMES[i],
                    home_agent: HA,
                    security_association: sas[i].clone(),
                    lifetime: 120,
                    reverse_tunnel: true,
                    co_located: true,
                    tunnel_grace: Duration::from_secs(5),
                },
                credentials,
                care_of: CareOfSource::Fixed(COAS[i]),
                plane: plane.clone(),
                tunnel_mtu: 1500,
                dataplane_name: "pinned",
                status_file: None,
            });
            status.push(node.status());
            tasks.push(tokio::spawn(node.run(stop.child_token())));
        }

        let mut spis = Vec::new();
        for (i, rx) in status.iter_mut().enumerate() {
            let s = wait_until(rx, &format!("node {i} registers"), |s| {
                s.state == "registered" && s.spi.is_some()
            })
            .await;
            assert_eq!(s.care_of, Some(COAS[i]));
            assert_eq!(s.registrations, 1);
            assert!(s.ticket_expires.is_some(), "the status shows the ticket");
            spis.push(s.spi.unwrap());
        }
        assert_ne!(spis[0], spis[1], "each node has its own tunnel SPI");
        // The home agent holds both bindings, each under its node's SPI.
        let ha_maps = Maps::open(ha_pin.path()).unwrap();
        let mut ha_bound: Vec<(Ipv4Addr, u32, Ipv4Addr)> = ha_maps
            .list()
            .unwrap()
            .iter()
            .map(|b| (b.binding.home, b.binding.spi, b.binding.remote))
            .collect();
        ha_bound.sort();
        assert_eq!(
            ha_bound,
            vec![(HOMES[0], spis[0], COAS[0]), (HOMES[1], spis[1], COAS[1])]
        );
        // And so does the nodes' shared plane, on their side.
        let mn_maps = Maps::open(mn_pin.path()).unwrap();
        let mut mn_bound: Vec<(Ipv4Addr, Role, u32)> = mn_maps
            .list()
            .unwrap()
            .iter()
            .map(|b| (b.binding.home, b.binding.role, b.binding.spi))
            .collect();
        mn_bound.sort_by_key(|b| b.0);
        assert_eq!(
            mn_bound,
            vec![
                (HOMES[0], Role::CareOf, spis[0]),
                (HOMES[1], Role::CareOf, spis[1])
            ]
        );

        // Shutdown: both deregister, and the home agent confirms.
        stop.cancel();
        for (i, t) in tasks.into_iter().enumerate() {
            let report = t.await.unwrap().unwrap();
            assert_eq!(
                report.deregistration,
                Deregistration::Confirmed,
                "node {i}: {:?}",
                report.status
            );
            assert!(report.status.deregistered);
            assert_eq!(report.status.state, "idle");
        }
        ha_stop.cancel();
        let engine = ha_task.await.unwrap();
        assert_eq!(engine.metrics.deregistered, 2);
        assert!(ha_maps.list().unwrap().is_empty(), "no binding at the HA");
        assert!(mn_maps.list().unwrap().is_empty(), "no binding at the nodes");
        assert_eq!(mn_maps.tunnel_count(), 0, "no tunnel key left by the nodes");
    });
    drop(kdc);
}

/// A node whose home agent never answers still leaves nothing in the shared
/// plane when it stops: the tunnels it installed ahead of its requests go
/// with it, and the other nodes' entries stay.
#[test]
fn a_node_stopped_without_its_home_agent_leaves_no_tunnel_in_the_shared_plane() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root");
        return;
    }
    let pin = TestPinDir::new("mnlib-silent");
    let _dp = DataPlane::load(pin.path()).expect("data plane loads");
    let plane = Plane::shared_maps(Maps::open(pin.path()).unwrap());
    // Another node's tunnel, which must survive.
    let other_spi = 0x0bad_cafe;
    {
        let Plane::Maps(m) = &plane else {
            unreachable!()
        };
        let spec = roamgate::dataplane::maps::TunnelSpec::new(
            other_spi,
            Role::CareOf,
            COAS[1],
            HOMES[1],
            &roamgate_mip::MasterKey::new([7u8; 32]),
        );
        m.lock().unwrap().install_tunnel(&spec).unwrap();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let node = Node::new(NodeSpec {
            identity: Identity {
                home_address: HOMES[0],
                // Nothing listens there.
                home_agent: Ipv4Addr::new(127, 43, 4, 9),
                security_association: SecurityAssociation::new(256, b"k").unwrap(),
                lifetime: 120,
                reverse_tunnel: true,
                co_located: true,
                tunnel_grace: Duration::from_secs(5),
            },
            credentials: Credentials::None,
            care_of: CareOfSource::Fixed(COAS[0]),
            plane: plane.clone(),
            tunnel_mtu: 1500,
            dataplane_name: "pinned",
            status_file: None,
        });
        let mut rx = node.status();
        let stop = CancellationToken::new();
        let task = tokio::spawn(node.run(stop.clone()));
        wait_until(&mut rx, "the node sends its request", |s| {
            s.state == "registering"
        })
        .await;
        let maps = Maps::open(pin.path()).unwrap();
        assert_eq!(maps.tunnel_count(), 2, "its tunnel is installed ahead");
        stop.cancel();
        let report = task.await.unwrap().unwrap();
        assert_eq!(report.deregistration, Deregistration::Unconfirmed);
        assert_eq!(
            maps.tunnel_count(),
            1,
            "only the other node's tunnel is left"
        );
        assert!(maps.tunnel(other_spi).unwrap().is_some());
    });
}
