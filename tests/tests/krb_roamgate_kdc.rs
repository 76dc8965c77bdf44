//! MIT krb5 clients against the roamgate KDC: `kinit` and `kvno` over UDP
//! and TCP for etypes 17, 18, 19 and 20; error codes as MIT reports them;
//! RESPONSE_TOO_BIG falling back to TCP; a tshark capture of an AS exchange
//! decrypted with the keytab; and abuse (garbage, truncation, a huge TCP
//! length prefix, a flood of AS-REQs) after which the KDC keeps serving.
//!
//! The KDC is the real `roamgate kdc serve` binary when it is built
//! (`cargo build -p roamgate`), else the library's server in-process.
//! Needs krb5-user (and tshark for the capture test); tests skip with a
//! message when the tools are missing.

use std::io::{Read as _, Write as _};
use std::net::{TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use roamgate_integration::bench::kdc::{RoamgateKdc, RoamgateKdcOptions};
use roamgate_integration::mit::{enctype_name, have, skip_without, KerberosCapture};
use roamgate_krb::kdc::probe::{self, RequestSpec};
use roamgate_krb::Principal;
use roamgate_krb_crypto::{Etype, Key};

const PASSWORD: &str = "roamgate-alice-pw";
const SERVICE: &str = "host/svc.roamgate.test";

fn kdc_with(opts: RoamgateKdcOptions) -> RoamgateKdc {
    let b = RoamgateKdc::create(&opts).unwrap();
    b.add_password("alice", PASSWORD, &[])
        .unwrap()
        .add_random(SERVICE)
        .unwrap();
    let keytab = b.dir().join("svc.keytab");
    b.export_keytab(SERVICE, &keytab).unwrap();
    let all = b.dir().join("all.keytab");
    b.export_keytab(SERVICE, &all)
        .unwrap()
        .export_keytab("alice", &all)
        .unwrap()
        .export_keytab(&format!("krbtgt/{}", opts.realm), &all)
        .unwrap();
    b.start().unwrap()
}

fn kdc() -> RoamgateKdc {
    kdc_with(RoamgateKdcOptions::default())
}

/// The KDC and its [`default_conf`]; `None`, and the test is skipped,
/// without the MIT `tools` (from `packages`).
fn kdc_for_mit(tools: &[&str], packages: &str) -> Option<(RoamgateKdc, PathBuf)> {
    if skip_without(tools, packages) {
        return None;
    }
    let kdc = kdc();
    let conf = default_conf(&kdc);
    Some((kdc, conf))
}

/// `krb5.conf` in the KDC's directory: its realm, all etypes, UDP first.
fn default_conf(kdc: &RoamgateKdc) -> PathBuf {
    let conf = kdc.path("krb5.conf");
    kdc.write_krb5_conf(&conf, None, false).unwrap();
    conf
}

/// An MIT tool configured by `conf`, tracing to stderr.
fn mit(kdc: &RoamgateKdc, conf: &Path, program: &str, ccache: &Path) -> Command {
    let mut c = Command::new(program);
    c.env("KRB5_CONFIG", conf)
        .env("KRB5CCNAME", format!("FILE:{}", ccache.display()))
        .env("KRB5RCACHEDIR", kdc.dir())
        .env("KRB5_TRACE", "/dev/stderr")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn kinit(kdc: &RoamgateKdc, conf: &Path, ccache: &Path, who: &str, pw: &str) -> Output {
    let mut c = mit(kdc, conf, "kinit", ccache);
    c.arg(who).stdin(Stdio::piped());
    let mut child = c.spawn().expect("running kinit");
    writeln!(child.stdin.take().unwrap(), "{pw}").unwrap();
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn mit_kinit_and_kvno_over_udp_and_tcp_for_each_etype() {
    if skip_without(&["kinit", "kvno"], "krb5-user") {
        return;
    }
    let kdc = kdc();
    eprintln!("roamgate KDC mode: {:?}", kdc.mode);
    let keytab = kdc.path("svc.keytab");
    let all_conf = kdc.path("krb5-all.conf");
    kdc.write_krb5_conf(&all_conf, None, false).unwrap();
    for etype in [17, 18, 19, 20] {
        let name = enctype_name(etype).unwrap();
        for tcp in [false, true] {
            let what = format!("etype {etype} over {}", if tcp { "TCP" } else { "UDP" });
            let conf = kdc.path(&format!("krb5-{etype}-{tcp}.conf"));
            kdc.write_krb5_conf(&conf, Some(name), tcp).unwrap();
            let cc = kdc.path(&format!("cc-{etype}-{tcp}"));
            let out = kinit(&kdc, &conf, &cc, "alice", PASSWORD);
            assert!(out.status.success(), "kinit, {what}: {}", text(&out));
            let trace = String::from_utf8_lossy(&out.stderr);
            if tcp {
                assert!(
                    trace.contains("TCP"),
                    "kinit did not use TCP, {what}: {trace}"
                );
                assert!(!trace.contains("UDP request"), "{what}: {trace}");
            } else {
                assert!(
                    trace.contains("UDP"),
                    "kinit did not use UDP, {what}: {trace}"
                );
                assert!(!trace.contains("Initiating TCP"), "{what}: {trace}");
            }
            // MIT asked for pre-authentication and got ETYPE-INFO2.
            assert!(
                trace.contains(
                    "Processing preauth types: PA-ETYPE-INFO2 (19), PA-ENC-TIMESTAMP (2)"
                ),
                "{what}: {trace}"
            );

            // klist -e shows the session key etype.
            let mut kl = mit(&kdc, &conf, "klist", &cc);
            kl.arg("-e");
            let out = kl.output().unwrap();
            assert!(out.status.success(), "klist, {what}: {}", text(&out));
            let listing = String::from_utf8_lossy(&out.stdout);
            assert!(
                listing.contains("krbtgt/ROAMGATE.TEST@ROAMGATE.TEST"),
                "{what}: {listing}"
            );
            assert!(
                listing.contains(&format!("Etype (skey, tkt): {name}")),
                "{what}: {listing}"
            );

            // kvno gets a service ticket with a session key of the etype.
            let mut kv = mit(&kdc, &conf, "kvno", &cc);
            kv.arg(format!("{SERVICE}@ROAMGATE.TEST"));
            let out = kv.output().unwrap();
            assert!(out.status.success(), "kvno, {what}: {}", text(&out));
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.contains("kvno = 1"), "{what}: {stdout}");
            let trace = String::from_utf8_lossy(&out.stderr);
            assert!(
                trace.contains("TGS request result: 0/Success"),
                "{what}: {trace}"
            );
            let mut kl = mit(&kdc, &conf, "klist", &cc);
            kl.arg("-e");
            let listing = String::from_utf8_lossy(&kl.output().unwrap().stdout).into_owned();
            assert!(
                listing.contains(&format!("{SERVICE}@ROAMGATE.TEST")),
                "{what}: {listing}"
            );
            // The service ticket decrypts with the exported keytab. (The
            // ticket is under the service's strongest key, as MIT's KDC
            // does it, so the checking client must permit that etype.)
            let mut kv = mit(&kdc, &all_conf, "kvno", &cc);
            kv.arg("-k")
                .arg(&keytab)
                .arg(format!("{SERVICE}@ROAMGATE.TEST"));
            let out = kv.output().unwrap();
            assert!(out.status.success(), "kvno -k, {what}: {}", text(&out));
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(stdout.contains("keytab entry valid"), "{what}: {stdout}");
        }
    }
}

#[test]
fn mit_reports_roamgate_errors() {
    let Some((kdc, conf)) = kdc_for_mit(&["kinit"], "krb5-user") else {
        return;
    };
    let cc = kdc.path("cc");
    // Wrong password: PREAUTH_FAILED (24), "Password incorrect".
    let out = kinit(&kdc, &conf, &cc, "alice", "wrong password");
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("Password incorrect"), "{t}");
    assert!(
        t.contains("KDC_ERR_PREAUTH_FAILED")
            || t.contains("error 24")
            || t.contains("Preauthentication failed"),
        "{t}"
    );
    // Unknown client: C_PRINCIPAL_UNKNOWN (6).
    let out = kinit(&kdc, &conf, &cc, "nobody", "x");
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("not found in Kerberos database"), "{t}");
    // Unknown service: S_PRINCIPAL_UNKNOWN (7) from kvno.
    let out = kinit(&kdc, &conf, &cc, "alice", PASSWORD);
    assert!(out.status.success(), "{}", text(&out));
    let mut kv = mit(&kdc, &conf, "kvno", &cc);
    kv.arg("nosuch/service@ROAMGATE.TEST");
    let out = kv.output().unwrap();
    assert!(!out.status.success());
    let t = text(&out);
    assert!(t.contains("not found in Kerberos database"), "{t}");
}

#[test]
fn mit_forwardable_tgt_and_renewal() {
    let Some((kdc, conf)) = kdc_for_mit(&["kinit"], "krb5-user") else {
        return;
    };
    let cc = kdc.path("cc");
    let mut c = mit(&kdc, &conf, "kinit", &cc);
    c.args(["-f", "-r", "2d", "-l", "1h", "alice"])
        .stdin(Stdio::piped());
    let mut child = c.spawn().unwrap();
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let mut kl = mit(&kdc, &conf, "klist", &cc);
    kl.arg("-f");
    let listing = String::from_utf8_lossy(&kl.output().unwrap().stdout).into_owned();
    // F forwardable, R renewable, I initial, A pre-authenticated.
    assert!(listing.contains("Flags: FRIA"), "{listing}");
    // Renew it.
    let mut c = mit(&kdc, &conf, "kinit", &cc);
    c.arg("-R");
    let out = c.output().unwrap();
    assert!(out.status.success(), "kinit -R: {}", text(&out));
    let listing = String::from_utf8_lossy(&kl.output().unwrap().stdout).into_owned();
    assert!(listing.contains("Flags: FRA"), "after renewal: {listing}");
}

#[test]
fn oversized_udp_reply_makes_mit_retry_over_tcp() {
    if skip_without(&["kinit"], "krb5-user") {
        return;
    }
    let kdc = kdc_with(RoamgateKdcOptions {
        max_udp_reply: 300,
        ..RoamgateKdcOptions::default()
    });
    let conf = default_conf(&kdc);
    let cc = kdc.path("cc");
    let out = kinit(&kdc, &conf, &cc, "alice", PASSWORD);
    assert!(out.status.success(), "{}", text(&out));
    let trace = String::from_utf8_lossy(&out.stderr);
    assert!(trace.contains("UDP"), "{trace}");
    assert!(
        trace.contains("TCP"),
        "no TCP retry after RESPONSE_TOO_BIG: {trace}"
    );

    // And at the wire: a UDP AS-REP that does not fit is error 52.
    let (_, rep) = as_exchange_udp(&kdc, "alice");
    assert_eq!(probe::error_code(&rep), Some(52));
}

/// AS-REQ with pre-auth over UDP; returns (first reply, second reply).
fn as_exchange_udp(kdc: &RoamgateKdc, user: &str) -> (Vec<u8>, Vec<u8>) {
    let client = Principal::parse_with_realm(user, &kdc.realm).unwrap();
    let key = Key::from_password(
        Etype::Aes256CtsHmacSha196,
        PASSWORD.as_bytes(),
        &client.default_salt(),
        None,
    )
    .unwrap();
    let spec = RequestSpec {
        client,
        server: Principal::krbtgt(&kdc.realm),
        etypes: vec![18],
        options: 0,
        till: SystemTime::now() + Duration::from_secs(3600),
        rtime: None,
        nonce: 777,
    };
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.connect(kdc.addr).unwrap();
    let mut buf = vec![0u8; 65536];
    s.send(&probe::as_req(&spec, vec![]).unwrap()).unwrap();
    let n = s.recv(&mut buf).unwrap();
    let first = buf[..n].to_vec();
    let pa = probe::enc_timestamp(&key, SystemTime::now()).unwrap();
    s.send(&probe::as_req(&spec, vec![pa]).unwrap()).unwrap();
    let n = s.recv(&mut buf).unwrap();
    (first, buf[..n].to_vec())
}

fn tcp_exchange(kdc: &RoamgateKdc, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut s = TcpStream::connect(kdc.addr)?;
    s.set_read_timeout(Some(Duration::from_secs(3)))?;
    s.write_all(&(msg.len() as u32).to_be_bytes())?;
    s.write_all(msg)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len)?;
    let mut rep = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut rep)?;
    Ok(rep)
}

#[test]
fn abuse_gets_errors_or_drops_and_the_kdc_keeps_serving() {
    let mut kdc = kdc();
    let (first, second) = as_exchange_udp(&kdc, "alice");
    assert_eq!(probe::error_code(&first), Some(25));
    assert_eq!(probe::error_code(&second), None);
    let rss_before = kdc.rss_kib();

    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.connect(kdc.addr).unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 4096];
    // Garbage: dropped (no reply).
    for g in [&b""[..], b"\x00", b"GET / HTTP/1.0\r\n\r\n", &[0xff; 1000]] {
        udp.send(g).unwrap();
    }
    assert!(udp.recv(&mut buf).is_err(), "garbage got a reply");
    // Truncated AS-REQs: KRB_ERR_GENERIC.
    let spec = RequestSpec {
        client: Principal::parse("alice@ROAMGATE.TEST").unwrap(),
        server: Principal::krbtgt("ROAMGATE.TEST"),
        etypes: vec![18],
        options: 0,
        till: SystemTime::now() + Duration::from_secs(3600),
        rtime: None,
        nonce: 1,
    };
    let req = probe::as_req(&spec, vec![]).unwrap();
    for n in [1, 2, 10, req.len() / 2, req.len() - 1] {
        udp.send(&req[..n]).unwrap();
        let got = udp
            .recv(&mut buf)
            .expect("an error reply to a truncated AS-REQ");
        assert_eq!(probe::error_code(&buf[..got]), Some(60), "truncated to {n}");
    }

    // TCP: a huge length prefix gets KRB_ERR_FIELD_TOOLONG and a close,
    // without the KDC allocating the announced size.
    for prefix in [0x7fff_ffffu32, 0xffff_ffff, 10_000_000] {
        let mut s = TcpStream::connect(kdc.addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        s.write_all(&prefix.to_be_bytes()).unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let mut rep = vec![0u8; u32::from_be_bytes(len) as usize];
        s.read_exact(&mut rep).unwrap();
        assert_eq!(probe::error_code(&rep), Some(61), "prefix {prefix:#x}");
        let mut rest = Vec::new();
        assert_eq!(
            s.read_to_end(&mut rest).unwrap_or(0),
            0,
            "connection not closed"
        );
    }
    // TCP: a connection that stalls mid-request does not block others.
    let mut stalled = TcpStream::connect(kdc.addr).unwrap();
    stalled.write_all(&1000u32.to_be_bytes()).unwrap();
    stalled.write_all(&req[..10]).unwrap();
    assert_eq!(
        probe::error_code(&tcp_exchange(&kdc, &req).unwrap()),
        Some(25)
    );

    // A flood of AS-REQs from many sockets, not waiting for replies.
    let started = Instant::now();
    let senders: Vec<UdpSocket> = (0..8)
        .map(|_| {
            let s = UdpSocket::bind("127.0.0.1:0").unwrap();
            s.connect(kdc.addr).unwrap();
            s
        })
        .collect();
    let mut sent = 0u32;
    for i in 0..40_000u32 {
        let mut sp = spec.clone();
        sp.nonce = i;
        // Unknown principals too, so that negative caching is exercised.
        if i % 2 == 0 {
            sp.client = Principal::parse(&format!("flood{i}@ROAMGATE.TEST")).unwrap();
        }
        let r = probe::as_req(&sp, vec![]).unwrap();
        if senders[(i % 8) as usize].send(&r).is_ok() {
            sent += 1;
        }
    }
    eprintln!("flooded {sent} AS-REQs in {:?}", started.elapsed());
    std::thread::sleep(Duration::from_millis(500));

    // Still alive, still serving both transports, memory bounded.
    assert!(kdc.alive(), "KDC died under the flood");
    let (first, second) = as_exchange_udp(&kdc, "alice");
    assert_eq!(probe::error_code(&first), Some(25));
    assert_eq!(probe::error_code(&second), None);
    assert_eq!(
        probe::error_code(&tcp_exchange(&kdc, &req).unwrap()),
        Some(25)
    );
    if let (Some(before), Some(after)) = (rss_before, kdc.rss_kib()) {
        eprintln!("KDC RSS {before} KiB -> {after} KiB");
        assert!(
            after < before + 100 * 1024,
            "RSS grew from {before} to {after} KiB"
        );
    }
    if have("kinit") {
        let conf = default_conf(&kdc);
        let out = kinit(&kdc, &conf, &kdc.path("cc"), "alice", PASSWORD);
        assert!(
            out.status.success(),
            "kinit after the flood: {}",
            text(&out)
        );
    }
}

#[test]
fn tshark_decodes_an_as_exchange_without_malformed_fields() {
    let Some((kdc, conf)) = kdc_for_mit(&["tshark", "kinit"], "tshark, krb5-user") else {
        return;
    };
    let all_keytab = kdc.path("all.keytab");
    let mut cap = KerberosCapture::start(kdc.addr.port(), &kdc.path("as.pcap")).unwrap();
    let out = kinit(&kdc, &conf, &kdc.path("cc"), "alice", PASSWORD);
    assert!(out.status.success(), "{}", text(&out));
    cap.stop().unwrap();

    let v = cap.decode(&all_keytab, &["-V"]).unwrap();
    assert!(v.contains("as-req"), "no AS-REQ in the capture:\n{v}");
    assert!(v.contains("as-rep"), "no AS-REP in the capture:\n{v}");
    assert!(v.contains("eRR-PREAUTH-REQUIRED (25)"), "{v}");
    assert!(v.contains("pA-ENC-TIMESTAMP (2)"), "{v}");
    // PA-ETYPE-INFO2 with the salt and s2kparams decodes.
    assert!(v.contains("pA-ETYPE-INFO2 (19)"), "{v}");
    assert!(v.contains("salt: ROAMGATE.TESTalice"), "{v}");
    assert!(v.contains("s2kparams: "), "{v}");
    // Decrypted with the keytab: the encrypted timestamp, the ticket and
    // the AS-REP's encrypted part all show their contents.
    assert!(v.contains("patimestamp"), "timestamp not decrypted:\n{v}");
    assert!(v.contains("Decrypted keytype"), "nothing decrypted:\n{v}");
    assert!(
        v.contains("    encTicketPart\n"),
        "ticket not decrypted:\n{v}"
    );
    assert!(
        v.contains("    encASRepPart\n"),
        "AS-REP not decrypted:\n{v}"
    );
    for bad in ["Malformed", "[Expert Info (Error", "[Expert Info (Warning"] {
        assert!(!v.contains(bad), "tshark reports {bad:?}:\n{v}");
    }
    // The expert summary agrees.
    let e = cap.decode(&all_keytab, &["-q", "-z", "expert"]).unwrap();
    assert!(
        !e.contains("Errors (") && !e.contains("Warnings ("),
        "expert info:\n{e}"
    );
}

#[test]
fn cli_errors_are_one_line_naming_the_cause() {
    let Some(bin) = roamgate_integration::bench::kdc::roamgate_binary() else {
        eprintln!("skipping: the roamgate binary is not built (cargo build -p roamgate)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("kdc.sqlite");
    let run = |args: &[&str], stdin: &str| -> Output {
        let mut c = Command::new(&bin);
        c.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let dbs = db.display().to_string();
    let fails = |o: &Output, needle: &str| {
        assert!(!o.status.success(), "{}", text(o));
        let err = String::from_utf8_lossy(&o.stderr);
        let lines: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "not one line: {err}");
        assert!(lines[0].contains(needle), "{needle:?} not in {err}");
    };
    // A database that does not exist.
    fails(
        &run(
            &["kdc", "serve", "--db", &dbs, "--listen", "127.0.0.1:0"],
            "",
        ),
        "is not a roamgate principal database",
    );
    let o = run(&["kdc", "init", "--realm", "CLI.TEST", "--db", &dbs], "");
    assert!(o.status.success(), "{}", text(&o));
    // Init twice.
    fails(
        &run(&["kdc", "init", "--realm", "CLI.TEST", "--db", &dbs], ""),
        "already exists",
    );
    let o = run(
        &[
            "kdc",
            "add-principal",
            "--db",
            &dbs,
            "bob",
            "--password-stdin",
        ],
        "pw\n",
    );
    assert!(o.status.success(), "{}", text(&o));
    // The same principal again; an empty password; a principal of another
    // realm; an unknown etype.
    fails(
        &run(
            &["kdc", "add-principal", "--db", &dbs, "bob", "--random-key"],
            "",
        ),
        "principal bob@CLI.TEST already exists",
    );
    fails(
        &run(
            &[
                "kdc",
                "add-principal",
                "--db",
                &dbs,
                "carol",
                "--password-stdin",
            ],
            "\n",
        ),
        "no password on stdin",
    );
    fails(
        &run(
            &[
                "kdc",
                "add-principal",
                "--db",
                &dbs,
                "dave@OTHER",
                "--random-key",
            ],
            "",
        ),
        "belongs to realm OTHER",
    );
    fails(
        &run(
            &[
                "kdc",
                "add-principal",
                "--db",
                &dbs,
                "erin",
                "--random-key",
                "--etypes",
                "23",
            ],
            "",
        ),
        "unsupported etype",
    );
    // Export of an unknown principal.
    let kt = dir.path().join("x.keytab").display().to_string();
    fails(
        &run(
            &["kdc", "export-keytab", "--db", &dbs, "nobody", "--out", &kt],
            "",
        ),
        "principal nobody@CLI.TEST not found",
    );
    // A master key file others can read is refused.
    let mkey = format!("{dbs}.mkey");
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&mkey, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    fails(
        &run(&["kdc", "list", "--db", &dbs], ""),
        "must be mode 0600",
    );
}

#[test]
fn mit_kinit_with_exported_keytab_and_host_based_kvno() {
    let Some((kdc, conf)) = kdc_for_mit(&["kinit", "kvno"], "krb5-user") else {
        return;
    };
    // The service authenticates with the keytab `roamgate kdc export-keytab`
    // wrote (pre-authentication with the keytab's key).
    let cc = kdc.path("svc.cc");
    let mut c = mit(&kdc, &conf, "kinit", &cc);
    c.args(["-k", "-t"])
        .arg(kdc.path("svc.keytab"))
        .arg(format!("{SERVICE}@ROAMGATE.TEST"));
    let out = c.output().unwrap();
    assert!(out.status.success(), "kinit -k: {}", text(&out));
    // A user asks for a host-based service name without a realm: MIT uses
    // NT-SRV-HST and the referral realm.
    let cc = kdc.path("alice.cc");
    let out = kinit(&kdc, &conf, &cc, "alice", PASSWORD);
    assert!(out.status.success(), "{}", text(&out));
    let mut kv = mit(&kdc, &conf, "kvno", &cc);
    kv.args(["-S", "host", "svc.roamgate.test"]);
    let out = kv.output().unwrap();
    assert!(out.status.success(), "kvno -S: {}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("kvno = 1"),
        "{}",
        text(&out)
    );
}
