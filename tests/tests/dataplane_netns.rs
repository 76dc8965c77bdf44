//! Real traffic through the authenticated tunnel, in network namespaces:
//! correspondent — home agent — transit router — care-of gateway —
//! application host (see `roamgate_integration::tunnel_net`).
//!
//! - XDP at both ends: ping and UDP streams of several sizes up to the inner
//!   MTU, both directions; tshark decodes the capture from the transit link;
//!   forged and replayed frames injected on the transit link are dropped and
//!   counted by reason.
//! - XDP at one end and the userspace forwarder (`roamgate tunnel`) at the
//!   other, both ways round.
//!
//! `xdp_both_ends_real_traffic` and `spoofed_uplink_frames_never_enter_the_tunnel`
//! need no tshark and no `roamgate` binary: `cargo xtask kernel` runs them
//! under Linux 6.1 as well.
//!
//! Needs root, tshark, ethtool and iputils-ping; run with
//! `cargo test -p roamgate-integration --test dataplane_netns -- --test-threads=1`
//! after `cargo build -p roamgate`.

use std::{
    net::{SocketAddrV4, UdpSocket},
    path::Path,
    process::Command,
    time::Duration,
};

use roamgate_common::wire::ipv4::checksum;
use roamgate_integration::{
    afpacket::PacketGen,
    netns::{in_netns, wait_for},
    rawbpf,
    tunnel_net::{read_pcap, End, TunnelNet, CN, HOME, INNER_MTU},
};
use roamgate_testkit::frame::FrameBuilder;

/// UDP payload sizes: small, odd, mid, and the largest that fits the inner
/// MTU (20 bytes IPv4 + 8 bytes UDP).
fn udp_sizes() -> Vec<usize> {
    match std::env::var("RG_DP_UDP_SIZES") {
        Ok(v) => v.split(',').filter_map(|x| x.trim().parse().ok()).collect(),
        Err(_) => vec![1, 97, 512, 1000, max_payload()],
    }
}

/// The largest ICMP/UDP payload: the inner MTU minus 28 bytes of headers.
/// `RG_DP_MAX_PAYLOAD` (and `RG_DP_UDP_SIZES`, a comma list) override the
/// sizes, to separate a size problem from others while debugging; the
/// defaults are the real requirement.
fn max_payload() -> usize {
    std::env::var("RG_DP_MAX_PAYLOAD")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(INNER_MTU as usize - 28)
}
const PER_SIZE: usize = 20;

fn payload(size: usize, i: usize) -> Vec<u8> {
    (0..size)
        .map(|k| (k as u8).wrapping_mul(31) ^ i as u8)
        .collect()
}

/// Sends PER_SIZE datagrams of every size from `src_host` (bound to
/// `src`) to `dst:port` in `dst_host`, and checks that each arrives intact.
fn udp_stream(
    net: &TunnelNet,
    (src_host, src): (&str, std::net::Ipv4Addr),
    (dst_host, dst): (&str, std::net::Ipv4Addr),
    port: u16,
) {
    let rx_ns = net.topo.ns(dst_host);
    let tx_ns = net.topo.ns(src_host);
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        let receiver = s.spawn(move || {
            in_netns(&rx_ns, || {
                let sock = UdpSocket::bind(SocketAddrV4::new(dst, port))?;
                sock.set_read_timeout(Some(Duration::from_secs(3)))?;
                ready_tx.send(()).unwrap();
                let mut got = Vec::new();
                let mut buf = vec![0u8; 65536];
                while got.len() < udp_sizes().len() * PER_SIZE {
                    match sock.recv_from(&mut buf) {
                        Ok((n, _)) => got.push(buf[..n].to_vec()),
                        Err(_) => break,
                    }
                }
                Ok(got)
            })
        });
        ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        in_netns(&tx_ns, || {
            let sock = UdpSocket::bind(SocketAddrV4::new(src, 0))?;
            for size in udp_sizes() {
                for i in 0..PER_SIZE {
                    sock.send_to(&payload(size, i), SocketAddrV4::new(dst, port))?;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
            Ok(())
        })
        .unwrap();
        let got = receiver.join().unwrap().unwrap();
        let mut want = Vec::new();
        for size in udp_sizes() {
            for i in 0..PER_SIZE {
                want.push(payload(size, i));
            }
        }
        assert_eq!(
            got.len(),
            want.len(),
            "{src_host} -> {dst_host}: {} of {} datagrams arrived (sizes {:?})",
            got.len(),
            want.len(),
            got.iter().map(|g| g.len()).collect::<Vec<_>>()
        );
        for g in &got {
            assert!(
                want.contains(g),
                "a datagram of {} bytes arrived altered",
                g.len()
            );
        }
    });
}

fn ping(net: &TunnelNet, host: &str, args: &[&str]) {
    for size in ["56", "1000", &max_payload().to_string()] {
        let mut argv = vec![
            "ping", "-c", "3", "-i", "0.2", "-W", "2", "-M", "do", "-s", size,
        ];
        argv.extend_from_slice(args);
        let out = net.topo.exec(host, &argv).unwrap();
        assert!(
            out.status.success(),
            "ping {argv:?} from {host} failed:\n{}{}\nforwarders: ha {:?} {}\ncoa {:?} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            net.tun_stats("ha").ok(),
            net.tun_log("ha"),
            net.tun_stats("coa").ok(),
            net.tun_log("coa"),
        );
    }
}

/// Ping and UDP both ways between the application (home address) and the
/// correspondent.
fn traffic_both_ways(net: &TunnelNet) {
    ping(net, "app", &["-I", &HOME.to_string(), &CN.to_string()]);
    ping(net, "cn", &[&HOME.to_string()]);
    udp_stream(net, ("app", HOME), ("cn", CN), 7000);
    udp_stream(net, ("cn", CN), ("app", HOME), 7001);
}

const DROP_REASONS: &[&str] = &[
    "drop_malformed",
    "drop_truncated",
    "drop_fragmented",
    "drop_unknown_spi",
    "drop_bad_mac",
    "drop_replayed",
    "drop_too_old",
    "drop_expired",
    "drop_ttl",
    "drop_over_mtu",
    "drop_spoofed",
    "drop_no_tunnel",
];

/// Starts tshark on `iface` in `host`, writing a classic pcap.
fn start_capture(net: &mut TunnelNet, host: &str, iface: &str, file: &Path) -> usize {
    let mut cmd = Command::new("tshark");
    cmd.args(["-i", iface, "-F", "pcap", "-f", "udp port 434", "-w"])
        .arg(file);
    let log = file.with_extension("log");
    let idx = net.topo.spawn(host, cmd, Some(&log)).unwrap();
    wait_for("tshark to capture", Duration::from_secs(20), || {
        Ok(std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("Capturing on"))
    })
    .unwrap();
    idx
}

fn stop_capture(net: &mut TunnelNet, idx: usize) {
    std::thread::sleep(Duration::from_millis(500));
    let c = net.topo.child_mut(idx);
    // SAFETY: kill(2) on our own unreaped child.
    unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGINT) };
    let _ = c.wait();
}

/// Sends one raw Ethernet frame out of `iface` in `host`.
fn inject(net: &TunnelNet, host: &str, iface: &str, frame: &[u8]) {
    in_netns(&net.topo.ns(host), || {
        PacketGen::new(rawbpf::ifindex(iface)?)?.send(&[frame.to_vec()], 1)?;
        Ok(())
    })
    .unwrap();
}

/// Tunnel frames from the capture going from `src` to `dst` (outer).
fn tunnel_frames(frames: &[Vec<u8>], src: [u8; 4], dst: [u8; 4]) -> Vec<Vec<u8>> {
    frames
        .iter()
        .filter(|f| {
            f.len() > 14 + 20 + 8 + 4
                && f[12..14] == [0x08, 0x00]
                && f[14 + 12..14 + 16] == src
                && f[14 + 16..14 + 20] == dst
                && f[14 + 9] == 17
                && f[14 + 22..14 + 24] == 434u16.to_be_bytes()
                && f[14 + 28] == 4
        })
        .cloned()
        .collect()
}

/// tshark decodes the capture from the transit link (outer IPv4, UDP 434,
/// RFC 3519 tunnel data, inner IPv4), with checksum validation on and
/// nothing malformed. Returns the tunnel frames (ha -> coa, coa -> ha).
fn check_decode(cap: &Path, each_way: u64) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let decoded = Command::new("tshark")
        .arg("-r")
        .arg(cap)
        .args([
            "-V",
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&decoded.stdout);
    assert!(
        decoded.status.success(),
        "{}",
        String::from_utf8_lossy(&decoded.stderr)
    );
    let frames = read_pcap(cap).unwrap();
    let to_coa = tunnel_frames(&frames, [192, 0, 2, 1], [198, 51, 100, 2]);
    let to_ha = tunnel_frames(&frames, [198, 51, 100, 2], [192, 0, 2, 1]);
    assert!(
        to_coa.len() as u64 >= each_way,
        "{} frames to coa captured",
        to_coa.len()
    );
    assert!(
        to_ha.len() as u64 >= each_way,
        "{} frames to ha captured",
        to_ha.len()
    );
    assert!(
        !text.contains("Malformed"),
        "tshark found malformed packets:\n{text}"
    );
    assert!(
        !text.contains("[incorrect"),
        "tshark found bad checksums:\n{text}"
    );
    assert!(!text.to_lowercase().contains("bad checksum"), "{text}");
    assert!(
        text.contains("Mobile IP"),
        "tshark did not decode RFC 3519:\n{}",
        &text[..text.len().min(4000)]
    );
    assert!(
        text.contains("Src Port: 434") && text.contains("Dst Port: 434"),
        "no UDP 434 in the decode"
    );
    assert!(text.contains("Src: 192.0.2.1") && text.contains("Dst: 198.51.100.2"));
    // The inner packet decodes too (RFC 3519 "next header" IPv4).
    assert!(
        text.contains("Src: 10.1.0.2") && text.contains("Dst: 10.10.0.2"),
        "inner not decoded"
    );

    (to_coa, to_ha)
}

/// Ping and UDP both ways through two XDP ends, every packet tunnelled by
/// both and nothing dropped. Returns the least number of packets each end
/// must have tunnelled each way. The part of the capture test below that
/// needs no tshark: `cargo xtask kernel` runs it under Linux 6.1 too.
fn xdp_both_ends_carry(net: &TunnelNet) -> u64 {
    let (ha0, coa0) = (net.counters("ha").unwrap(), net.counters("coa").unwrap());
    traffic_both_ways(net);
    let ha = net.counters("ha").unwrap().delta(&ha0);
    let coa = net.counters("coa").unwrap().delta(&coa0);
    // 9 pings and 100 datagrams each way, at least.
    let each_way = 9 + (udp_sizes().len() * PER_SIZE) as u64;
    assert!(ha.get("tunnel_encap") >= each_way, "ha {ha:?}");
    assert!(ha.get("tunnel_decap") >= each_way, "ha {ha:?}");
    assert!(coa.get("tunnel_encap") >= each_way, "coa {coa:?}");
    assert!(coa.get("tunnel_decap") >= each_way, "coa {coa:?}");
    for r in DROP_REASONS {
        assert_eq!(ha.get(r), 0, "ha {r}: {ha:?}");
        assert_eq!(coa.get(r), 0, "coa {r}: {coa:?}");
    }
    each_way
}

#[test]
fn xdp_both_ends_real_traffic() {
    let net = TunnelNet::new("dpt", End::Xdp, End::Xdp).unwrap();
    xdp_both_ends_carry(&net);
}

#[test]
fn xdp_both_ends_real_traffic_capture_and_injection() {
    let mut net = TunnelNet::new("dpx", End::Xdp, End::Xdp).unwrap();
    let cap = net.dir.path().join("transit.pcap");
    let tshark = start_capture(&mut net, "tr", "tr-ha", &cap);
    let each_way = xdp_both_ends_carry(&net);
    stop_capture(&mut net, tshark);

    let (to_coa, to_ha) = check_decode(&cap, each_way);

    // Injection on the transit link towards the care-of gateway: a replay
    // of the last frame the home agent sent, a forged copy (one inner byte
    // flipped), and one under an unknown SPI.
    let last = to_coa.last().unwrap().clone();
    let mut frame = last.clone();
    frame[0..6].copy_from_slice(&net.mac("coa", "coa-tr").unwrap());
    frame[6..12].copy_from_slice(&net.mac("tr", "tr-coa").unwrap());
    let before = net.counters("coa").unwrap();
    inject(&net, "tr", "tr-coa", &frame);
    let mut forged = frame.clone();
    let n = forged.len();
    forged[n - 28 - 1] ^= 0x40; // last inner byte
    inject(&net, "tr", "tr-coa", &forged);
    let mut forged_seq = frame.clone();
    forged_seq[n - 24 + 7] ^= 0x01; // a fresh sequence number, old tag
    inject(&net, "tr", "tr-coa", &forged_seq);
    let mut unknown = frame.clone();
    unknown[n - 28] ^= 0xff; // SPI
    inject(&net, "tr", "tr-coa", &unknown);
    std::thread::sleep(Duration::from_millis(300));
    let d = net.counters("coa").unwrap().delta(&before);
    assert_eq!(d.get("drop_replayed"), 1, "{d:?}");
    assert_eq!(d.get("drop_bad_mac"), 2, "{d:?}");
    assert_eq!(d.get("drop_unknown_spi"), 1, "{d:?}");
    assert_eq!(
        d.get("tunnel_decap"),
        0,
        "an injected frame got through: {d:?}"
    );
    assert_eq!(d.get("action_drop"), 4, "{d:?}");

    // The same towards the home agent, from the other direction's capture.
    let last = to_ha.last().unwrap().clone();
    let mut frame = last;
    frame[0..6].copy_from_slice(&net.mac("ha", "ha-tr").unwrap());
    frame[6..12].copy_from_slice(&net.mac("tr", "tr-ha").unwrap());
    let before = net.counters("ha").unwrap();
    inject(&net, "tr", "tr-ha", &frame);
    let mut forged = frame.clone();
    forged[14 + 12] ^= 0x01; // outer source address (covered by the MAC)
    forged[14 + 10..14 + 12].copy_from_slice(&[0, 0]);
    let c = checksum(&forged[14..34]);
    forged[14 + 10..14 + 12].copy_from_slice(&c.to_be_bytes());
    inject(&net, "tr", "tr-ha", &forged);
    std::thread::sleep(Duration::from_millis(300));
    let d = net.counters("ha").unwrap().delta(&before);
    assert_eq!(d.get("drop_replayed"), 1, "{d:?}");
    assert_eq!(d.get("drop_bad_mac"), 1, "{d:?}");
    assert_eq!(d.get("tunnel_decap"), 0, "{d:?}");

    // Traffic still flows after the attack.
    ping(&net, "app", &["-I", &HOME.to_string(), &CN.to_string()]);
}

/// Issue 16, finding 1: `tr`, a host on the care-of gateway's uplink
/// (coa-tr, the hotspot), sends UDP frames with the home address as source
/// to the correspondent. The care-of end drops and counts every one
/// (`drop_spoofed_uplink`), MACs none into the tunnel, the home agent
/// decapsulates none and the correspondent receives none; the application
/// host's genuine datagrams (the care-of end's inside, coa-app) still
/// arrive.
#[test]
fn spoofed_uplink_frames_never_enter_the_tunnel() {
    const SPOOFED: usize = 20;
    const GENUINE: usize = 10;
    const PORT: u16 = 7100;
    let net = TunnelNet::new("dpsp", End::Xdp, End::Xdp).unwrap();
    let spoof = |i: usize| {
        FrameBuilder::new()
            .macs(
                net.mac("tr", "tr-coa").unwrap(),
                net.mac("coa", "coa-tr").unwrap(),
            )
            .ipv4(HOME, CN)
            .udp(40_000, PORT)
            .payload(format!("spoofed {i}").as_bytes())
            .build()
    };
    let frames: Vec<Vec<u8>> = (0..SPOOFED).map(spoof).collect();
    let rx_ns = net.topo.ns("cn");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let got = std::thread::scope(|s| {
        let receiver = s.spawn(move || {
            in_netns(&rx_ns, || {
                let sock = UdpSocket::bind(SocketAddrV4::new(CN, PORT))?;
                // Long: the spoofs and four counter reads come first, and
                // a loaded machine (CI) has taken over 5 s for them.
                sock.set_read_timeout(Some(Duration::from_secs(30)))?;
                ready_tx.send(()).unwrap();
                let mut got: Vec<String> = Vec::new();
                let mut buf = [0u8; 2048];
                // Until the last genuine datagram (sent after the spoofs).
                while let Ok((n, _)) = sock.recv_from(&mut buf) {
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    let last = text == format!("genuine {}", GENUINE - 1);
                    got.push(text);
                    if last {
                        break;
                    }
                }
                Ok(got)
            })
        });
        ready_rx.recv_timeout(Duration::from_secs(5)).unwrap();
        let (ha0, coa0) = (net.counters("ha").unwrap(), net.counters("coa").unwrap());
        for f in &frames {
            inject(&net, "tr", "tr-coa", f);
        }
        std::thread::sleep(Duration::from_millis(300));
        let ha = net.counters("ha").unwrap().delta(&ha0);
        let coa = net.counters("coa").unwrap().delta(&coa0);
        assert_eq!(
            coa.get("tunnel_encap"),
            0,
            "the care-of end MACed spoofed frames into the tunnel: {coa:?}"
        );
        assert_eq!(
            ha.get("tunnel_decap"),
            0,
            "the home agent accepted spoofed frames: {ha:?}"
        );
        assert_eq!(coa.get("drop_spoofed_uplink"), SPOOFED as u64, "{coa:?}");
        in_netns(&net.topo.ns("app"), || {
            let sock = UdpSocket::bind(SocketAddrV4::new(HOME, 0))?;
            for i in 0..GENUINE {
                sock.send_to(
                    format!("genuine {i}").as_bytes(),
                    SocketAddrV4::new(CN, PORT),
                )?;
                std::thread::sleep(Duration::from_millis(2));
            }
            Ok(())
        })
        .unwrap();
        receiver.join().unwrap().unwrap()
    });
    let spoofed = got.iter().filter(|g| g.starts_with("spoofed")).count();
    let genuine = got.iter().filter(|g| g.starts_with("genuine")).count();
    assert_eq!(spoofed, 0, "the correspondent received spoofed datagrams");
    assert_eq!(
        genuine, GENUINE,
        "genuine datagrams from the inside: {got:?}"
    );
}

/// One end in XDP, the other the userspace forwarder: traffic both ways,
/// every packet through both implementations, nothing dropped.
fn interop(tag: &str, ha: End, coa: End) {
    let net = TunnelNet::new(tag, ha, coa).unwrap();
    let (xdp, tun) = if ha == End::Xdp {
        ("ha", "coa")
    } else {
        ("coa", "ha")
    };
    let before = net.counters(xdp).unwrap();
    traffic_both_ways(&net);
    let d = net.counters(xdp).unwrap().delta(&before);
    let each_way = 9 + (udp_sizes().len() * PER_SIZE) as u64;
    assert!(d.get("tunnel_encap") >= each_way, "{xdp} {d:?}");
    assert!(d.get("tunnel_decap") >= each_way, "{xdp} {d:?}");
    for r in DROP_REASONS {
        assert_eq!(d.get(r), 0, "{xdp} {r}: {d:?}");
    }
    let s = net.tun_stats(tun).unwrap();
    let log = net.tun_log(tun);
    assert!(
        s["tunnel_decap"].as_u64().unwrap() >= each_way,
        "{s}\n{log}"
    );
    assert!(s["tunnel_encap"].as_u64().unwrap() >= each_way, "{s}");
    assert_eq!(s["drop_bad_mac"], 0, "{s}");
    assert_eq!(s["drop_replayed"], 0, "{s}");
}

#[test]
fn interop_xdp_home_agent_userspace_care_of() {
    interop("dpi1", End::Xdp, End::Tun);
}

#[test]
fn interop_userspace_home_agent_xdp_care_of() {
    interop("dpi2", End::Tun, End::Xdp);
}

#[test]
fn userspace_forwarder_both_ends() {
    let mut net = TunnelNet::new("dpu", End::Tun, End::Tun).unwrap();
    let cap = net.dir.path().join("transit.pcap");
    let tshark = start_capture(&mut net, "tr", "tr-ha", &cap);
    traffic_both_ways(&net);
    stop_capture(&mut net, tshark);
    let each_way = 9 + (udp_sizes().len() * PER_SIZE) as u64;
    for host in ["ha", "coa"] {
        let s = net.tun_stats(host).unwrap();
        assert!(
            s["tunnel_encap"].as_u64().unwrap() >= each_way,
            "{host} {s}"
        );
        assert!(
            s["tunnel_decap"].as_u64().unwrap() >= each_way,
            "{host} {s}"
        );
        assert_eq!(s["drop_bad_mac"], 0, "{host} {s}");
    }
    let (to_coa, _) = check_decode(&cap, each_way);
    // Replay and forge towards the care-of forwarder.
    let mut frame = to_coa.last().unwrap().clone();
    frame[0..6].copy_from_slice(&net.mac("coa", "coa-tr").unwrap());
    frame[6..12].copy_from_slice(&net.mac("tr", "tr-coa").unwrap());
    // The forwarder sends UDP checksum 0 (docs/wire.md), so a changed byte
    // reaches it rather than dying in the kernel's UDP checksum check.
    assert_eq!(frame[14 + 26..14 + 28], [0, 0], "UDP checksum must be 0");
    let before = net.tun_stats("coa").unwrap();
    inject(&net, "tr", "tr-coa", &frame);
    let mut forged = frame.clone();
    let n = forged.len();
    forged[n - 29] ^= 0x40;
    inject(&net, "tr", "tr-coa", &forged);
    let after = net.tun_stats("coa").unwrap();
    let delta = |k: &str| after[k].as_u64().unwrap() - before[k].as_u64().unwrap();
    assert_eq!(delta("drop_replayed"), 1, "{after}");
    assert_eq!(delta("drop_bad_mac"), 1, "{after}");
    assert_eq!(delta("tunnel_decap"), 0, "{after}");
}

/// A captured tunnel frame readdressed (Ethernet) from `tr` to `host`'s
/// transit interface, ready for `inject` on `tr`'s side of that link.
fn towards(net: &TunnelNet, frame: &[u8], host: &str) -> Vec<u8> {
    let (dst_if, src_if) = match host {
        "coa" => ("coa-tr", "tr-coa"),
        _ => ("ha-tr", "tr-ha"),
    };
    let mut f = frame.to_vec();
    f[0..6].copy_from_slice(&net.mac(host, dst_if).unwrap());
    f[6..12].copy_from_slice(&net.mac("tr", src_if).unwrap());
    f
}

/// A forwarder counter's growth between two stats snapshots.
fn grew(before: &serde_json::Value, after: &serde_json::Value, k: &str) -> u64 {
    after[k].as_u64().unwrap_or(0) - before[k].as_u64().unwrap_or(0)
}

/// Whether `ping -c 1` from cn reaches the home address.
fn cn_reaches_home(net: &TunnelNet) -> bool {
    let out = net
        .topo
        .exec("cn", &["ping", "-c", "1", "-W", "1", &HOME.to_string()])
        .unwrap();
    out.status.success()
}

/// docs/wire.md §3: a restarted receiver keeps refusing what it accepted
/// before (the persisted floor), and loses about a second of the live
/// sender's traffic at most.
#[test]
fn userspace_restarted_receiver_refuses_replayed_frames() {
    let mut net = TunnelNet::new("dprr", End::Tun, End::Tun).unwrap();
    let cap = net.dir.path().join("transit.pcap");
    let tshark = start_capture(&mut net, "tr", "tr-coa", &cap);
    ping(&net, "cn", &[&HOME.to_string()]);
    stop_capture(&mut net, tshark);
    let frames = tunnel_frames(&read_pcap(&cap).unwrap(), [192, 0, 2, 1], [198, 51, 100, 2]);
    assert!(frames.len() >= 5, "{} frames captured", frames.len());

    net.restart_tun("coa").unwrap();
    let before = net.tun_stats("coa").unwrap();
    for f in &frames {
        inject(&net, "tr", "tr-coa", &towards(&net, f, "coa"));
    }
    let after = net.tun_stats("coa").unwrap();
    let replayed_after_restart_accepted = grew(&before, &after, "tunnel_decap");
    assert_eq!(
        replayed_after_restart_accepted,
        0,
        "{replayed_after_restart_accepted} of {} replayed frames accepted after the restart: {after}",
        frames.len()
    );
    assert_eq!(
        grew(&before, &after, "drop_too_old"),
        frames.len() as u64,
        "{after}"
    );

    // The home agent's forwarder kept running: it reaches the restarted
    // receiver's floor within about a second (docs/wire.md §6).
    let t0 = std::time::Instant::now();
    while !cn_reaches_home(&net) {
        assert!(
            t0.elapsed() < Duration::from_millis(2500),
            "no traffic through the restarted receiver after {:?}: {}",
            t0.elapsed(),
            net.tun_stats("coa").unwrap()
        );
    }
    ping(&net, "cn", &[&HOME.to_string()]);
}

/// docs/wire.md §3: a restarted sender continues after the sequence numbers
/// it reserved before, so the receiver that kept its window accepts it at
/// once and nothing is sent twice under one key.
#[test]
fn userspace_restarted_sender_is_accepted_by_the_receiver() {
    let mut net = TunnelNet::new("dprs", End::Tun, End::Tun).unwrap();
    ping(&net, "cn", &[&HOME.to_string()]);
    let cap = net.dir.path().join("after.pcap");
    net.restart_tun("ha").unwrap();
    let tshark = start_capture(&mut net, "tr", "tr-coa", &cap);
    let before = net.tun_stats("coa").unwrap();
    let out = net
        .topo
        .exec(
            "cn",
            &["ping", "-c", "5", "-i", "0.2", "-W", "2", &HOME.to_string()],
        )
        .unwrap();
    let after = net.tun_stats("coa").unwrap();
    stop_capture(&mut net, tshark);
    for k in ["drop_replayed", "drop_too_old"] {
        assert_eq!(grew(&before, &after, k), 0, "{k}: {after}");
    }
    assert!(
        out.status.success(),
        "ping through the restarted sender failed:\n{}\ncoa {after}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Its first sequence number lies beyond everything sent before.
    let frames = tunnel_frames(&read_pcap(&cap).unwrap(), [192, 0, 2, 1], [198, 51, 100, 2]);
    let first = frames.first().expect("frames after the restart");
    let n = first.len();
    let seq = u64::from_be_bytes(first[n - 24..n - 16].try_into().unwrap());
    assert!(seq > 9, "restarted sender began at sequence {seq}");
}

/// Splits the IPv4 packet of an Ethernet frame into two fragments, the
/// first carrying `first` bytes of its payload (a multiple of 8).
fn fragments(frame: &[u8], first: usize) -> [Vec<u8>; 2] {
    let (eth, ip) = frame.split_at(14);
    let (hdr, payload) = ip.split_at(20);
    let part = |data: &[u8], off: usize, more: bool| {
        let mut h = hdr.to_vec();
        h[2..4].copy_from_slice(&((20 + data.len()) as u16).to_be_bytes());
        let fo = (off / 8) as u16 | if more { 0x2000 } else { 0 };
        h[6..8].copy_from_slice(&fo.to_be_bytes());
        h[10..12].copy_from_slice(&[0, 0]);
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        [eth, &h[..], data].concat()
    };
    [
        part(&payload[..first], 0, true),
        part(&payload[first..], first, false),
    ]
}

/// docs/wire.md §1 for the userspace forwarder: outer TOS copied from the
/// inner (DSCP EF survives the tunnel), DF and TTL 64 outside; one inner
/// TTL decrement per gateway, as with XDP.
#[test]
fn userspace_forwarder_carries_dscp() {
    let mut net = TunnelNet::new("dpw1", End::Tun, End::Tun).unwrap();
    let cap = net.dir.path().join("dscp.pcap");
    let tshark = start_capture(&mut net, "tr", "tr-ha", &cap);
    // EF (46 << 2 = 0xb8) both ways.
    let out = net
        .topo
        .exec_ok(
            "cn",
            &[
                "ping",
                "-c",
                "3",
                "-i",
                "0.2",
                "-Q",
                "0xb8",
                &HOME.to_string(),
            ],
        )
        .unwrap();
    // cn -> ha (kernel) -> tunnel -> coa (kernel) -> app and back: two
    // decrements each way, as with XDP at both ends.
    assert!(out.contains("ttl=62"), "{out}");
    net.topo
        .exec_ok(
            "app",
            &[
                "ping",
                "-c",
                "3",
                "-i",
                "0.2",
                "-Q",
                "0xb8",
                "-I",
                &HOME.to_string(),
                &CN.to_string(),
            ],
        )
        .unwrap();
    stop_capture(&mut net, tshark);
    let frames = read_pcap(&cap).unwrap();
    // Captured on tr-ha: as ha sent them, and after tr forwarded them.
    for (src, dst, ttl) in [
        ([192, 0, 2, 1], [198, 51, 100, 2], 64),
        ([198, 51, 100, 2], [192, 0, 2, 1], 63),
    ] {
        let t = tunnel_frames(&frames, src, dst);
        assert!(t.len() >= 4, "{} frames {src:?} -> {dst:?}", t.len());
        for f in &t {
            let (outer, inner) = (&f[14..34], &f[14 + 32..14 + 52]);
            assert_eq!(inner[1], 0xb8, "inner TOS {src:?} -> {dst:?}");
            assert_eq!(outer[1], inner[1], "outer TOS {src:?} -> {dst:?}");
            assert_eq!(outer[6] & 0x40, 0x40, "DF {src:?} -> {dst:?}");
            assert_eq!(outer[8], ttl, "outer TTL {src:?} -> {dst:?}");
        }
    }
}

/// docs/wire.md §4 step 6 for the userspace forwarder: an inner TTL of 1
/// is dropped and counted by the receiving forwarder.
#[test]
fn userspace_forwarder_drops_ttl_1() {
    let net = TunnelNet::new("dpw2", End::Tun, End::Tun).unwrap();
    // TTL 2 from cn: 1 after ha's forwarding, dropped and counted by the
    // receiving forwarder (XDP: drop_ttl at the care-of side as well).
    let before = net.tun_stats("coa").unwrap();
    let out = net
        .topo
        .exec(
            "cn",
            &[
                "ping",
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "1",
                "-t",
                "2",
                &HOME.to_string(),
            ],
        )
        .unwrap();
    assert!(!out.status.success());
    let after = net.tun_stats("coa").unwrap();
    assert_eq!(grew(&before, &after, "drop_ttl"), 3, "{after}");
    assert_eq!(grew(&before, &after, "tunnel_decap"), 0, "{after}");
}

/// docs/wire.md §8 for the userspace forwarder: tunnel data in outer
/// fragments is dropped and counted, even though the kernel reassembled it.
#[test]
fn userspace_forwarder_drops_outer_fragments() {
    let mut net = TunnelNet::new("dpw3", End::Tun, End::Tun).unwrap();
    // Fresh frames that never reached coa (tr does not forward while they
    // are captured), then one of them in two outer fragments.
    let cap = net.dir.path().join("fresh.pcap");
    net.topo
        .exec_ok("tr", &["sysctl", "-qw", "net.ipv4.ip_forward=0"])
        .unwrap();
    let tshark = start_capture(&mut net, "tr", "tr-ha", &cap);
    let _ = net.topo.exec(
        "cn",
        &[
            "ping",
            "-c",
            "5",
            "-i",
            "0.2",
            "-W",
            "1",
            "-s",
            "600",
            &HOME.to_string(),
        ],
    );
    stop_capture(&mut net, tshark);
    net.topo
        .exec_ok("tr", &["sysctl", "-qw", "net.ipv4.ip_forward=1"])
        .unwrap();
    let fresh = tunnel_frames(&read_pcap(&cap).unwrap(), [192, 0, 2, 1], [198, 51, 100, 2]);
    assert!(fresh.len() >= 2, "{} fresh frames", fresh.len());
    let before = net.tun_stats("coa").unwrap();
    for f in fragments(&towards(&net, &fresh[0], "coa"), 304) {
        inject(&net, "tr", "tr-coa", &f);
    }
    inject(&net, "tr", "tr-coa", &towards(&net, &fresh[1], "coa"));
    let after = net.tun_stats("coa").unwrap();
    assert_eq!(grew(&before, &after, "drop_fragmented"), 1, "{after}");
    assert_eq!(grew(&before, &after, "tunnel_decap"), 1, "{after}");
}
