//! The Mobile IP end-to-end scenario (issue 5) as an integration test: the
//! same code `cargo xtask e2e` runs. Needs root (namespaces, XDP).

#[test]
fn mobility_end_to_end() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root");
        return;
    }
    let (result, failures) = roamgate_integration::mobility::run().expect("scenario ran");
    println!("{result}");
    assert!(
        failures.is_empty(),
        "failed expectations: {failures:#?}\n{result}"
    );
}

/// The home agent's engine after a restart: a journaled binding whose
/// tunnel the maps lost (a reboot) is dropped, never re-installed under its
/// old key (its sequence numbers and replay window are gone with the map).
#[test]
fn engine_drops_journaled_bindings_the_maps_lost() {
    use std::{
        net::{IpAddr, Ipv4Addr},
        sync::Arc,
        time::{Duration, SystemTime},
    };

    use roamgate::{
        dataplane::{
            maps::{Maps, Role},
            DataPlane,
        },
        home_agent::{Engine, HomeLink},
    };
    use roamgate_mip::{
        auth::SecurityAssociation,
        home_agent::{HomeAgent, HomeAgentConfig, NodeConfig},
        journal::SqliteJournal,
        mobile_node::{MobileNode, MobileNodeConfig},
    };
    use roamgate_testkit::fixture::TestPinDir;

    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root");
        return;
    }
    let ha = Ipv4Addr::new(192, 0, 2, 1);
    let home = Ipv4Addr::new(10, 1, 0, 77);
    let coa = Ipv4Addr::new(198, 51, 100, 7);
    // Removed on drop, also when an assertion below fails.
    let pin_dir = TestPinDir::new("ha-restore");
    let pin = pin_dir.path().to_owned();
    let _dp = DataPlane::load(&pin).expect("data plane loads");
    let dir = tempfile::tempdir().unwrap();
    let jpath = dir.path().join("bindings.sqlite");
    let (cred, keys) = roamgate_testkit::mip::issue_ticket(
        "mn@T.TEST",
        "mip/ha@T.TEST",
        roamgate_krb_crypto::Etype::Aes128CtsHmacSha256128,
        SystemTime::now() - Duration::from_secs(5),
        Duration::from_secs(3600),
    );
    let sa = SecurityAssociation::new(256, b"mn-ha key").unwrap();
    let node = NodeConfig {
        home_address: home,
        security_associations: vec![sa.clone()],
        principal: None,
        require_kerberos: true,
    };
    let keys = Arc::new(keys);
    let make = |keys: Arc<roamgate_krb::ap::KeySet>| {
        Engine::new(
            HomeAgent::new(HomeAgentConfig::new(ha), vec![node.clone()], keys),
            Box::new(SqliteJournal::open(&jpath).unwrap()),
            Maps::open(&pin).unwrap(),
            1500,
            HomeLink::default(),
        )
    };
    let mut mn = MobileNode::new(
        MobileNodeConfig {
            home_address: home,
            home_agent: ha,
            security_association: sa,
            credential: Some(cred),
            lifetime: 600,
            reverse_tunnel: true,
            co_located: true,
            tunnel_grace: Duration::from_secs(5),
        },
        Box::new(|| 7),
    );
    let req = mn.register(coa, SystemTime::now()).unwrap().send.unwrap();
    let spi = {
        let mut e = make(keys.clone());
        let reply = e.handle(&req, IpAddr::V4(coa), SystemTime::now()).unwrap();
        assert_eq!(reply[1], 0, "accepted");
        let list = e.maps.list().unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].binding.remote, coa);
        list[0].binding.spi
    };
    // The maps lose everything (as after a reboot).
    Maps::open(&pin)
        .unwrap()
        .remove(home, Role::HomeAgent)
        .unwrap();
    assert!(Maps::open(&pin).unwrap().list().unwrap().is_empty());
    let mut e = make(keys);
    e.restore(SystemTime::now()).unwrap();
    assert_eq!(e.metrics.restored_bindings, 0);
    assert_eq!(e.metrics.reinstalled_bindings, 0);
    assert_eq!(e.metrics.restore_tunnel_lost, 1);
    assert!(e.maps.list().unwrap().is_empty());
    assert_eq!(e.maps.tunnel(spi).unwrap(), None);
    // The restarted home agent still refuses the old request (replay).
    let reply = e.handle(&req, IpAddr::V4(coa), SystemTime::now()).unwrap();
    assert_eq!(reply[1], 133);
}
