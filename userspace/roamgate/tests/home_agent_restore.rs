//! A restarted home agent never accepts a tunnel frame twice, and never
//! reuses a sequence number under one key (docs/wire.md).
//!
//! The home agent runs over the real XDP program and its pinned maps; the
//! node's reverse-tunnel frames are built by the userspace forwarder's
//! encapsulator under the keys the node's core derived, and fed to the
//! program through `BPF_PROG_TEST_RUN`. Two restarts:
//! - kill -9 with the pinned maps intact: the binding is adopted, its replay
//!   window kept, the captured frames are refused and new ones pass;
//! - a reboot (pin directory gone, journal kept): the binding's tunnel is
//!   gone with its window and sequence counter, so the binding is dropped
//!   (never reinstalled under its journaled key): the captured frames are
//!   refused as an unknown SPI, and the node's next registration (new key)
//!   works. Needs root.

use std::{
    net::{IpAddr, Ipv4Addr},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use roamgate::{
    dataplane::maps::{Maps, Role},
    home_agent::{Engine, HomeLink},
    tunnel::core::Encapsulator,
};
use roamgate_krb::ap::KeySet;
use roamgate_mip::tunnel_key::derive_keys;
use roamgate_mip::{
    auth::SecurityAssociation,
    home_agent::{HomeAgent, HomeAgentConfig, NodeConfig},
    journal::SqliteJournal,
    mobile_node::{MobileNode, MobileNodeConfig},
    wire::{self, code},
    Action,
};
use roamgate_testkit::{
    fixture::{FixtureRunner, XdpAction},
    frame::{FrameBuilder, MAC_A, MAC_B},
};

const HA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const HOME: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const COA: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const CORR: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const MN_HA_SPI: u32 = 0x1000;
const MN_HA_KEY: &[u8] = b"mn-ha shared key 16+";

/// Runs the calling test thread in a fresh network namespace (the
/// program's FIB lookups then find no route and pass).
fn private_netns() {
    // SAFETY: plain syscall; affects only this thread.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "unshare(CLONE_NEWNET): are you root?");
}

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

fn engine(maps: Maps, journal: &Path) -> Engine {
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
    let j = SqliteJournal::open(journal).unwrap();
    Engine::new(core, Box::new(j), maps, 1500, HomeLink::default())
}

/// The home agent's data plane: the XDP program with its maps pinned in a
/// private directory (gone with the runner: a reboot).
fn ha_data_plane() -> (FixtureRunner, Maps) {
    let mut r = FixtureRunner::new().expect("load data plane (are you root?)");
    let maps = Maps::open(r.data_plane().pin_dir()).unwrap();
    (r, maps)
}

/// The node's sending side of the tunnel its registration created.
struct NodeTunnel {
    spi: u32,
    enc: Encapsulator,
}

impl NodeTunnel {
    fn frame(&mut self, n: u16) -> Vec<u8> {
        let inner = FrameBuilder::new()
            .ipv4(HOME, CORR)
            .icmp_echo(7, n)
            .payload_len(56)
            .build_l3();
        let mut buf = vec![0u8; inner.len() + 200];
        let len = self.enc.encap(&inner, &mut buf).unwrap();
        let mut f = Vec::with_capacity(14 + len);
        f.extend_from_slice(&MAC_B);
        f.extend_from_slice(&MAC_A);
        f.extend_from_slice(&[0x08, 0x00]);
        f.extend_from_slice(&buf[..len]);
        f
    }
}

/// The node registers: at `now` the first time, else when its refresh is
/// due (at or after `now`). Returns the reply code and the node's new tunnel.
fn register(e: &mut Engine, mn: &mut MobileNode, now: SystemTime) -> (u8, Option<NodeTunnel>) {
    let (out, now) = match mn.binding() {
        None => (mn.register(COA, now).unwrap(), now),
        Some(b) => {
            let due = b.refresh_at.max(now);
            (mn.poll(due).unwrap(), due)
        }
    };
    let tunnel = out.actions.iter().find_map(|a| match a {
        Action::InstallTunnel(t) => {
            let keys = derive_keys(&t.master_key, t.spi, HOME, Role::CareOf);
            Some(NodeTunnel {
                spi: t.spi,
                enc: Encapsulator::new(t.spi, COA, HA, keys.tx, 1500, 1),
            })
        }
        _ => None,
    });
    let req = out.send.expect("a request to send");
    let reply = e
        .handle(&req, IpAddr::V4(COA), now)
        .expect("a registration gets a reply");
    let c = wire::parse_reply(&reply).unwrap().repr.code;
    mn.handle_reply(&reply, now).unwrap();
    (c, tunnel)
}

/// Feeds `frames` to the home agent's program; returns how many it
/// accepted (decapsulated and passed on) and the counters that moved.
fn deliver(r: &mut FixtureRunner, frames: &[Vec<u8>]) -> (u64, roamgate::dataplane::Counters) {
    let before = r.data_plane().counters().unwrap();
    let mut passed = 0;
    for f in frames {
        let (act, out) = r.run_frame("tunnel frame", f).unwrap();
        // Accepted = the inner packet came out (the outer 20 + 8 + trailer
        // are gone); anything else is a drop.
        if act == XdpAction::Pass as u32 && out.len() < f.len() {
            passed += 1;
        }
    }
    let moved = r.data_plane().counters().unwrap().delta(&before);
    assert_eq!(
        passed,
        moved.get("tunnel_decap"),
        "the receiver and the counters disagree"
    );
    (passed, moved)
}

struct Bound {
    _dir: tempfile::TempDir,
    journal: PathBuf,
    ha: FixtureRunner,
    e: Engine,
    mn: MobileNode,
    tunnel: NodeTunnel,
    now: SystemTime,
    captured: Vec<Vec<u8>>,
}

/// The node registered, sent 10 frames the home agent accepted, and an
/// attacker on the path captured them.
fn bound_and_captured() -> Bound {
    private_netns();
    let dir = tempfile::tempdir().unwrap();
    let journal = dir.path().join("bindings.sqlite");
    let (mut ha, maps) = ha_data_plane();
    let mut e = engine(maps, &journal);
    e.restore(SystemTime::now()).unwrap();
    let mut mn = mobile_node();
    let now = SystemTime::now();
    let (c, tunnel) = register(&mut e, &mut mn, now);
    assert_eq!(c, code::ACCEPTED);
    let mut tunnel = tunnel.expect("the node installed a tunnel");
    let captured: Vec<Vec<u8>> = (1..=10).map(|n| tunnel.frame(n)).collect();
    let (passed, _) = deliver(&mut ha, &captured);
    assert_eq!(passed, 10, "the genuine frames pass");
    Bound {
        _dir: dir,
        journal,
        ha,
        e,
        mn,
        tunnel,
        now,
        captured,
    }
}

#[test]
fn kill_9_with_maps_intact_adopts_the_binding_and_its_window() {
    let Bound {
        _dir,
        journal,
        mut ha,
        e,
        mut tunnel,
        now,
        captured,
        ..
    } = bound_and_captured();
    drop(e); // kill -9: the maps stay pinned
    let maps = Maps::open(ha.data_plane().pin_dir()).unwrap();
    let mut e = engine(maps, &journal);
    e.restore(now + Duration::from_secs(1)).unwrap();
    assert_eq!(e.core.binding_count(), 1);
    assert_eq!(e.metrics.restored_bindings, 1);
    assert_eq!(e.metrics.reinstalled_bindings, 0);
    assert_eq!(e.metrics.restore_tunnel_lost, 0);

    let (passed, moved) = deliver(&mut ha, &captured);
    assert_eq!(passed, 0, "captured frames accepted again after kill -9");
    assert_eq!(moved.get("drop_replayed"), 10);
    // Forwarding goes on: the node's next frames pass.
    let fresh: Vec<Vec<u8>> = (11..=15).map(|n| tunnel.frame(n)).collect();
    assert_eq!(deliver(&mut ha, &fresh).0, 5);
}

#[test]
fn reboot_drops_a_binding_whose_tunnel_is_gone_and_never_reaccepts_frames() {
    let Bound {
        _dir,
        journal,
        ha,
        e,
        mut mn,
        tunnel,
        now,
        captured,
    } = bound_and_captured();
    let old_spi = tunnel.spi;
    // Reboot: the daemon and the pinned maps are gone, the journal stays.
    drop(e);
    drop(ha);
    let (mut ha, maps) = ha_data_plane();
    let mut e = engine(maps, &journal);
    let later = now + Duration::from_secs(30);
    e.restore(later).unwrap();

    // The attacker replays what they captured before the reboot.
    let (passed, moved) = deliver(&mut ha, &captured);
    assert_eq!(passed, 0, "captured frames accepted again after a reboot");
    assert_eq!(moved.get("drop_unknown_spi"), 10);
    // Nothing of the old binding is left to send under the old key.
    assert_eq!(e.maps.tunnel(old_spi).unwrap(), None);
    assert!(e.maps.list().unwrap().is_empty());
    assert_eq!(e.core.binding_count(), 0);
    assert!(e.journal.load().unwrap().bindings.is_empty());
    assert_eq!(e.metrics.restore_tunnel_lost, 1);
    assert_eq!(e.metrics.reinstalled_bindings, 0);
    assert!(e
        .metrics
        .prometheus()
        .contains("roamgate_ha_restore_tunnel_lost_total 1\n"));

    // The node's next registration gets a new key and SPI, and works.
    let (c, fresh) = register(&mut e, &mut mn, later);
    assert_eq!(c, code::ACCEPTED);
    let mut fresh = fresh.expect("a new tunnel");
    assert_ne!(fresh.spi, old_spi);
    let frames: Vec<Vec<u8>> = (1..=5).map(|n| fresh.frame(n)).collect();
    assert_eq!(deliver(&mut ha, &frames).0, 5);
    assert_eq!(deliver(&mut ha, &captured).0, 0);
}

#[test]
fn a_corrupt_journal_row_is_skipped_and_counted_not_fatal() {
    let Bound {
        _dir,
        journal,
        mut ha,
        e,
        mut mn,
        now,
        ..
    } = bound_and_captured();
    drop(e);
    // Another node's row, broken (a hand edit, a torn migration).
    rusqlite::Connection::open(&journal)
        .unwrap()
        .execute_batch(
            "INSERT INTO bindings VALUES (167837962, 1, 2, 4660, x'00', 1, 600, 0, 99999999999999, 0, NULL);",
        )
        .unwrap();
    let maps = Maps::open(ha.data_plane().pin_dir()).unwrap();
    let mut e = engine(maps, &journal);
    e.restore(now + Duration::from_secs(1))
        .expect("one bad row must not stop the home agent");
    assert_eq!(e.metrics.journal_corrupt_rows, 1);
    assert!(e
        .metrics
        .prometheus()
        .contains("roamgate_ha_journal_corrupt_rows_total 1\n"));
    // The good binding is adopted and serves.
    assert_eq!(e.core.binding_count(), 1);
    assert_eq!(e.metrics.restored_bindings, 1);
    assert_eq!(
        register(&mut e, &mut mn, now + Duration::from_secs(2)).0,
        code::ACCEPTED
    );
}

#[test]
fn bindings_that_expired_while_stopped_go_with_their_tunnels() {
    let Bound {
        _dir,
        journal,
        mut ha,
        e,
        tunnel,
        now,
        captured,
        ..
    } = bound_and_captured();
    drop(e);
    let maps = Maps::open(ha.data_plane().pin_dir()).unwrap();
    let mut e = engine(maps, &journal);
    // The node's lifetime is 300 s.
    e.restore(now + Duration::from_secs(400)).unwrap();
    assert_eq!(e.core.binding_count(), 0);
    assert_eq!(e.core.stats().expired, 1);
    assert!(e.maps.list().unwrap().is_empty());
    assert_eq!(e.maps.tunnel(tunnel.spi).unwrap(), None);
    assert!(e.journal.load().unwrap().bindings.is_empty());
    assert_eq!(deliver(&mut ha, &captured).0, 0);
}
