//! MAC speed of the XDP program, measured side by side with XDP_PASS
//! baselines in one run (BPF_PROG_TEST_RUN). Needs root.
//!
//! ```text
//! cargo run --release -p roamgate --example mac_speed -- [ROUNDS] [OBJ...]
//! ```
//!
//! With no OBJ the embedded program is measured; with several (for example a
//! saved object from before a change and the current
//! `target/ebpf/bpfel-unknown-none/release/roamgate`) each is loaded and
//! measured in every round, interleaved, so machine load hits all alike.
//!
//! Figures, ns per packet, median over the rounds:
//! - `raw_pass`: a two-instruction XDP_PASS program (as the benchmark's
//!   `xdp_pass`); `fgn_pass`: roamgate on foreign UDP (XDP_PASS);
//! - `bad_N`: a tunnel frame with an N-byte inner packet whose tag has one
//!   flipped bit: parse, SPI lookup, the full MAC, drop. Non-rewriting, so
//!   these use `repeat` in the kernel (`R`) ...
//! - ... and `*_r1`: `repeat = 1` in a loop, mean of the middle 80 %, the
//!   way the benchmark measures (`good_128_r1` is a fresh sequence number
//!   each run: full decap, replay window, strip, and forwarding: the
//!   private namespace routes the inner destination through a veth with a
//!   static neighbour, so the FIB lookup succeeds and the action is
//!   XDP_REDIRECT, as on a home agent).
//!
//! The slope of `bad_N` over N is the MAC's cost per byte.

use std::{
    net::Ipv4Addr,
    os::fd::{AsFd as _, AsRawFd as _, FromRawFd as _, OwnedFd, RawFd},
    path::PathBuf,
};

use aya::maps::HashMap;
use roamgate::dataplane::DataPlane;
use roamgate_common::{
    maps::{TunnelKey, TunnelValue, NEVER_EXPIRES, ROLE_HOME_AGENT, TUNNELS},
    siphash::Key,
    wire::tunnel::{emit, EncapRepr, MIP_PORT, OVERHEAD},
};
use roamgate_testkit::frame::FrameBuilder;

const HOME: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const CORR: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const HA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const COA: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 9);
const SPI: [u8; 4] = [0, 0, 0x10, 0x01];
const KEY_RX: Key = *b"mn->ha key 16 B!";
const KEY_TX: Key = *b"ha->mn key 16 B!";
const REPEAT: u32 = 1_000_000;
const R1_RUNS: usize = 20_000;
const SIZES: [usize; 5] = [64, 128, 256, 512, 1400];

fn bpf(cmd: libc::c_long, attr: &mut [u8; 128]) -> std::io::Result<i64> {
    // SAFETY: `attr` is a zeroed buffer laid out as the prefix of
    // `union bpf_attr` for `cmd`; the kernel reads at most its size.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), attr.len()) };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// `r0 = XDP_PASS; exit`.
fn raw_pass() -> OwnedFd {
    let insns: [u64; 2] = [0x0000_0002_0000_00b7, 0x0000_0000_0000_0095];
    let license = c"GPL";
    let mut a = [0u8; 128];
    a[0..4].copy_from_slice(&6u32.to_ne_bytes()); // BPF_PROG_TYPE_XDP
    a[4..8].copy_from_slice(&2u32.to_ne_bytes());
    a[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    a[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    let fd = bpf(5, &mut a).expect("BPF_PROG_LOAD (root?)");
    // SAFETY: a fresh fd the kernel just returned.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

/// One BPF_PROG_TEST_RUN: (action, ns per run).
fn test_run(fd: RawFd, frame: &[u8], repeat: u32) -> (u32, u32) {
    let mut out = vec![0u8; frame.len() + 256];
    let mut a = [0u8; 128];
    a[0..4].copy_from_slice(&(fd as u32).to_ne_bytes());
    a[8..12].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
    a[12..16].copy_from_slice(&(out.len() as u32).to_ne_bytes());
    a[16..24].copy_from_slice(&(frame.as_ptr() as u64).to_ne_bytes());
    a[24..32].copy_from_slice(&(out.as_mut_ptr() as u64).to_ne_bytes());
    a[32..36].copy_from_slice(&repeat.to_ne_bytes());
    bpf(10, &mut a).expect("BPF_PROG_TEST_RUN");
    let retval = u32::from_ne_bytes(a[4..8].try_into().unwrap());
    let duration = u32::from_ne_bytes(a[36..40].try_into().unwrap());
    (retval, duration)
}

/// `MAC_SPEED_ANY_ACTION=1` skips the action checks (for stripped-down
/// calibration builds of the program).
fn any_action() -> bool {
    std::env::var_os("MAC_SPEED_ANY_ACTION").is_some()
}

fn repeated(fd: RawFd, frame: &[u8], want: u32, repeat: u32) -> f64 {
    let (ret, ns) = test_run(fd, frame, repeat);
    assert!(ret == want || any_action(), "action {ret}, wanted {want}");
    ns as f64
}

fn r1(fd: RawFd, want: u32, mut frame: impl FnMut(usize) -> Vec<u8>) -> f64 {
    let mut d: Vec<u32> = (0..R1_RUNS)
        .map(|k| {
            let (ret, ns) = test_run(fd, &frame(k), 1);
            assert!(
                ret == want || any_action(),
                "action {ret} in run {k}, wanted {want}"
            );
            ns
        })
        .collect();
    d.sort_unstable();
    let cut = d.len() / 10;
    let mid = &d[cut..d.len() - cut];
    mid.iter().map(|&x| x as f64).sum::<f64>() / mid.len() as f64
}

fn inner(len: usize) -> Vec<u8> {
    FrameBuilder::new()
        .ipv4(HOME, CORR)
        .udp(6000, 5000)
        .payload_len(len - 28)
        .build_l3()
}

fn tunnel_frame(seq: u64, inner: &[u8]) -> Vec<u8> {
    let repr = EncapRepr {
        src: COA.octets(),
        dst: HA.octets(),
        src_port: MIP_PORT,
        dst_port: MIP_PORT,
        spi: SPI,
        seq,
    };
    let mut buf = vec![0u8; 14 + inner.len() + OVERHEAD];
    buf[12..14].copy_from_slice(&[0x08, 0x00]);
    let n = emit(&repr, &KEY_RX, inner, &mut buf[14..]).expect("emit");
    buf.truncate(14 + n);
    buf
}

fn bad_mac(len: usize) -> Vec<u8> {
    let mut f = tunnel_frame(1, &inner(len));
    let n = f.len();
    f[n - 1] ^= 0x01;
    f
}

struct Loaded {
    name: String,
    dp: DataPlane,
    seq: u64,
}

fn load(name: String, obj: &[u8], k: usize) -> Loaded {
    let pin = PathBuf::from(format!(
        "/sys/fs/bpf/roamgate-macspeed-{}-{k}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&pin);
    let loaded = DataPlane::load_object(obj, &pin);
    // The maps live on through the program's fds; the pins are not needed.
    let _ = std::fs::remove_dir_all(&pin);
    let mut dp = loaded.expect("load data plane");
    let mut t: HashMap<_, TunnelKey, TunnelValue> =
        HashMap::try_from(dp.ebpf_mut().map_mut(TUNNELS).unwrap()).unwrap();
    t.insert(
        TunnelKey { spi: SPI },
        TunnelValue {
            key_tx: KEY_TX,
            key_rx: KEY_RX,
            local: HA.octets(),
            home: HOME.octets(),
            src_port: MIP_PORT.to_be_bytes(),
            dst_port: MIP_PORT.to_be_bytes(),
            mtu: 1500,
            role: ROLE_HOME_AGENT,
            pad: 0,
            expires_ns: NEVER_EXPIRES,
            tx_seq: 0,
            rx: Default::default(),
        },
        0,
    )
    .unwrap();
    Loaded { name, dp, seq: 1 }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map(|a| a.parse().expect("ROUNDS")).unwrap_or(3);
    let objs: Vec<String> = args.collect();
    // SAFETY: plain syscall; this process only.
    assert_eq!(unsafe { libc::unshare(libc::CLONE_NEWNET) }, 0, "unshare");
    // A route to the correspondent through a veth with a static neighbour,
    // so the decapsulated packet is forwarded (FIB success, XDP_REDIRECT) as
    // on a real home agent.
    let st = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            "ip link set lo up \
             && ip link add rgms0 address 02:00:00:00:99:01 type veth peer name rgms1 \
             && ip link set rgms0 up && ip link set rgms1 up \
             && ip addr add 203.0.113.1/24 dev rgms0 \
             && ip neigh replace 203.0.113.2 lladdr 02:00:00:00:99:02 nud permanent dev rgms0 \
             && ip route add 10.9.0.0/24 via 203.0.113.2 dev rgms0 \
             && sysctl -qw net.ipv4.conf.all.forwarding=1 net.ipv4.conf.lo.forwarding=1",
        )
        .status()
        .expect("sh");
    assert!(st.success(), "network setup");
    let mut progs: Vec<Loaded> = if objs.is_empty() {
        vec![load("embedded".into(), roamgate::dataplane::EBPF_OBJECT, 0)]
    } else {
        objs.iter()
            .enumerate()
            .map(|(k, p)| load(p.clone(), &std::fs::read(p).expect("read OBJ"), k))
            .collect()
    };
    let pass = raw_pass();
    let pass_fd = pass.as_raw_fd();
    let foreign = FrameBuilder::new()
        .ipv4(CORR, Ipv4Addr::new(10, 7, 0, 1))
        .udp(5000, 6000)
        .payload_len(100)
        .build();
    let bad: Vec<Vec<u8>> = SIZES.iter().map(|&n| bad_mac(n)).collect();
    let inner128 = inner(128);

    // results[prog][metric] over rounds
    let metrics = [
        "raw_pass",
        "fgn_pass",
        "bad_64",
        "bad_128",
        "bad_256",
        "bad_512",
        "bad_1400",
        "raw_pass_r1",
        "bad_128_r1",
        "good_128_r1",
    ];
    let mut res = vec![vec![Vec::new(); metrics.len()]; progs.len()];
    for round in 0..rounds {
        for (pi, p) in progs.iter_mut().enumerate() {
            let fd = p.dp.xdp().unwrap().fd().unwrap().as_fd().as_raw_fd();
            let mut row = Vec::new();
            row.push(repeated(pass_fd, &foreign, 2, REPEAT));
            row.push(repeated(fd, &foreign, 2, REPEAT));
            for f in &bad {
                row.push(repeated(fd, f, 1, REPEAT / 4));
            }
            row.push(r1(pass_fd, 2, |_| foreign.clone()));
            row.push(r1(fd, 1, |_| bad[1].clone()));
            let mut seq = p.seq;
            row.push(r1(fd, 4, |_| {
                seq += 1;
                tunnel_frame(seq - 1, &inner128)
            }));
            p.seq = seq;
            eprintln!(
                "round {round} {}: {}",
                p.name,
                metrics
                    .iter()
                    .zip(&row)
                    .map(|(m, v)| format!("{m}={v:.1}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            );
            for (m, v) in row.into_iter().enumerate() {
                res[pi][m].push(v);
            }
        }
    }
    println!("median (and minimum) of {rounds} rounds, ns/packet");
    for (pi, p) in progs.iter().enumerate() {
        let med: Vec<f64> = res[pi].iter().map(|v| median(v.clone())).collect();
        let min: Vec<f64> = res[pi]
            .iter()
            .map(|v| v.iter().cloned().fold(f64::INFINITY, f64::min))
            .collect();
        println!("== {}", p.name);
        for ((m, v), lo) in metrics.iter().zip(&med).zip(&min) {
            println!("  {m:<12} {v:8.1}  (min {lo:.1})");
        }
        let slope = (med[6] - med[2]) / (1400.0 - 64.0);
        println!(
            "  ratio bad_128/raw_pass {:.2}  bad_128/fgn_pass {:.2}  bad_128_r1/raw_pass_r1 {:.2}  good_128_r1/raw_pass_r1 {:.2}",
            med[3] / med[0],
            med[3] / med[1],
            med[8] / med[7],
            med[9] / med[7]
        );
        println!(
            "  MAC slope {:.3} ns/byte (bad_64..bad_1400); bad_128 - fgn_pass = {:.1} ns",
            slope,
            med[3] - med[1]
        );
    }
}
