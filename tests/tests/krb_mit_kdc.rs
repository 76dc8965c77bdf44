//! roamgate's Kerberos client and service side against MIT krb5kdc (and,
//! in the last test, against roamgate's own KDC).
//!
//! Each test starts its own MIT KDC on loopback (see
//! `roamgate_integration::mit`). They need krb5-kdc, krb5-user and
//! krb5-admin-server installed; without them they are skipped with a
//! message. The CLI tests run the `roamgate` binary and fail if it is not
//! built (`cargo build -p roamgate`). The tshark test captures on `lo` and
//! so needs root (or capture rights); it is skipped without tshark.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime};

use roamgate_integration::mit::{
    enctype_name, skip_without, KerberosCapture, MitKdc, MitKdcConfig,
};
use roamgate_integration::netns::roamgate_bin;
use roamgate_krb::ap::{self, AcceptParams, ApError, ApReqParams, KeySet};
use roamgate_krb::client::{self, AsOptions, ClientError, ClientSecret, Credential, KdcTransport};
use roamgate_krb::cred;
use roamgate_krb::keytab::Keytab;
use roamgate_krb::messages::ticket_flags;
use roamgate_krb::priv_safe::{Direction, ReplayMode, SecureChannel};
use roamgate_krb::replay::{ReplayCache, CLOCK_SKEW};
use roamgate_krb::Principal;
use roamgate_krb_crypto::{Etype, Key};

const PASSWORD: &str = "Tr0ub4dor&3";

fn have_mit() -> bool {
    !skip_without(
        &["krb5kdc", "kdb5_util", "kadmin.local", "kinit", "klist"],
        "krb5-kdc, krb5-user, krb5-admin-server",
    )
}

/// A fresh MIT KDC; `None`, and the test is skipped, without MIT krb5.
fn start_mit() -> Option<MitKdc> {
    have_mit().then(|| MitKdc::start().unwrap())
}

/// [`start_mit`] with the user alice (password [`PASSWORD`], all etypes).
fn mit_with_alice() -> Option<MitKdc> {
    let kdc = start_mit()?;
    kdc.add_principal("alice", PASSWORD, &[]).unwrap();
    Some(kdc)
}

fn transport(kdc: &MitKdc) -> KdcTransport {
    let mut t = KdcTransport::new(kdc.kdc_arg());
    t.timeout = Duration::from_secs(5);
    t
}

fn princ(kdc: &MitKdc, name: &str) -> Principal {
    Principal::parse_with_realm(name, &kdc.realm).unwrap()
}

async fn tgt(kdc: &MitKdc, name: &str, password: &str) -> Result<Credential, ClientError> {
    client::get_tgt(
        &transport(kdc),
        princ(kdc, name),
        ClientSecret::password(password),
        AsOptions::default(),
        SystemTime::now,
    )
    .await
}

/// The service's keys as MIT's string-to-key makes them from a password
/// with the default salt.
fn password_keys(kdc: &MitKdc, name: &str, password: &str, etypes: &[Etype]) -> KeySet {
    let p = princ(kdc, name);
    KeySet(
        etypes
            .iter()
            .map(|e| {
                let k =
                    Key::from_password(*e, password.as_bytes(), &p.default_salt(), None).unwrap();
                (p.clone(), 1, k)
            })
            .collect(),
    )
}

/// The service's keys from a keytab MIT's `kadmin.local ktadd` wrote.
fn mit_keytab(kdc: &MitKdc, name: &str) -> Keytab {
    let path = kdc.path(&format!("{}.keytab", name.replace('/', "_")));
    kdc.export_keytab(name, &path).unwrap();
    Keytab::load(&path).unwrap()
}

/// Runs `roamgate krb ...` (the binary from `cargo build -p roamgate`),
/// feeding `stdin`; returns (success, stdout, stderr).
fn run_krb(args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    let bin = roamgate_bin().unwrap_or_else(|e| panic!("{e:#}"));
    let mut c = Command::new(bin);
    c.arg("krb")
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let (Some(text), Some(mut pipe)) = (stdin, child.stdin.take()) {
        writeln!(pipe, "{text}").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// How `roamgate krb kinit` proves the client's identity.
enum Secret<'a> {
    /// A password, on stdin.
    Password(&'a str),
    /// The keys of a keytab file.
    Keytab(&'a str),
}

/// `roamgate krb kinit` of `user` in the fixture's realm, at `kdc_addr`,
/// into the cache file `cc`, with `extra` arguments (`--tcp`).
fn rg_kinit(
    kdc: &MitKdc,
    kdc_addr: &str,
    user: &str,
    secret: Secret<'_>,
    cc: &str,
    extra: &[&str],
) -> (bool, String, String) {
    let mut args = vec![
        "kinit", "--realm", &kdc.realm, "--kdc", kdc_addr, user, "--ccache", cc,
    ];
    let stdin = match secret {
        Secret::Password(pw) => {
            args.push("--password-stdin");
            Some(pw)
        }
        Secret::Keytab(keytab) => {
            args.extend(["--keytab", keytab]);
            None
        }
    };
    args.extend_from_slice(extra);
    run_krb(&args, stdin)
}

/// `roamgate krb kvno` of `service` at the fixture's KDC, with the TGT in
/// the cache file `cc` and `extra` arguments (`--tcp`).
fn rg_kvno(kdc: &MitKdc, cc: &str, service: &str, extra: &[&str]) -> (bool, String, String) {
    let addr = kdc.kdc_arg();
    let mut args = vec![
        "kvno", "--realm", &kdc.realm, "--kdc", &addr, "--ccache", cc, service,
    ];
    args.extend_from_slice(extra);
    run_krb(&args, None)
}

/// MIT `klist -e -f` of a cache file; panics if klist cannot read it.
fn mit_klist(kdc: &MitKdc, cc: &Path) -> String {
    let mut c = kdc.command("klist");
    c.args(["-e", "-f", "-c", &format!("FILE:{}", cc.display())]);
    let out = kdc.run(c, "MIT klist").unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn as_tgs_and_ap_for_each_etype() {
    let Some(kdc) = start_mit() else {
        return;
    };
    for etype in Etype::ALL {
        let e = etype.to_i32();
        let name = enctype_name(e).unwrap();
        let user = format!("user{e}");
        let svc = format!("svc/host{e}");
        kdc.add_principal(&user, PASSWORD, &[name]).unwrap();
        kdc.add_random_principal(&svc, &[name]).unwrap();

        let tgt = tgt(&kdc, &user, PASSWORD)
            .await
            .unwrap_or_else(|err| panic!("AS for etype {e}: {err}\n{}", kdc.log()));
        assert!(tgt.is_tgt());
        assert!(tgt.is_forwardable(), "flags {:#x}", tgt.flags);
        assert!(tgt.flags & ticket_flags::PRE_AUTHENT != 0);
        assert!(tgt.end_time > SystemTime::now());

        let st =
            client::get_service_ticket(&transport(&kdc), &tgt, princ(&kdc, &svc), SystemTime::now)
                .await
                .unwrap_or_else(|err| panic!("TGS for etype {e}: {err}\n{}", kdc.log()));
        assert_eq!(st.server, princ(&kdc, &svc));
        // The ticket is encrypted in the service's only key.
        assert_eq!(st.ticket.enc_part.etype, e);

        // The service accepts an AP-REQ with that ticket, using its key
        // from a keytab MIT exported.
        let keys = mit_keytab(&kdc, &svc);
        let (req, apc) = ap::build_ap_req(
            &st,
            &ApReqParams {
                mutual: true,
                subkey: true,
                seq_number: Some(1),
                app_data: Some(b"call setup"),
            },
            SystemTime::now(),
        )
        .unwrap();
        let mut rc = ReplayCache::default();
        let acc = ap::accept_ap_req(
            &req,
            &keys,
            &AcceptParams {
                service: Some(&princ(&kdc, &svc)),
                app_data: Some(b"call setup"),
                skew: CLOCK_SKEW,
            },
            &mut rc,
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(acc.client, princ(&kdc, &user));
        let server_subkey = acc.new_subkey();
        let rep = acc.ap_rep(Some(&server_subkey), Some(9));
        let info = apc.verify_ap_rep(&rep).unwrap();
        assert_eq!(info.key, server_subkey);
        // Both sides now share the acceptor's subkey for KRB-PRIV.
        let mut a = SecureChannel::new(
            info.key,
            Direction::Initiator,
            ReplayMode::Sequence {
                local: 1,
                remote: 9,
            },
        );
        let mut b = SecureChannel::new(
            server_subkey,
            Direction::Acceptor,
            ReplayMode::Sequence {
                local: 9,
                remote: 1,
            },
        );
        let now = SystemTime::now();
        let m = a.seal_priv(b"hello", now).unwrap();
        assert_eq!(b.open_priv(&m, now).unwrap(), b"hello");
        let r = b.seal_priv(b"welcome", now).unwrap();
        assert_eq!(a.open_priv(&r, now).unwrap(), b"welcome");
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_principal_are_named() {
    let Some(kdc) = mit_with_alice() else {
        return;
    };
    let err = tgt(&kdc, "alice", "not it").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "preauthentication failed for alice@{}: wrong password or key",
            kdc.realm
        )
    );
    let err = tgt(&kdc, "mallory", PASSWORD).await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with(&format!("unknown principal mallory@{}", kdc.realm)),
        "{err}"
    );
}

#[tokio::test]
async fn tcp_only_and_unknown_service() {
    let Some(kdc) = mit_with_alice() else {
        return;
    };
    let mut t = transport(&kdc);
    t.tcp_only = true;
    let tgt = client::get_tgt(
        &t,
        princ(&kdc, "alice"),
        ClientSecret::password(PASSWORD),
        AsOptions::default(),
        SystemTime::now,
    )
    .await
    .unwrap();
    let err = client::get_service_ticket(&t, &tgt, princ(&kdc, "nosuch/svc"), SystemTime::now)
        .await
        .unwrap_err();
    assert!(matches!(err, ClientError::ServiceUnknown(_)), "{err}");
}

#[tokio::test]
async fn kdc_with_skewed_clock_is_refused() {
    if !have_mit() {
        return;
    }
    // The KDC's clock runs 20 minutes ahead: our encrypted timestamp is out
    // of its window.
    let kdc = MitKdc::start_with(MitKdcConfig {
        time_offset_secs: 1200,
        ..Default::default()
    })
    .unwrap();
    kdc.add_principal("alice", PASSWORD, &[]).unwrap();
    let err = tgt(&kdc, "alice", PASSWORD).await.unwrap_err();
    assert!(matches!(err, ClientError::Skew(_)), "{err}\n{}", kdc.log());
}

#[tokio::test]
async fn forwarded_tgt_travels_in_krb_cred() {
    let Some(kdc) = start_mit() else {
        return;
    };
    kdc.add_principal("unit1", PASSWORD, &[]).unwrap();
    kdc.add_principal("pm/imu", PASSWORD, &["aes256-cts-hmac-sha1-96"])
        .unwrap();
    let t = transport(&kdc);
    let tgt = tgt(&kdc, "unit1", PASSWORD).await.unwrap();
    let fwd = client::get_forwarded_tgt(&t, &tgt, SystemTime::now)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", kdc.log()));
    assert!(fwd.flags & ticket_flags::FORWARDED != 0, "{:#x}", fwd.flags);
    assert!(fwd.is_tgt());

    // The unit authenticates to the proxy manager and forwards its TGT.
    let st = client::get_service_ticket(&t, &tgt, princ(&kdc, "pm/imu"), SystemTime::now)
        .await
        .unwrap();
    let (req, _) = ap::build_ap_req(
        &st,
        &ApReqParams {
            subkey: true,
            ..Default::default()
        },
        SystemTime::now(),
    )
    .unwrap();
    let keys = password_keys(&kdc, "pm/imu", PASSWORD, &[Etype::Aes256CtsHmacSha196]);
    let mut rc = ReplayCache::default();
    let acc = ap::accept_ap_req(
        &req,
        &keys,
        &AcceptParams::default(),
        &mut rc,
        SystemTime::now(),
    )
    .unwrap();
    let krb_cred =
        cred::build_krb_cred(std::slice::from_ref(&fwd), &acc.key(), SystemTime::now()).unwrap();
    let got = cred::open_krb_cred(
        &krb_cred,
        &acc.key(),
        CLOCK_SKEW,
        &mut rc,
        SystemTime::now(),
    )
    .unwrap();
    // The proxy manager uses the forwarded TGT, in the unit's name, at the
    // real KDC.
    let dir = client::get_service_ticket(&t, &got[0], princ(&kdc, "pm/imu"), SystemTime::now)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", kdc.log()));
    assert_eq!(dir.client, princ(&kdc, "unit1"));
}

#[tokio::test]
async fn service_side_rejects_replay_other_service_and_skew() {
    let Some(kdc) = mit_with_alice() else {
        return;
    };
    kdc.add_random_principal("dir/a", &["aes128-cts-hmac-sha256-128"])
        .unwrap();
    let t = transport(&kdc);
    let tgt = tgt(&kdc, "alice", PASSWORD).await.unwrap();
    let st = client::get_service_ticket(&t, &tgt, princ(&kdc, "dir/a"), SystemTime::now)
        .await
        .unwrap();
    let keys = mit_keytab(&kdc, "dir/a");
    let now = SystemTime::now();
    let (req, _) = ap::build_ap_req(&st, &ApReqParams::default(), now).unwrap();
    let mut rc = ReplayCache::default();
    let svc = princ(&kdc, "dir/a");
    let params = AcceptParams {
        service: Some(&svc),
        ..Default::default()
    };
    ap::accept_ap_req(&req, &keys, &params, &mut rc, now).unwrap();
    // Replay.
    let err = ap::accept_ap_req(&req, &keys, &params, &mut rc, now).unwrap_err();
    assert!(matches!(err, ApError::Replay(_)), "{err}");
    // A ticket for another service.
    let other = princ(&kdc, "dir/b");
    let err = ap::accept_ap_req(
        &req,
        &keys,
        &AcceptParams {
            service: Some(&other),
            ..Default::default()
        },
        &mut ReplayCache::default(),
        now,
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("ticket for another service"),
        "{err}"
    );
    // A client whose clock is 10 minutes slow.
    let (old, _) =
        ap::build_ap_req(&st, &ApReqParams::default(), now - Duration::from_secs(600)).unwrap();
    let err = ap::accept_ap_req(&old, &keys, &params, &mut rc, now).unwrap_err();
    assert!(matches!(err, ApError::Skew { .. }), "{err}");
}

#[test]
fn cli_kinit_kvno_against_mit_for_each_etype_udp_and_tcp() {
    let Some(kdc) = start_mit() else {
        return;
    };
    let addr = kdc.kdc_arg();
    for etype in Etype::ALL {
        let e = etype.to_i32();
        let name = enctype_name(e).unwrap();
        let user = format!("cli{e}");
        let svc = format!("host/cli{e}");
        kdc.add_principal(&user, PASSWORD, &[name]).unwrap();
        kdc.add_random_principal(&svc, &[name]).unwrap();
        for tcp in [false, true] {
            let cc = kdc.path(&format!("cli{e}-{tcp}.cc"));
            let cc_s = cc.display().to_string();
            let extra: &[&str] = if tcp { &["--tcp"] } else { &[] };
            let (ok, _, err) =
                rg_kinit(&kdc, &addr, &user, Secret::Password(PASSWORD), &cc_s, extra);
            assert!(ok, "kinit etype {e} tcp={tcp}: {err}\n{}", kdc.log());
            // MIT's klist reads the cache roamgate wrote.
            let listing = mit_klist(&kdc, &cc);
            assert!(
                listing.contains(&format!("Default principal: {user}@{}", kdc.realm)),
                "{listing}"
            );
            assert!(
                listing.contains(&format!("krbtgt/{r}@{r}", r = kdc.realm)),
                "{listing}"
            );
            let (ok, out, err) = rg_kvno(&kdc, &cc_s, &svc, extra);
            assert!(ok, "kvno etype {e} tcp={tcp}: {err}\n{}", kdc.log());
            assert_eq!(out.trim(), format!("{svc}@{}: kvno = 1", kdc.realm));
            // The service ticket is in the cache, encrypted in the
            // service's only key.
            let listing = mit_klist(&kdc, &cc);
            assert!(
                listing.contains(&format!("{svc}@{}", kdc.realm)),
                "{listing}"
            );
            assert!(
                listing.contains(&format!("tkt): {name}"))
                    || listing.contains(&format!(", {name}")),
                "{listing}"
            );
        }
    }
}

#[tokio::test]
async fn mit_keytab_gets_a_tgt_library_and_cli() {
    let Some(kdc) = start_mit() else {
        return;
    };
    kdc.add_random_principal("unit/a", &[]).unwrap();
    let kt_path = kdc.path("unit.keytab");
    kdc.export_keytab("unit/a", &kt_path).unwrap();
    let kt = Keytab::load(&kt_path).unwrap();
    let me = princ(&kdc, "unit/a");
    let keys: Vec<Key> = kt.keys_for(&me).map(|e| e.key.clone()).collect();
    assert_eq!(keys.len(), 4, "MIT wrote one key per supported etype");
    let cred = client::get_tgt(
        &transport(&kdc),
        me.clone(),
        ClientSecret::Keys(keys),
        AsOptions::default(),
        SystemTime::now,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", kdc.log()));
    assert_eq!(cred.client, me);

    let cc = kdc.path("unit.cc");
    let (ok, _, err) = rg_kinit(
        &kdc,
        &kdc.kdc_arg(),
        "unit/a",
        Secret::Keytab(&kt_path.display().to_string()),
        &cc.display().to_string(),
        &[],
    );
    assert!(ok, "{err}");
    assert!(mit_klist(&kdc, &cc).contains(&format!("Default principal: unit/a@{}", kdc.realm)));
}

#[test]
fn roamgate_reads_mit_ccache() {
    let Some(kdc) = mit_with_alice() else {
        return;
    };
    kdc.add_random_principal("host/x", &[]).unwrap();
    let cc = kdc.path("mit.cc");
    kdc.kinit_password("alice", PASSWORD, &cc).unwrap();
    let cc_s = cc.display().to_string();
    let (ok, out, err) = run_krb(&["klist", "--ccache", &cc_s], None);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("Default principal: alice@{}", kdc.realm)),
        "{out}"
    );
    assert!(
        out.contains(&format!("krbtgt/{r}@{r}", r = kdc.realm)),
        "{out}"
    );
    // roamgate uses MIT's TGT for a service ticket, and MIT reads the result.
    let (ok, out, err) = rg_kvno(&kdc, &cc_s, "host/x", &[]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), format!("host/x@{}: kvno = 1", kdc.realm));
    assert!(mit_klist(&kdc, &cc).contains(&format!("host/x@{}", kdc.realm)));
}

#[test]
fn cli_errors_are_one_line_and_name_the_cause() {
    let Some(kdc) = mit_with_alice() else {
        return;
    };
    let cc = kdc.path("err.cc").display().to_string();
    let kinit = |name: &str, kdc_addr: &str, pw: &str| {
        rg_kinit(&kdc, kdc_addr, name, Secret::Password(pw), &cc, &[])
    };
    let one_line = |err: &str| {
        assert_eq!(err.trim_end().lines().count(), 1, "not one line: {err:?}");
        err.trim_end().to_owned()
    };
    let (ok, _, err) = kinit("alice", &kdc.kdc_arg(), "wrong");
    assert!(!ok);
    assert_eq!(
        one_line(&err),
        format!(
            "roamgate: preauthentication failed for alice@{}: wrong password or key",
            kdc.realm
        )
    );
    let (ok, _, err) = kinit("nobody", &kdc.kdc_arg(), PASSWORD);
    assert!(!ok);
    assert!(
        one_line(&err).contains(&format!("unknown principal nobody@{}", kdc.realm)),
        "{err}"
    );
    // Nothing listens on this port.
    let port = roamgate_integration::mit::free_loopback_port().unwrap();
    let (ok, _, err) = kinit("alice", &format!("127.0.0.1:{port}"), PASSWORD);
    assert!(!ok);
    assert!(
        one_line(&err).contains(&format!("KDC 127.0.0.1:{port} unreachable")),
        "{err}"
    );
    // A corrupt cache.
    let bad = kdc.path("corrupt.cc");
    std::fs::write(&bad, [0x05, 0x04, 0x00, 0x0c, 0x00]).unwrap();
    let (ok, _, err) = run_krb(&["klist", "--ccache", &bad.display().to_string()], None);
    assert!(!ok);
    assert!(one_line(&err).contains("corrupt credential cache"), "{err}");
    let (ok, _, err) = rg_kinit(
        &kdc,
        &kdc.kdc_arg(),
        "alice",
        Secret::Keytab(&bad.display().to_string()),
        &cc,
        &[],
    );
    assert!(!ok);
    assert!(one_line(&err).contains("corrupt keytab"), "{err}");
}

/// A tshark capture of `roamgate krb kinit` and `kvno` against MIT's KDC,
/// decrypted with MIT-exported keys, shows every message and no malformed
/// field.
#[test]
fn tshark_decodes_roamgate_client_exchanges_without_malformed_fields() {
    if skip_without(&["tshark"], "tshark") {
        return;
    }
    let Some(kdc) = mit_with_alice() else {
        return;
    };
    kdc.add_random_principal("host/cap", &[]).unwrap();
    let keytab = kdc.path("all.keytab");
    for p in [
        "alice".to_owned(),
        "host/cap".to_owned(),
        format!("krbtgt/{}", kdc.realm),
    ] {
        kdc.export_keytab(&p, &keytab).unwrap();
    }
    // tshark writes as an unprivileged user; let it write the directory.
    let _ = Command::new("chmod").arg("0777").arg(kdc.dir()).status();
    let mut cap = KerberosCapture::start(kdc.addr.port(), &kdc.path("client.pcap")).unwrap();
    let cc = kdc.path("cap.cc").display().to_string();
    let (ok, _, err) = rg_kinit(
        &kdc,
        &kdc.kdc_arg(),
        "alice",
        Secret::Password(PASSWORD),
        &cc,
        &[],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = rg_kvno(&kdc, &cc, "host/cap", &[]);
    assert!(ok, "{err}");
    cap.stop().unwrap();

    let tshark = |extra: &[&str]| cap.decode(&keytab, extra).unwrap();
    let v = tshark(&["-V"]);
    for want in [
        "as-req",
        "eRR-PREAUTH-REQUIRED (25)",
        "pA-ENC-TIMESTAMP (2)",
        "patimestamp",
        "as-rep",
        "tgs-req",
        "pA-TGS-REQ (1)",
        "tgs-rep",
        "Decrypted keytype",
        "encTicketPart",
        "authenticator",
    ] {
        assert!(v.contains(want), "{want:?} missing from the capture:\n{v}");
    }
    // The TGS-REP is sealed in our authenticator subkey (usage 9).
    assert!(
        v.contains("usage 9 using learnt authenticator_subkey"),
        "TGS-REP not decrypted with the subkey:\n{v}"
    );
    for bad in ["Malformed", "[Expert Info (Error"] {
        assert!(!v.contains(bad), "tshark reports {bad:?}:\n{v}");
    }
    // Wireshark tries usage 8 (session key) before usage 9 (subkey) on a
    // TGS-REP and notes the miss as a decryption warning; nothing else
    // may warn.
    for line in v.lines().filter(|l| l.contains("[Expert Info (Warning")) {
        assert!(
            line.contains("Warning/Decryption): Missing keytype")
                || line.contains("Warning/Decryption): Used keymap"),
            "tshark warns: {line}\n{v}"
        );
    }
    let e = tshark(&["-q", "-z", "expert"]);
    assert!(!e.contains("Errors ("), "expert info:\n{e}");
}

/// roamgate's service side verifies an AP-REQ that MIT built: the one in
/// the PA-TGS-REQ of MIT `kvno`'s TGS-REQ, checked with the krbtgt key
/// from an MIT keytab (key usage 7, subkey, client name, times, replay).
#[test]
fn roamgate_verifies_an_ap_req_built_by_mit() {
    use roamgate_krb::messages::{self, asn, pa_type, MessageKind};
    use std::net::UdpSocket;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let Some(kdc) = mit_with_alice() else {
        return;
    };
    kdc.add_random_principal("host/mit", &[]).unwrap();
    let krbtgt = format!("krbtgt/{}", kdc.realm);
    let kt = mit_keytab(&kdc, &krbtgt);

    // A UDP proxy in front of the KDC records what MIT's tools send.
    let front = UdpSocket::bind("127.0.0.1:0").unwrap();
    front
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let front_port = front.local_addr().unwrap().port();
    let seen: Arc<Mutex<Vec<Vec<u8>>>> = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let proxy = {
        let (seen, stop, kdc_addr) = (seen.clone(), stop.clone(), kdc.addr);
        std::thread::spawn(move || {
            let back = UdpSocket::bind("127.0.0.1:0").unwrap();
            back.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::Relaxed) {
                let Ok((n, client)) = front.recv_from(&mut buf) else {
                    continue;
                };
                seen.lock().unwrap().push(buf[..n].to_vec());
                back.send_to(&buf[..n], kdc_addr).unwrap();
                if let Ok(m) = back.recv(&mut buf) {
                    front.send_to(&buf[..m], client).unwrap();
                }
            }
        })
    };
    let conf = std::fs::read_to_string(kdc.krb5_conf())
        .unwrap()
        .replace(
            &format!("kdc = 127.0.0.1:{}", kdc.addr.port()),
            &format!("kdc = 127.0.0.1:{front_port}"),
        )
        .replace(
            "[libdefaults]\n",
            "[libdefaults]\n  udp_preference_limit = 65000\n",
        );
    let conf_path = kdc.path("proxy-krb5.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let cc = kdc.path("mit-ap.cc");
    {
        use std::io::Write;
        let mut kinit = kdc.command("kinit");
        kinit
            .env("KRB5_CONFIG", &conf_path)
            .args(["-c", &format!("FILE:{}", cc.display()), "alice"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = kinit.spawn().unwrap();
        writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut kvno = kdc.command("kvno");
    kvno.env("KRB5_CONFIG", &conf_path)
        .args(["-c", &format!("FILE:{}", cc.display()), "host/mit"]);
    kdc.run(kvno, "MIT kvno").unwrap();
    stop.store(true, Ordering::Relaxed);
    proxy.join().unwrap();

    let seen = seen.lock().unwrap();
    let tgs_req = seen
        .iter()
        .find(|m| MessageKind::of(m) == Some(MessageKind::TgsReq))
        .expect("MIT kvno sent a TGS-REQ through the proxy");
    let req: asn::TgsReq = messages::decode(tgs_req).unwrap();
    let pa = messages::find_padata(req.0.padata.as_deref(), pa_type::TGS_REQ).unwrap();
    let ap_req: asn::ApReq = messages::decode(&pa.value).unwrap();
    let tgs = princ(&kdc, &krbtgt);
    let params = AcceptParams {
        service: Some(&tgs),
        ..Default::default()
    };
    let mut rc = ReplayCache::default();
    let acc = ap::accept_decoded(
        &ap_req,
        &kt,
        &params,
        &mut rc,
        SystemTime::now(),
        roamgate_krb::usage::TGS_REQ_PA_TGS_REQ_AUTHENTICATOR,
    )
    .unwrap_or_else(|e| panic!("MIT's AP-REQ refused: {e}"));
    assert_eq!(acc.client, princ(&kdc, "alice"));
    assert_eq!(acc.server, tgs);
    assert!(acc.subkey.is_some(), "MIT sends a subkey in TGS requests");
    assert!(acc.ticket_flags & ticket_flags::INITIAL != 0);
    let err = ap::accept_decoded(
        &ap_req,
        &kt,
        &params,
        &mut rc,
        SystemTime::now(),
        roamgate_krb::usage::TGS_REQ_PA_TGS_REQ_AUTHENTICATOR,
    )
    .unwrap_err();
    assert!(matches!(err, ApError::Replay(_)), "{err}");
}

/// Without required pre-authentication MIT answers the first AS-REQ with an
/// AS-REP at once; the client makes the key from the reply's ETYPE-INFO2
/// (here with a non-default salt) and still refuses a wrong password.
#[tokio::test]
async fn as_rep_without_preauth_uses_the_reply_salt() {
    if !have_mit() {
        return;
    }
    let kdc = MitKdc::start_with(MitKdcConfig {
        require_preauth: false,
        ..Default::default()
    })
    .unwrap();
    // A special salt ("norealm": the name only) so the default one is wrong.
    kdc.kadmin(&format!(
        "addprinc -pw {PASSWORD} -e aes256-cts-hmac-sha1-96:norealm bob"
    ))
    .unwrap();
    let cred = tgt(&kdc, "bob", PASSWORD)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", kdc.log()));
    assert!(
        cred.flags & ticket_flags::PRE_AUTHENT == 0,
        "{:#x}",
        cred.flags
    );
    assert!(cred.is_tgt());
    let err = tgt(&kdc, "bob", "wrong").await.unwrap_err();
    assert!(matches!(err, ClientError::PreauthFailed(_)), "{err}");
}

// ---------------------------------------------------------------------------
// The same client and service side against roamgate's own KDC (the
// all-in-one default), so both KDCs are held to one client.

#[tokio::test]
async fn roamgate_client_and_service_against_roamgate_kdc() {
    use roamgate_integration::bench::kdc::{RoamgateKdc, RoamgateKdcOptions};
    let opts = RoamgateKdcOptions {
        max_udp_reply: 400,
        ..Default::default()
    };
    let b = RoamgateKdc::create(&opts).unwrap();
    for etype in Etype::ALL {
        b.add_password(&format!("u{}", etype.to_i32()), PASSWORD, &[etype])
            .unwrap();
    }
    b.add_random("svc/rg").unwrap();
    let kt_path = b.dir().join("svc.keytab");
    b.export_keytab("svc/rg", &kt_path).unwrap();
    let kdc = b.start().unwrap();
    let kt = Keytab::load(&kt_path).unwrap();
    let realm = kdc.realm.clone();
    let p = |n: &str| Principal::parse_with_realm(n, &realm).unwrap();
    let mut t = KdcTransport::new(kdc.addr.to_string());
    t.timeout = Duration::from_secs(5);
    for etype in Etype::ALL {
        let user = format!("u{}", etype.to_i32());
        let tgt = client::get_tgt(
            &t,
            p(&user),
            ClientSecret::password(PASSWORD),
            AsOptions::default(),
            SystemTime::now,
        )
        .await
        .unwrap_or_else(|e| panic!("AS etype {etype}: {e}"));
        assert!(tgt.is_forwardable() && tgt.flags & ticket_flags::PRE_AUTHENT != 0);
        // The KDC answers UDP requests whose reply exceeds 400 bytes with
        // KRB_ERR_RESPONSE_TOO_BIG; the transport retries over TCP.
        let ex = client::TgsExchange::new(&tgt, p("svc/rg"), 0).unwrap();
        let (reply, via) = t
            .exchange_via(&ex.request(SystemTime::now()).unwrap())
            .await
            .unwrap();
        assert!(reply.len() > 400, "reply of {} bytes", reply.len());
        assert_eq!(via, client::Transport::Tcp);
        let st = ex
            .handle_reply(&reply)
            .unwrap_or_else(|e| panic!("TGS etype {etype}: {e}"));
        let (req, apc) = ap::build_ap_req(
            &st,
            &ApReqParams {
                mutual: true,
                subkey: true,
                ..Default::default()
            },
            SystemTime::now(),
        )
        .unwrap();
        let svc = p("svc/rg");
        let acc = ap::accept_ap_req(
            &req,
            &kt,
            &AcceptParams {
                service: Some(&svc),
                ..Default::default()
            },
            &mut ReplayCache::default(),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(acc.client, p(&user));
        apc.verify_ap_rep(&acc.ap_rep(None, None)).unwrap();
        let fwd = client::get_forwarded_tgt(&t, &tgt, SystemTime::now)
            .await
            .unwrap_or_else(|e| panic!("forwarded TGT etype {etype}: {e}"));
        assert!(fwd.flags & ticket_flags::FORWARDED != 0);
    }
    let err = client::get_tgt(
        &t,
        p("u18"),
        ClientSecret::password("wrong"),
        AsOptions::default(),
        SystemTime::now,
    )
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("preauthentication failed for u18@{realm}: wrong password or key")
    );
}

/// MIT's `kvno` uses the TGT `roamgate krb kinit` stored: the session key,
/// ticket and times in roamgate's ccache are what MIT expects.
#[test]
fn mit_kvno_uses_a_roamgate_tgt() {
    let Some(kdc) = mit_with_alice() else {
        return;
    };
    kdc.add_random_principal("host/y", &[]).unwrap();
    let cc = kdc.path("rg.cc");
    let (ok, _, err) = rg_kinit(
        &kdc,
        &kdc.kdc_arg(),
        "alice",
        Secret::Password(PASSWORD),
        &cc.display().to_string(),
        &[],
    );
    assert!(ok, "{err}");
    let mut kvno = kdc.command("kvno");
    kvno.args(["-c", &format!("FILE:{}", cc.display()), "host/y"]);
    let out = kdc.run(kvno, "MIT kvno with a roamgate TGT").unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&format!("host/y@{}: kvno = 1", kdc.realm)),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // And roamgate reads the cache MIT added to.
    let (ok, out, err) = run_krb(&["klist", "--ccache", &cc.display().to_string()], None);
    assert!(ok, "{err}");
    assert!(out.contains(&format!("host/y@{}", kdc.realm)), "{out}");
}
