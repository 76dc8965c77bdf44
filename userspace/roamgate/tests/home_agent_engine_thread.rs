//! The home agent's engine on its own thread (`EngineThread`): datagrams in
//! over a channel, replies back in order, the core's timers run by the
//! thread itself, metrics read from a published snapshot. Real pinned maps
//! and a SQLite journal. Needs root.

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use roamgate::{
    dataplane::maps::{Capacity, Maps, Role},
    home_agent::{engine_thread::EngineThread, Engine, HomeLink},
};
use roamgate_krb::ap::KeySet;
use roamgate_mip::{
    auth::SecurityAssociation,
    home_agent::{HomeAgent, HomeAgentConfig, NodeConfig},
    journal::SqliteJournal,
    mobile_node::{MobileNode, MobileNodeConfig},
    wire::{self, code},
};
use roamgate_testkit::fixture::TestPinDir;

const HA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const HOME: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const COA: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);

fn sa() -> SecurityAssociation {
    SecurityAssociation::new(0x1000, b"mn-ha shared key 16+").unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn engine_thread_answers_in_order_expires_on_its_own_and_publishes_metrics() {
    let pin = TestPinDir::new("engine-thread");
    let maps = Maps::create_pinned(pin.path(), Capacity::default()).expect("maps (are you root?)");
    let dir = tempfile::tempdir().unwrap();
    let journal = SqliteJournal::open(&dir.path().join("bindings.sqlite")).unwrap();
    let core = HomeAgent::new(
        HomeAgentConfig::new(HA),
        vec![NodeConfig {
            home_address: HOME,
            security_associations: vec![sa()],
            principal: None,
            require_kerberos: false,
        }],
        Arc::new(KeySet::default()),
    );
    let e = Engine::new(core, Box::new(journal), maps, 1500, HomeLink::default());
    let t = EngineThread::spawn(e).unwrap();
    let mut n = 0u32;
    let mut mn = MobileNode::new(
        MobileNodeConfig {
            home_address: HOME,
            home_agent: HA,
            security_association: sa(),
            credential: None,
            // Expires while the test watches.
            lifetime: 2,
            reverse_tunnel: true,
            co_located: true,
            tunnel_grace: Duration::from_secs(5),
        },
        Box::new(move || {
            n = n.wrapping_add(0x9e37);
            n
        }),
    );
    let req = mn.register(COA, SystemTime::now()).unwrap().send.unwrap();
    // The request, then garbage, then its replay: three replies in order
    // (the garbage gets none).
    let replies = t
        .handle_batch(vec![
            (req.clone().into(), IpAddr::V4(COA)),
            (vec![0xff; 3].into(), IpAddr::V4(COA)),
            (req.into(), IpAddr::V4(COA)),
        ])
        .await
        .unwrap();
    assert_eq!(replies.len(), 3);
    let codes: Vec<Option<u8>> = replies
        .iter()
        .map(|r| r.as_ref().map(|r| wire::parse_reply(r).unwrap().repr.code))
        .collect();
    assert_eq!(
        codes,
        vec![
            Some(code::ACCEPTED),
            None,
            Some(code::IDENTIFICATION_MISMATCH)
        ]
    );
    let m = t.metrics();
    assert_eq!((m.requests, m.accepted, m.bindings), (3, 1, 1));
    let pinned = || {
        Maps::open(pin.path())
            .unwrap()
            .list()
            .unwrap()
            .into_iter()
            .filter(|s| s.binding.role == Role::HomeAgent)
            .count()
    };
    assert_eq!(pinned(), 1);

    // Nobody sends anything: the thread expires the binding at its time
    // and the snapshot says so.
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.metrics().expired == 0 {
        assert!(Instant::now() < deadline, "not expired: {:?}", t.metrics());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let m = t.metrics();
    assert_eq!((m.expired, m.bindings), (1, 0));
    assert_eq!(pinned(), 0);
    let last = t.stop(false).await;
    assert_eq!(last.expired, 1);
}
