//! Byte-exact fixtures for the XDP data plane (issue 3): encapsulation,
//! decapsulation, every drop reason, the replay window edges, the voice path
//! and foreign traffic, each a table row run through BPF_PROG_TEST_RUN.
//!
//! Expected frames never come from the program: inner packets are built by
//! `FrameBuilder` with the forwarded TTL / DSCP written directly, and tunnel
//! packets by the host build of `roamgate_common::wire::tunnel::emit`, whose
//! MAC is tested against the SipHash reference vectors.
//!
//! Each test runs in its own network namespace (`unshare(CLONE_NEWNET)` on
//! the test thread), where TestRun's loopback has forwarding off, so
//! `bpf_fib_lookup` answers "forwarding disabled" and forwarded packets come
//! back as XDP_PASS, deterministically, whatever the host's routes are.
//! `fib_redirect_*` builds a veth and a static neighbour in that namespace to
//! see the XDP_REDIRECT path with rewritten MACs. Needs root.
//!
//! With `ROAMGATE_FIXTURE_PROGRAM=reference` (a second pass in `cargo xtask
//! test`), every tunnel-data row runs against the C reference of the
//! receiving end instead (ebpf/reference/decap_verify.c), with the same
//! expected frames, actions and counters: the proof that the bench compares
//! like with like.

use std::{net::Ipv4Addr, process::Command};

use aya::maps::{Array, HashMap};
use roamgate_common::{
    maps::{
        voice_port_bit, BindingKey, BindingValue, TunnelKey, TunnelValue, VoiceFlowKey,
        VoiceFlowValue, VoicePortKey, BINDINGS, BINDING_CARE_OF, BINDING_HOME_AGENT, NEVER_EXPIRES,
        ROLE_CARE_OF, ROLE_HOME_AGENT, TUNNELS, VOICE_FLOWS, VOICE_PORTS, VOICE_PORT_BITS,
    },
    replay::WINDOW,
    siphash::Key,
    wire::{
        ipv4::{checksum, PROTO_UDP},
        tunnel::{emit, EncapRepr, MIP_PORT, OVERHEAD},
    },
};
use roamgate_testkit::{
    fixture::{self, Fixture, FixtureRunner, XdpAction},
    frame::{FrameBuilder, MAC_A, MAC_B},
};

// The world: a correspondent, a unit's home address, its home agent and its
// care-of address.
const CORR: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const HOME: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const HA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const COA: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 99);

/// Tunnel as the home agent sees it (encap HA→MN, decap MN→HA).
const SPI_HA: [u8; 4] = [0, 0, 0x10, 0x01];
/// Tunnel as the care-of side sees it (encap MN→HA, decap HA→MN).
const SPI_COA: [u8; 4] = [0, 0, 0x20, 0x02];
/// A binding whose tunnel does not exist.
const SPI_MISSING: [u8; 4] = [0, 0, 0x30, 0x03];
/// A tunnel that has expired.
const SPI_EXPIRED: [u8; 4] = [0, 0, 0x40, 0x04];
/// A tunnel with a small MTU.
const SPI_SMALL_MTU: [u8; 4] = [0, 0, 0x50, 0x05];

const KEY_HA2MN: Key = *b"ha->mn key 16 B!";
const KEY_MN2HA: Key = *b"mn->ha key 16 B!";

const VOICE_PORT: u16 = 16384;
const CORR_RTP_PORT: u16 = 20000;
const SSRC: u32 = 0x1234_5678;

fn o(a: Ipv4Addr) -> [u8; 4] {
    a.octets()
}

/// Runs the calling test thread in a fresh network namespace.
fn private_netns() {
    // SAFETY: plain syscall; affects only this thread.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "unshare(CLONE_NEWNET): are you root?");
}

fn tunnel(
    local: Ipv4Addr,
    role: u8,
    key_tx: Key,
    key_rx: Key,
    mtu: u16,
    expires: u64,
) -> TunnelValue {
    TunnelValue {
        key_tx,
        key_rx,
        local: o(local),
        home: o(HOME),
        src_port: MIP_PORT.to_be_bytes(),
        dst_port: MIP_PORT.to_be_bytes(),
        mtu,
        role,
        pad: 0,
        expires_ns: expires,
        tx_seq: 0,
        rx: Default::default(),
    }
}

/// Marks the bindings inserted raw above in the binding filter, which the
/// program checks before each binding lookup (`Maps::set_binding` does it
/// for the control plane).
fn mark_bindings(r: &mut FixtureRunner) {
    let pin = r.data_plane().pin_dir().to_owned();
    roamgate::dataplane::maps::Maps::open(&pin)
        .and_then(|mut m| m.mark_bindings())
        .expect("marking the fixture bindings");
}

/// One runner with both ends' state installed: the HA side (binding on the
/// home address, tunnel SPI_HA) and the care-of side (reverse binding, tunnel
/// SPI_COA), plus broken entries for the drop fixtures.
fn runner() -> FixtureRunner {
    private_netns();
    let mut r = FixtureRunner::new().expect("load data plane (are you root?)");
    let ebpf = r.data_plane().ebpf_mut();
    {
        let mut b: HashMap<_, BindingKey, BindingValue> =
            HashMap::try_from(ebpf.map_mut(BINDINGS).unwrap()).unwrap();
        let bind = |remote: Ipv4Addr, spi, exp| BindingValue {
            remote: o(remote),
            spi,
            expires_ns: exp,
        };
        b.insert(
            BindingKey::new(o(HOME), BINDING_HOME_AGENT),
            bind(COA, SPI_HA, NEVER_EXPIRES),
            0,
        )
        .unwrap();
        b.insert(
            BindingKey::new(o(HOME), BINDING_CARE_OF),
            bind(HA, SPI_COA, NEVER_EXPIRES),
            0,
        )
        .unwrap();
        // Expired binding, binding to a missing tunnel, expired tunnel,
        // small MTU: other home addresses.
        b.insert(
            BindingKey::new([10, 1, 0, 2], BINDING_HOME_AGENT),
            bind(COA, SPI_HA, 1),
            0,
        )
        .unwrap();
        b.insert(
            BindingKey::new([10, 1, 0, 3], BINDING_HOME_AGENT),
            bind(COA, SPI_MISSING, NEVER_EXPIRES),
            0,
        )
        .unwrap();
        b.insert(
            BindingKey::new([10, 1, 0, 4], BINDING_HOME_AGENT),
            bind(COA, SPI_EXPIRED, NEVER_EXPIRES),
            0,
        )
        .unwrap();
        b.insert(
            BindingKey::new([10, 1, 0, 5], BINDING_HOME_AGENT),
            bind(COA, SPI_SMALL_MTU, NEVER_EXPIRES),
            0,
        )
        .unwrap();
    }
    {
        let mut t: HashMap<_, TunnelKey, TunnelValue> =
            HashMap::try_from(ebpf.map_mut(TUNNELS).unwrap()).unwrap();
        t.insert(
            TunnelKey { spi: SPI_HA },
            tunnel(
                HA,
                ROLE_HOME_AGENT,
                KEY_HA2MN,
                KEY_MN2HA,
                1500,
                NEVER_EXPIRES,
            ),
            0,
        )
        .unwrap();
        t.insert(
            TunnelKey { spi: SPI_COA },
            tunnel(COA, ROLE_CARE_OF, KEY_MN2HA, KEY_HA2MN, 1500, NEVER_EXPIRES),
            0,
        )
        .unwrap();
        t.insert(
            TunnelKey { spi: SPI_EXPIRED },
            tunnel(HA, ROLE_HOME_AGENT, KEY_HA2MN, KEY_MN2HA, 1500, 1),
            0,
        )
        .unwrap();
        t.insert(
            TunnelKey { spi: SPI_SMALL_MTU },
            tunnel(
                HA,
                ROLE_HOME_AGENT,
                KEY_HA2MN,
                KEY_MN2HA,
                200,
                NEVER_EXPIRES,
            ),
            0,
        )
        .unwrap();
    }
    {
        let mut bits: Array<_, u64> =
            Array::try_from(ebpf.map_mut(VOICE_PORT_BITS).unwrap()).unwrap();
        for port in [VOICE_PORT, CORR_RTP_PORT] {
            let (word, bit) = voice_port_bit(port);
            let w = bits.get(&word, 0).unwrap();
            bits.set(word, w | bit, 0).unwrap();
        }
    }
    {
        let mut p: HashMap<_, VoicePortKey, u32> =
            HashMap::try_from(ebpf.map_mut(VOICE_PORTS).unwrap()).unwrap();
        // The unit's RTP port (correspondent → unit) and the correspondent's
        // (unit → correspondent).
        for (addr, port) in [(HOME, VOICE_PORT), (CORR, CORR_RTP_PORT)] {
            p.insert(
                VoicePortKey {
                    addr: o(addr),
                    port: port.to_be_bytes(),
                    pad: [0; 2],
                },
                0,
                0,
            )
            .unwrap();
        }
        let mut f: HashMap<_, VoiceFlowKey, VoiceFlowValue> =
            HashMap::try_from(ebpf.map_mut(VOICE_FLOWS).unwrap()).unwrap();
        for (src, sport, dst, dport) in [
            (CORR, CORR_RTP_PORT, HOME, VOICE_PORT),
            (HOME, VOICE_PORT, CORR, CORR_RTP_PORT),
        ] {
            let key = VoiceFlowKey {
                src: o(src),
                dst: o(dst),
                src_port: sport.to_be_bytes(),
                dst_port: dport.to_be_bytes(),
                proto: PROTO_UDP,
                pad: [0; 3],
                ssrc: SSRC.to_be_bytes(),
            };
            f.insert(
                key,
                VoiceFlowValue {
                    expires_ns: NEVER_EXPIRES,
                    window: Default::default(),
                },
                0,
            )
            .unwrap();
        }
    }
    mark_bindings(&mut r);
    mark_inside(&mut r, LOOPBACK);
    r
}

/// Loopback's ifindex: where TestRun frames arrive unless a fixture names
/// another interface. `runner` marks it as the care-of node's inside, so
/// the rows that reverse-tunnel the unit's packets see them come from there.
const LOOPBACK: u32 = 1;

/// Marks interface `ifindex` (of the test's namespace) as the care-of
/// node's inside, as the mobile node does for its inside interfaces.
fn mark_inside(r: &mut FixtureRunner, ifindex: u32) {
    let pin = r.data_plane().pin_dir().to_owned();
    roamgate::dataplane::maps::Maps::open(&pin)
        .and_then(|mut m| m.mark_inside(ifindex))
        .expect("marking an inside interface");
}

/// The ifindex of `name` in the test's namespace.
fn ifindex(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: a valid NUL-terminated name.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    assert_ne!(i, 0, "no interface {name}");
    i
}

/// Ethernet (MAC_A → MAC_B, IPv4) in front of an IPv4 packet.
fn eth(l3: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + l3.len());
    f.extend_from_slice(&MAC_B);
    f.extend_from_slice(&MAC_A);
    f.extend_from_slice(&[0x08, 0x00]);
    f.extend_from_slice(l3);
    f
}

/// An ICMP echo between two addresses, TTL `ttl`, as an IPv4 packet.
fn icmp(src: Ipv4Addr, dst: Ipv4Addr, ttl: u8, len: usize) -> Vec<u8> {
    FrameBuilder::new()
        .ipv4(src, dst)
        .ttl(ttl)
        .icmp_echo(7, 1)
        .payload_len(len)
        .build_l3()
}

/// The tunnel packet (as an Ethernet frame) the host implementation builds.
fn tunnel_frame(
    src: Ipv4Addr,
    dst: Ipv4Addr,
    spi: [u8; 4],
    seq: u64,
    key: &Key,
    inner: &[u8],
) -> Vec<u8> {
    let repr = EncapRepr {
        src: o(src),
        dst: o(dst),
        src_port: MIP_PORT,
        dst_port: MIP_PORT,
        spi,
        seq,
    };
    let mut buf = vec![0u8; inner.len() + OVERHEAD];
    let n = emit(&repr, key, inner, &mut buf).expect("emit");
    buf.truncate(n);
    eth(&buf)
}

/// HA → care-of tunnel packet carrying `inner`.
fn from_ha(seq: u64, inner: &[u8]) -> Vec<u8> {
    tunnel_frame(HA, COA, SPI_COA, seq, &KEY_HA2MN, inner)
}

/// Care-of → HA tunnel packet carrying `inner`.
fn from_coa(seq: u64, inner: &[u8]) -> Vec<u8> {
    tunnel_frame(COA, HA, SPI_HA, seq, &KEY_MN2HA, inner)
}

/// Recomputes the outer IPv4 checksum of a frame after a test edits it.
fn fix_outer_checksum(f: &mut [u8]) {
    f[24] = 0;
    f[25] = 0;
    let c = checksum(&f[14..34]);
    f[24..26].copy_from_slice(&c.to_be_bytes());
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&160u32.wrapping_mul(seq as u32).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160).map(|i| (i as u8) ^ 0x55));
    p
}

fn voice(
    src: Ipv4Addr,
    sport: u16,
    dst: Ipv4Addr,
    dport: u16,
    tos: u8,
    ttl: u8,
    payload: &[u8],
) -> Vec<u8> {
    FrameBuilder::new()
        .ipv4(src, dst)
        .tos(tos)
        .ttl(ttl)
        .udp(sport, dport)
        .payload(payload)
        .build_l3()
}

fn run(r: &FixtureRunner, rows: &[Fixture]) {
    r.run_all(rows).unwrap_or_else(|e| panic!("{e}"));
}

fn pass_fwd(name: &str, input: Vec<u8>, output: Vec<u8>) -> Fixture {
    Fixture::new(name, input, XdpAction::Pass)
        .output(output)
        .counter("fib_pass", 1)
        .counter("action_pass", 1)
        .counter("action_drop", 0)
}

fn drop(name: &str, input: Vec<u8>, counter: &'static str) -> Fixture {
    Fixture::new(name, input, XdpAction::Drop)
        .counter(counter, 1)
        .counter("action_drop", 1)
        .counter("tunnel_decap", 0)
        .counter("tunnel_encap", 0)
}

#[test]
fn home_agent_encapsulates_towards_the_care_of_address() {
    let r = runner();
    let inner_in = icmp(CORR, HOME, 64, 56);
    let inner_out = icmp(CORR, HOME, 63, 56);
    run(
        &r,
        &[
            pass_fwd(
                "encap seq 1",
                eth(&inner_in),
                tunnel_frame(HA, COA, SPI_HA, 1, &KEY_HA2MN, &inner_out),
            )
            .counter("tunnel_encap", 1),
            pass_fwd(
                "encap seq 2",
                eth(&inner_in),
                tunnel_frame(HA, COA, SPI_HA, 2, &KEY_HA2MN, &inner_out),
            )
            .counter("tunnel_encap", 1),
        ],
    );
    // Sizes up to the tunnel MTU: 1440 inner + 60 = 1500.
    let mut rows = Vec::new();
    for (i, len) in [0usize, 1, 7, 8, 100, 1412].into_iter().enumerate() {
        let inner_in = icmp(CORR, HOME, 64, len);
        let inner_out = icmp(CORR, HOME, 63, len);
        rows.push(
            pass_fwd(
                &format!("encap icmp payload {len}"),
                eth(&inner_in),
                tunnel_frame(HA, COA, SPI_HA, 3 + i as u64, &KEY_HA2MN, &inner_out),
            )
            .counter("tunnel_encap", 1),
        );
    }
    run(&r, &rows);
}

#[test]
fn encap_strips_link_padding_and_keeps_tos() {
    let r = runner();
    let inner_in = FrameBuilder::new()
        .ipv4(CORR, HOME)
        .tos(0x22)
        .udp(1000, 2000)
        .payload_len(4)
        .build_l3();
    let inner_out = FrameBuilder::new()
        .ipv4(CORR, HOME)
        .tos(0x22)
        .ttl(63)
        .udp(1000, 2000)
        .payload_len(4)
        .build_l3();
    let mut input = eth(&inner_in);
    input.resize(60, 0); // Ethernet minimum frame, zero padded
    let expected = tunnel_frame(HA, COA, SPI_HA, 1, &KEY_HA2MN, &inner_out);
    assert_eq!(expected[15], 0x22, "outer TOS copied from the inner header");
    run(
        &r,
        &[pass_fwd("padded small udp", input, expected).counter("tunnel_encap", 1)],
    );
}

#[test]
fn care_of_side_reverse_tunnels_to_the_home_agent() {
    let r = runner();
    run(
        &r,
        &[pass_fwd(
            "reverse encap",
            eth(&icmp(HOME, CORR, 64, 56)),
            tunnel_frame(COA, HA, SPI_COA, 1, &KEY_MN2HA, &icmp(HOME, CORR, 63, 56)),
        )
        .counter("tunnel_encap", 1)],
    );
}

#[test]
fn care_of_side_decapsulates_and_forwards_the_inner_packet() {
    let r = runner();
    let mut rows = Vec::new();
    for (i, len) in [0usize, 1, 7, 8, 100, 1412].into_iter().enumerate() {
        rows.push(
            pass_fwd(
                &format!("decap icmp payload {len}"),
                from_ha(1 + i as u64, &icmp(CORR, HOME, 64, len)),
                eth(&icmp(CORR, HOME, 63, len)),
            )
            .counter("tunnel_decap", 1),
        );
    }
    // Link padding behind the tunnel packet is removed with the trailer.
    let mut padded = from_ha(100, &icmp(CORR, HOME, 64, 0));
    padded.extend_from_slice(&[0u8; 6]);
    rows.push(
        pass_fwd("decap with padding", padded, eth(&icmp(CORR, HOME, 63, 0)))
            .counter("tunnel_decap", 1),
    );
    // Fields outside the MAC may change in transit.
    let mut remarked = from_ha(101, &icmp(CORR, HOME, 64, 20));
    remarked[14 + 1] = 0x28; // outer TOS
    remarked[14 + 8] = 3; // outer TTL
    remarked[34] = 0x9c; // UDP source port (NAT)
    fix_outer_checksum(&mut remarked);
    rows.push(
        pass_fwd(
            "decap after transit changes",
            remarked,
            eth(&icmp(CORR, HOME, 63, 20)),
        )
        .counter("tunnel_decap", 1),
    );
    run(&r, &rows);
}

#[test]
fn home_agent_decapsulates_reverse_tunnel_traffic() {
    let r = runner();
    run(
        &r,
        &[
            pass_fwd(
                "decap at the HA",
                from_coa(1, &icmp(HOME, CORR, 64, 56)),
                eth(&icmp(HOME, CORR, 63, 56)),
            )
            .counter("tunnel_decap", 1),
            drop(
                "inner source is not the home address",
                from_coa(2, &icmp(OTHER, CORR, 64, 56)),
                "drop_spoofed",
            ),
        ],
    );
}

#[test]
fn home_agent_sends_a_units_packet_for_a_bound_home_address_back_into_the_tunnel() {
    if fixture::is_reference() {
        eprintln!("reference pass: skipped, re-encapsulation is not the C reference's work");
        return;
    }
    // Two units of one home agent calling each other: what comes out of
    // one's reverse tunnel for a bound home address goes straight into
    // that address's tunnel (here the same unit's, the one bound in the
    // runner), each hop taking one from the TTL.
    let r = runner();
    run(
        &r,
        &[Fixture::new(
            "decap then encap at the HA",
            from_coa(1, &icmp(HOME, HOME, 64, 56)),
            XdpAction::Pass,
        )
        .output(tunnel_frame(
            HA,
            COA,
            SPI_HA,
            1,
            &KEY_HA2MN,
            &icmp(HOME, HOME, 62, 56),
        ))
        .counter("tunnel_decap", 1)
        .counter("tunnel_encap", 1)
        .counter("action_pass", 1)
        .counter("action_drop", 0)],
    );
}

#[test]
fn xdp_to_xdp_round_trip() {
    // Two gateways, each with its own maps: the home agent (SPI_HA as in
    // `runner`) and a care-of gateway whose entry for the same SPI holds the
    // same keys with the roles swapped. What one sends, the other accepts.
    if fixture::is_reference() {
        eprintln!("reference pass: skipped, encapsulation is not the C reference's work");
        return;
    }
    let ha = runner();
    let mut coa = runner();
    {
        let mut t: HashMap<_, TunnelKey, TunnelValue> =
            HashMap::try_from(coa.data_plane().ebpf_mut().map_mut(TUNNELS).unwrap()).unwrap();
        t.insert(
            TunnelKey { spi: SPI_HA },
            tunnel(COA, ROLE_CARE_OF, KEY_MN2HA, KEY_HA2MN, 1500, NEVER_EXPIRES),
            0,
        )
        .unwrap();
        let mut b: HashMap<_, BindingKey, BindingValue> =
            HashMap::try_from(coa.data_plane().ebpf_mut().map_mut(BINDINGS).unwrap()).unwrap();
        b.insert(
            BindingKey::new(o(HOME), BINDING_CARE_OF),
            BindingValue {
                remote: o(HA),
                spi: SPI_HA,
                expires_ns: NEVER_EXPIRES,
            },
            0,
        )
        .unwrap();
    }
    mark_bindings(&mut coa);
    for len in [0usize, 61, 300, 1412] {
        let (act, down) = ha
            .run_frame("ha encap", &eth(&icmp(CORR, HOME, 64, len)))
            .unwrap();
        assert_eq!(act, XdpAction::Pass as u32);
        let (act, delivered) = coa.run_frame("coa decap", &down).unwrap();
        assert_eq!(
            act,
            XdpAction::Pass as u32,
            "care-of side refused the HA's packet"
        );
        assert_eq!(delivered, eth(&icmp(CORR, HOME, 62, len)));

        let (act, up) = coa
            .run_frame("coa encap", &eth(&icmp(HOME, CORR, 64, len)))
            .unwrap();
        assert_eq!(act, XdpAction::Pass as u32);
        let (act, delivered) = ha.run_frame("ha decap", &up).unwrap();
        assert_eq!(
            act,
            XdpAction::Pass as u32,
            "HA refused the care-of side's packet"
        );
        assert_eq!(delivered, eth(&icmp(HOME, CORR, 62, len)));
    }
    // The host parser agrees with what the XDP program sent.
    let (_, down) = ha
        .run_frame("ha encap", &eth(&icmp(CORR, HOME, 64, 10)))
        .unwrap();
    let t = roamgate_common::wire::tunnel::parse(&down[14..]).expect("parse");
    assert_eq!(t.verify(&KEY_HA2MN), Ok(()));
    assert_eq!(t.repr.seq, 5);
}

#[test]
fn every_drop_reason_is_counted() {
    let r = runner();
    let inner = icmp(CORR, HOME, 64, 56);
    let good = from_ha(1, &inner);

    let mut reserved = good.clone();
    reserved[14 + 20 + 8 + 3] = 1;
    let mut udp_len = good.clone();
    udp_len[14 + 20 + 5] -= 1;
    let mut inner_len = good.clone();
    inner_len[14 + 32 + 3] -= 4;
    let mut tiny = good.clone();
    tiny[14 + 3] = 40; // outer total length below any tunnel packet
    fix_outer_checksum(&mut tiny);
    let mut truncated = good.clone();
    truncated.truncate(good.len() - 10);
    let mut fragmented = good.clone();
    fragmented[14 + 6] = 0x20; // MF
    fix_outer_checksum(&mut fragmented);
    let unknown_spi = tunnel_frame(HA, COA, [9, 9, 9, 9], 1, &KEY_HA2MN, &inner);
    let mut bad_mac = good.clone();
    bad_mac[14 + 32 + 30] ^= 0x40; // one bit of the inner payload
    let wrong_key = tunnel_frame(HA, COA, SPI_COA, 1, &KEY_MN2HA, &inner);
    let mut other_src = tunnel_frame(HA, COA, SPI_COA, 1, &KEY_HA2MN, &inner);
    other_src[14 + 15] = 77; // outer source address (covered by the MAC)
    fix_outer_checksum(&mut other_src);
    let expired_tunnel = tunnel_frame(HA, COA, SPI_EXPIRED, 1, &KEY_MN2HA, &inner);
    let big_inner = icmp(CORR, HOME, 64, 200);
    let over_mtu_rx = tunnel_frame(COA, HA, SPI_SMALL_MTU, 1, &KEY_MN2HA, &big_inner);
    let huge = icmp(CORR, HOME, 64, 2100);

    run(
        &r,
        &[
            drop("reserved bits set", reserved, "drop_malformed"),
            drop("udp length mismatch", udp_len, "drop_malformed"),
            drop("inner length mismatch", inner_len, "drop_malformed"),
            drop(
                "outer too small for a tunnel packet",
                tiny,
                "drop_malformed",
            ),
            drop("truncated", truncated, "drop_truncated"),
            drop("outer first fragment", fragmented, "drop_fragmented"),
            drop("unknown spi", unknown_spi, "drop_unknown_spi"),
            drop("flipped inner bit", bad_mac, "drop_bad_mac"),
            drop("other direction's key", wrong_key, "drop_bad_mac"),
            drop("outer source changed", other_src, "drop_bad_mac"),
            drop("expired tunnel", expired_tunnel, "drop_expired"),
            drop("over the tunnel mtu (rx)", over_mtu_rx, "drop_over_mtu"),
            drop(
                "expired binding",
                eth(&icmp(CORR, [10, 1, 0, 2].into(), 64, 56)),
                "drop_expired",
            ),
            drop(
                "binding without tunnel",
                eth(&icmp(CORR, [10, 1, 0, 3].into(), 64, 56)),
                "drop_no_tunnel",
            ),
            drop(
                "binding to expired tunnel",
                eth(&icmp(CORR, [10, 1, 0, 4].into(), 64, 56)),
                "drop_expired",
            ),
            drop(
                "over the tunnel mtu (tx)",
                eth(&icmp(CORR, [10, 1, 0, 5].into(), 64, 200)),
                "drop_over_mtu",
            ),
            drop(
                "over the program's inner limit",
                eth(&huge),
                "drop_over_mtu",
            ),
            drop("encap ttl 1", eth(&icmp(CORR, HOME, 1, 56)), "drop_ttl"),
            drop("encap ttl 0", eth(&icmp(CORR, HOME, 0, 56)), "drop_ttl"),
            drop(
                "decap inner ttl 1",
                from_ha(2, &icmp(CORR, HOME, 1, 56)),
                "drop_ttl",
            ),
            drop(
                "decap inner not for the unit",
                from_ha(3, &icmp(CORR, OTHER, 64, 56)),
                "drop_spoofed",
            ),
            // The good packet still passes after all that: nothing above
            // moved the window.
            pass_fwd(
                "good packet after the drops",
                good.clone(),
                eth(&icmp(CORR, HOME, 63, 56)),
            )
            .counter("tunnel_decap", 1),
            drop("the same packet again", good, "drop_replayed"),
        ],
    );
}

#[test]
fn replay_window_edges() {
    let r = runner();
    let inner = icmp(CORR, HOME, 64, 40);
    let out = eth(&icmp(CORR, HOME, 63, 40));
    let ok = |name: &str, seq: u64| {
        pass_fwd(name, from_ha(seq, &inner), out.clone()).counter("tunnel_decap", 1)
    };
    let top = 1000;
    run(
        &r,
        &[
            drop(
                "sequence 0 is never valid",
                from_ha(0, &inner),
                "drop_too_old",
            ),
            ok("first packet", top),
            drop(
                "duplicate of the top",
                from_ha(top, &inner),
                "drop_replayed",
            ),
            ok("oldest inside the window", top - WINDOW + 1),
            drop(
                "just behind the window",
                from_ha(top - WINDOW, &inner),
                "drop_too_old",
            ),
            drop(
                "duplicate at the window's edge",
                from_ha(top - WINDOW + 1, &inner),
                "drop_replayed",
            ),
            ok("reordered inside the window", top - 5),
            drop(
                "duplicate of the reordered one",
                from_ha(top - 5, &inner),
                "drop_replayed",
            ),
            ok("window advance by one block", top + 64),
            ok("late but still inside after the advance", top - 100),
            drop(
                "fell out of the window after the advance",
                from_ha(top - WINDOW + 64, &inner),
                "drop_too_old",
            ),
            ok("big jump", top + 10_000),
            drop(
                "old top now too old",
                from_ha(top + 64, &inner),
                "drop_too_old",
            ),
            ok("fresh bit in a reused block", top + 10_000 - 64),
            drop(
                "and only once",
                from_ha(top + 10_000 - 64, &inner),
                "drop_replayed",
            ),
        ],
    );
}

#[test]
fn voice_fast_path() {
    let r = runner();
    let v = |seq: u16, ssrc: u32, tos: u8, ttl: u8| {
        voice(
            CORR,
            CORR_RTP_PORT,
            HOME,
            VOICE_PORT,
            tos,
            ttl,
            &rtp(seq, ssrc),
        )
    };
    let rtcp = {
        let mut p = vec![0x80, 201, 0x00, 0x01];
        p.extend_from_slice(&SSRC.to_be_bytes());
        p.extend_from_slice(&[0u8; 14]); // SRTCP index and tag stand-in
        p
    };
    let rtcp_pkt = |tos: u8, ttl: u8| voice(CORR, CORR_RTP_PORT, HOME, VOICE_PORT, tos, ttl, &rtcp);
    let not_rtp = voice(CORR, CORR_RTP_PORT, HOME, VOICE_PORT, 0, 64, &[0x45; 40]);
    let other_port = voice(
        CORR,
        CORR_RTP_PORT,
        HOME,
        VOICE_PORT + 2,
        0,
        64,
        &rtp(1, 0xdead),
    );
    let voice_fragment = FrameBuilder::new()
        .ipv4(CORR, HOME)
        .frag_off(0x2000)
        .udp(CORR_RTP_PORT, VOICE_PORT)
        .payload(&rtp(5, SSRC))
        .build_l3();
    // ECT(0) on input: the EF marking keeps the ECN bits.
    let ef = |name: &str, input: Vec<u8>, output: Vec<u8>| {
        pass_fwd(name, input, output)
            .counter("voice_forwarded", 1)
            .counter("tunnel_encap", 1)
    };
    let enc = |seq: u64, inner: &[u8]| tunnel_frame(HA, COA, SPI_HA, seq, &KEY_HA2MN, inner);
    run(
        &r,
        &[
            ef(
                "rtp from the correspondent is marked EF",
                eth(&v(10, SSRC, 0x02, 64)),
                enc(1, &v(10, SSRC, 0xba, 63)),
            ),
            ef(
                "next rtp",
                eth(&v(11, SSRC, 0, 64)),
                enc(2, &v(11, SSRC, 0xb8, 63)),
            ),
            ef(
                "reordered rtp",
                eth(&v(9, SSRC, 0, 64)),
                enc(3, &v(9, SSRC, 0xb8, 63)),
            ),
            // Unauthenticated: only the receiver that can authenticate the
            // stream keeps its window (docs/wire.md §7).
            ef(
                "duplicated rtp is not judged before the tunnel",
                eth(&v(10, SSRC, 0, 64)),
                enc(4, &v(10, SSRC, 0xb8, 63)),
            ),
            drop(
                "unknown ssrc",
                eth(&v(12, 0xbad, 0, 64)),
                "drop_voice_unauthorised",
            ),
            drop(
                "not rtp on a voice port",
                eth(&not_rtp),
                "drop_voice_unauthorised",
            ),
            drop(
                "first fragment to a voice port",
                eth(&voice_fragment),
                "drop_voice_unauthorised",
            ),
            ef(
                "rtcp from an authorised ssrc",
                eth(&rtcp_pkt(0, 64)),
                enc(5, &rtcp_pkt(0xb8, 63)),
            ),
            ef(
                "rtcp is not sequence checked",
                eth(&rtcp_pkt(0, 64)),
                enc(6, &rtcp_pkt(0xb8, 63)),
            ),
            pass_fwd(
                "udp to another port is not voice",
                eth(&other_port),
                enc(
                    7,
                    &voice(
                        CORR,
                        CORR_RTP_PORT,
                        HOME,
                        VOICE_PORT + 2,
                        0,
                        63,
                        &rtp(1, 0xdead),
                    ),
                ),
            )
            .counter("voice_forwarded", 0)
            .counter("tunnel_encap", 1),
        ],
    );
    // Voice coming out of the tunnel on the care-of side (unit → its own
    // RTP port is the HA direction; here the HA → unit direction).
    let r2 = runner();
    run(
        &r2,
        &[
            pass_fwd(
                "decapsulated rtp is marked EF",
                from_ha(1, &v(500, SSRC, 0, 64)),
                eth(&v(500, SSRC, 0xb8, 63)),
            )
            .counter("voice_forwarded", 1)
            .counter("tunnel_decap", 1),
            // The home agent tunnels the correspondent's packets without
            // authenticating them, so this side keeps no window either.
            pass_fwd(
                "decapsulated rtp from the correspondent, repeated",
                from_ha(2, &v(500, SSRC, 0, 64)),
                eth(&v(500, SSRC, 0xb8, 63)),
            )
            .counter("voice_forwarded", 1)
            .counter("tunnel_decap", 1),
            drop(
                "decapsulated rtp with an unknown ssrc",
                from_ha(3, &v(501, 0x0bad, 0, 64)),
                "drop_voice_unauthorised",
            ),
        ],
    );
    // The unit's voice out of the tunnel at the home agent: the tunnel MAC
    // proves the unit sent it, so here the window holds.
    let up = |seq: u16| {
        voice(
            HOME,
            VOICE_PORT,
            CORR,
            CORR_RTP_PORT,
            0,
            64,
            &rtp(seq, SSRC),
        )
    };
    let up_out = |seq: u16| {
        voice(
            HOME,
            VOICE_PORT,
            CORR,
            CORR_RTP_PORT,
            0xb8,
            63,
            &rtp(seq, SSRC),
        )
    };
    run(
        &r2,
        &[
            pass_fwd(
                "unit's rtp at the home agent",
                from_coa(1, &up(7)),
                eth(&up_out(7)),
            )
            .counter("voice_forwarded", 1)
            .counter("tunnel_decap", 1),
            drop(
                "unit's rtp replayed under a new tunnel seq",
                from_coa(2, &up(7)),
                "drop_voice_replayed",
            ),
        ],
    );
}

/// Finding 3 of issue 16: one spoofed RTP packet with the flow's 5-tuple and
/// SSRC and a sequence number 30 000 ahead must not make the real call's
/// next packets look replayed, neither where the home agent takes the
/// correspondent's plain RTP into the tunnel nor where the care-of side
/// takes it out (the home agent's MAC vouches for the tunnel hop only).
#[test]
fn spoofed_rtp_does_not_move_the_voice_window() {
    let r = runner();
    let v = |seq: u16, tos: u8, ttl: u8| {
        voice(
            CORR,
            CORR_RTP_PORT,
            HOME,
            VOICE_PORT,
            tos,
            ttl,
            &rtp(seq, SSRC),
        )
    };
    let enc = |seq: u64, inner: &[u8]| tunnel_frame(HA, COA, SPI_HA, seq, &KEY_HA2MN, inner);
    let ef = |name: &str, input: Vec<u8>, output: Vec<u8>| {
        pass_fwd(name, input, output)
            .counter("voice_forwarded", 1)
            .counter("drop_voice_replayed", 0)
    };
    run(
        &r,
        &[
            ef(
                "genuine rtp 100",
                eth(&v(100, 0, 64)),
                enc(1, &v(100, 0xb8, 63)),
            ),
            // The flow's 5-tuple and SSRC are all the data plane can check.
            ef(
                "spoofed rtp 30100 to the home agent",
                eth(&v(30_100, 0, 64)),
                enc(2, &v(30_100, 0xb8, 63)),
            ),
            ef(
                "genuine rtp 101 after the spoof (home agent)",
                eth(&v(101, 0, 64)),
                enc(3, &v(101, 0xb8, 63)),
            ),
        ],
    );
    // The care-of side on its own (a gateway of its own, fresh windows).
    let r = runner();
    run(
        &r,
        &[
            ef(
                "genuine rtp 200 out of the tunnel",
                from_ha(1, &v(200, 0, 64)),
                eth(&v(200, 0xb8, 63)),
            ),
            ef(
                "spoofed rtp 30200, tunnelled by the home agent",
                from_ha(2, &v(30_200, 0, 64)),
                eth(&v(30_200, 0xb8, 63)),
            ),
            ef(
                "genuine rtp 201 after the spoof (care-of side)",
                from_ha(3, &v(201, 0, 64)),
                eth(&v(201, 0xb8, 63)),
            ),
        ],
    );
}

/// In the test's namespace: veths standing for the care-of node's uplink
/// (rgup0) and its inside (rgin0); their ifindexes.
fn node_interfaces() -> (u32, u32) {
    sh("ip link add rgup0 type veth peer name rgup1 \
        && ip link add rgin0 type veth peer name rgin1");
    (ifindex("rgup0"), ifindex("rgin0"))
}

/// Finding 1 of issue 16: a host on the care-of node's uplink sends frames
/// with the unit's home address as source. They are dropped and counted,
/// never MACed into the tunnel; the same packets from the node's inside are
/// reverse-tunnelled, and the spoofs consumed no sequence number.
#[test]
fn care_of_side_tunnels_only_what_arrives_from_its_inside() {
    let mut r = runner();
    let (uplink, inside) = node_interfaces();
    let udp = |ttl: u8| {
        FrameBuilder::new()
            .ipv4(HOME, CORR)
            .ttl(ttl)
            .udp(4000, 5060)
            .payload_len(33)
            .build_l3()
    };
    let spoofed = |name: &str, l3: Vec<u8>| {
        Fixture::new(name, eth(&l3), XdpAction::Drop)
            .ingress(uplink)
            .counter("drop_spoofed_uplink", 1)
            .counter("action_drop", 1)
            .counter("tunnel_encap", 0)
    };
    run(
        &r,
        &[
            spoofed(
                "icmp from the home address on the uplink",
                icmp(HOME, CORR, 64, 56),
            ),
            spoofed("udp from the home address on the uplink", udp(64)),
            // Not the unit's: the uplink's own traffic passes as before.
            Fixture::new(
                "other source on the uplink",
                eth(&icmp(OTHER, CORR, 64, 56)),
                XdpAction::Pass,
            )
            .ingress(uplink)
            .counter("drop_spoofed_uplink", 0)
            .counter("tunnel_encap", 0),
            // The tunnel itself arrives on the uplink.
            pass_fwd(
                "tunnel data on the uplink",
                from_ha(1, &icmp(CORR, HOME, 64, 56)),
                eth(&icmp(CORR, HOME, 63, 56)),
            )
            .ingress(uplink)
            .counter("tunnel_decap", 1),
        ],
    );
    mark_inside(&mut r, inside);
    run(
        &r,
        &[
            pass_fwd(
                "udp from the home address on the inside",
                eth(&udp(64)),
                tunnel_frame(COA, HA, SPI_COA, 1, &KEY_MN2HA, &udp(63)),
            )
            .ingress(inside)
            .counter("tunnel_encap", 1)
            .counter("drop_spoofed_uplink", 0),
            spoofed(
                "and still dropped from the uplink",
                icmp(HOME, CORR, 64, 56),
            ),
        ],
    );
}

#[test]
fn foreign_traffic_passes_untouched() {
    let r = runner();
    let untouched = |name: &str, input: Vec<u8>| {
        Fixture::new(name, input, XdpAction::Pass)
            .counter("action_pass", 1)
            .counter("fib_pass", 0)
            .counter("tunnel_encap", 0)
            .counter("tunnel_decap", 0)
    };
    let registration = FrameBuilder::new()
        .ipv4(COA, HA)
        .udp(MIP_PORT, MIP_PORT)
        .payload(&[
            1, 0, 0, 0, 0, 0, 0, 0, 10, 1, 0, 1, 192, 0, 2, 1, 198, 51, 100, 9,
        ])
        .build();
    let later_fragment = FrameBuilder::new()
        .ipv4(COA, HA)
        .frag_off(0x00b9)
        .proto(PROTO_UDP)
        .payload(&[4, 4, 0, 0, 1, 2, 3, 4])
        .build();
    run(
        &r,
        &[
            untouched("arp", FrameBuilder::new().arp_request(CORR, HOME).build())
                .counter("rx_non_ipv4", 1),
            untouched("unbound icmp", eth(&icmp(CORR, OTHER, 64, 56))),
            untouched(
                "unbound udp",
                FrameBuilder::new()
                    .ipv4(CORR, OTHER)
                    .udp(5060, 5060)
                    .payload_len(100)
                    .build(),
            ),
            untouched("registration request on 434", registration).counter("rx_mip_control", 1),
            untouched("non-first fragment to the HA", later_fragment),
            untouched(
                "ipv4 header cut short",
                eth(&icmp(CORR, HOME, 64, 8))[..24].to_vec(),
            )
            .counter("rx_truncated", 1),
            untouched(
                "ipv6",
                FrameBuilder::new()
                    .ether_type(0x86dd)
                    .payload(&[0x60; 40])
                    .build(),
            )
            .counter("rx_non_ipv4", 1),
        ],
    );
}

/// Builds a veth with a static neighbour in the test's namespace so the FIB
/// lookup succeeds, and checks XDP_REDIRECT with rewritten MACs.
fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().expect("sh");
    assert!(st.success(), "{cmd}");
}

/// In the test's namespace: a veth rgfix0 (02:..:99:01, 203.0.113.1/24) with
/// a permanent neighbour 203.0.113.2 (02:..:99:02) as the next hop to
/// 198.51.100.0/24 and 10.9.0.0/24, and forwarding on.
fn routed_veth() {
    sh("ip link set lo up \
        && ip link add rgfix0 address 02:00:00:00:99:01 type veth peer name rgfix1 \
        && ip link set rgfix0 up && ip link set rgfix1 up \
        && ip addr add 203.0.113.1/24 dev rgfix0 \
        && ip neigh replace 203.0.113.2 lladdr 02:00:00:00:99:02 nud permanent dev rgfix0 \
        && ip route add 198.51.100.0/24 via 203.0.113.2 dev rgfix0 \
        && ip route add 10.9.0.0/24 via 203.0.113.2 dev rgfix0 \
        && sysctl -qw net.ipv4.conf.all.forwarding=1 net.ipv4.conf.lo.forwarding=1");
}

#[test]
fn fib_redirect_rewrites_macs() {
    let r = runner();
    routed_veth();
    let out_mac = [0x02, 0, 0, 0, 0x99, 0x01];
    let nh_mac = [0x02, 0, 0, 0, 0x99, 0x02];
    let mut enc = tunnel_frame(HA, COA, SPI_HA, 1, &KEY_HA2MN, &icmp(CORR, HOME, 63, 56));
    enc[..6].copy_from_slice(&nh_mac);
    enc[6..12].copy_from_slice(&out_mac);
    let mut dec = eth(&icmp(HOME, CORR, 63, 56));
    dec[..6].copy_from_slice(&nh_mac);
    dec[6..12].copy_from_slice(&out_mac);
    run(
        &r,
        &[
            Fixture::new(
                "encap redirected",
                eth(&icmp(CORR, HOME, 64, 56)),
                XdpAction::Redirect,
            )
            .output(enc)
            .counter("action_redirect", 1)
            .counter("fib_pass", 0),
            Fixture::new(
                "decap redirected",
                from_coa(1, &icmp(HOME, CORR, 64, 56)),
                XdpAction::Redirect,
            )
            .output(dec)
            .counter("action_redirect", 1)
            .counter("fib_pass", 0),
        ],
    );
}

/// A gateway the tunnel only passes through: tunnel frames for another
/// host pass to the stack (counted as transit) whether their SPI is unknown
/// here or collides with one of ours, while the same frames addressed to this
/// host are dropped. And the next-hop cache: a repeated route skips the FIB,
/// and a neighbour change is picked up once the entry is older than its TTL.
#[test]
fn transit_frames_pass_and_next_hops_are_cached() {
    let r = runner();
    routed_veth();
    let local = Ipv4Addr::new(203, 0, 113, 1);
    let elsewhere = Ipv4Addr::new(198, 51, 100, 77);
    let inner = icmp(HOME, CORR, 64, 56);
    let transit = |name: &str, f: Vec<u8>| {
        // Pass defaults to Expect::Unchanged: not a byte touched.
        Fixture::new(name, f, XdpAction::Pass)
            .counter("rx_transit", 1)
            .counter("action_pass", 1)
            .counter("action_drop", 0)
            .counter("drop_unknown_spi", 0)
            .counter("drop_bad_mac", 0)
    };
    let dropped_local = |name: &str, f: Vec<u8>, counter: &'static str| {
        drop(name, f, counter).counter("rx_transit", 0)
    };
    let rows = [
        transit(
            "unknown SPI, for another host",
            tunnel_frame(COA, elsewhere, SPI_MISSING, 1, &KEY_MN2HA, &inner),
        ),
        transit(
            "our SPI, another endpoint's key, for another host",
            tunnel_frame(COA, elsewhere, SPI_HA, 1, b"someone else key", &inner),
        ),
        dropped_local(
            "unknown SPI, for this host",
            tunnel_frame(COA, local, SPI_MISSING, 1, &KEY_MN2HA, &inner),
            "drop_unknown_spi",
        ),
        dropped_local(
            "our SPI, forged, for this host",
            tunnel_frame(COA, local, SPI_HA, 1, b"someone else key", &inner),
            "drop_bad_mac",
        ),
    ];
    run(&r, &rows);

    let with_macs = |f: &[u8], dst: [u8; 6]| {
        let mut f = f.to_vec();
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0x99, 0x01]);
        f
    };
    let enc = |seq| tunnel_frame(HA, COA, SPI_HA, seq, &KEY_HA2MN, &icmp(CORR, HOME, 63, 56));
    let first_hop = [0x02, 0, 0, 0, 0x99, 0x02];
    let new_hop = [0x02, 0, 0, 0, 0x99, 0x03];
    run(
        &r,
        &[
            Fixture::new(
                "encap, FIB",
                eth(&icmp(CORR, HOME, 64, 56)),
                XdpAction::Redirect,
            )
            .output(with_macs(&enc(1), first_hop))
            .counter("fib_lookups", 1),
            Fixture::new(
                "encap, cached",
                eth(&icmp(CORR, HOME, 64, 56)),
                XdpAction::Redirect,
            )
            .output(with_macs(&enc(2), first_hop))
            .counter("fib_lookups", 0),
        ],
    );
    sh("ip neigh replace 203.0.113.2 lladdr 02:00:00:00:99:03 nud permanent dev rgfix0");
    std::thread::sleep(std::time::Duration::from_millis(40));
    run(
        &r,
        &[Fixture::new(
            "encap, entry expired",
            eth(&icmp(CORR, HOME, 64, 56)),
            XdpAction::Redirect,
        )
        .output(with_macs(&enc(3), new_hop))
        .counter("fib_lookups", 1)],
    );
}

/// The frames the XDP program writes, decoded by tshark with checksum
/// validation on: outer IPv4, UDP 434, RFC 3519 tunnel data, inner IPv4 and
/// ICMP, all with good checksums. Skipped (with a notice) without tshark.
#[test]
fn tshark_decodes_the_program_output() {
    if Command::new("tshark").arg("--version").output().is_err() {
        eprintln!("tshark not installed: skipping");
        return;
    }
    if fixture::is_reference() {
        eprintln!(
            "reference pass: skipped, it starts with encapsulation, not the C reference's work"
        );
        return;
    }
    let r = runner();
    let (act, encapped) = r
        .run_frame("encap", &eth(&icmp(CORR, HOME, 64, 56)))
        .unwrap();
    assert_eq!(act, XdpAction::Pass as u32);
    let (act, decapped) = r
        .run_frame("decap", &from_coa(1, &icmp(HOME, CORR, 64, 56)))
        .unwrap();
    assert_eq!(act, XdpAction::Pass as u32);

    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("xdp.pcap");
    let mut file = vec![];
    // pcap global header: magic, v2.4, tz 0, sigfigs 0, snaplen, Ethernet.
    file.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    file.extend_from_slice(&2u16.to_le_bytes());
    file.extend_from_slice(&4u16.to_le_bytes());
    for v in [0u32, 0, 65535, 1] {
        file.extend_from_slice(&v.to_le_bytes());
    }
    for f in [&encapped, &decapped] {
        for v in [0u32, 0, f.len() as u32, f.len() as u32] {
            file.extend_from_slice(&v.to_le_bytes());
        }
        file.extend_from_slice(f);
    }
    std::fs::write(&pcap, file).unwrap();
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(&pcap)
        .args([
            "-o",
            "ip.check_checksum:TRUE",
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "frame.protocols",
            "-e",
            "ip.src",
            "-e",
            "ip.dst",
            "-e",
            "ip.checksum.status",
            "-e",
            "mip.type",
            "-e",
            "mip.nattt.nexthdr",
            "-e",
            "icmp.checksum.status",
        ])
        .output()
        .expect("run tshark");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        2,
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Encapsulated: outer and inner IPv4 both present, checksums good (1).
    assert!(
        lines[0].starts_with("eth:ethertype:ip:udp:mip:ip:icmp"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("192.0.2.1,10.9.0.1|198.51.100.9,10.1.0.1"),
        "{}",
        lines[0]
    );
    assert!(lines[0].contains("|1,1|4|4|1"), "{}", lines[0]);
    // Decapsulated: a plain IPv4 ICMP packet with good checksums.
    assert!(
        lines[1].starts_with("eth:ethertype:ip:icmp"),
        "{}",
        lines[1]
    );
    assert!(lines[1].contains("|10.1.0.1|10.9.0.1|1||"), "{}", lines[1]);
}
