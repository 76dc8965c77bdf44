//! Data-plane benchmark (`roamgate-bench --only dataplane`). Its keys merge
//! into the top level of the JSON:
//!
//! - `testrun_ns`: ns per packet from BPF_PROG_TEST_RUN for one 128-byte
//!   inner packet (142-byte frame), every value measured the same way:
//!   `repeat = 1` in a loop (the rewriting programs cannot be repeated in
//!   the kernel), mean of the middle 80 % of 20 000 runs. `xdp_pass` is a
//!   separate two-instruction XDP_PASS program (`rawbpf::constant`); its
//!   in-kernel `repeat = 1 000 000` figure is reported beside it as
//!   `xdp_pass_amortised`, and roamgate's own program on foreign traffic as
//!   `roamgate_foreign_pass`. Runs happen in the home agent's namespace with
//!   the real ingress ifindex, so the FIB lookups succeed as in production.
//! - `veth_mpps`: roamgate as deployed, the native XDP program of the veth a
//!   frame arrives on (see `veth_rx`). A live-frames BPF_PROG_TEST_RUN
//!   generator on one pinned core writes each frame (stamping tunnel frames
//!   with a fresh sequence number and tag) and redirects it into the veth;
//!   roamgate forwards it into a second veth whose peer drops it. The
//!   `xdp_drop` baseline is the same generator into a veth whose peer drops
//!   at once, so generator and first hop cost the same on both sides of the
//!   ratio. Batch 64 (the kernel's default); Mpps = 1000 / the kernel's ns
//!   per frame (the veths' NAPI runs in the generator's softirq, inside the
//!   timed region; the clock stops while the thread is rescheduled), with
//!   `wall_mpps` = frames / wall time beside it. `direct_testrun` keeps the
//!   earlier method: roamgate itself run by live-frames TestRun with the
//!   veth's ifindex, batch 1, redirecting into a restoring sink, plus the
//!   cost of a bare `bpf_redirect` (`redirect_only_*`) into the same veth.
//! - `tun_pps`: the userspace forwarder (in this process, release build)
//!   encapsulating the same packets from a real TUN device, driven by a UDP
//!   sender on the correspondent; `tun_cpu` is the CPU its two threads used.
//! - `bindings_scale`: decap_verify with 1 000 and 1 000 000 bindings and
//!   tunnels installed.
//! - `reference`: decap_verify against the C reference program doing the
//!   same work (`ratio_decap_verify_over_reference`, kernel ns per packet).

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::{AsFd as _, AsRawFd as _},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use roamgate::{
    config::ConfigFile,
    dataplane::{
        maps::{Binding, Expiry, Maps, Role, TunnelSpec, VoiceFlow},
        DataPlane,
    },
    tunnel::{config::TunnelConfig, core::Encapsulator},
};
use roamgate_mip::tunnel_key::{derive_keys, MasterKey};
use roamgate_testkit::{fixture::TestPinDir, frame::FrameBuilder};
use serde_json::{json, Value};

use crate::{
    afpacket::PacketGen,
    netns::{in_netns, Topology, HA_CN, TR_HA},
    rawbpf::{self, RawProg},
    tunnel_net::{
        write_master_key, End, TunnelNet, CN, COA_TR, HA_TR, HOME, MASTER, OUTER_MTU, SPI,
    },
};

/// Inner packet size of every measurement.
const INNER_LEN: usize = 128;
/// repeat = 1 runs per TestRun figure, in interleaved rounds.
const ROUNDS: usize = 20;
const PER_ROUND: usize = 1_000;
const RUNS: usize = ROUNDS * PER_ROUND;
/// Frames per live-frames measurement.
const LIVE_FRAMES: u32 = 1_000_000;
/// Interleaved rounds of the attached-veth figures.
const LIVE_ROUNDS: usize = 3;
/// The core the live-frames runs are pinned to.
const BENCH_CPU: usize = 1;
const XDP_ACTION_REDIRECT: u32 = 4;
const XDP_ACTION_TX: u32 = 3;
const XDP_ACTION_DROP: u32 = 1;

fn round(v: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (v * p).round() / p
}

/// Mean of the middle 80 %.
fn trimmed_mean(mut v: Vec<u32>) -> f64 {
    v.sort_unstable();
    let cut = v.len() / 10;
    let mid = &v[cut..v.len() - cut];
    mid.iter().map(|&x| x as f64).sum::<f64>() / mid.len() as f64
}

struct Frames {
    /// cn -> home, as the home agent receives it on ha-cn.
    encap: Vec<u8>,
    /// A voice (RTP) packet cn -> home, per RTP sequence number.
    voice: Box<dyn Fn(u16) -> Vec<u8> + Send + Sync>,
    /// A tunnel frame care-of -> home agent with sequence `seq`, as the home
    /// agent receives it on ha-tr.
    decap: Box<dyn Fn(u64) -> Vec<u8> + Send + Sync>,
    /// The same on a second tunnel ([`SPI2`], home address [`HOME2`]): the
    /// second generator thread of the two-core runs.
    decap2: Box<dyn Fn(u64) -> Vec<u8> + Send + Sync>,
    /// The same with an inner destination the home agent has no route to
    /// (diagnostic: decapsulation without the FIB hit and the redirect).
    decap_unrouted: Box<dyn Fn(u64) -> Vec<u8> + Send + Sync>,
    /// Same, with the tag flipped.
    bad_mac: Vec<u8>,
    /// A tunnel frame with an inner packet of this many bytes and its tag
    /// flipped: parse, SPI lookup and the whole MAC, then a drop.
    bad_mac_len: Box<dyn Fn(usize) -> Vec<u8> + Send + Sync>,
    /// A frame the program passes (not for a home address).
    foreign: Vec<u8>,
}

fn frames(net: &TunnelNet) -> anyhow::Result<Frames> {
    let ha_cn = net.mac("ha", "ha-cn")?;
    let cn0 = net.mac("cn", "cn0")?;
    let ha_tr = net.mac("ha", "ha-tr")?;
    let tr_ha = net.mac("tr", "tr-ha")?;
    let encap = FrameBuilder::new()
        .macs(cn0, ha_cn)
        .ipv4(CN, HOME)
        .udp(5000, 6000)
        .payload_len(INNER_LEN - 28)
        .build();
    let foreign = FrameBuilder::new()
        .macs(cn0, ha_cn)
        .ipv4(CN, Ipv4Addr::new(10, 1, 0, 1))
        .udp(5000, 6000)
        .payload_len(INNER_LEN - 28)
        .build();
    let voice = Box::new(move |seq: u16| {
        let mut rtp = vec![0x80, 0x00];
        rtp.extend_from_slice(&seq.to_be_bytes());
        rtp.extend_from_slice(&[0, 0, 0, 160]);
        rtp.extend_from_slice(&0xfeed_f00du32.to_be_bytes());
        rtp.resize(INNER_LEN - 28, 0x55);
        FrameBuilder::new()
            .macs(cn0, ha_cn)
            .ipv4(CN, HOME)
            .udp(5004, 6004)
            .payload(&rtp)
            .build()
    });
    let tx1 = derive_keys(&MasterKey::new(MASTER), SPI, HOME, Role::CareOf).tx;
    let tx2 = derive_keys(&MasterKey::new(MASTER), SPI2, HOME2, Role::CareOf).tx;
    let tunnel_frame_of =
        move |spi: u32, home: Ipv4Addr, seq: u64, dst: Ipv4Addr, inner_len: usize| {
            let tx = if spi == SPI { tx1 } else { tx2 };
            let inner = FrameBuilder::new()
                .ipv4(home, dst)
                .udp(6000, 5000)
                .payload_len(inner_len - 28)
                .build_l3();
            let mut enc = Encapsulator::new(spi, COA_TR, HA_TR, tx, 1500, seq);
            let mut out = vec![0u8; 14 + 2048];
            let n = enc
                .encap(&inner, &mut out[14..])
                .expect("encap of a valid packet");
            out.truncate(14 + n);
            out[0..6].copy_from_slice(&ha_tr);
            out[6..12].copy_from_slice(&tr_ha);
            out[12..14].copy_from_slice(&[0x08, 0x00]);
            out
        };
    let tunnel_frame_len = move |seq: u64, dst: Ipv4Addr, inner_len: usize| {
        tunnel_frame_of(SPI, HOME, seq, dst, inner_len)
    };
    let tunnel_frame = move |seq: u64, dst: Ipv4Addr| tunnel_frame_len(seq, dst, INNER_LEN);
    let decap2 = Box::new(move |seq: u64| tunnel_frame_of(SPI2, HOME2, seq, CN, INNER_LEN));
    let bad_mac_len = Box::new(move |len: usize| {
        let mut f = tunnel_frame_len(1, CN, len);
        let n = f.len();
        f[n - 1] ^= 0x01;
        f
    });
    let decap = Box::new(move |seq: u64| tunnel_frame(seq, CN));
    let decap_unrouted = Box::new(move |seq: u64| tunnel_frame(seq, Ipv4Addr::new(172, 31, 0, 1)));
    let mut bad_mac = decap(1);
    let n = bad_mac.len();
    bad_mac[n - 1] ^= 0x01;
    Ok(Frames {
        encap,
        voice,
        decap,
        decap2,
        decap_unrouted,
        bad_mac,
        bad_mac_len,
        foreign,
    })
}

/// One round of [`PER_ROUND`] TestRuns (`repeat = 1`) of `frame`, each
/// checked for one of the actions `want`: the kernel's (run_time_ns,
/// run_cnt) of `fd` over it.
fn kernel_round(fd: i32, frame: &[u8], ifindex: u32, want: &[u32]) -> anyhow::Result<(u64, u64)> {
    let (t0, c0) = rawbpf::prog_run_stats(fd)?;
    for _ in 0..PER_ROUND {
        let r = rawbpf::test_run(fd, frame, 1, ifindex, None, None)?;
        if !want.contains(&r.retval) {
            bail!("action {} (wanted {want:?})", r.retval);
        }
    }
    let (t1, c1) = rawbpf::prog_run_stats(fd)?;
    Ok((t1 - t0, c1 - c0))
}

/// The MAC's cost in the shipped program and its floor, measured in the
/// same interleaved rounds (so that a slow phase of this shared machine
/// hits both alike):
///
/// - `mac_cost`: kernel ns per run of the bad-MAC drop (parse, SPI lookup,
///   the whole SipHash-2-4-128, drop) at several inner lengths; the
///   least-squares slope, per 8-byte word (two SipRounds of c = 2) and per
///   SipRound.
/// - `siphash_probe`: [`rawbpf::siphash_probe`], the same SipHash-2-4-128
///   over the same 152 bytes and nothing else, beside the two-instruction
///   XDP_PASS (the accounting both carry). `ratio_mac_over_probe`: the MAC's
///   share of decap_verify (the slope's ns per SipRound times the 48
///   SipRounds of a 152-byte message: 20 words of two, 8 to finish) over the
///   probe's own time (its ns less XDP_PASS's).
fn mac_and_probe(prog: i32, f: &Frames, ifindex: u32, pass: i32) -> anyhow::Result<(Value, Value)> {
    const LENS: [usize; 6] = [64, 128, 256, 512, 1024, 1400];
    let probe = rawbpf::siphash_probe(0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908)?;
    let probe_frame = vec![0x5au8; 14 + INNER_LEN + 24];
    let frames: Vec<Vec<u8>> = LENS.iter().map(|&l| (f.bad_mac_len)(l)).collect();
    let mut totals = [(0u64, 0u64); LENS.len()];
    let mut floor = [(0u64, 0u64); 2];
    for _ in 0..ROUNDS / 2 {
        for (k, fr) in frames.iter().enumerate() {
            let (t, c) = kernel_round(prog, fr, ifindex, &[XDP_ACTION_DROP])
                .with_context(|| format!("bad-MAC frame of inner length {}", LENS[k]))?;
            totals[k].0 += t;
            totals[k].1 += c;
        }
        for (k, fd) in [probe.fd(), pass].into_iter().enumerate() {
            let (t, c) = kernel_round(fd, &probe_frame, 0, &[XDP_ACTION_DROP, 2])?;
            floor[k].0 += t;
            floor[k].1 += c;
        }
    }
    let pts: Vec<(f64, f64)> = LENS
        .iter()
        .zip(totals)
        .map(|(&l, (t, c))| (l as f64, t as f64 / c.max(1) as f64))
        .collect();
    let n = pts.len() as f64;
    let (mx, my) = (
        pts.iter().map(|p| p.0).sum::<f64>() / n,
        pts.iter().map(|p| p.1).sum::<f64>() / n,
    );
    let slope = pts.iter().map(|p| (p.0 - mx) * (p.1 - my)).sum::<f64>()
        / pts.iter().map(|p| (p.0 - mx).powi(2)).sum::<f64>();
    let method = format!(
        "kernel bpf_stats, repeat=1 TestRun; {} rounds, each: the bad-MAC drop at every length, the probe, XDP_PASS, x 1000",
        ROUNDS / 2
    );
    let mac = json!({
        "ns_per_run_by_inner_len": pts.iter().map(|p| json!([p.0, round(p.1, 1)])).collect::<Vec<_>>(),
        "ns_per_byte": round(slope, 3),
        "ns_per_word": round(slope * 8.0, 2),
        "ns_per_sipround": round(slope * 4.0, 2),
        "ns_fixed": round(my - slope * mx, 1),
        "method": method,
    });
    let ns = |k: usize| floor[k].0 as f64 / floor[k].1.max(1) as f64;
    let (probe_ns, pass_ns) = (ns(0), ns(1));
    let mac_share = slope * 4.0 * 48.0;
    let probe = json!({
        "bytes": rawbpf::SIPHASH_PROBE_LEN,
        "probe_ns_per_run": round(probe_ns, 1),
        "xdp_pass_ns_per_run": round(pass_ns, 1),
        "probe_net_ns": round(probe_ns - pass_ns, 1),
        "mac_share_of_decap_verify_ns": round(mac_share, 1),
        "ratio_mac_over_probe": round(mac_share / (probe_ns - pass_ns), 3),
        "method": format!("{method}; probe: straight-line SipHash-2-4-128, key in registers"),
    });
    Ok((mac, probe))
}

/// One TestRun figure: repeat = 1 runs of `prog`, each checked for an
/// expected action.
struct Case<'a> {
    name: &'static str,
    prog: i32,
    ifindex: u32,
    want: &'a [u32],
    samples: Vec<u32>,
    /// The kernel's run time and count of the program over this case's runs.
    bpf_ns: u64,
    bpf_runs: u64,
}

impl<'a> Case<'a> {
    fn new(name: &'static str, prog: i32, ifindex: u32, want: &'a [u32]) -> Self {
        Self {
            name,
            prog,
            ifindex,
            want,
            samples: Vec::with_capacity(RUNS),
            bpf_ns: 0,
            bpf_runs: 0,
        }
    }

    /// Times one run per frame, back to back (the frames were built before).
    fn time(&mut self, frames: &[Vec<u8>]) -> anyhow::Result<()> {
        let mut out = vec![0u8; 4096];
        let (t0, c0) = rawbpf::prog_run_stats(self.prog)?;
        for (k, f) in frames.iter().enumerate() {
            let r = rawbpf::test_run(self.prog, f, 1, self.ifindex, None, Some(&mut out))?;
            if !self.want.contains(&r.retval) {
                bail!(
                    "{}: run {k} returned action {} (wanted {:?})",
                    self.name,
                    r.retval,
                    self.want
                );
            }
            self.samples.push(r.duration_ns);
        }
        let (t1, c1) = rawbpf::prog_run_stats(self.prog)?;
        self.bpf_ns += t1.saturating_sub(t0);
        self.bpf_runs += c1.saturating_sub(c0);
        Ok(())
    }

    /// The program's own ns per run over this case, by the kernel.
    fn bpf_ns_per_run(&self) -> f64 {
        self.bpf_ns as f64 / self.bpf_runs.max(1) as f64
    }
}

fn xdp_fd(dp: &DataPlane) -> anyhow::Result<i32> {
    Ok(dp.xdp()?.fd()?.as_fd().as_raw_fd())
}

/// Live-frames run; returns (Mpps by wall time, kernel ns per frame).
fn live(prog: i32, frame: &[u8], ifindex: u32, batch: u32, n: u32) -> anyhow::Result<(f64, u32)> {
    let t = Instant::now();
    let r = rawbpf::test_run(prog, frame, n, ifindex, Some(batch), None)?;
    let wall = t.elapsed().as_secs_f64();
    Ok((n as f64 / wall / 1e6, r.duration_ns))
}

pub fn run() -> anyhow::Result<Value> {
    let started = Instant::now();
    // The kernel's per-program statistics for the whole run; the sysctl is
    // restored when `stats` drops.
    let stats = rawbpf::BpfStats::enable()?;
    // Two queues per veth: the two-core AF_PACKET runs feed one each.
    let net = TunnelNet::with_veth_queues("bench", End::Xdp, End::Xdp, 2)?;
    let f = frames(&net)?;
    let ha = net.ha.as_ref().context("home agent data plane")?;
    let prog = xdp_fd(ha)?;
    let pass = rawbpf::constant(rawbpf::XDP_PASS)?;
    let drop_prog = rawbpf::constant(rawbpf::XDP_DROP)?;
    let mut maps = Maps::open(&net.pin_ha)?;
    maps.authorise_voice(&bench_voice_flow(), Expiry::Never)?;
    let ha_ns = net.topo.ns("ha");
    let mut next_seq = 1u64;
    let ok_fwd = [XDP_ACTION_REDIRECT, XDP_ACTION_TX];

    // ---- TestRun, ns per packet.
    let (tr, after_seq) = in_netns(&ha_ns, || {
        let if_cn = rawbpf::ifindex("ha-cn")?;
        let if_tr = rawbpf::ifindex("ha-tr")?;
        let amortised = rawbpf::test_run(pass.fd(), &f.encap, 1_000_000, if_cn, None, None)?;
        // The cases run interleaved, ROUNDS times PER_ROUND runs each, so a
        // noisy moment on this shared machine hits every figure alike.
        let drop_only = [XDP_ACTION_DROP];
        let any = [0, 1, 2, 3, 4];
        let mut cases = [
            Case::new("xdp_pass", pass.fd(), if_cn, &[2]),
            Case::new("roamgate_foreign_pass", prog, if_cn, &[2]),
            Case::new("encap", prog, if_cn, &ok_fwd),
            Case::new("decap_verify", prog, if_tr, &ok_fwd),
            // Diagnostic split: parse, SPI lookup, MAC and replay check,
            // then a drop (the round's last accepted decap frame again).
            Case::new("drop_replayed", prog, if_tr, &drop_only),
            // Decapsulation without the FIB hit and the redirect.
            Case::new("decap_unrouted", prog, if_tr, &any),
            Case::new("voice", prog, if_cn, &ok_fwd),
            Case::new("drop_bad_mac", prog, if_tr, &drop_only),
        ];
        let mut seq = next_seq;
        let mut rtp_seq = 0u16;
        for _ in 0..ROUNDS {
            let decap: Vec<Vec<u8>> = (0..PER_ROUND as u64).map(|k| (f.decap)(seq + k)).collect();
            seq += PER_ROUND as u64;
            let last = seq - 1;
            let unrouted: Vec<Vec<u8>> = (0..PER_ROUND as u64)
                .map(|k| (f.decap_unrouted)(seq + k))
                .collect();
            seq += PER_ROUND as u64;
            let voice: Vec<Vec<u8>> = (0..PER_ROUND)
                .map(|_| {
                    rtp_seq = rtp_seq.wrapping_add(1);
                    (f.voice)(rtp_seq)
                })
                .collect();
            let replayed = vec![(f.decap)(last); PER_ROUND];
            let same = |fr: &Vec<u8>| vec![fr.clone(); PER_ROUND];
            let inputs = [
                same(&f.encap),
                same(&f.foreign),
                same(&f.encap),
                decap,
                replayed,
                unrouted,
                voice,
                same(&f.bad_mac),
            ];
            for (c, frames) in cases.iter_mut().zip(inputs.iter()) {
                c.time(frames)?;
            }
        }
        let mut out = serde_json::Map::new();
        let mut kernel = serde_json::Map::new();
        for c in &cases {
            out.insert(
                c.name.into(),
                json!(round(trimmed_mean(c.samples.clone()), 1)),
            );
            kernel.insert(c.name.into(), json!(round(c.bpf_ns_per_run(), 1)));
        }
        out.insert("bpf_stats_ns_per_run".into(), Value::Object(kernel));
        out.insert("xdp_pass_amortised".into(), json!(amortised.duration_ns));
        // Why repeat = 1 and not live-frames mode: the rewriting programs
        // cannot be repeated in place, and live frames (a fresh frame per
        // run) is what the veth figures use where the kernel allows it.
        out.insert(
            "why_repeat_1".into(),
            json!(match rawbpf::live_frames_supported() {
                Ok(()) => "a rewriting program cannot be repeated on one frame; live-frames figures: veth_mpps.direct_testrun".to_owned(),
                Err(why) => format!("a rewriting program cannot be repeated on one frame, and {why}"),
            }),
        );
        out.insert(
            "method".into(),
            json!(format!(
                "repeat=1, {ROUNDS} interleaved rounds x {PER_ROUND} runs per case, mean of middle 80%, 142-byte frame (128-byte inner)"
            )),
        );
        Ok((Value::Object(out), seq))
    })?;
    next_seq = after_seq;
    let (mac, probe) = in_netns(&ha_ns, || {
        mac_and_probe(prog, &f, rawbpf::ifindex("ha-tr")?, pass.fd())
    })?;
    eprintln!("mac_cost: {mac}");
    eprintln!("siphash_probe: {probe}");
    let c = ha.counters()?;
    if c.get("voice_forwarded") < RUNS as u64 {
        bail!("voice runs did not take the voice path: {c:?}");
    }
    eprintln!("testrun_ns: {tr}");
    let pass_ns = tr["xdp_pass"].as_f64().unwrap_or(f64::NAN);

    // ---- veth, live frames, one core.
    // Both methods need the live-frames mode of BPF_PROG_TEST_RUN; where
    // the kernel refuses it, the veth figures are skipped and say why.
    let (direct, rx) = match rawbpf::live_frames_supported() {
        Ok(()) => {
            let direct = veth_live(&net, prog, &drop_prog, &f, &mut next_seq)?;
            eprintln!("veth, program run by TestRun: {direct}");
            let rx = veth_rx(&net, &f, &mut next_seq)?;
            eprintln!("veth, program attached to the veth: {rx}");
            (direct, rx)
        }
        Err(why) => {
            eprintln!("live-frames veth figures skipped: {why}");
            (json!({ "skipped": why }), json!({ "skipped": why }))
        }
    };
    // ---- veth again, AF_PACKET generators (any kernel). The kernel's
    // page_pool warnings seen after live-frames runs are counted around it:
    // the same program redirecting between the same veths, without the
    // live-frames test harness.
    let pp_before = page_pool_lines();
    let mut afp = veth_afpacket(&net, &f, &mut next_seq)?;
    afp["page_pool_kernel_lines_during_run"] = match (pp_before, page_pool_lines()) {
        (Some(a), Some(b)) => json!(b.saturating_sub(a)),
        _ => json!("dmesg unreadable"),
    };
    eprintln!("veth, AF_PACKET generators: {afp}");
    let get = |k: &str| rx[k]["mpps"].as_f64().unwrap_or(f64::NAN);
    let live_res = json!({
        "xdp_drop": get("xdp_drop"),
        "ha_encap_redirect": get("ha_encap_redirect"),
        "decap_verify_redirect": round(
            get("decap_verify_redirect") * rx["decap_verify_forwarded_fraction"].as_f64().unwrap_or(0.0).min(1.0),
            3
        ),
        "batch_size": rx["batch_size"],
        "method": "roamgate attached natively to the receiving veth; live-frames generator on one core; batch 64",
        "detail": rx,
        "direct_testrun": direct,
    });

    // ---- userspace forwarder on the same path and packet size.
    drop(maps);
    let tun = tun_pps()?;
    eprintln!("tun: {tun}");

    // ---- bindings scale.
    let scale = bindings_scale(&net, &f)?;
    eprintln!("bindings_scale: {scale}");

    // ---- the C reference doing the same work.
    let reference = reference_compare(&net, &f)?;
    eprintln!("reference: {reference}");

    let drop_mpps = live_res["xdp_drop"].as_f64().unwrap_or(f64::NAN);
    let decap_mpps = live_res["decap_verify_redirect"]
        .as_f64()
        .unwrap_or(f64::NAN);
    let encap_mpps = live_res["ha_encap_redirect"].as_f64().unwrap_or(f64::NAN);
    let tun_pps_v = tun["tun_pps"].as_f64().unwrap_or(f64::NAN);
    let tun_cpu = tun["tun_cpu"].as_f64().unwrap_or(f64::NAN);
    let tun_per_cpu = tun_pps_v / tun_cpu.max(1e-9);
    let afp_mpps = |k: &str| afp["one_core"][k]["mpps"].as_f64().unwrap_or(f64::NAN);
    let (afp_encap, afp_drop) = (afp_mpps("ha_encap_redirect"), afp_mpps("xdp_drop"));
    Ok(json!({
        "testrun_ns": tr,
        "ratio_decap_verify_over_pass": round(tr["decap_verify"].as_f64().unwrap_or(f64::NAN) / pass_ns, 2),
        "ratio_encap_over_pass": round(tr["encap"].as_f64().unwrap_or(f64::NAN) / pass_ns, 2),
        "veth_mpps": live_res,
        "ratio_decap_verify_over_drop": round(decap_mpps / drop_mpps, 3),
        "tun_pps": round(tun_pps_v, 0),
        "tun_cpu": round(tun_cpu, 2),
        "tun_detail": tun,
        "ratio_xdp_over_tun": round(encap_mpps * 1e6 / tun_per_cpu, 2),
        // The AF_PACKET figure carries its generator (the tun figure does
        // not carry its UDP sender): a lower bound. `_net` takes out what
        // the encapsulation path shares with the xdp_drop baseline (the
        // generator, the first veth and one XDP run): per frame,
        // 1/encap - 1/drop.
        "ratio_xdp_over_tun_afpacket": round(afp_encap * 1e6 / tun_per_cpu, 2),
        "ratio_xdp_over_tun_afpacket_net": round(
            1.0 / (1.0 / afp_encap - 1.0 / afp_drop) * 1e6 / tun_per_cpu,
            2
        ),
        "ratio_xdp_over_tun_direct_b1": round(
            live_res["direct_testrun"]["ha_encap_redirect"].as_f64().unwrap_or(f64::NAN) * 1e6
                / tun_per_cpu,
            2
        ),
        "ratio_decap_verify_over_drop_direct_b1": round(
            live_res["direct_testrun"]["decap_verify_redirect"].as_f64().unwrap_or(f64::NAN)
                / live_res["direct_testrun"]["xdp_drop"].as_f64().unwrap_or(f64::NAN),
            3
        ),
        "bindings_scale": scale,
        "veth_afpacket": afp,
        "ratio_decap_verify_over_redirect_ceiling_afpacket": afp["ratio_decap_verify_over_redirect_ceiling"],
        "scaling_2_over_1": afp["scaling_2_over_1"]["decap_verify_redirect"],
        // Live veth Mpps of decap_verify over the zero-work bpf_redirect
        // forwarder on the same kind of path (issue 15's ceiling ratio).
        "ratio_decap_verify_over_redirect_ceiling": round(
            decap_mpps
                / rx["zero_work_forwarder"]["bare_redirect"]["mpps"].as_f64().unwrap_or(f64::NAN),
            3
        ),
        "bpf_stats": {
            "sysctl": "kernel.bpf_stats_enabled=1 for the run",
            "restored_to": stats.previous(),
            "testrun_ns_per_run": tr["bpf_stats_ns_per_run"],
            "veth_ns_per_run": rx["bpf_stats_ns_per_run"],
            "zero_work_ns_per_run": rx["zero_work_forwarder"]["bpf_stats_ns_per_run"],
        },
        "reference": reference,
        "ratio_decap_verify_over_reference": reference["ratio_decap_verify_over_reference"],
        "mac_cost": mac,
        "siphash_probe": probe,
        "ratio_mac_over_probe": probe["ratio_mac_over_probe"],
        "dataplane_bench_secs": round(started.elapsed().as_secs_f64(), 1),
    }))
}

/// The tags of the decap frames with sequence numbers `seqs`.
fn decap_tags(f: &Frames, seqs: std::ops::Range<u64>) -> Vec<[u8; 16]> {
    seqs.map(|seq| {
        let fr = (f.decap)(seq);
        let mut t = [0u8; 16];
        t.copy_from_slice(&fr[fr.len() - 16..]);
        t
    })
    .collect()
}

/// One live-frames run as a JSON figure: Mpps from the kernel's ns per
/// frame, wall-clock Mpps beside it.
fn live_json(prog: i32, frame: &[u8], ingress: u32, batch: u32, n: u32) -> anyhow::Result<Value> {
    let (wall, kns) = live(prog, frame, ingress, batch, n)?;
    Ok(
        json!({"mpps": round(1e3 / kns.max(1) as f64, 3), "wall_mpps": round(wall, 3), "kernel_ns": kns}),
    )
}

/// [`live_json`] of a generator program.
fn gen_run(gen: &RawProg, frame: &[u8], ingress: u32, batch: u32, n: u32) -> anyhow::Result<Value> {
    live_json(gen.fd(), frame, ingress, batch, n)
}

/// The headline veth figures: roamgate runs as the native XDP program of the
/// veth a frame arrives on, as deployed. A live-frames generator (`rawbpf::
/// generator`, pinned to one core) writes each frame, stamps tunnel frames
/// with a fresh sequence number and tag, and redirects it into the veth;
/// roamgate forwards it into a second veth whose peer drops it. The
/// baseline `xdp_drop` is the same generator into a veth whose peer drops at
/// once. Everything runs on the generator's core inside the kernel's timed
/// region (the veths' NAPI runs in its softirq), at the kernel's default
/// batch of 64.
fn veth_rx(net: &TunnelNet, f: &Frames, next_seq: &mut u64) -> anyhow::Result<Value> {
    let ha = net.ha.as_ref().context("ha")?;
    let ha_ns = net.topo.ns("ha");
    let tr_ns = net.topo.ns("tr");
    let cn_ns = net.topo.ns("cn");
    let batch = 64;
    let n = LIVE_FRAMES / 2;
    let drop_prog = rawbpf::constant(rawbpf::XDP_DROP)?;
    let prog = xdp_fd(ha)?;
    // The programs' own ns per run, by the kernel: roamgate's (attached to
    // ha-tr and ha-cn) per path, and the drop sink's of the baseline.
    let (mut drop_k, mut enc_k, mut dec_k) = (Vec::new(), Vec::new(), Vec::new());
    let (mut drop_ns, mut enc_ns, mut dec_ns) = (Vec::new(), Vec::new(), Vec::new());
    let (mut enc_d, mut dec_d) = (Vec::new(), Vec::new());
    // Three interleaved rounds, so baseline and paths share the machine's
    // moods; each figure is the mean of its rounds.
    for _ in 0..LIVE_ROUNDS {
        // Baseline: ha -> cn0, dropped by cn0's program.
        let cn_sink = in_netns(&cn_ns, || drop_prog.attach_xdp(rawbpf::ifindex("cn0")?))?;
        let (r, k) = rawbpf::ns_per_run(drop_prog.fd(), || {
            in_netns(&ha_ns, || {
                rawbpf::pin_to_cpu(BENCH_CPU)?;
                let out = rawbpf::ifindex("ha-cn")?;
                let gen = rawbpf::generator(&f.encap, None, out)?;
                gen_run(&gen, &f.encap, out, batch, n)
            })
        })?;
        drop_ns.push(r);
        drop_k.extend(k);

        // Decapsulation: tr-ha -> ha-tr (roamgate) -> ha-cn -> cn0, dropped.
        let first = *next_seq;
        let tags = decap_tags(f, first..first + n as u64);
        let frame0 = (f.decap)(first);
        let l = frame0.len();
        let stamp = rawbpf::Stamp {
            seq_off: l - 24,
            tag_off: l - 16,
            first_seq: first,
            tags: &tags,
        };
        let before = ha.counters()?;
        let (r, k) = rawbpf::ns_per_run(prog, || {
            in_netns(&tr_ns, || {
                rawbpf::pin_to_cpu(BENCH_CPU)?;
                let out = rawbpf::ifindex("tr-ha")?;
                let gen = rawbpf::generator(&frame0, Some(&stamp), out)?;
                gen_run(&gen, &frame0, out, batch, n)
            })
        })?;
        dec_ns.push(r);
        dec_k.extend(k);
        dec_d.push(ha.counters()?.delta(&before));
        drop(cn_sink);
        *next_seq = first + n as u64 + 1;

        // Encapsulation: cn0 -> ha-cn (roamgate) -> ha-tr -> tr-ha, dropped.
        let tr_sink = in_netns(&tr_ns, || drop_prog.attach_xdp(rawbpf::ifindex("tr-ha")?))?;
        let before = ha.counters()?;
        let (r, k) = rawbpf::ns_per_run(prog, || {
            in_netns(&cn_ns, || {
                rawbpf::pin_to_cpu(BENCH_CPU)?;
                let out = rawbpf::ifindex("cn0")?;
                let gen = rawbpf::generator(&f.encap, None, out)?;
                gen_run(&gen, &f.encap, out, batch, n)
            })
        })?;
        enc_ns.push(r);
        enc_k.extend(k);
        enc_d.push(ha.counters()?.delta(&before));
        drop(tr_sink);
    }
    let total = (n as usize * LIVE_ROUNDS) as f64;
    let sum =
        |ds: &[roamgate::dataplane::Counters], k: &str| ds.iter().map(|d| d.get(k)).sum::<u64>();
    let mut res = serde_json::Map::new();
    res.insert("xdp_drop".into(), mean_run(&drop_ns));
    res.insert("ha_encap_redirect".into(), mean_run(&enc_ns));
    res.insert("decap_verify_redirect".into(), mean_run(&dec_ns));
    res.insert("ha_encap_counters".into(), counters_json(&enc_d[0]));
    res.insert("decap_counters".into(), counters_json(&dec_d[0]));
    res.insert(
        "ha_encap_forwarded_fraction".into(),
        json!(round(sum(&enc_d, "action_redirect") as f64 / total, 4)),
    );
    res.insert(
        "decap_verify_forwarded_fraction".into(),
        json!(round(sum(&dec_d, "tunnel_decap") as f64 / total, 4)),
    );
    let mean = |v: &[f64]| round(v.iter().sum::<f64>() / v.len().max(1) as f64, 1);
    res.insert(
        "bpf_stats_ns_per_run".into(),
        json!({
            "decap_verify_redirect": mean(&dec_k),
            "ha_encap_redirect": mean(&enc_k),
            "xdp_drop_sink": mean(&drop_k),
        }),
    );
    res.insert("batch_size".into(), json!(batch));
    res.insert("rounds".into(), json!(LIVE_ROUNDS));
    res.insert("frames_per_round".into(), json!(n));
    res.insert(
        "zero_work_forwarder".into(),
        zero_work_ceiling(&f.encap, batch, n)?,
    );
    Ok(Value::Object(res))
}

/// Frames per AF_PACKET run and generator thread.
const AFP_FRAMES: usize = 100_000;
/// Frames per `sendmmsg`.
const AFP_BATCH: usize = 64;
/// The second tunnel of the two-core decapsulation runs.
const SPI2: u32 = 0x0000_2002;
const HOME2: Ipv4Addr = Ipv4Addr::new(10, 10, 0, 3);

/// One AF_PACKET generator thread: its CPU, namespace, interface and frames.
struct Job<'a> {
    cpu: usize,
    ns: &'a str,
    ifname: &'a str,
    frames: &'a [Vec<u8>],
}

/// Runs the jobs at once (one thread each, started together) and returns
/// the wall seconds of the slowest, with the kernel's (run_time_ns,
/// run_cnt) deltas of each program of `progs` over the run.
fn afp_run(jobs: &[Job], progs: &[i32]) -> anyhow::Result<(f64, Vec<(u64, u64)>)> {
    let before = progs
        .iter()
        .map(|&p| rawbpf::prog_run_stats(p))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let start = std::sync::Barrier::new(jobs.len());
    let wall = std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|j| {
                let start = &start;
                s.spawn(move || {
                    in_netns(j.ns, || {
                        rawbpf::pin_to_cpu(j.cpu)?;
                        let gen = PacketGen::new(rawbpf::ifindex(j.ifname)?)?;
                        start.wait();
                        Ok(gen.send(j.frames, AFP_BATCH)?.as_secs_f64())
                    })
                })
            })
            .collect();
        let mut wall = 0f64;
        for h in handles {
            let w = h
                .join()
                .map_err(|_| anyhow::anyhow!("generator thread panicked"))??;
            wall = wall.max(w);
        }
        anyhow::Ok(wall)
    })?;
    let deltas = progs
        .iter()
        .zip(before)
        .map(|(&p, (t0, c0))| {
            let (t1, c1) = rawbpf::prog_run_stats(p)?;
            Ok((t1.saturating_sub(t0), c1.saturating_sub(c0)))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((wall, deltas))
}

/// Accumulates one figure over rounds: frames that reached the end of the
/// path, wall seconds, and the kernel's time and runs of the program
/// measured.
#[derive(Default)]
struct AfpFigure {
    delivered: u64,
    wall: f64,
    prog_ns: u64,
    prog_runs: u64,
}

impl AfpFigure {
    fn add(&mut self, wall: f64, delivered: u64, prog: (u64, u64)) {
        self.delivered += delivered;
        self.wall += wall;
        self.prog_ns += prog.0;
        self.prog_runs += prog.1;
    }
    fn mpps(&self) -> f64 {
        self.delivered as f64 / self.wall.max(1e-9) / 1e6
    }
    fn json(&self, sent: usize) -> Value {
        json!({
            "mpps": round(self.mpps(), 3),
            "delivered_fraction": round(self.delivered as f64 / sent.max(1) as f64, 4),
            "bpf_stats_ns_per_run": round(self.prog_ns as f64 / self.prog_runs.max(1) as f64, 1),
        })
    }
}

/// The veth figures where the kernel refuses live-frames TestRun: the same
/// paths, roamgate attached natively to the receiving veth as deployed,
/// driven by AF_PACKET generator threads ([`PacketGen`]) instead. Per path,
/// the Mpps that reached the end of it (an XDP_DROP sink on the last veth;
/// for the drops and the foreign pass, roamgate's own runs), and roamgate's
/// own ns per run by the kernel's bpf_stats. One core (the generator's CPU
/// runs the veths' NAPI too), then two generator threads on two CPUs and
/// two queues: decapsulation on two tunnels (one per thread, as RSS would
/// steer them), encapsulation on one binding, the zero-work forwarder.
fn veth_afpacket(net: &TunnelNet, f: &Frames, next_seq: &mut u64) -> anyhow::Result<Value> {
    let ha = net.ha.as_ref().context("ha")?;
    let prog = xdp_fd(ha)?;
    let drop_prog = rawbpf::constant(rawbpf::XDP_DROP)?;
    let sink = drop_prog.fd();
    let (ha_ns, tr_ns, cn_ns) = (net.topo.ns("ha"), net.topo.ns("tr"), net.topo.ns("cn"));
    let n = AFP_FRAMES;
    let one = |ns: &str,
               ifname: &'static str,
               frames: &[Vec<u8>]|
     -> anyhow::Result<(f64, Vec<(u64, u64)>)> {
        afp_run(
            &[Job {
                cpu: BENCH_CPU,
                ns,
                ifname,
                frames,
            }],
            &[prog, sink],
        )
    };
    let attach_sink =
        |ns: &str, ifname: &str| in_netns(ns, || drop_prog.attach_xdp(rawbpf::ifindex(ifname)?));
    // The second tunnel, for the second thread of the two-core runs.
    {
        let mut maps = Maps::open(&net.pin_ha)?;
        let mut spec =
            TunnelSpec::new(SPI2, Role::HomeAgent, HA_TR, HOME2, &MasterKey::new(MASTER));
        spec.mtu = OUTER_MTU;
        maps.install_tunnel(&spec)?;
    }
    let encap = vec![f.encap.clone(); n];
    let foreign = vec![f.foreign.clone(); n];
    let bad_mac = vec![f.bad_mac.clone(); n];
    let voice: Vec<Vec<u8>> = (0..n).map(|k| (f.voice)(k as u16)).collect();
    let mut fig: std::collections::BTreeMap<&str, AfpFigure> = Default::default();
    let mut seq2 = 1u64;
    let mut two: std::collections::BTreeMap<&str, AfpFigure> = Default::default();
    for _ in 0..LIVE_ROUNDS {
        // Baseline: ha-cn -> cn0, dropped there.
        let l = attach_sink(&cn_ns, "cn0")?;
        let (w, d) = one(&ha_ns, "ha-cn", &encap)?;
        fig.entry("xdp_drop").or_default().add(w, d[1].1, d[1]);
        // Decapsulation: tr-ha -> ha-tr (roamgate) -> ha-cn -> cn0.
        let first = *next_seq;
        let decap: Vec<Vec<u8>> = (0..n as u64).map(|k| (f.decap)(first + k)).collect();
        *next_seq = first + n as u64;
        let (w, d) = one(&tr_ns, "tr-ha", &decap)?;
        fig.entry("decap_verify_redirect")
            .or_default()
            .add(w, d[1].1, d[0]);
        // Replayed: the last of those again, n times.
        let replayed = vec![decap[n - 1].clone(); n];
        let (w, d) = one(&tr_ns, "tr-ha", &replayed)?;
        fig.entry("drop_replayed").or_default().add(w, d[0].1, d[0]);
        let (w, d) = one(&tr_ns, "tr-ha", &bad_mac)?;
        fig.entry("drop_bad_mac").or_default().add(w, d[0].1, d[0]);
        // Two cores: two tunnels, one thread and queue each.
        let first = *next_seq;
        let a: Vec<Vec<u8>> = (0..n as u64).map(|k| (f.decap)(first + k)).collect();
        *next_seq = first + n as u64;
        let b: Vec<Vec<u8>> = (0..n as u64).map(|k| (f.decap2)(seq2 + k)).collect();
        seq2 += n as u64;
        let (w, d) = afp_run(
            &[
                Job {
                    cpu: 0,
                    ns: &tr_ns,
                    ifname: "tr-ha",
                    frames: &a,
                },
                Job {
                    cpu: 1,
                    ns: &tr_ns,
                    ifname: "tr-ha",
                    frames: &b,
                },
            ],
            &[prog, sink],
        )?;
        two.entry("decap_verify_redirect")
            .or_default()
            .add(w, d[1].1, d[0]);
        drop(l);

        // Encapsulation and voice: cn0 -> ha-cn (roamgate) -> ha-tr -> tr-ha.
        let l = attach_sink(&tr_ns, "tr-ha")?;
        let (w, d) = one(&cn_ns, "cn0", &encap)?;
        fig.entry("ha_encap_redirect")
            .or_default()
            .add(w, d[1].1, d[0]);
        let (w, d) = one(&cn_ns, "cn0", &voice)?;
        fig.entry("voice_redirect")
            .or_default()
            .add(w, d[1].1, d[0]);
        let (w, d) = afp_run(
            &[
                Job {
                    cpu: 0,
                    ns: &cn_ns,
                    ifname: "cn0",
                    frames: &encap,
                },
                Job {
                    cpu: 1,
                    ns: &cn_ns,
                    ifname: "cn0",
                    frames: &encap,
                },
            ],
            &[prog, sink],
        )?;
        two.entry("ha_encap_redirect")
            .or_default()
            .add(w, d[1].1, d[0]);
        drop(l);
        // Not roamgate's: passed to the stack.
        let (w, d) = one(&cn_ns, "cn0", &foreign)?;
        fig.entry("roamgate_foreign_pass")
            .or_default()
            .add(w, d[0].1, d[0]);
    }
    let sent = n * LIVE_ROUNDS;
    let mut one_core = serde_json::Map::new();
    for (k, v) in &fig {
        one_core.insert((*k).into(), v.json(sent));
    }
    let zero = zero_work_afpacket(&encap)?;
    let mpps = |m: &std::collections::BTreeMap<&str, AfpFigure>, k: &str| {
        m.get(k).map_or(f64::NAN, AfpFigure::mpps)
    };
    let zw = |k: &str, field: &str| zero[k][field].as_f64().unwrap_or(f64::NAN);
    let mut two_core = serde_json::Map::new();
    for (k, v) in &two {
        two_core.insert((*k).into(), v.json(2 * sent));
    }
    two_core.insert("bare_redirect".into(), zero["two_cores"].clone());
    Ok(json!({
        "one_core": one_core,
        "two_cores": two_core,
        "zero_work_forwarder": zero,
        "ratio_decap_verify_over_redirect_ceiling": round(
            mpps(&fig, "decap_verify_redirect") / zw("bare_redirect", "mpps"), 3),
        "ratio_decap_verify_over_drop": round(
            mpps(&fig, "decap_verify_redirect") / mpps(&fig, "xdp_drop"), 3),
        "scaling_2_over_1": {
            "decap_verify_redirect": round(
                mpps(&two, "decap_verify_redirect") / mpps(&fig, "decap_verify_redirect"), 3),
            "ha_encap_redirect": round(
                mpps(&two, "ha_encap_redirect") / mpps(&fig, "ha_encap_redirect"), 3),
            "bare_redirect": round(
                zw("two_cores", "mpps") / zw("bare_redirect", "mpps"), 3),
        },
        "frames_per_run": n,
        "batch": AFP_BATCH,
        "rounds": LIVE_ROUNDS,
        "method": "AF_PACKET generator threads (PACKET_QDISC_BYPASS, sendmmsg) on pinned CPUs, roamgate attached natively to the receiving veth; Mpps = frames that reached the path's end / wall time, generator included; bpf_stats_ns_per_run = the measured program's own time",
    }))
}

/// Lines of the kernel log that mention page_pool (None: no readable log).
fn page_pool_lines() -> Option<usize> {
    let out = std::process::Command::new("dmesg").output().ok()?;
    out.status.success().then(|| {
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains("page_pool"))
            .count()
    })
}

/// The zero-work forwarder of [`zero_work_ceiling`], driven by AF_PACKET:
/// generator -> g0 | f0 (drop, or a bare redirect to f1) | f1 -> s1 (drop),
/// one core, then two threads on two CPUs and queues.
fn zero_work_afpacket(frames: &[Vec<u8>]) -> anyhow::Result<Value> {
    let topo = zero_work_topology("bza", 2)?;
    let (g, fw, sk) = (topo.ns("g"), topo.ns("f"), topo.ns("s"));
    let drop_prog = rawbpf::constant(rawbpf::XDP_DROP)?;
    let sink_prog = rawbpf::constant(rawbpf::XDP_DROP)?;
    let fwd = in_netns(&fw, || rawbpf::redirect(rawbpf::ifindex("f1")?))?;
    let _sink = in_netns(&sk, || sink_prog.attach_xdp(rawbpf::ifindex("s1")?))?;
    let (mut drop_f, mut fwd_f, mut fwd2_f) = (
        AfpFigure::default(),
        AfpFigure::default(),
        AfpFigure::default(),
    );
    let job = |cpu| Job {
        cpu,
        ns: &g,
        ifname: "g0",
        frames,
    };
    for _ in 0..LIVE_ROUNDS {
        let l = in_netns(&fw, || drop_prog.attach_xdp(rawbpf::ifindex("f0")?))?;
        let (w, d) = afp_run(&[job(BENCH_CPU)], &[drop_prog.fd()])?;
        drop_f.add(w, d[0].1, d[0]);
        drop(l);
        let l = in_netns(&fw, || fwd.attach_xdp(rawbpf::ifindex("f0")?))?;
        let (w, d) = afp_run(&[job(BENCH_CPU)], &[fwd.fd(), sink_prog.fd()])?;
        fwd_f.add(w, d[1].1, d[0]);
        let (w, d) = afp_run(&[job(0), job(1)], &[fwd.fd(), sink_prog.fd()])?;
        fwd2_f.add(w, d[1].1, d[0]);
        drop(l);
    }
    let sent = frames.len() * LIVE_ROUNDS;
    Ok(json!({
        "xdp_drop": drop_f.json(sent),
        "bare_redirect": fwd_f.json(sent),
        "two_cores": fwd2_f.json(2 * sent),
        "ratio": round(fwd_f.mpps() / drop_f.mpps(), 3),
    }))
}

/// Rounds of one live-frames figure: the mean kernel ns per frame, and the
/// rounds themselves.
fn mean_run(runs: &[Value]) -> Value {
    let kns: Vec<f64> = runs
        .iter()
        .map(|r| r["kernel_ns"].as_f64().unwrap_or(f64::NAN))
        .collect();
    let mean = kns.iter().sum::<f64>() / kns.len().max(1) as f64;
    json!({"mpps": round(1e3 / mean, 3), "kernel_ns": round(mean, 1), "rounds": runs})
}

/// The zero-work forwarder's three namespaces: generator host `g` (g0),
/// forwarder `f` (f0 in, f1 out), sink `s` (s1); `queues` per veth.
fn zero_work_topology(tag: &str, queues: u32) -> anyhow::Result<Topology> {
    let mut topo = Topology::new(tag)?;
    topo.set_veth_queues(queues);
    for h in ["g", "f", "s"] {
        topo.add_host(h)?;
    }
    topo.link(("g", "g0", "10.77.0.1/24"), ("f", "f0", "10.77.0.2/24"))?;
    topo.link(("f", "f1", "10.78.0.1/24"), ("s", "s1", "10.78.0.2/24"))?;
    Ok(topo)
}

/// The ceiling of `ratio_decap_verify_over_drop` on this machine: the same
/// measurement with a forwarder that does no work at all (a bare
/// `bpf_redirect` as the receiving veth's XDP program), on three namespaces
/// of its own: generator -> g0 | f0 (drop, or redirect to f1) | f1 -> s1
/// (drop).
fn zero_work_ceiling(frame: &[u8], batch: u32, n: u32) -> anyhow::Result<Value> {
    let topo = zero_work_topology("bzw", 1)?;
    let (g, fw, sk) = (topo.ns("g"), topo.ns("f"), topo.ns("s"));
    let drop_prog = rawbpf::constant(rawbpf::XDP_DROP)?;
    let run = || {
        in_netns(&g, || {
            rawbpf::pin_to_cpu(BENCH_CPU)?;
            let out = rawbpf::ifindex("g0")?;
            let gen = rawbpf::generator(frame, None, out)?;
            gen_run(&gen, frame, out, batch, n)
        })
    };
    let fwd = in_netns(&fw, || rawbpf::redirect(rawbpf::ifindex("f1")?))?;
    // The same with four hash-map lookups first: the price of helper calls,
    // which roamgate's forwarding paths make three to five of.
    let fwd4 = in_netns(&fw, || {
        rawbpf::redirect_after_lookups(rawbpf::ifindex("f1")?, 4)
    })?;
    let l2 = in_netns(&sk, || drop_prog.attach_xdp(rawbpf::ifindex("s1")?))?;
    let (mut drops, mut fwds, mut fwds4) = (Vec::new(), Vec::new(), Vec::new());
    let mut kernel: [Vec<f64>; 3] = Default::default();
    for _ in 0..LIVE_ROUNDS {
        for (i, (prog, out)) in [
            (&drop_prog, &mut drops),
            (&fwd, &mut fwds),
            (&fwd4, &mut fwds4),
        ]
        .into_iter()
        .enumerate()
        {
            let link = in_netns(&fw, || prog.attach_xdp(rawbpf::ifindex("f0")?))?;
            let (r, k) = rawbpf::ns_per_run(prog.fd(), run)?;
            out.push(r);
            kernel[i].extend(k);
            drop(link);
        }
    }
    let mean = |v: &[f64]| round(v.iter().sum::<f64>() / v.len().max(1) as f64, 1);
    drop(l2);
    let (drop_v, fwd_v, fwd4_v) = (mean_run(&drops), mean_run(&fwds), mean_run(&fwds4));
    let mpps = |v: &Value| v["mpps"].as_f64().unwrap_or(f64::NAN);
    let kns = |v: &Value| v["kernel_ns"].as_f64().unwrap_or(f64::NAN);
    Ok(json!({
        "xdp_drop": drop_v,
        "bare_redirect": fwd_v,
        "redirect_after_4_hash_lookups": fwd4_v,
        "ratio": round(mpps(&fwd_v) / mpps(&drop_v), 3),
        "ns_per_hash_lookup": round((kns(&fwd4_v) - kns(&fwd_v)) / 4.0, 1),
        "bpf_stats_ns_per_run": {
            "xdp_drop": mean(&kernel[0]),
            "bare_redirect": mean(&kernel[1]),
            "redirect_after_4_hash_lookups": mean(&kernel[2]),
        },
    }))
}

/// Live-frames Mpps of the drop baseline, encapsulation and decapsulation,
/// on one pinned core in the home agent's namespace.
fn veth_live(
    net: &TunnelNet,
    prog: i32,
    drop_prog: &RawProg,
    f: &Frames,
    next_seq: &mut u64,
) -> anyhow::Result<Value> {
    let ha = net.ha.as_ref().context("ha")?;
    let ha_ns = net.topo.ns("ha");
    let tr_ns = net.topo.ns("tr");
    let cn_ns = net.topo.ns("cn");

    // The encapsulated frame as the program writes it, to learn the layout.
    let (enc_out, dec_out) = in_netns(&ha_ns, || {
        let mut out = vec![0u8; 4096];
        let r = rawbpf::test_run(
            prog,
            &f.encap,
            1,
            rawbpf::ifindex("ha-cn")?,
            None,
            Some(&mut out),
        )?;
        let enc = out[..r.data_out_len as usize].to_vec();
        let seq = *next_seq;
        let r = rawbpf::test_run(
            prog,
            &(f.decap)(seq),
            1,
            rawbpf::ifindex("ha-tr")?,
            None,
            Some(&mut out),
        )?;
        Ok((enc, out[..r.data_out_len as usize].to_vec()))
    })?;
    *next_seq += 1;
    // Inner packet position in input and output.
    let inner_in = &f.encap[14..];
    let pos = enc_out
        .windows(20)
        .position(|w| w[12..20] == inner_in[12..20])
        .context("inner packet not found in the encapsulated frame")?;
    let enc_head = pos as i64 - 14;
    let dec_in = (f.decap)(1);
    let dec_head = dec_in.len() as i64 - 28 - dec_out.len() as i64; // bytes removed in front
    if enc_head < 0 || dec_head < 0 {
        bail!("unexpected layouts: encap head {enc_head}, decap head {dec_head}");
    }

    let batch_main = 64;
    let mut res = serde_json::Map::new();
    in_netns(&ha_ns, || {
        rawbpf::pin_to_cpu(BENCH_CPU)?;
        let if_cn = rawbpf::ifindex("ha-cn")?;
        for b in [batch_main, 1] {
            res.insert(
                format!("xdp_drop_b{b}"),
                live_json(drop_prog.fd(), &f.encap, if_cn, b, LIVE_FRAMES)?,
            );
        }
        Ok(())
    })?;

    // The redirect alone, into the same veth and the same kind of sink: what
    // the kernel's veth path costs before any work of ours.
    let sink = rawbpf::restoring_sink(&f.encap, 0)?;
    let link = in_netns(&tr_ns, || sink.attach_xdp(rawbpf::ifindex("tr-ha")?))?;
    in_netns(&ha_ns, || {
        rawbpf::pin_to_cpu(BENCH_CPU)?;
        let redirect = rawbpf::redirect(rawbpf::ifindex("ha-tr")?)?;
        let if_cn = rawbpf::ifindex("ha-cn")?;
        for b in [batch_main, 1] {
            res.insert(
                format!("redirect_only_b{b}"),
                live_json(redirect.fd(), &f.encap, if_cn, b, LIVE_FRAMES)?,
            );
        }
        Ok(())
    })?;
    drop(link);

    // Encapsulation: frames go out ha-tr; tr-ha's sink restores them.
    let sink = rawbpf::restoring_sink(&f.encap, enc_head as usize)?;
    let link = in_netns(&tr_ns, || sink.attach_xdp(rawbpf::ifindex("tr-ha")?))?;
    let before = ha.counters()?;
    in_netns(&ha_ns, || {
        rawbpf::pin_to_cpu(BENCH_CPU)?;
        let if_cn = rawbpf::ifindex("ha-cn")?;
        for b in [batch_main, 1] {
            res.insert(
                format!("ha_encap_redirect_b{b}"),
                live_json(prog, &f.encap, if_cn, b, LIVE_FRAMES)?,
            );
        }
        Ok(())
    })?;
    drop(link);
    let d = ha.counters()?.delta(&before);
    let encap_ok = d.get("tunnel_encap") as f64 / (2.0 * LIVE_FRAMES as f64);
    res.insert(
        "ha_encap_redirect_counted_fraction".into(),
        json!(round(encap_ok, 4)),
    );
    res.insert("ha_encap_counters".into(), counters_json(&d));

    // Decapsulation: every frame needs a fresh sequence number. The sink on
    // cn0 turns each decapsulated frame back into the tunnel frame with the
    // next sequence number and its tag. Pages the program drops are not
    // reseeded, so only batch size 1 keeps one page cycling cleanly.
    let first = *next_seq;
    let n = LIVE_FRAMES as u64;
    let tags = decap_tags(f, first + 1..first + n + 1);
    let frame0 = (f.decap)(first);
    let l = frame0.len();
    let layout = rawbpf::TunnelFrameLayout {
        head_delta: dec_head as i32,
        tail_delta: 28,
        seq_off: l - 24,
        tag_off: l - 16,
    };
    let sink = rawbpf::reseeding_sink(&frame0, &layout, first + 1, &tags)?;
    let link = in_netns(&cn_ns, || sink.attach_xdp(rawbpf::ifindex("cn0")?))?;
    let before = ha.counters()?;
    let (mpps, kns) = in_netns(&ha_ns, || {
        rawbpf::pin_to_cpu(BENCH_CPU)?;
        live(prog, &frame0, rawbpf::ifindex("ha-tr")?, 1, LIVE_FRAMES)
    })?;
    drop(link);
    *next_seq = first + n + 1;
    let d = ha.counters()?.delta(&before);
    let decap_ok = d.get("tunnel_decap") as f64 / LIVE_FRAMES as f64;
    res.insert(
        "decap_verify_redirect_b1".into(),
        json!({"mpps": round(1e3 / kns.max(1) as f64, 3), "wall_mpps": round(mpps, 3), "kernel_ns": kns}),
    );
    res.insert(
        "decap_verify_redirect_counted_fraction".into(),
        json!(round(decap_ok, 4)),
    );
    res.insert("decap_counters".into(), counters_json(&d));

    let get = |k: &str| res[k]["mpps"].as_f64().unwrap_or(f64::NAN);
    let drop1 = get("xdp_drop_b1");
    let enc1 = get("ha_encap_redirect_b1");
    let dec1 = get("decap_verify_redirect_b1");
    let mut out = serde_json::Map::new();
    // The headline figures share one method: batch size 1 (see above).
    out.insert("xdp_drop".into(), json!(drop1));
    out.insert("ha_encap_redirect".into(), json!(enc1));
    out.insert(
        "decap_verify_redirect".into(),
        json!(round(dec1 * decap_ok.min(1.0), 3)),
    );
    out.insert("batch_size".into(), json!(1));
    out.insert("detail".into(), Value::Object(res));
    Ok(Value::Object(out))
}

fn counters_json(c: &roamgate::dataplane::Counters) -> Value {
    Value::Object(
        c.0.iter()
            .filter(|(_, v)| **v != 0)
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect(),
    )
}

/// roamgate's decap_verify against the C reference that does the same work
/// (ebpf/reference/decap_verify.c, built now with clang; the fixture pass of
/// `cargo xtask test` checks that it gives the same frames, actions and
/// counters). Two fresh data planes side by side, each with the measured
/// tunnel, the same frames in interleaved rounds; per case, the kernel's
/// bpf_stats ns per run and TestRun's ns. `ratio_decap_verify_over_reference`
/// is the kernel ns per packet of roamgate's decap_verify over the
/// reference's.
fn reference_compare(net: &TunnelNet, f: &Frames) -> anyhow::Result<Value> {
    let obj = roamgate_testkit::reference::object()?;
    let ours_pin = TestPinDir::new("ref-roamgate");
    let ref_pin = TestPinDir::new("ref-c");
    let ours = DataPlane::load(ours_pin.path())?;
    let reference =
        DataPlane::load_object(obj.bytes(), ref_pin.path()).context("loading the C reference")?;
    measured_tunnel(ours_pin.path())?;
    measured_tunnel(ref_pin.path())?;
    let ha_ns = net.topo.ns("ha");
    in_netns(&ha_ns, || {
        let if_tr = rawbpf::ifindex("ha-tr")?;
        let fwd = [XDP_ACTION_REDIRECT, XDP_ACTION_TX];
        let drop_only = [XDP_ACTION_DROP];
        let (p_ours, p_ref) = (xdp_fd(&ours)?, xdp_fd(&reference)?);
        // The same accepted frame must come out the same from both.
        let probe = (f.decap)(1);
        let mut out = [vec![0u8; 4096], vec![0u8; 4096]];
        for (fd, o) in [p_ours, p_ref].into_iter().zip(out.iter_mut()) {
            let r = rawbpf::test_run(fd, &probe, 1, if_tr, None, Some(o))?;
            if !fwd.contains(&r.retval) {
                bail!("decap_verify probe: action {}", r.retval);
            }
            o.truncate(r.data_out_len as usize);
        }
        if out[0] != out[1] {
            bail!("roamgate and the C reference wrote different frames for the same input");
        }
        let mut cases = [
            Case::new("decap_verify", p_ours, if_tr, &fwd),
            Case::new("reference_decap_verify", p_ref, if_tr, &fwd),
            Case::new("drop_bad_mac", p_ours, if_tr, &drop_only),
            Case::new("reference_drop_bad_mac", p_ref, if_tr, &drop_only),
        ];
        let bad = vec![f.bad_mac.clone(); PER_ROUND];
        let mut seq = 2u64;
        for _ in 0..ROUNDS {
            let frames: Vec<Vec<u8>> = (0..PER_ROUND as u64).map(|k| (f.decap)(seq + k)).collect();
            seq += PER_ROUND as u64;
            for c in cases.iter_mut() {
                c.time(if c.name.ends_with("bad_mac") {
                    &bad
                } else {
                    &frames
                })?;
            }
        }
        let k = |i: usize| cases[i].bpf_ns_per_run();
        let w = |i: usize| trimmed_mean(cases[i].samples.clone());
        Ok(json!({
            "bpf_stats_ns_per_run": {
                "decap_verify": round(k(0), 1),
                "reference_decap_verify": round(k(1), 1),
                "drop_bad_mac": round(k(2), 1),
                "reference_drop_bad_mac": round(k(3), 1),
            },
            "testrun_ns": {
                "decap_verify": round(w(0), 1),
                "reference_decap_verify": round(w(1), 1),
                "drop_bad_mac": round(w(2), 1),
                "reference_drop_bad_mac": round(w(3), 1),
            },
            "ratio_decap_verify_over_reference": round(k(0) / k(1), 3),
            "ratio_drop_bad_mac_over_reference": round(k(2) / k(3), 3),
            "reference": {
                "source": "ebpf/reference/decap_verify.c",
                "compiler": format!(
                    "{} {}",
                    roamgate_testkit::reference::CLANG,
                    roamgate_testkit::reference::COMPILE_FLAGS.join(" ")
                ),
            },
            "method": format!("two fresh data planes side by side, the same frames, {ROUNDS} interleaved rounds x {PER_ROUND}, repeat=1 TestRun; kernel bpf_stats ns per run"),
        }))
    })
}

/// decap_verify ns with 1 000 and 1 000 000 bindings and tunnels.
/// Installs the home agent's measured tunnel and binding (the one the
/// decap frames are built for) into the data plane pinned at `pin`.
fn measured_tunnel(pin: &std::path::Path) -> anyhow::Result<Maps> {
    let mut maps = Maps::open(pin)?;
    let mut spec = TunnelSpec::new(SPI, Role::HomeAgent, HA_TR, HOME, &MasterKey::new(MASTER));
    spec.mtu = OUTER_MTU;
    maps.install(
        &Binding {
            home: HOME,
            role: Role::HomeAgent,
            remote: COA_TR,
            spi: SPI,
            expires: Expiry::Never,
        },
        &spec,
    )?;
    Ok(maps)
}

fn bindings_scale(net: &TunnelNet, f: &Frames) -> anyhow::Result<Value> {
    // Two more copies of the home agent's data plane, side by side and not
    // attached (TestRun needs no attachment): the measured tunnel plus 1 000
    // filler tunnels and bindings in one, plus 1 000 000 in the other. Their
    // decap runs alternate in rounds, so the machine's load hits both alike.
    let small_pin = TestPinDir::new("scale-1k");
    let large_pin = TestPinDir::new("scale-1m");
    let small = DataPlane::load(small_pin.path())?;
    let large = DataPlane::load(large_pin.path())?;
    let keys = derive_keys(&MasterKey::new([1; 32]), 1, HOME, Role::HomeAgent);
    let fill = |pin: &std::path::Path, upto: u32| -> anyhow::Result<usize> {
        let mut maps = measured_tunnel(pin)?;
        for k in 0..upto {
            let spi = 0x1000_0000 + k;
            let home = Ipv4Addr::from(0x0a80_0000 + k);
            maps.install_tunnel(&TunnelSpec {
                spi,
                role: Role::HomeAgent,
                local: HA_TR,
                home,
                keys: keys.clone(),
                mtu: 1500,
                src_port: 434,
                dst_port: 434,
                expires: Expiry::Never,
            })?;
            maps.set_binding(&Binding {
                home,
                role: Role::HomeAgent,
                remote: COA_TR,
                spi,
                expires: Expiry::Never,
            })?;
        }
        Ok(maps.tunnel_count())
    };
    fill(small_pin.path(), 1_000)?;
    let t = Instant::now();
    let installed = fill(large_pin.path(), 1_000_000)?;
    let fill_secs = t.elapsed().as_secs_f64();

    let ha_ns = net.topo.ns("ha");
    let (ns_1k, ns_1m) = in_netns(&ha_ns, || {
        let if_tr = rawbpf::ifindex("ha-tr")?;
        let want = [XDP_ACTION_REDIRECT, XDP_ACTION_TX];
        let mut c_small = Case::new("decap_verify, 1k", xdp_fd(&small)?, if_tr, &want);
        let mut c_large = Case::new("decap_verify, 1M", xdp_fd(&large)?, if_tr, &want);
        // Each data plane has its own replay window: both see sequence
        // numbers 1, 2, 3, ...
        let mut seq = 1u64;
        for _ in 0..ROUNDS {
            let frames: Vec<Vec<u8>> = (0..PER_ROUND as u64).map(|k| (f.decap)(seq + k)).collect();
            seq += PER_ROUND as u64;
            c_small.time(&frames)?;
            c_large.time(&frames)?;
        }
        Ok((trimmed_mean(c_small.samples), trimmed_mean(c_large.samples)))
    })?;
    Ok(json!({
        "ns_1k": round(ns_1k, 1),
        "ns_1m": round(ns_1m, 1),
        "ratio": round(ns_1m / ns_1k, 3),
        "installed": installed,
        "install_secs": round(fill_secs, 1),
        "method": format!("two data planes side by side, decap_verify in {ROUNDS} alternating rounds x {PER_ROUND}"),
    }))
}

/// CPU seconds (user + system) of this process's threads named `names`.
fn thread_cpu(names: &[&str]) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let tck = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let mut total = 0.0;
    if let Ok(rd) = std::fs::read_dir("/proc/self/task") {
        for e in rd.flatten() {
            let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
                continue;
            };
            let (Some(l), Some(r)) = (stat.find('('), stat.rfind(')')) else {
                continue;
            };
            if !names.contains(&&stat[l + 1..r]) {
                continue;
            }
            let f: Vec<&str> = stat[r + 2..].split_whitespace().collect();
            // Fields after ')' start at field 3 (state); utime is 14, stime 15.
            let ut: f64 = f.get(11).and_then(|s| s.parse().ok()).unwrap_or(0.0);
            let st: f64 = f.get(12).and_then(|s| s.parse().ok()).unwrap_or(0.0);
            total += (ut + st) / tck;
        }
    }
    total
}

/// The userspace forwarder on the home agent, encapsulating cn -> home
/// packets of the same size; tr-ha drops the tunnel packets in XDP.
fn tun_pps() -> anyhow::Result<Value> {
    let mut topo = Topology::new("benchtun")?;
    topo.home_side()?;
    topo.forward("ha")?;
    topo.route("cn", "10.10.0.0/16", "10.1.0.1")?;
    topo.route("ha", "198.51.100.0/24", "192.0.2.2")?;
    topo.warm_neighbours(&[("ha", TR_HA), ("cn", HA_CN)])?;
    let sink = rawbpf::constant(rawbpf::XDP_DROP)?;
    let link = in_netns(&topo.ns("tr"), || {
        sink.attach_xdp(rawbpf::ifindex("tr-ha")?)
    })?;

    let dir = tempfile::tempdir()?;
    let key = write_master_key(dir.path())?;
    let cfg = TunnelConfig::from_toml(&format!(
        "[tunnel]\nrole = \"home-agent\"\nspi = {SPI}\nlocal = \"{HA_TR}\"\nremote = \"{COA_TR}\"\n\
         home = \"{HOME}\"\nmaster_key_file = \"{}\"\ntun_name = \"rgtun0\"\nmtu = 1500\n\
         routes = [\"10.10.0.2/32\"]\nstate_file = \"{}\"\n",
        key.display(),
        dir.path().join("tunnel.state").display()
    ))?;
    let stop = Arc::new(AtomicBool::new(false));
    let ha_ns = topo.ns("ha");
    let cn_ns = topo.ns("cn");
    let secs = 3.0;
    let gen_stop = AtomicBool::new(false);
    let sent = std::sync::atomic::AtomicU64::new(0);
    let result = std::thread::scope(|s| -> anyhow::Result<Value> {
        let fwd = s.spawn(|| in_netns(&ha_ns, || roamgate::tunnel::run(&cfg, stop.clone())));
        // Wait for the TUN route.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let routes = topo.exec_ok("ha", &["ip", "route", "show", "10.10.0.2"])?;
            if routes.contains("rgtun0") {
                break;
            }
            if Instant::now() > deadline || fwd.is_finished() {
                stop.store(true, Ordering::Relaxed);
                bail!("the forwarder did not come up");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let gen = s.spawn(|| {
            in_netns(&cn_ns, || {
                let sock = UdpSocket::bind(SocketAddrV4::new(CN, 0))?;
                let payload = vec![0x5au8; INNER_LEN - 28];
                let to = SocketAddrV4::new(HOME, 9);
                let mut k = 0u64;
                while !gen_stop.load(Ordering::Relaxed) {
                    if sock.send_to(&payload, to).is_ok() {
                        k += 1;
                    }
                }
                sent.store(k, Ordering::Relaxed);
                Ok(())
            })
        });
        // Measure from the generator's start to its stop.
        let cpu0 = thread_cpu(&["tun-to-udp", "udp-to-tun"]);
        let t0 = Instant::now();
        std::thread::sleep(Duration::from_secs_f64(secs));
        gen_stop.store(true, Ordering::Relaxed);
        gen.join()
            .map_err(|_| anyhow::anyhow!("generator panicked"))??;
        let cpu1 = thread_cpu(&["tun-to-udp", "udp-to-tun"]);
        let wall = t0.elapsed().as_secs_f64();
        std::thread::sleep(Duration::from_millis(200));
        stop.store(true, Ordering::Relaxed);
        let c = fwd
            .join()
            .map_err(|_| anyhow::anyhow!("forwarder panicked"))??;
        let pps = c.encap.load(Ordering::Relaxed) as f64 / wall;
        let cpu = (cpu1 - cpu0) / wall;
        Ok(json!({
            "tun_pps": pps,
            "tun_cpu": cpu,
            "generator_sent": sent.load(Ordering::Relaxed),
            "forwarder": serde_json::from_str::<Value>(&c.to_json())?,
        }))
    });
    drop(link);
    result
}

/// The voice flow of the bench's voice frames (`Frames::voice`).
fn bench_voice_flow() -> VoiceFlow {
    VoiceFlow {
        src: CN,
        dst: HOME,
        src_port: 5004,
        dst_port: 6004,
        ssrc: 0xfeed_f00d,
    }
}

/// `roamgate-bench --ab A.o,B.o,...`: decap_verify, encap, foreign-pass and voice
/// TestRun times of other builds of the XDP object, side by side with the
/// two-instruction XDP_PASS, in interleaved rounds. It is how a data-plane change is judged
/// on this noisy machine: build the variant object (docs/testing.md), run
/// it next to the current one, and compare within one run.
pub fn ab(objects: &[String]) -> anyhow::Result<Value> {
    let net = TunnelNet::new("ab", End::Xdp, End::Xdp)?;
    let f = frames(&net)?;
    let mut pins = Vec::with_capacity(objects.len());
    let mut planes = Vec::with_capacity(objects.len());
    for (i, path) in objects.iter().enumerate() {
        let bytes = std::fs::read(path).with_context(|| format!("reading {path}"))?;
        // The loader parses the ELF in place: give it 8-byte alignment.
        let mut words = vec![0u64; bytes.len().div_ceil(8)];
        let aligned = &mut bytemuck_bytes(&mut words)[..bytes.len()];
        aligned.copy_from_slice(&bytes);
        let pin = TestPinDir::new(&format!("ab-{i}"));
        let dp = DataPlane::load_object(aligned, pin.path())
            .with_context(|| format!("loading {path}"))?;
        measured_tunnel(pin.path())?.authorise_voice(&bench_voice_flow(), Expiry::Never)?;
        pins.push(pin);
        planes.push(dp);
    }
    let pass = rawbpf::constant(rawbpf::XDP_PASS)?;
    let ha_ns = net.topo.ns("ha");
    let ns = in_netns(&ha_ns, || {
        rawbpf::pin_to_cpu(BENCH_CPU)?;
        let if_tr = rawbpf::ifindex("ha-tr")?;
        let if_cn = rawbpf::ifindex("ha-cn")?;
        let fwd = [XDP_ACTION_REDIRECT, XDP_ACTION_TX];
        // Per object: decap_verify, encap, foreign traffic passed.
        let mut cases = vec![Case::new("xdp_pass", pass.fd(), if_tr, &[2])];
        for dp in &planes {
            let fd = xdp_fd(dp)?;
            cases.push(Case::new("decap_verify", fd, if_tr, &fwd));
            cases.push(Case::new("encap", fd, if_cn, &fwd));
            cases.push(Case::new("roamgate_foreign_pass", fd, if_cn, &[2]));
            cases.push(Case::new("voice", fd, if_cn, &fwd));
        }
        let encap = vec![f.encap.clone(); PER_ROUND];
        let voice: Vec<Vec<u8>> = (0..PER_ROUND).map(|k| (f.voice)(k as u16)).collect();
        let foreign = vec![f.foreign.clone(); PER_ROUND];
        // Every data plane has its own replay window: all see 1, 2, 3, ...
        let mut seq = 1u64;
        for _ in 0..ROUNDS {
            let decap: Vec<Vec<u8>> = (0..PER_ROUND as u64).map(|k| (f.decap)(seq + k)).collect();
            seq += PER_ROUND as u64;
            for c in cases.iter_mut() {
                let frames = match c.name {
                    "encap" => &encap,
                    "roamgate_foreign_pass" => &foreign,
                    "voice" => &voice,
                    _ => &decap,
                };
                c.time(frames)?;
            }
        }
        Ok(cases
            .into_iter()
            .map(|c| round(trimmed_mean(c.samples), 1))
            .collect::<Vec<_>>())
    })?;
    let pass_ns = ns[0];
    let objs: Vec<Value> = objects
        .iter()
        .zip(ns[1..].chunks(4))
        .map(|(o, n)| {
            json!({
                "object": o,
                "decap_verify_ns": n[0],
                "encap_ns": n[1],
                "roamgate_foreign_pass_ns": n[2],
                "voice_ns": n[3],
                "ratio_decap_verify_over_pass": round(n[0] / pass_ns, 2),
            })
        })
        .collect();
    Ok(json!({
        "xdp_pass_ns": pass_ns,
        "objects": objs,
        "method": format!("repeat=1, {ROUNDS} interleaved rounds x {PER_ROUND} runs per case and object, mean of middle 80%"),
    }))
}

/// The bytes of `words`.
fn bytemuck_bytes(words: &mut [u64]) -> &mut [u8] {
    // SAFETY: u64 has no padding and every byte pattern is a valid u8; the
    // slice covers exactly the words' memory.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast::<u8>(), words.len() * 8) }
}
