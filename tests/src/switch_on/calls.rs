//! Calls (issue 12) between the switched-on units of the switch-on
//! scenario: `roamgate unit call` on u1, `roamgate unit answer` on u2, each
//! at its home address, their proxies doing the Kerberos (docs/call.md).
//!
//! A call at home with known speech (the recording must be identical but
//! for the frames counted lost); refusals (unknown number, replayed and
//! tampered SETUPs, a switched-off callee); 20 concurrent calls; a call
//! across a home-agent restart; a call in which the callee hands over to
//! the foreign domain; forged and replayed SRTP at the callee, and voice of
//! an unknown flow at the proxy manager's XDP; no voice flow left after.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;

use roamgate_call::media::g711::{ulaw_decode, ulaw_encode};

use super::*;

/// Speech: a sweep through every µ-law segment, already on the µ-law grid,
/// so that what arrives is bit-identical to what was sent.
fn speech(secs: f64) -> Vec<i16> {
    (0..(secs * 8000.0) as usize)
        .map(|i| {
            let raw = ((i * 613) % 65536) as i32 - 32768;
            ulaw_decode(ulaw_encode(raw as i16))
        })
        .collect()
}

fn write_wav(path: &Path, samples: &[i16]) -> anyhow::Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)?;
    for s in samples {
        w.write_sample(*s)?;
    }
    w.finalize()?;
    Ok(())
}

fn read_wav(path: &Path) -> anyhow::Result<Vec<i16>> {
    let mut r = hound::WavReader::open(path).with_context(|| format!("{}", path.display()))?;
    Ok(r.samples::<i16>().collect::<Result<_, _>>()?)
}

const FRAME: usize = 160;

/// Compares a recording with the speech sent: the recording starts at the
/// first frame received, so it is aligned first. Returns (frames compared,
/// frames that differ, of which silent ones: lost frames).
fn compare(sent: &[i16], got: &[i16]) -> (usize, usize, usize) {
    let frames = |s: &[i16]| s.chunks(FRAME).map(<[i16]>::to_vec).collect::<Vec<_>>();
    let (sent, got) = (frames(sent), frames(got));
    let Some(first) = got.iter().position(|f| f.iter().any(|&x| x != 0)) else {
        return (0, 0, 0);
    };
    let Some(k) = sent.iter().position(|f| *f == got[first]) else {
        return (got.len(), got.len(), 0);
    };
    let offset = k as isize - first as isize;
    let (mut compared, mut differ, mut silent) = (0, 0, 0);
    for (i, g) in got.iter().enumerate() {
        let j = i as isize + offset;
        let Some(want) = (j >= 0).then(|| sent.get(j as usize)).flatten() else {
            continue;
        };
        compared += 1;
        if g != want {
            differ += 1;
            silent += usize::from(g.iter().all(|&x| x == 0));
        }
    }
    (compared, differ, silent)
}

/// The cause in a RELEASE COMPLETE.
fn release_cause(bytes: &[u8]) -> Option<u8> {
    let rx = roamgate_call::signalling::decode(bytes).ok()?;
    (rx.signal.kind == roamgate_call::call::Kind::ReleaseComplete)
        .then_some(rx.signal.cause)
        .flatten()
}

/// Sends a SETUP's bytes to `to` over a fresh TCP connection from `host`;
/// the first message that comes back.
fn send_setup(s: &SwitchOn, host: &str, to: SocketAddr, setup: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    in_netns(&s.topo.ns(host), move || {
        let mut t = TcpStream::connect_timeout(&to, Duration::from_secs(3))?;
        t.set_read_timeout(Some(Duration::from_secs(10)))?;
        t.write_all(&setup)?;
        let mut head = [0u8; 4];
        t.read_exact(&mut head)?;
        let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
        let mut msg = head.to_vec();
        msg.resize(len.max(4), 0);
        t.read_exact(&mut msg[4..])?;
        Ok(msg)
    })
}

impl SwitchOn {
    /// `roamgate unit call NUMBER ARGS --json` from `u`, as a child.
    fn call_child(&self, u: &Unit, number: &str, args: &[&str]) -> anyhow::Result<Child> {
        let mut all = vec!["call", number, "--json"];
        all.extend_from_slice(args);
        Ok(self
            .unit_cmd(u.host, u.host, &all)?
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?)
    }

    fn call_wait(child: Child) -> anyhow::Result<UnitRun> {
        Ok(unit_outcome(&child.wait_with_output()?))
    }

    /// `roamgate unit answer --json ARGS` on `u`; waits until it listens.
    fn start_answer(&mut self, u: &Unit, args: &[&str]) -> anyhow::Result<usize> {
        let mut cmd = Command::new(roamgate_bin()?);
        cmd.args(["unit", "answer", "--json", "--config"])
            .arg(self.unit_config(u.host))
            .args(args);
        let log = self.path(&format!("{}-answer.log", u.host));
        let idx = self.topo.spawn(u.host, cmd, Some(&log))?;
        let port = format!("{}:1720", u.home);
        wait_for(
            "the callee to answer calls",
            Duration::from_secs(20),
            || {
                if let Some(st) = self.topo.child_mut(idx).try_wait()? {
                    bail!(
                        "unit answer exited ({st}): {}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                let out = self.topo.exec(u.host, &["ss", "-lnt"])?;
                Ok(String::from_utf8_lossy(&out.stdout).contains(&port))
            },
        )?;
        Ok(idx)
    }

    /// The calls `answer` reported so far (one JSON object per line).
    fn answered(&self, u: &Unit) -> Vec<Value> {
        self.log(&format!("{}-answer.log", u.host))
            .lines()
            .filter(|l| l.starts_with('{'))
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    fn answered_call(&self, u: &Unit, call_id: &str) -> anyhow::Result<Value> {
        let mut found = None;
        wait_for(
            &format!("{}'s report of call {call_id}", u.host),
            Duration::from_secs(15),
            || {
                found = self
                    .answered(u)
                    .into_iter()
                    .find(|v| v["call_id"] == call_id);
                Ok(found.is_some())
            },
        )?;
        found.context("no report")
    }

    fn stop_child(&mut self, idx: usize) {
        let c = self.topo.child_mut(idx);
        kill(c.id(), libc::SIGTERM);
        let _ = c.wait();
    }

    /// The home agent dies (kill -9: its XDP and pinned maps stay) and
    /// comes back after `down`.
    fn restart_ha(&mut self, down: Duration, n: usize) -> anyhow::Result<()> {
        let idx = self.ha.take().context("no home agent")?;
        let c = self.topo.child_mut(idx);
        kill(c.id(), libc::SIGKILL);
        c.wait()?;
        self.daemons.retain(|d| *d != idx);
        std::thread::sleep(down);
        let (cfg, stats, log) = (
            self.path("ha.toml"),
            self.path("ha-stats.json"),
            self.path(&format!("ha-{n}.log")),
        );
        let ha = start_home_agent(&mut self.topo, "ha", &cfg, &stats, &log)?;
        self.daemons.push(ha);
        self.ha = Some(ha);
        Ok(())
    }

    /// The callee's media address of its call in progress (from its calls
    /// directory, written every RTCP interval).
    fn live_media(&self, u: &Unit) -> Option<SocketAddr> {
        let dir = self.path(&format!("{}-calls", u.host));
        std::fs::read_dir(dir).ok()?.flatten().find_map(|e| {
            let v: Value = serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
            (v["state"] == "connected").then(|| v["local_media"].as_str()?.parse().ok())?
        })
    }

    /// u2 moves to `to` (switch-on there; the previous proxy switches off)
    /// and takes its home address onto that interface.
    fn move_unit(&self, u: &Unit, from: &Domain, to: &Domain) -> anyhow::Result<bool> {
        self.default_route(u, to, None)?;
        let r = self.switch_on(u.host, u.host, to, None)?;
        if !r.ok {
            bail!(
                "{} did not switch on at {}: {}\n{}",
                u.host,
                to.bs,
                r.stderr,
                self.logs_tail()
            );
        }
        self.wait_care_of(u, to)?;
        self.release_home(u, from)?;
        self.adopt_home(u, to)?;
        Ok(r.json["previous"]["switched_off"] == true)
    }
}

fn f64s(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

fn u64s(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

/// A connected call that ended with normal clearing, at both ends.
fn call_ok(caller: &Value, callee: &Value) -> bool {
    caller["connected"] == true
        && callee["connected"] == true
        && caller["cause"] == 16
        && callee["cause"] == 16
        && u64s(caller, "packets_received") > 0
        && u64s(callee, "packets_received") > 0
}

/// Loss of both directions of one call, in percent of the packets sent.
fn loss_pct(caller: &Value, callee: &Value) -> f64 {
    let lost = caller["packets_lost"].as_i64().unwrap_or(0).max(0)
        + callee["packets_lost"].as_i64().unwrap_or(0).max(0);
    let sent = u64s(caller, "packets_sent") + u64s(callee, "packets_sent");
    // Packets sent but not yet counted at the other end when it hung up
    // (the last 20 ms) are not loss: the receiver's own count is used.
    100.0 * lost as f64 / (sent.max(1)) as f64
}

/// The media ports a call's report names.
fn ports(v: &Value, into: &mut Vec<u16>) {
    for k in ["local_media", "remote_media"] {
        if let Some(p) = v[k].as_str().and_then(|a| a.parse::<SocketAddr>().ok()) {
            if !into.contains(&p.port()) {
                into.push(p.port());
            }
        }
    }
}

/// tshark decodes the calls in the captures of the links they crossed:
/// Q.931/H.225.0 with fastStart, RTP and SRTCP, with no malformed packet
/// or warning.
pub(super) fn check_captures(
    files: &[PathBuf],
    ports: &[u16],
    c: &mut Checks,
) -> anyhow::Result<Value> {
    let mut out = serde_json::Map::new();
    let (mut q931, mut faststart, mut rtp, mut srtcp) = (0, 0, 0, 0);
    for f in files.iter().filter(|f| {
        let n = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        ["bsh-u1", "bsh-u2", "bsf-u2", "tr-pmh", "tr-pmf", "ha-tr"]
            .iter()
            .any(|l| n.starts_with(l))
    }) {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let d = crate::call_capture::decode_calls(f, ports)?;
        c.expect(
            d.problems.is_empty(),
            format!(
                "{name}: tshark finds {} problems in the calls: {:?}",
                d.problems.len(),
                d.problems.iter().take(5).collect::<Vec<_>>()
            ),
        );
        q931 += d.q931;
        faststart += d.faststart;
        rtp += d.rtp;
        srtcp += d.srtcp_or_rtcp;
        out.insert(
            name,
            json!({"q931": d.q931, "h225": d.h225, "faststart": d.faststart, "rtp": d.rtp, "srtcp": d.srtcp_or_rtcp, "problems": d.problems.len()}),
        );
    }
    // RADIUS accounting, billing service <-> FreeRADIUS (no malformed
    // packet is already checked for every capture).
    let mut radius = None;
    if let Some(f) = files.iter().find(|f| f.ends_with("kdc-lo.pcap")) {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(f)
            .args(["-d", &format!("udp.port=={RADIUS_PORT},radius")])
            .args(["-Y", "radius", "-T", "fields", "-e", "radius.code"])
            .output()?;
        let codes = String::from_utf8_lossy(&out.stdout);
        let problems = Command::new("tshark")
            .arg("-r")
            .arg(f)
            .args(["-d", &format!("udp.port=={RADIUS_PORT},radius")])
            .args(["-Y", crate::call_capture::PROBLEM_FILTER])
            .output()?;
        let problems = String::from_utf8_lossy(&problems.stdout).lines().count();
        c.expect(
            problems == 0,
            format!("tshark finds {problems} malformed or warning+ RADIUS packets in kdc-lo.pcap"),
        );
        let requests = codes.lines().filter(|l| l.trim() == "4").count();
        let responses = codes.lines().filter(|l| l.trim() == "5").count();
        c.expect(
            requests > 0 && responses >= requests,
            format!("tshark decoded {requests} Accounting-Requests and {responses} Accounting-Responses in kdc-lo.pcap"),
        );
        radius = Some(
            json!({"accounting_requests": requests, "accounting_responses": responses, "problems": problems}),
        );
    }
    c.expect(
        q931 >= 10 && faststart >= 4 && rtp >= 1000 && srtcp >= 10,
        format!("tshark decoded {q931} Q.931, {faststart} fastStart, {rtp} RTP and {srtcp} SRTCP messages of the calls"),
    );
    if let Some(r) = radius {
        out.insert("radius".into(), r);
    }
    Ok(Value::Object(out))
}

/// What the calls left for the rest of the scenario: the result, the
/// media ports (for the capture check) and the switch-ons they made.
pub(super) struct Outcome {
    pub result: Value,
    pub media_ports: Vec<u16>,
    pub switch_ons: u64,
}

pub(super) fn run(s: &mut SwitchOn, c: &mut Checks) -> anyhow::Result<Outcome> {
    let (h, f) = (&HOME_DOMAIN, &FOREIGN_DOMAIN);
    let wav = s.path("speech.wav");
    let sent = speech(3.0);
    write_wav(&wav, &sent)?;
    let wavs = wav.display().to_string();
    let record = s.path("u2-recorded.wav");
    let answer = s.start_answer(&U2, &["--record", &record.display().to_string()])?;
    let mut calls_ok = 0u64;
    let mut setup_ms = Vec::new();
    let mut jitter = Vec::new();
    let mut media_ports = Vec::new();
    let mut switch_ons = 0u64;
    let mut with_flows = 0u64;
    let mut note = |caller: &Value, callee: &Value, calls_ok: &mut u64| {
        ports(caller, &mut media_ports);
        if caller["voice_flows"] == true && callee["voice_flows"] == true {
            with_flows += 1;
        }
        if call_ok(caller, callee) {
            *calls_ok += 1;
        }
        setup_ms.extend(caller["setup_ms"].as_f64());
        jitter.extend(caller["jitter_ms"].as_f64());
        jitter.extend(callee["jitter_ms"].as_f64());
    };

    // 1. A call at home with known speech.
    let setup_file = s.path("u1-setup.bin");
    let r = SwitchOn::call_wait(s.call_child(
        &U1,
        U2.number,
        &[
            "--play",
            &wavs,
            "--write-setup",
            &setup_file.display().to_string(),
        ],
    )?)?;
    if !r.ok {
        bail!(
            "the call at home failed: {}\n{}\nha counters {}\n{} counters {}\n{}",
            r.json,
            r.stderr,
            counters(&s.pin_ha).unwrap_or_default(),
            h.pm,
            counters(s.pin(h)).unwrap_or_default(),
            [("ha", "ha-tr"), ("tr", "tr-ha"), ("tr", "tr-pmh")]
                .iter()
                .map(|(h, i)| {
                    let l = s
                        .topo
                        .exec(h, &["ip", "-s", "-s", "link", "show", i])
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default();
                    let e = s
                        .topo
                        .exec(h, &["ethtool", "-S", i])
                        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
                        .unwrap_or_default();
                    let k = s
                        .topo
                        .exec(h, &["ethtool", "-k", i])
                        .map(|o| {
                            String::from_utf8_lossy(&o.stdout)
                                .lines()
                                .filter(|l| l.contains("generic-receive") || l.contains("gro"))
                                .collect::<Vec<_>>()
                                .join(";")
                        })
                        .unwrap_or_default();
                    format!("{h} {i}: {l}\n{e}\n{k}")
                })
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    let call_id = r.json["call_id"].as_str().unwrap_or_default().to_owned();
    let callee = s.answered_call(&U2, &call_id)?;
    note(&r.json, &callee, &mut calls_ok);
    c.expect(
        call_ok(&r.json, &callee),
        format!("call at home: caller {} callee {callee}", r.json),
    );
    let got = read_wav(&record)?;
    let (compared, differ, silent) = compare(&sent, &got);
    let lost = callee["packets_lost"].as_i64().unwrap_or(0).max(0) as usize;
    let samples_identical =
        compared >= sent.len() / FRAME - 5 && differ == silent && silent <= lost;
    c.expect(
        samples_identical,
        format!("recorded speech: {compared} frames compared, {differ} differ ({silent} silent), {lost} counted lost"),
    );
    let status = s.unit_status("u1")?;
    let listed = status["calls"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["call_id"] == call_id.as_str()).cloned())
        .unwrap_or_default();
    c.expect(
        u64s(&listed, "packets_received") > 0 && listed["state"] == "released",
        format!("u1's `unit status` lists the call with its statistics: {listed}"),
    );

    // 2. Refusals.
    let mut causes = serde_json::Map::new();
    let unknown = SwitchOn::call_wait(s.call_child(&U1, "4930999999", &["--duration", "1"])?)?;
    causes.insert("unknown_number".into(), unknown.json["cause"].clone());
    c.expect(
        !unknown.ok && unknown.json["cause"] == 1,
        format!(
            "a call to an unknown number: {} {}",
            unknown.json, unknown.stderr
        ),
    );
    let setup = std::fs::read(&setup_file).context("the saved SETUP")?;
    let callee_at = SocketAddr::new(U2.home.into(), 1720);
    let replayed = send_setup(s, "u3", callee_at, setup.clone()).ok();
    let replayed_cause = replayed.as_deref().and_then(release_cause);
    let mut tampered = setup.clone();
    let ap_req = roamgate_call::signalling::decode(&setup)?
        .signal
        .kerberos
        .context("no AP-REQ in SETUP")?;
    let at = setup
        .windows(ap_req.len())
        .position(|w| w == ap_req.as_slice())
        .context("AP-REQ not in the SETUP's bytes")?;
    // Inside the authenticator's ciphertext, near the AP-REQ's end.
    tampered[at + ap_req.len() - 20] ^= 0x40;
    let tampered_cause = send_setup(s, "u3", callee_at, tampered)
        .ok()
        .as_deref()
        .and_then(release_cause);
    causes.insert("replayed_setup".into(), json!(replayed_cause));
    causes.insert("tampered_ticket".into(), json!(tampered_cause));
    let calls_refused_bad_ticket =
        u64::from(replayed_cause == Some(21)) + u64::from(tampered_cause == Some(21));
    c.expect(
        calls_refused_bad_ticket == 2,
        format!("replayed SETUP refused with cause {replayed_cause:?}, tampered ticket with {tampered_cause:?} (want 21)"),
    );

    // 3. 20 concurrent calls through the one home agent.
    let children: Vec<Child> = (0..20)
        .map(|_| s.call_child(&U1, U2.number, &["--duration", "3"]))
        .collect::<anyhow::Result<_>>()?;
    let mut concurrent_ok = 0u64;
    let mut concurrent_errors = Vec::new();
    for ch in children {
        let r = SwitchOn::call_wait(ch)?;
        let id = r.json["call_id"].as_str().unwrap_or_default().to_owned();
        match s.answered_call(&U2, &id) {
            Ok(callee) if call_ok(&r.json, &callee) => {
                concurrent_ok += 1;
                note(&r.json, &callee, &mut calls_ok);
            }
            other => concurrent_errors.push(format!(
                "{} / {:?}: {}",
                r.json,
                other.map(|v| v.to_string()),
                last_line(&r.stderr)
            )),
        }
    }
    c.expect(
        concurrent_ok == 20,
        format!(
            "{concurrent_ok} of 20 concurrent calls: {}",
            concurrent_errors.join("; ")
        ),
    );

    // 4. The home agent restarts mid-call (kill -9, back after 1 s).
    let child = s.call_child(&U1, U2.number, &["--duration", "5"])?;
    std::thread::sleep(Duration::from_millis(1500));
    s.restart_ha(Duration::from_secs(1), 2)?;
    let r = SwitchOn::call_wait(child)?;
    let callee = s.answered_call(&U2, r.json["call_id"].as_str().unwrap_or_default())?;
    note(&r.json, &callee, &mut calls_ok);
    let loss_ha_restart = loss_pct(&r.json, &callee);
    c.expect(
        call_ok(&r.json, &callee) && loss_ha_restart == 0.0,
        format!("call across a home-agent restart: loss {loss_ha_restart:.2} %: caller {} callee {callee}", r.json),
    );

    // 5. Forged and replayed SRTP at the callee; voice of an unknown flow
    // (from cn, through the home agent's tunnel) at the proxy manager's XDP.
    let child = s.call_child(&U1, U2.number, &["--duration", "4"])?;
    let mut media = None;
    let _ = wait_for("the callee's media address", Duration::from_secs(5), || {
        media = s.live_media(&U2);
        Ok(media.is_some())
    });
    let media = media.context("the callee's call in progress is not in its calls directory")?;
    let before = counters(s.pin(h))?;
    let inject = s.topo.exec(
        "u2",
        &[
            "/usr/bin/python3",
            "-c",
            INJECT,
            &U2.iface(h),
            &media.ip().to_string(),
            &media.port().to_string(),
        ],
    )?;
    let injected = String::from_utf8_lossy(&inject.stdout).trim().to_owned();
    let media_port = media.port();
    let dst = media;
    in_netns(&s.topo.ns("cn"), move || {
        let sock = UdpSocket::bind("0.0.0.0:0")?;
        for i in 0..10u16 {
            let mut rtp = vec![0x80, 0x00];
            rtp.extend_from_slice(&i.to_be_bytes());
            rtp.extend_from_slice(&[0, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef]);
            rtp.extend_from_slice(&[0xd5; 170]);
            sock.send_to(&rtp, dst)?;
        }
        Ok(())
    })?;
    let r = SwitchOn::call_wait(child)?;
    let callee = s.answered_call(&U2, r.json["call_id"].as_str().unwrap_or_default())?;
    note(&r.json, &callee, &mut calls_ok);
    s.settle();
    let after = counters(s.pin(h))?;
    let srtp_forged_dropped = u64s(&callee, "srtp_forged");
    let srtp_replayed_dropped = u64s(&callee, "srtp_replayed");
    let unauthorised = delta(&before, &after, "drop_voice_unauthorised");
    c.expect(
        inject.status.success() && srtp_forged_dropped >= 5 && srtp_replayed_dropped >= 5 && call_ok(&r.json, &callee),
        format!(
            "forged/replayed SRTP at the callee (port {media_port}): injector said {injected:?} {}; \
             the callee dropped {srtp_forged_dropped} forged, {srtp_replayed_dropped} replayed; call {} / {callee}",
            String::from_utf8_lossy(&inject.stderr).trim(),
            r.json
        ),
    );
    c.expect(
        unauthorised >= 10,
        format!(
            "{} counted {unauthorised} voice packets of an unknown flow dropped (10 sent)",
            h.pm
        ),
    );

    // 6. The callee hands over to the foreign domain mid-call, and back.
    let child = s.call_child(&U1, U2.number, &["--duration", "8", "--play", &wavs])?;
    std::thread::sleep(Duration::from_millis(2000));
    let moved = s.move_unit(&U2, h, f)?;
    switch_ons += 1;
    let r = SwitchOn::call_wait(child)?;
    let callee = s.answered_call(&U2, r.json["call_id"].as_str().unwrap_or_default())?;
    note(&r.json, &callee, &mut calls_ok);
    let loss_handover = loss_pct(&r.json, &callee);
    let handover_gap_ms = f64s(&r.json, "max_gap_ms").max(f64s(&callee, "max_gap_ms"));
    c.expect(
        moved && call_ok(&r.json, &callee) && loss_handover < 50.0,
        format!(
            "call across the callee's handover: moved {moved}, loss {loss_handover:.2} %, gap {handover_gap_ms:.0} ms: caller {} callee {callee}",
            r.json
        ),
    );
    c.expect(
        callee["voice_flows"] == true,
        format!("the callee's proxies did not install its voice flows: {callee}"),
    );
    s.move_unit(&U2, f, h)?;
    switch_ons += 1;

    // 7. A switched-off callee: the proxy resolves the number, nobody answers.
    s.stop_child(answer);
    let off = s.unit_run("u2", "u2", &["switch-off", "--json"])?;
    c.expect(off.ok, format!("u2's switch-off: {}", off.stderr));
    s.release_home(&U2, h)?;
    wait_for("u2's binding to go", Duration::from_secs(10), || {
        Ok(s.care_of(U2.home)?.is_none())
    })?;
    let absent = SwitchOn::call_wait(s.call_child(&U1, U2.number, &["--duration", "1"])?)?;
    causes.insert("callee_switched_off".into(), absent.json["cause"].clone());
    c.expect(
        !absent.ok && absent.json["cause"] == 20,
        format!(
            "a call to a switched-off unit: {} {}",
            absent.json,
            last_line(&absent.stderr)
        ),
    );
    let r = s.switch_on("u2", "u2", h, None)?;
    if !r.ok {
        bail!("u2 did not switch on again: {}", r.stderr);
    }
    switch_ons += 1;
    s.wait_care_of(&U2, h)?;
    s.adopt_home(&U2, h)?;

    // 8. Nothing left in the voice path: the proxy managers' maps.
    let flows_left = || -> anyhow::Result<usize> {
        let mut n = 0;
        for p in &s.pin_pm {
            n += roamgate::dataplane::maps::Maps::open(p)?
                .voice_flows()?
                .len();
        }
        Ok(n)
    };
    let mut voice_flows_after_hangup = usize::MAX;
    let _ = wait_for("the voice flows to go", Duration::from_secs(5), || {
        voice_flows_after_hangup = flows_left()?;
        Ok(voice_flows_after_hangup == 0)
    });
    c.expect(
        voice_flows_after_hangup == 0,
        format!("{voice_flows_after_hangup} voice flows left in the proxy managers' maps after every call ended"),
    );
    // 9. Debiting (issue 13): u2's prepaid account is empty, so its call
    // is released at CONNECT, uncharged; every call of u1 is charged
    // once, the ledger balances, and FreeRADIUS recorded each Start and
    // Stop.
    let mut billing = serde_json::Map::new();
    if s.billing.is_some() {
        let answer_u1 = s.start_answer(&U1, &[])?;
        let unfunded = SwitchOn::call_wait(s.call_child(&U2, U1.number, &["--duration", "1"])?)?;
        // Topped up for the setup fee (10) and 3 s (2 each): the call is
        // connected, then released by u2 at 3 s with cause 57, and charged
        // the whole balance, no more.
        let u2_account = std::fs::read_to_string(s.path(&format!("{}-account.txt", U2.host)))?;
        let u2_account = u2_account.trim().to_owned();
        s.billing_cli(&["credit", &u2_account, "16"])?;
        let cut = SwitchOn::call_wait(s.call_child(&U2, U1.number, &["--duration", "30"])?)?;
        s.stop_child(answer_u1);
        let cut_after_s = cut.json["duration_s"].as_f64().unwrap_or(f64::NAN);
        let cut_ok = cut.json["connected"] == true
            && cut.json["cause"] == 57
            && cut.json["credit_limit_s"] == 3
            && (2.5..=5.0).contains(&cut_after_s);
        c.expect(
            cut_ok,
            format!(
                "u2's prepaid call with credit for 3 s: {} {}",
                cut.json,
                last_line(&cut.stderr)
            ),
        );
        let u2_balance: i64 = s
            .billing_cli(&["balance", &u2_account])?
            .split_whitespace()
            .find_map(|w| w.parse().ok())
            .unwrap_or(i64::MIN);
        c.expect(
            u2_balance == 0,
            format!("u2's prepaid balance after its cut call is {u2_balance}, not 0"),
        );
        billing.insert("calls_cut_prepaid".into(), json!(u64::from(cut_ok)));
        billing.insert("prepaid_cut_after_s".into(), json!(cut_after_s));
        billing.insert("prepaid_balance_after_cut".into(), json!(u2_balance));
        c.expect(
            !unfunded.ok && unfunded.json["cause"] == 57,
            format!(
                "a call from u2's empty prepaid account: {} {}",
                unfunded.json,
                last_line(&unfunded.stderr)
            ),
        );
        billing.insert(
            "calls_refused_unfunded".into(),
            json!(u64::from(!unfunded.ok && unfunded.json["cause"] == 57)),
        );
        let rows: Value = serde_json::from_str(&s.billing_cli(&[
            "report",
            "--from",
            "0",
            "--to",
            "4102444800",
            "--format",
            "json",
        ])?)
        .context("billing report --format json")?;
        // u1's charges; u2's one charge is its cut call.
        let (u2_rows, rows): (Vec<Value>, Vec<Value>) = rows
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .partition(|r| r["account"] == u2_account.as_str());
        c.expect(
            u2_rows.len() == 1 && u2_rows[0]["amount"] == 16,
            format!("u2's charges: {u2_rows:?} (one of 16 expected)"),
        );
        let mut per_call = std::collections::BTreeMap::<String, u64>::new();
        for r in &rows {
            *per_call
                .entry(
                    r["call_id"]
                        .as_str()
                        .or(r["call"].as_str())
                        .unwrap_or("")
                        .to_owned(),
                )
                .or_default() += 1;
        }
        let closed = rows.iter().filter(|r| r["status"] == "closed").count() as u64;
        let double_charges = per_call.values().filter(|n| **n > 1).count() as u64;
        let ledger = roamgate_billing::SqliteLedger::open(&s.path("billing.sqlite"))?;
        let total = {
            use roamgate_billing::LedgerStore as _;
            ledger.total()?
        };
        let consistent = ledger.check_consistency().is_ok();
        let mut delivered = 0usize;
        let _ = wait_for(
            "FreeRADIUS to record every Start and Stop",
            Duration::from_secs(10),
            || {
                delivered = s
                    .radius
                    .as_ref()
                    .map_or(Ok(0), |r| r.records().map(|v| v.len()))?;
                Ok(delivered as u64 >= 2 * (rows.len() + u2_rows.len()) as u64)
            },
        );
        c.expect(
            closed == calls_ok && rows.len() as u64 == calls_ok && double_charges == 0,
            format!("{} charges ({closed} closed, {double_charges} charged twice) for {calls_ok} calls of u1: {rows:?}", rows.len()),
        );
        c.expect(
            total == 0 && consistent,
            format!("the ledger's total is {total}, consistent {consistent}"),
        );
        c.expect(
            delivered as u64 == 2 * (rows.len() + u2_rows.len()) as u64,
            format!(
                "FreeRADIUS recorded {delivered} accounting records for {} charges",
                rows.len() + u2_rows.len()
            ),
        );
        billing.insert("charges_ok".into(), json!(closed));
        billing.insert("double_charges".into(), json!(double_charges));
        billing.insert("ledger_balance_total".into(), json!(total as i64));
        billing.insert("radius_records_delivered".into(), json!(delivered));
    }
    let offered = s.answered(&U2).len();
    c.expect(
        with_flows == calls_ok,
        format!("{with_flows} of {calls_ok} calls had their voice flows installed at both ends"),
    );
    let result = json!({
        "calls_ok": calls_ok,
        "call_setup_ms_p50": percentile(&setup_ms, 0.5),
        "call_setup_ms_p99": percentile(&setup_ms, 0.99),
        "call_voice_loss_pct_handover": loss_handover,
        "call_handover_gap_ms": handover_gap_ms,
        "call_voice_loss_pct_ha_restart": loss_ha_restart,
        "call_jitter_ms_p99": percentile(&jitter, 0.99),
        "calls_refused_bad_ticket": calls_refused_bad_ticket,
        "call_refusal_causes": causes,
        "calls_concurrent_ok": concurrent_ok,
        "call_samples_identical": samples_identical,
        "call_samples_compared_frames": compared,
        "srtp_forged_dropped": srtp_forged_dropped,
        "srtp_replayed_dropped": srtp_replayed_dropped,
        "voice_unknown_flow_dropped_xdp": unauthorised,
        "voice_flows_after_hangup": voice_flows_after_hangup,
        "calls_answered_reports": offered,
        "calls_with_voice_flows": with_flows,
    });
    let mut result = result;
    if let Value::Object(r) = &mut result {
        r.extend(billing);
    }
    Ok(Outcome {
        result,
        media_ports,
        switch_ons,
    })
}

/// Sniffs 5 SRTP packets arriving for the callee's media port, sends each
/// again (replays) and a forged one (sequence number ahead, so that only
/// the tag check can refuse it) to the callee, through the local stack.
const INJECT: &str = r#"
import sys
from scapy.all import sniff, send, IP, UDP, Raw, conf, L3RawSocket
conf.verb = 0
# Through the local stack (a raw IP socket), not out of the interface.
conf.L3socket = L3RawSocket
iface, dst, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
pkts = sniff(iface=iface, filter=f"udp and dst host {dst} and dst port {port}", count=8, timeout=5)
n = 0
for p in pkts:
    if n == 5:
        break
    ip, udp = p[IP], p[UDP]
    payload = bytes(udp.payload)
    if len(payload) < 12 or payload[1] >= 192:
        continue
    replay = IP(src=ip.src, dst=ip.dst) / UDP(sport=udp.sport, dport=udp.dport) / Raw(payload)
    seq = (int.from_bytes(payload[2:4], "big") + 300) % 65536
    forged = bytearray(payload)
    forged[2:4] = seq.to_bytes(2, "big")
    forge = IP(src=ip.src, dst=ip.dst) / UDP(sport=udp.sport, dport=udp.dport) / Raw(bytes(forged))
    send(replay)
    send(forge)
    n += 1
print(f"{len(pkts)} sniffed, {n} replayed and {n} forged")
sys.exit(0 if n >= 5 else 1)
"#;
