//! tshark decodes roamgate's call signalling: the five messages of a call,
//! signed, are written as TCP segments to port 1720 in a pcap and
//! `tshark -V` must show Q.931 and H.225.0 with the fastStart G.711
//! proposals decoded, no malformed packet and no expert warning or error.

mod common;

use std::net::Ipv4Addr;
use std::process::Command;

use roamgate_call::wire::{h235, MessageBody, ReleaseReason, CALL_SIGNALLING_PORT};

/// A minimal pcap writer (libpcap 2.4, LINKTYPE_ETHERNET) of one TCP
/// connection's data segments.
struct Pcap {
    out: Vec<u8>,
    seq: [u32; 2],
    t: u32,
}

fn csum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        let w = if c.len() == 2 {
            u16::from_be_bytes([c[0], c[1]])
        } else {
            u16::from_be_bytes([c[0], 0])
        };
        sum += u32::from(w);
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

const A: (Ipv4Addr, u16) = (common::CALLER, 41720);
const B: (Ipv4Addr, u16) = (common::CALLEE, CALL_SIGNALLING_PORT);

impl Pcap {
    fn new() -> Self {
        let mut b = Vec::new();
        b.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        b.extend_from_slice(&2u16.to_le_bytes());
        b.extend_from_slice(&4u16.to_le_bytes());
        b.extend_from_slice(&0i32.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes());
        b.extend_from_slice(&65535u32.to_le_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        Self {
            out: b,
            seq: [1000, 5000],
            t: 1_800_000_000,
        }
    }

    fn frame(&mut self, from_b: bool, flags: u8, payload: &[u8]) {
        let (src, dst, i) = if from_b { (B, A, 1) } else { (A, B, 0) };
        let seq = self.seq[i];
        let ack = if flags & 0x10 != 0 {
            self.seq[1 - i]
        } else {
            0
        };
        let mut tcp = Vec::new();
        tcp.extend_from_slice(&src.1.to_be_bytes());
        tcp.extend_from_slice(&dst.1.to_be_bytes());
        tcp.extend_from_slice(&seq.to_be_bytes());
        tcp.extend_from_slice(&ack.to_be_bytes());
        tcp.extend_from_slice(&[0x50, flags, 0xff, 0xff, 0, 0, 0, 0]);
        tcp.extend_from_slice(payload);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src.0.octets());
        pseudo.extend_from_slice(&dst.0.octets());
        pseudo.extend_from_slice(&[0, 6]);
        pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        pseudo.extend_from_slice(&tcp);
        let c = csum(&pseudo);
        tcp[16..18].copy_from_slice(&c.to_be_bytes());
        let syn_fin = u32::from(flags & 0x03 != 0);
        self.seq[i] = seq.wrapping_add(payload.len() as u32 + syn_fin);

        let total = 20 + tcp.len();
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0];
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip.extend_from_slice(&src.0.octets());
        ip.extend_from_slice(&dst.0.octets());
        let c = csum(&ip);
        ip[10..12].copy_from_slice(&c.to_be_bytes());
        let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&tcp);
        self.t += 1;
        self.out.extend_from_slice(&self.t.to_le_bytes());
        self.out.extend_from_slice(&0u32.to_le_bytes());
        self.out
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.out
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.out.extend_from_slice(&frame);
    }
}

#[test]
fn tshark_decodes_call_signalling_without_errors() {
    let mut pcap = Pcap::new();
    // The handshake, so that tshark follows the connection.
    pcap.frame(false, 0x02, &[]);
    pcap.frame(true, 0x12, &[]);
    pcap.frame(false, 0x10, &[]);
    let mut call = common::call();
    // A refusal for a forged message: the extension alternatives
    // securityError / securityIntegrityFailed of ReleaseCompleteReason.
    call.push(common::msg(
        MessageBody::ReleaseComplete {
            cause: Some(21),
            reason: Some(ReleaseReason::SecurityIntegrityFailed),
        },
        true,
    ));
    for (i, m) in call.iter().enumerate() {
        let (s, r) = if m.from_destination {
            ("4402", "4401")
        } else {
            ("4401", "4402")
        };
        let bytes = h235::sign(m, &common::fields(i as u32 + 1, s, r), common::KEY).unwrap();
        pcap.frame(m.from_destination, 0x18, &bytes);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("call.pcap");
    std::fs::write(&path, &pcap.out).unwrap();
    // ROAMGATE_CALL_PCAP=FILE keeps a copy of the capture for inspection.
    if let Some(keep) = std::env::var_os("ROAMGATE_CALL_PCAP") {
        std::fs::copy(&path, keep).unwrap();
    }
    let run = |extra: &[&str]| {
        let out = Command::new("tshark")
            .args(["-n", "-o", "tcp.check_checksum:TRUE", "-r"])
            .arg(&path)
            .args(extra)
            .output()
            .expect("run tshark (apt-get install -y tshark)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let text = run(&["-V"]);
    assert!(!text.contains("Malformed"), "{text}");
    // The e2e captures' rule (docs/testing.md): no malformed packet, no
    // expert info at warning level or above.
    let bad = run(&["-Y", "_ws.malformed || _ws.expert.severity >= 0x00600000"]);
    assert!(bad.trim().is_empty(), "flagged packets:\n{bad}\n{text}");
    let expert = run(&["-q", "-z", "expert,warn"]);
    assert!(
        !expert.contains("Warning") && !expert.contains("Error"),
        "expert infos:\n{expert}\n{text}"
    );
    for needle in [
        "Message type: SETUP (0x05)",
        "Message type: CALL PROCEEDING (0x02)",
        "Message type: ALERTING (0x01)",
        "Message type: CONNECT (0x07)",
        "Message type: RELEASE COMPLETE (0x5a)",
        "h323-message-body: setup (0)",
        "h323-message-body: callProceeding (1)",
        "h323-message-body: connect (2)",
        "h323-message-body: alerting (3)",
        "h323-message-body: releaseComplete (5)",
        "g711Ulaw64k: 20",
        "g711Alaw64k: 20",
        "protocolIdentifier: 0.0.8.2250.0.4",
        "dialledDigits: 4402",
        "generalID: 4402",
        "sendersID: 4401",
        "cryptoHashedToken",
        "0.0.8.235.0.2.6",
        "securityIntegrityFailed",
        "Cause value: Call rejected (21)",
        "Cause value: Normal call clearing (16)",
        "1.2.840.113554.1.2.2",
    ] {
        assert!(text.contains(needle), "no {needle:?} in:\n{text}");
    }
}
