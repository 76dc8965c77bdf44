//! The home agent never answers "accepted" for a binding it could not
//! commit. The maps here are real pinned BPF hash maps, created small
//! (`Maps::create_pinned`), so an insert into a full one fails in the kernel
//! with E2BIG, as it would on a gateway at capacity. Needs root.

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::{Duration, SystemTime},
};

use roamgate::{
    dataplane::maps::{Binding, Capacity, Expiry, Maps, Role, TunnelSpec},
    home_agent::{pending::ROLLBACK_RETRY_FIRST, Engine, HomeLink},
};
use roamgate_krb::ap::KeySet;
use roamgate_mip::{
    auth::SecurityAssociation,
    home_agent::{HomeAgent, HomeAgentConfig, NodeConfig},
    journal::{BindingJournal, JournalError, JournalOp, JournalState, SqliteJournal},
    mobile_node::{Event, MobileNode, MobileNodeConfig},
    wire::{self, code},
    MasterKey,
};
use roamgate_testkit::fixture::TestPinDir;

const HA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const HOME: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const COA_A: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const COA_B: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 30);
/// Another node's binding that fills the map.
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 99);
const OTHER_SPI: u32 = 0x00f0_0001;
const MN_HA_SPI: u32 = 0x1000;
const MN_HA_KEY: &[u8] = b"mn-ha shared key 16+";

fn sa() -> SecurityAssociation {
    SecurityAssociation::new(MN_HA_SPI, MN_HA_KEY).unwrap()
}

fn mobile_node() -> MobileNode {
    let mut n = 0u32;
    MobileNode::new(
        MobileNodeConfig {
            home_address: HOME,
            home_agent: HA,
            security_association: sa(),
            credential: None,
            lifetime: 300,
            reverse_tunnel: true,
            co_located: true,
            tunnel_grace: Duration::from_secs(5),
        },
        Box::new(move || {
            n = n.wrapping_add(0x9e37);
            n
        }),
    )
}

fn engine(maps: Maps, journal: Box<dyn BindingJournal + Send>) -> Engine {
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
    Engine::new(core, journal, maps, 1500, HomeLink::default())
}

fn sqlite_journal() -> (tempfile::TempDir, Box<dyn BindingJournal + Send>) {
    let dir = tempfile::tempdir().unwrap();
    let j = SqliteJournal::open(&dir.path().join("bindings.sqlite")).unwrap();
    (dir, Box::new(j))
}

/// Another node's binding and tunnel, straight through the map API.
fn occupy(maps: &mut Maps) {
    let mk = MasterKey::new([7; 32]);
    maps.install(
        &Binding {
            home: OTHER,
            role: Role::HomeAgent,
            remote: COA_B,
            spi: OTHER_SPI,
            expires: Expiry::Never,
        },
        &TunnelSpec::new(OTHER_SPI, Role::HomeAgent, HA, OTHER, &mk),
    )
    .unwrap();
}

/// The node registers from `coa`; returns the reply code, after the node
/// has handled the reply.
fn register(e: &mut Engine, mn: &mut MobileNode, coa: Ipv4Addr, now: SystemTime) -> u8 {
    let req = if mn.binding().is_none() {
        mn.register(coa, now)
    } else {
        mn.set_care_of(coa, now)
    }
    .unwrap()
    .send
    .expect("a request to send");
    let reply = e
        .handle(&req, IpAddr::V4(coa), now)
        .expect("a registration gets a reply");
    let c = wire::parse_reply(&reply).unwrap().repr.code;
    let out = mn.handle_reply(&reply, now).unwrap();
    if c == code::INSUFFICIENT_RESOURCES {
        assert_eq!(out.events, vec![Event::Rejected { code: c }]);
    }
    c
}

/// The home agent's binding of HOME in the maps: (remote, spi, tunnel present).
fn map_binding(maps: &Maps) -> Option<(Ipv4Addr, u32, bool)> {
    maps.list()
        .unwrap()
        .into_iter()
        .find(|s| s.binding.home == HOME && s.binding.role == Role::HomeAgent)
        .map(|s| (s.binding.remote, s.binding.spi, s.tunnel_present))
}

fn journal_binding(e: &Engine) -> Option<(Ipv4Addr, u32)> {
    e.journal
        .load()
        .unwrap()
        .bindings
        .iter()
        .find(|b| b.home == HOME)
        .map(|b| (b.care_of, b.spi))
}

/// Real pinned maps this small (removed with the returned directory).
fn small_maps(bindings: u32, tunnels: u32) -> (TestPinDir, Maps) {
    let pin = TestPinDir::new("ha-rollback");
    let cap = Capacity {
        bindings,
        tunnels,
        ..Capacity::default()
    };
    let maps = Maps::create_pinned(pin.path(), cap).expect("creating maps (are you root?)");
    (pin, maps)
}

#[test]
fn full_bindings_map_gets_130_and_leaves_nothing_behind() {
    let (_pin, mut maps) = small_maps(1, 4);
    occupy(&mut maps);
    let (_dir, journal) = sqlite_journal();
    let mut e = engine(maps, journal);
    let mut mn = mobile_node();
    let now = SystemTime::now();

    // The tunnel goes in, the binding does not fit: the tunnel is taken out
    // again and the node is refused.
    let c = register(&mut e, &mut mn, COA_A, now);
    assert_eq!(c, code::INSUFFICIENT_RESOURCES);
    assert_eq!(map_binding(&e.maps), None);
    assert_eq!(
        e.maps.tunnel_count(),
        1,
        "only the other node's tunnel is left"
    );
    assert!(e.maps.tunnel(OTHER_SPI).unwrap().is_some());
    assert_eq!(journal_binding(&e), None);
    assert_eq!(e.core.binding_count(), 0);
    assert_eq!(e.metrics.apply_failed, 1);
    assert_eq!(e.metrics.accepted, 0);
    assert_eq!(e.metrics.dataplane_errors, 1);
    assert_eq!(e.metrics.replies_by_code.get(&130), Some(&1));
    assert_eq!(e.metrics.replies_by_code.get(&0), None);
    assert_eq!(e.metrics.bindings, 0);

    // Room again: the next registration is accepted and installed.
    e.maps.remove(OTHER, Role::HomeAgent).unwrap();
    let later = now + Duration::from_secs(1);
    assert_eq!(register(&mut e, &mut mn, COA_A, later), code::ACCEPTED);
    let (remote, spi, tunnel) = map_binding(&e.maps).expect("binding installed");
    assert_eq!((remote, tunnel), (COA_A, true));
    assert_eq!(journal_binding(&e), Some((COA_A, spi)));
    assert_eq!(e.metrics.apply_failed, 1);
    assert_eq!(e.metrics.accepted, 1);
}

/// The node bound from A; the tunnels map (room for two) is then filled by
/// another node's tunnel.
struct BoundAtA {
    _pin: TestPinDir,
    _dir: tempfile::TempDir,
    e: Engine,
    mn: MobileNode,
    now: SystemTime,
    spi: u32,
}

fn bound_at_a_with_tunnels_full() -> BoundAtA {
    let (_pin, maps) = small_maps(4, 2);
    let (_dir, journal) = sqlite_journal();
    let mut e = engine(maps, journal);
    let mut mn = mobile_node();
    let now = SystemTime::now();
    assert_eq!(register(&mut e, &mut mn, COA_A, now), code::ACCEPTED);
    let (_, spi, _) = map_binding(&e.maps).unwrap();
    occupy(&mut e.maps);
    BoundAtA {
        _pin,
        _dir,
        e,
        mn,
        now,
        spi,
    }
}

#[test]
fn full_tunnels_map_refuses_a_handover_and_keeps_the_old_binding() {
    let mut b = bound_at_a_with_tunnels_full();
    let (e, mn, now, old_spi) = (&mut b.e, &mut b.mn, b.now, b.spi);

    let at = now + Duration::from_secs(30);
    assert_eq!(register(e, mn, COA_B, at), code::INSUFFICIENT_RESOURCES);
    assert_eq!(map_binding(&e.maps), Some((COA_A, old_spi, true)));
    assert_eq!(e.maps.tunnel_count(), 2);
    assert_eq!(journal_binding(e), Some((COA_A, old_spi)));
    assert_eq!(e.core.binding(HOME).map(|b| b.care_of), Some(COA_A));
    assert_eq!(e.metrics.apply_failed, 1);
    // The old tunnel is not retired: nothing is due before the binding
    // expires.
    assert_eq!(
        e.core.next_wakeup(),
        e.core.binding(HOME).map(|b| b.expires)
    );

    e.maps.remove(OTHER, Role::HomeAgent).unwrap();
    let at = at + Duration::from_secs(1);
    assert_eq!(register(e, mn, COA_B, at), code::ACCEPTED);
    let (remote, new_spi, tunnel) = map_binding(&e.maps).unwrap();
    assert_eq!((remote, tunnel), (COA_B, true));
    assert_ne!(new_spi, old_spi);
    assert_eq!(journal_binding(e), Some((COA_B, new_spi)));
}

/// A journal whose writes fail once `broken` is set.
struct BreakableJournal {
    inner: SqliteJournal,
    broken: Arc<std::sync::atomic::AtomicBool>,
}

impl BindingJournal for BreakableJournal {
    fn apply(&mut self, ops: &[JournalOp]) -> Result<(), JournalError> {
        if self.broken.load(Ordering::Relaxed) {
            // The error SQLite gives when the database cannot be written.
            return SqliteJournal::open(std::path::Path::new("/nonexistent/journal.sqlite"))
                .and_then(|mut j| j.apply(ops));
        }
        self.inner.apply(ops)
    }

    fn load(&self) -> Result<JournalState, JournalError> {
        self.inner.load()
    }
}

#[test]
fn journal_failure_gets_130_and_touches_no_map() {
    let (_pin, maps) = small_maps(4, 4);
    let broken = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let journal = BreakableJournal {
        inner: SqliteJournal::in_memory().unwrap(),
        broken: broken.clone(),
    };
    let mut e = engine(maps, Box::new(journal));
    let mut mn = mobile_node();
    let now = SystemTime::now();
    assert_eq!(
        register(&mut e, &mut mn, COA_A, now),
        code::INSUFFICIENT_RESOURCES
    );
    assert_eq!(map_binding(&e.maps), None);
    assert_eq!(e.maps.tunnel_count(), 0);
    assert_eq!(e.core.binding_count(), 0);
    assert_eq!(e.metrics.apply_failed, 1);
    assert!(e.metrics.journal_errors >= 1);

    broken.store(false, Ordering::Relaxed);
    let later = now + Duration::from_secs(1);
    assert_eq!(register(&mut e, &mut mn, COA_A, later), code::ACCEPTED);
    assert!(map_binding(&e.maps).is_some());
    assert!(journal_binding(&e).is_some());
}

/// Two requests of one node in one batch: a handover that does not fit,
/// then a deregistration that would. The deregistration was decided on top
/// of the failed handover, so it is not applied either: both get 130 and
/// the maps, the journal and the core keep the binding from A.
#[test]
fn a_request_built_on_a_failed_one_in_the_same_batch_is_refused_too() {
    let mut b = bound_at_a_with_tunnels_full();
    let (e, mn, now, spi_a) = (&mut b.e, &mut b.mn, b.now, b.spi);

    let at = now + Duration::from_secs(10);
    let handover = mn.set_care_of(COA_B, at).unwrap().send.unwrap();
    let later = at + Duration::from_secs(1);
    let dereg = mn.deregister(later).unwrap().send.unwrap();
    let replies = e.handle_batch(
        &[
            (&handover[..], IpAddr::V4(COA_B)),
            (&dereg[..], IpAddr::V4(COA_B)),
        ],
        later,
    );
    let codes: Vec<u8> = replies
        .iter()
        .map(|r| wire::parse_reply(r.as_ref().unwrap()).unwrap().repr.code)
        .collect();
    assert_eq!(codes, vec![130, 130]);
    assert_eq!(map_binding(&e.maps), Some((COA_A, spi_a, true)));
    assert_eq!(journal_binding(e), Some((COA_A, spi_a)));
    assert_eq!(e.core.binding(HOME).map(|b| b.care_of), Some(COA_A));
    assert_eq!(e.metrics.apply_failed, 2);
    assert_eq!(e.metrics.deregistered, 0);
}

/// A journal that takes `writes_left` more writes, then fails them until
/// `writes_left` is set again (negative: no limit).
struct CountdownJournal {
    inner: SqliteJournal,
    writes_left: Arc<AtomicI64>,
}

impl BindingJournal for CountdownJournal {
    fn apply(&mut self, ops: &[JournalOp]) -> Result<(), JournalError> {
        let left = self.writes_left.load(Ordering::Relaxed);
        if left == 0 {
            return SqliteJournal::open(std::path::Path::new("/nonexistent/journal.sqlite"))
                .and_then(|mut j| j.apply(ops));
        }
        if left > 0 {
            self.writes_left.fetch_sub(1, Ordering::Relaxed);
        }
        self.inner.apply(ops)
    }

    fn load(&self) -> Result<JournalState, JournalError> {
        self.inner.load()
    }
}

/// The node bound from A, the tunnels map full, and a handover to B whose
/// journal write lands but whose tunnel does not fit; the rollback's own
/// journal write then fails. Returns the engine and A's tunnel SPI.
fn handover_whose_rollback_journal_write_fails(
    writes_left: &Arc<AtomicI64>,
) -> (
    TestPinDir,
    tempfile::TempDir,
    Engine,
    MobileNode,
    SystemTime,
    u32,
) {
    let (pin, maps) = small_maps(4, 2);
    let dir = tempfile::tempdir().unwrap();
    let journal = CountdownJournal {
        inner: SqliteJournal::open(&dir.path().join("bindings.sqlite")).unwrap(),
        writes_left: writes_left.clone(),
    };
    let mut e = engine(maps, Box::new(journal));
    let mut mn = mobile_node();
    let now = SystemTime::now();
    assert_eq!(register(&mut e, &mut mn, COA_A, now), code::ACCEPTED);
    let (_, spi_a, _) = map_binding(&e.maps).unwrap();
    occupy(&mut e.maps);

    writes_left.store(1, Ordering::Relaxed);
    let at = now + Duration::from_secs(30);
    assert_eq!(
        register(&mut e, &mut mn, COA_B, at),
        code::INSUFFICIENT_RESOURCES
    );
    // The maps and the core are back at A; the journal still says B.
    assert_eq!(map_binding(&e.maps), Some((COA_A, spi_a, true)));
    assert_eq!(e.core.binding(HOME).map(|b| b.spi), Some(spi_a));
    let (j_coa, j_spi) = journal_binding(&e).unwrap();
    assert_eq!(j_coa, COA_B);
    assert_ne!(j_spi, spi_a);
    assert_eq!(e.metrics.apply_failed, 1);
    assert_eq!(e.metrics.rollback_failed, 1);
    assert_eq!(e.metrics.rollbacks_pending, 1);
    assert_eq!(e.pending_rollbacks().len(), 1);
    let text = e.metrics.prometheus();
    assert!(
        text.contains("roamgate_ha_rollback_failed_total 1\n"),
        "{text}"
    );
    assert!(text.contains("roamgate_ha_rollbacks_pending 1\n"), "{text}");
    (pin, dir, e, mn, at, spi_a)
}

#[test]
fn a_failed_rollback_journal_write_is_retried_with_backoff_until_it_lands() {
    let writes_left = Arc::new(AtomicI64::new(-1));
    let (_pin, _dir, mut e, _mn, at, spi_a) =
        handover_whose_rollback_journal_write_fails(&writes_left);

    // The first retry is due one second on (before any of the core's
    // timers); it fails too, and the next one waits twice as long.
    let first = at + ROLLBACK_RETRY_FIRST;
    assert_eq!(e.next_wakeup(), Some(first));
    e.poll(first);
    assert_eq!(e.metrics.rollbacks_pending, 1);
    assert_eq!(e.next_wakeup(), Some(first + 2 * ROLLBACK_RETRY_FIRST));
    assert_eq!(journal_binding(&e).map(|(c, _)| c), Some(COA_B));

    // The disk is back: the next retry writes the rollback's op.
    writes_left.store(-1, Ordering::Relaxed);
    let second = e.next_wakeup().unwrap();
    e.poll(second);
    assert_eq!(e.metrics.rollbacks_pending, 0);
    assert!(e.pending_rollbacks().is_empty());
    assert_eq!(e.metrics.rollback_failed, 1);
    assert!(e
        .metrics
        .prometheus()
        .contains("roamgate_ha_rollbacks_pending 0\n"));
    // Maps, journal and binding cache agree, and no retry is scheduled.
    assert_eq!(map_binding(&e.maps), Some((COA_A, spi_a, true)));
    assert_eq!(journal_binding(&e), Some((COA_A, spi_a)));
    assert_eq!(e.core.binding(HOME).map(|b| b.spi), Some(spi_a));
    assert_eq!(e.maps.tunnel_count(), 2, "A's tunnel and the other node's");
    assert_eq!(e.next_wakeup(), e.core.next_wakeup());
}

/// The pending op goes first in the next batch's transaction, so the
/// node's next accepted registration both completes the rollback and wins
/// over it.
#[test]
fn the_next_journal_write_carries_a_pending_rollback_op_first() {
    let writes_left = Arc::new(AtomicI64::new(-1));
    let (_pin, _dir, mut e, mut mn, at, spi_a) =
        handover_whose_rollback_journal_write_fails(&writes_left);

    writes_left.store(-1, Ordering::Relaxed);
    e.maps.remove(OTHER, Role::HomeAgent).unwrap();
    let later = at + Duration::from_millis(500);
    assert_eq!(register(&mut e, &mut mn, COA_B, later), code::ACCEPTED);
    assert_eq!(e.metrics.rollbacks_pending, 0);
    let (remote, spi_b, tunnel) = map_binding(&e.maps).unwrap();
    assert_eq!((remote, tunnel), (COA_B, true));
    assert_ne!(spi_b, spi_a);
    assert_eq!(journal_binding(&e), Some((COA_B, spi_b)));
    assert_eq!(e.next_wakeup(), e.core.next_wakeup());
}
