//! The map-programming API against the real pinned maps and the real XDP
//! program (BPF_PROG_TEST_RUN): what `Maps` installs is what the program
//! uses, the keys it derives are the ones the userspace forwarder derives,
//! and the ordering rules hold. Needs root.

use std::net::Ipv4Addr;

use roamgate::{
    dataplane::maps::{Binding, Expiry, Maps, MapsError, Role, TunnelSpec, VoiceFlow},
    tunnel::core::{Decapsulator, Encapsulator},
};
use roamgate_mip::tunnel_key::{derive_keys, MasterKey};
use roamgate_testkit::{fixture::FixtureRunner, frame::FrameBuilder};

const HA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const COA: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const COA2: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);
const HOME: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 2);
const CN: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const SPI: u32 = 0x1001;

fn master() -> MasterKey {
    MasterKey::new([0x42; 32])
}

fn ha_binding(remote: Ipv4Addr, spi: u32) -> Binding {
    Binding {
        home: HOME,
        role: Role::HomeAgent,
        remote,
        spi,
        expires: Expiry::Never,
    }
}

fn ha_tunnel(spi: u32, mk: &MasterKey) -> TunnelSpec {
    TunnelSpec::new(spi, Role::HomeAgent, HA, HOME, mk)
}

fn to_home() -> Vec<u8> {
    FrameBuilder::new()
        .ipv4(CN, HOME)
        .udp(5000, 6000)
        .payload_len(100)
        .build()
}

/// Encapsulates one frame in XDP and returns the outer IPv4 packet.
fn xdp_encap(runner: &FixtureRunner, frame: &[u8]) -> Vec<u8> {
    let (action, out) = runner.run_frame("encap", frame).unwrap();
    assert!(
        [2, 3, 4].contains(&action),
        "encap returned action {action}"
    );
    assert!(out.len() > 14 + 60, "not encapsulated: {} bytes", out.len());
    out[14..].to_vec()
}

#[test]
fn installed_tunnel_interoperates_with_the_userspace_forwarder() {
    let mut runner = FixtureRunner::new().expect("load data plane (are you root?)");
    let pin = runner.data_plane().pin_dir().to_owned();
    let mut maps = Maps::open(&pin).unwrap();
    maps.install(&ha_binding(COA, SPI), &ha_tunnel(SPI, &master()))
        .unwrap();

    // XDP encapsulates; the userspace care-of end verifies and decapsulates.
    let coa_keys = derive_keys(&master(), SPI, HOME, Role::CareOf);
    let mut dec = Decapsulator::new(SPI, COA, HOME, Role::CareOf, coa_keys.rx);
    let frame = to_home();
    for seq in 1..=3u64 {
        let outer = xdp_encap(&runner, &frame);
        let r = dec
            .decap(&outer)
            .expect("the XDP tunnel packet verifies in userspace");
        let inner = &outer[r];
        assert_eq!(inner.len(), frame.len() - 14);
        assert_eq!(&inner[12..20], &frame[14 + 12..14 + 20], "inner addresses");
        assert_eq!(&inner[20..], &frame[34..], "inner payload");
        assert_eq!(dec.window().top, seq);
    }
    let st = maps.list().unwrap();
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].tx_packets, 3);
    assert!(st[0].tunnel_present);

    // The userspace care-of end encapsulates; XDP verifies and decapsulates.
    let mut enc = Encapsulator::new(SPI, COA, HA, coa_keys.tx, 1500, 1);
    let inner = FrameBuilder::new()
        .ipv4(HOME, CN)
        .udp(6000, 5000)
        .payload_len(77)
        .build_l3();
    let mut buf = vec![0u8; 2048];
    let n = enc.encap(&inner, &mut buf[14..]).unwrap();
    buf[12..14].copy_from_slice(&[0x08, 0x00]);
    let before = runner.data_plane().counters().unwrap();
    let (action, out) = runner.run_frame("decap", &buf[..14 + n]).unwrap();
    let d = runner.data_plane().counters().unwrap().delta(&before);
    assert!([2, 3, 4].contains(&action), "decap action {action}: {d:?}");
    assert_eq!(d.get("tunnel_decap"), 1, "{d:?}");
    assert_eq!(&out[14 + 12..14 + 20], &inner[12..20]);
    assert_eq!(maps.list().unwrap()[0].rx_highest_seq, 1);
    // The same packet again is a replay.
    let before = runner.data_plane().counters().unwrap();
    let (action, _) = runner.run_frame("replay", &buf[..14 + n]).unwrap();
    let d = runner.data_plane().counters().unwrap().delta(&before);
    assert_eq!(action, 1);
    assert_eq!(d.get("drop_replayed"), 1, "{d:?}");
}

#[test]
fn ordering_rekey_handover_and_removal() {
    let mut runner = FixtureRunner::new().expect("load data plane (are you root?)");
    let pin = runner.data_plane().pin_dir().to_owned();
    let mut maps = Maps::open(&pin).unwrap();

    // A binding cannot point at a tunnel that does not exist.
    assert!(matches!(
        maps.set_binding(&ha_binding(COA, SPI)),
        Err(MapsError::NoTunnel { .. })
    ));
    maps.install(&ha_binding(COA, SPI), &ha_tunnel(SPI, &master()))
        .unwrap();
    xdp_encap(&runner, &to_home());
    xdp_encap(&runner, &to_home());

    // Re-installing the same tunnel keeps its sequence counter.
    maps.install(&ha_binding(COA, SPI), &ha_tunnel(SPI, &master()))
        .unwrap();
    assert_eq!(maps.tunnel(SPI).unwrap().unwrap().tx_seq, 2);
    // Other keys under a live SPI are refused: rekey needs a new SPI.
    assert!(matches!(
        maps.install(
            &ha_binding(COA, SPI),
            &ha_tunnel(SPI, &MasterKey::new([7; 32]))
        ),
        Err(MapsError::SpiInUse { spi: SPI })
    ));
    // Its Debug output never shows a key.
    let dbg = format!("{:?}", maps.tunnel(SPI).unwrap().unwrap());
    assert!(dbg.contains("redacted"), "{dbg}");

    // Handover: one binding update; the tunnel and its counter stay.
    maps.update_remote(HOME, Role::HomeAgent, COA2, Expiry::Never)
        .unwrap();
    let outer = xdp_encap(&runner, &to_home());
    assert_eq!(&outer[16..20], &COA2.octets(), "outer destination moved");
    assert_eq!(maps.tunnel(SPI).unwrap().unwrap().tx_seq, 3);

    // Rekey: new SPI installed, binding swapped, old tunnel removed.
    let new_mk = MasterKey::new([9; 32]);
    maps.install(&ha_binding(COA2, SPI + 1), &ha_tunnel(SPI + 1, &new_mk))
        .unwrap();
    assert!(maps.tunnel(SPI).unwrap().is_none(), "old tunnel removed");
    let outer = xdp_encap(&runner, &to_home());
    let n = outer.len();
    assert_eq!(&outer[n - 28..n - 24], &(SPI + 1).to_be_bytes());
    assert_eq!(
        &outer[n - 24..n - 16],
        &1u64.to_be_bytes(),
        "fresh sequence"
    );
    let keys = derive_keys(&new_mk, SPI + 1, HOME, Role::CareOf);
    let mut dec = Decapsulator::new(SPI + 1, COA2, HOME, Role::CareOf, keys.rx);
    dec.decap(&outer).expect("new keys verify");

    // A tunnel in use cannot be removed on its own.
    assert!(matches!(
        maps.remove_tunnel(SPI + 1),
        Err(MapsError::TunnelInUse { .. })
    ));
    // Removal: binding, then tunnel; the frame then passes untouched.
    maps.remove(HOME, Role::HomeAgent).unwrap();
    assert!(maps.list().unwrap().is_empty());
    assert!(maps.tunnel(SPI + 1).unwrap().is_none());
    let (action, out) = runner.run_frame("after removal", &to_home()).unwrap();
    assert_eq!(action, 2);
    assert_eq!(out, to_home());
    // Removing again is not an error.
    maps.remove(HOME, Role::HomeAgent).unwrap();
}

#[test]
fn voice_flows_authorise_and_revoke() {
    let mut runner = FixtureRunner::new().expect("load data plane (are you root?)");
    let pin = runner.data_plane().pin_dir().to_owned();
    let mut maps = Maps::open(&pin).unwrap();
    let a = VoiceFlow {
        src: CN,
        dst: HOME,
        src_port: 5004,
        dst_port: 6004,
        ssrc: 0x1234_5678,
    };
    let b = VoiceFlow {
        ssrc: 0x9abc_def0,
        ..a
    };
    maps.authorise_voice(&a, Expiry::Never).unwrap();
    maps.authorise_voice(&b, Expiry::after(std::time::Duration::from_secs(60)))
        .unwrap();
    assert!(maps.is_voice_port(HOME, 6004).unwrap());
    assert_eq!(maps.voice_flows().unwrap().len(), 2);
    maps.revoke_voice(&a).unwrap();
    assert!(maps.is_voice_port(HOME, 6004).unwrap(), "b still uses it");
    maps.revoke_voice(&b).unwrap();
    assert!(!maps.is_voice_port(HOME, 6004).unwrap());
    assert!(!maps.voice_port_bit(6004).unwrap());
    assert!(maps.voice_flows().unwrap().is_empty());
    maps.revoke_voice(&b).unwrap();
}

/// The data plane's port bitmap follows the voice ports by port number: a
/// port stays marked while any address still uses it as a voice port, and
/// neighbouring ports in the same bitmap word are left alone.
#[test]
fn voice_port_bitmap_follows_the_ports() {
    let mut runner = FixtureRunner::new().expect("load data plane (are you root?)");
    let pin = runner.data_plane().pin_dir().to_owned();
    let mut maps = Maps::open(&pin).unwrap();
    let to_home = VoiceFlow {
        src: CN,
        dst: HOME,
        src_port: 5004,
        dst_port: 6004,
        ssrc: 1,
    };
    let to_cn = VoiceFlow {
        src: HOME,
        dst: CN,
        src_port: 6004,
        dst_port: 6004,
        ssrc: 2,
    };
    let neighbour = VoiceFlow {
        dst_port: 6005,
        ssrc: 3,
        ..to_home
    };
    assert!(!maps.voice_port_bit(6004).unwrap());
    maps.authorise_voice(&to_home, Expiry::Never).unwrap();
    maps.authorise_voice(&to_cn, Expiry::Never).unwrap();
    maps.authorise_voice(&neighbour, Expiry::Never).unwrap();
    assert!(maps.voice_port_bit(6004).unwrap());
    assert!(maps.voice_port_bit(6005).unwrap());
    assert!(!maps.voice_port_bit(6006).unwrap());
    maps.revoke_voice(&to_home).unwrap();
    assert!(!maps.is_voice_port(HOME, 6004).unwrap());
    assert!(maps.is_voice_port(CN, 6004).unwrap());
    assert!(
        maps.voice_port_bit(6004).unwrap(),
        "CN still uses port 6004"
    );
    maps.revoke_voice(&to_cn).unwrap();
    assert!(!maps.voice_port_bit(6004).unwrap());
    assert!(maps.voice_port_bit(6005).unwrap(), "same word, other port");
    maps.revoke_voice(&neighbour).unwrap();
    assert!(!maps.voice_port_bit(6005).unwrap());
}

/// Clears the binding-filter mark of `key` behind the API's back, as if the
/// binding had been pinned by a version without the filter.
fn clear_mark(pin: &std::path::Path, key: &roamgate_common::maps::BindingKey) {
    use aya::maps::{Array, Map, MapData};
    use roamgate_common::maps as m;
    let data = MapData::from_pin(pin.join(m::BINDING_FILTER)).unwrap();
    let mut filter: Array<MapData, u32> = Array::try_from(Map::Array(data)).unwrap();
    filter.set(m::binding_filter_slot(key), 0, 0).unwrap();
}

#[test]
fn the_binding_filter_gates_encapsulation_and_the_loader_restores_it() {
    use roamgate_common::maps::{BindingKey, BINDING_HOME_AGENT};
    let mut runner = FixtureRunner::new().expect("load data plane (are you root?)");
    let pin = runner.data_plane().pin_dir().to_owned();
    let mut maps = Maps::open(&pin).unwrap();
    maps.install(&ha_binding(COA, SPI), &ha_tunnel(SPI, &master()))
        .unwrap();
    let key = BindingKey::new(HOME.octets(), BINDING_HOME_AGENT);
    assert!(
        maps.binding_filter_marked(&key).unwrap(),
        "set_binding marks"
    );
    xdp_encap(&runner, &to_home());

    // Without its mark the binding is not looked up: the frame passes.
    clear_mark(&pin, &key);
    let (action, out) = runner.run_frame("unmarked", &to_home()).unwrap();
    assert_eq!(action, 2, "XDP_PASS without the mark");
    assert_eq!(out, to_home());

    // Loading a data plane on these pins marks the bindings already there.
    let again = roamgate::dataplane::DataPlane::load(&pin).unwrap();
    assert!(
        maps.binding_filter_marked(&key).unwrap(),
        "the loader marks"
    );
    drop(again);
    let outer = xdp_encap(&runner, &to_home());
    assert_eq!(&outer[16..20], &COA.octets(), "encapsulated again");
    assert_eq!(maps.mark_bindings().unwrap(), 1);
}

/// A removed binding leaves no stale mark: the last binding of a filter
/// slot to go clears it (traffic to that address skips the lookups again),
/// while a slot another binding still uses stays marked.
#[test]
fn removing_the_last_binding_of_a_filter_slot_clears_its_mark() {
    use roamgate_common::maps::{binding_filter_slot, BindingKey, BINDING_HOME_AGENT};
    let key_of = |a: Ipv4Addr| BindingKey::new(a.octets(), BINDING_HOME_AGENT);
    // Another home address in HOME's slot (1 in 65,536 addresses is).
    let twin = (0..=u32::MAX)
        .map(|i| Ipv4Addr::from(0x0a00_0000 | (i & 0x00ff_ffff)))
        .find(|a| {
            *a != HOME && binding_filter_slot(&key_of(*a)) == binding_filter_slot(&key_of(HOME))
        })
        .expect("a colliding address in 10/8");
    let mut runner = FixtureRunner::new().expect("load data plane (are you root?)");
    let pin = runner.data_plane().pin_dir().to_owned();
    let mut maps = Maps::open(&pin).unwrap();
    let (spi2, mk) = (SPI + 1, master());
    maps.install(&ha_binding(COA, SPI), &ha_tunnel(SPI, &mk))
        .unwrap();
    let twin_binding = Binding {
        home: twin,
        ..ha_binding(COA2, spi2)
    };
    maps.install(
        &twin_binding,
        &TunnelSpec::new(spi2, Role::HomeAgent, HA, twin, &mk),
    )
    .unwrap();

    maps.remove(HOME, Role::HomeAgent).unwrap();
    assert!(
        maps.binding_filter_marked(&key_of(HOME)).unwrap(),
        "{twin} still uses the slot"
    );
    let to_twin = FrameBuilder::new()
        .ipv4(CN, twin)
        .udp(5000, 6000)
        .payload_len(100)
        .build();
    let outer = xdp_encap(&runner, &to_twin);
    assert_eq!(
        &outer[16..20],
        &COA2.octets(),
        "the twin is still tunnelled"
    );

    maps.remove(twin, Role::HomeAgent).unwrap();
    assert!(
        !maps.binding_filter_marked(&key_of(HOME)).unwrap(),
        "no binding uses the slot: its mark is cleared"
    );
    let (action, out) = runner.run_frame("unbound", &to_home()).unwrap();
    assert_eq!(action, 2, "XDP_PASS");
    assert_eq!(out, to_home());

    // A new handle (a restarted owner) counts the bindings present when it
    // first removes one; remove_many clears like remove.
    maps.install(&ha_binding(COA, SPI), &ha_tunnel(SPI, &mk))
        .unwrap();
    maps.install(
        &twin_binding,
        &TunnelSpec::new(spi2, Role::HomeAgent, HA, twin, &mk),
    )
    .unwrap();
    let mut restarted = Maps::open(&pin).unwrap();
    restarted
        .remove_many(&[(HOME, Role::HomeAgent)], &[])
        .unwrap();
    assert!(restarted.binding_filter_marked(&key_of(twin)).unwrap());
    restarted
        .remove_many(&[(twin, Role::HomeAgent)], &[spi2])
        .unwrap();
    assert!(!restarted.binding_filter_marked(&key_of(twin)).unwrap());
}

/// The inside-interface marks: set, listed, idempotent, removed.
#[test]
fn inside_interfaces_are_marked_and_unmarked() {
    let mut runner = FixtureRunner::new().unwrap();
    let pin = runner.data_plane().pin_dir().to_owned();
    let mut maps = Maps::open(&pin).unwrap();
    assert!(maps.inside_interfaces().unwrap().is_empty());
    maps.mark_inside(7).unwrap();
    maps.mark_inside(3).unwrap();
    maps.mark_inside(7).unwrap();
    assert_eq!(maps.inside_interfaces().unwrap(), vec![3, 7]);
    maps.unmark_inside(7).unwrap();
    maps.unmark_inside(42).unwrap();
    assert_eq!(maps.inside_interfaces().unwrap(), vec![3]);
}

#[test]
fn remove_many_keeps_a_tunnel_another_binding_still_uses() {
    let pin = roamgate_testkit::fixture::TestPinDir::new("remove-many");
    let mut maps =
        Maps::create_pinned(pin.path(), roamgate::dataplane::maps::Capacity::default()).unwrap();
    let other = Ipv4Addr::new(10, 10, 0, 3);
    let mk = master();
    maps.install(&ha_binding(COA, SPI), &ha_tunnel(SPI, &mk))
        .unwrap();
    // Another home address shares the tunnel (as the care-of side may).
    maps.set_binding(&Binding {
        home: other,
        ..ha_binding(COA, SPI)
    })
    .unwrap();
    maps.install_tunnel(&ha_tunnel(SPI + 1, &mk)).unwrap();
    maps.remove_many(&[(HOME, Role::HomeAgent)], &[SPI + 1, SPI + 2])
        .unwrap();
    let left: Vec<Ipv4Addr> = maps
        .list()
        .unwrap()
        .iter()
        .map(|s| s.binding.home)
        .collect();
    assert_eq!(left, vec![other]);
    assert!(maps.tunnel(SPI).unwrap().is_some(), "still in use");
    assert!(maps.tunnel(SPI + 1).unwrap().is_none(), "unused: removed");
    maps.remove_many(&[(other, Role::HomeAgent)], &[]).unwrap();
    assert!(maps.list().unwrap().is_empty());
    assert_eq!(maps.tunnel_count(), 0);
}
