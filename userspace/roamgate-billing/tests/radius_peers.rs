//! RADIUS encoding against peers no one here wrote, when they are
//! installed (Debian's freeradius-utils and tshark); each test says so and
//! passes without them.
//!
//! - radclient sends an Accounting-Request, with roamgate's VSA from the
//!   dictionary lines of docs/billing.md, to a UDP socket here: our parser
//!   verifies its Request Authenticator and reads every attribute, and
//!   radclient accepts our Accounting-Response (it checks the Response
//!   Authenticator with the shared secret). With the wrong secret on
//!   either side, neither accepts.
//! - tshark decodes our Start and Stop (wrapped in UDP by text2pcap) with
//!   every attribute and no malformed packet.

use std::io::Write as _;
use std::net::{Ipv4Addr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use roamgate_billing::radius::{
    self, AccountingRequest, AcctStatusType, Charge, Nas, Packet, RadiusError, VENDOR_ID,
};

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The dictionary of docs/billing.md §4, for radclient.
fn dictionary_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("dictionary"),
        format!(
            "VENDOR          roamgate        {VENDOR_ID}\n\
             BEGIN-VENDOR    roamgate\n\
             ATTRIBUTE       roamgate-charge-minor-units     1       integer64\n\
             ATTRIBUTE       roamgate-currency               2       string\n\
             END-VENDOR      roamgate\n"
        ),
    )
    .unwrap();
    dir
}

/// Runs radclient against a one-shot server on a local socket that answers
/// with `server_secret`; returns what the server saw (its verification of
/// the request) and whether radclient accepted the answer.
fn radclient_exchange(
    client_secret: &str,
    server_secret: &[u8],
) -> (Result<Vec<u8>, RadiusError>, bool) {
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    let dict = dictionary_dir();
    let mut child = Command::new("radclient")
        .args([
            "-x",
            "-r",
            "1",
            "-t",
            "3",
            "-d",
            dict.path().to_str().unwrap(),
            &format!("127.0.0.1:{port}"),
            "acct",
            client_secret,
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            b"Acct-Status-Type = Stop\n\
              Acct-Session-Id = \"00112233445566778899aabbccddeeff\"\n\
              User-Name = \"alice\"\n\
              NAS-Identifier = \"imu-1\"\n\
              Acct-Session-Time = 30\n\
              Acct-Delay-Time = 4\n\
              Event-Timestamp = 1800000000\n\
              roamgate-charge-minor-units = 160\n\
              roamgate-currency = \"EUR\"\n",
        )
        .unwrap();
    let mut buf = [0u8; 4096];
    let (n, from) = sock.recv_from(&mut buf).unwrap();
    let req = buf[..n].to_vec();
    let seen = radius::verify_request(&req, server_secret).map(|_| req.clone());
    // Answer even when our check failed: radclient must refuse a
    // response made with another secret than its own.
    let mut resp = vec![0u8; 20];
    resp[0] = 5;
    resp[1] = req[1];
    resp[3] = 20;
    let auth =
        radius::response_authenticator(&resp, &req[4..20].try_into().unwrap(), server_secret)
            .unwrap();
    resp[4..20].copy_from_slice(&auth);
    sock.send_to(&resp, from).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let accepted = out.status.success() && stdout.contains("Accounting-Response");
    (seen, accepted)
}

#[test]
fn radclient_and_our_code_agree_on_the_authenticators_and_the_vsa() {
    if !have("radclient") {
        eprintln!("radclient not installed (freeradius-utils): skipped");
        return;
    }
    let (seen, accepted) = radclient_exchange("s3cret", b"s3cret");
    let req = seen.expect("radclient's request verifies with the shared secret");
    assert!(accepted, "radclient refused our Accounting-Response");
    let p = Packet::new_checked(&req[..]).unwrap();
    let r = AccountingRequest::parse(&p).unwrap();
    assert_eq!(r.status, AcctStatusType::Stop);
    assert_eq!(r.session_id, b"00112233445566778899aabbccddeeff");
    assert_eq!(r.user_name, b"alice");
    assert_eq!(r.nas, Nas::Identifier(b"imu-1"));
    assert_eq!(r.session_time, Some(30));
    assert_eq!(r.delay_time, Some(4));
    assert_eq!(r.event_timestamp, Some(1_800_000_000));
    assert_eq!(
        r.charge,
        Some(Charge {
            minor_units: 160,
            currency: *b"EUR"
        })
    );
    // The shared secret both ways: a request under another secret does not
    // verify here, and radclient refuses an answer under another secret.
    let (seen, accepted) = radclient_exchange("s3cret", b"other");
    assert_eq!(seen.unwrap_err(), RadiusError::BadAuthenticator);
    assert!(
        !accepted,
        "radclient accepted an answer under the wrong secret"
    );
}

#[test]
fn tshark_decodes_our_requests_without_malformed_packets() {
    if !have("tshark") || !have("text2pcap") {
        eprintln!("tshark/text2pcap not installed: skipped");
        return;
    }
    let start = AccountingRequest {
        status: AcctStatusType::Start,
        session_id: b"00112233445566778899aabbccddeeff",
        user_name: b"alice",
        session_time: None,
        delay_time: Some(0),
        nas: Nas::IpAddress(Ipv4Addr::new(192, 0, 2, 1)),
        event_timestamp: Some(1_800_000_000),
        charge: None,
    };
    let stop = AccountingRequest {
        status: AcctStatusType::Stop,
        session_time: Some(30),
        delay_time: Some(7),
        charge: Some(Charge {
            minor_units: 160,
            currency: *b"EUR",
        }),
        ..start
    };
    let dir = tempfile::tempdir().unwrap();
    let mut hex = String::new();
    for (id, r) in [(1u8, start), (2, stop)] {
        let bytes = r.to_bytes(id, b"s3cret").unwrap();
        hex.push_str("0000");
        for b in bytes {
            hex.push_str(&format!(" {b:02x}"));
        }
        hex.push('\n');
    }
    let txt = dir.path().join("radius.txt");
    let pcap = dir.path().join("radius.pcap");
    std::fs::write(&txt, hex).unwrap();
    let st = Command::new("text2pcap")
        .args(["-q", "-u", "40000,1813"])
        .arg(&txt)
        .arg(&pcap)
        .status()
        .unwrap();
    assert!(st.success());
    let out = Command::new("tshark")
        .args(["-r"])
        .arg(&pcap)
        .args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "radius.code",
            "-e",
            "radius.Acct_Status_Type",
            "-e",
            "radius.Acct_Session_Id",
            "-e",
            "radius.User_Name",
            "-e",
            "radius.Acct_Session_Time",
            "-e",
            "radius.Acct_Delay_Time",
            "-e",
            "radius.avp.vendor_id",
            "-e",
            "_ws.malformed",
            "-e",
            "_ws.expert",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "{text}");
    let start: Vec<&str> = lines[0].split('|').collect();
    let stop: Vec<&str> = lines[1].split('|').collect();
    assert_eq!(
        start[..6],
        [
            "4",
            "1",
            "00112233445566778899aabbccddeeff",
            "alice",
            "",
            "0"
        ],
        "{text}"
    );
    assert_eq!(
        stop[..7],
        [
            "4",
            "2",
            "00112233445566778899aabbccddeeff",
            "alice",
            "30",
            "7",
            &VENDOR_ID.to_string()
        ],
        "{text}"
    );
    for l in &lines {
        let f: Vec<&str> = l.split('|').collect();
        assert_eq!(f[7], "", "malformed: {l}");
    }
}
