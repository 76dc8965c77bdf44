//! tshark decodes roamgate's registrations: the messages the mobile-node
//! and home-agent cores produce are written to a pcap (Ethernet / IPv4 /
//! UDP 434) and `tshark -r FILE -V` must show them as Mobile IP with no
//! malformed packet and no expert error or warning.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use roamgate_krb::Principal;
use roamgate_krb_crypto::Etype;
use roamgate_mip::auth::SecurityAssociation;
use roamgate_mip::home_agent::{HomeAgent, HomeAgentConfig, NodeConfig};
use roamgate_mip::mobile_node::{MobileNode, MobileNodeConfig};
use roamgate_mip::wire;
use roamgate_mip::wire::MIP_PORT;
use roamgate_testkit::mip as testing;

const HOME: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const HA: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const COA: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const MN_PORT: u16 = 40434;
const SERVICE: &str = "mip/ha.example.com@EXAMPLE.COM";

/// A minimal pcap writer (libpcap format 2.4, LINKTYPE_ETHERNET).
struct Pcap(Vec<u8>);

fn csum(data: &[u8], mut sum: u32) -> u16 {
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
        Self(b)
    }

    fn udp(&mut self, t: SystemTime, src: (Ipv4Addr, u16), dst: (Ipv4Addr, u16), payload: &[u8]) {
        let udp_len = 8 + payload.len();
        let mut udp = Vec::with_capacity(udp_len);
        udp.extend_from_slice(&src.1.to_be_bytes());
        udp.extend_from_slice(&dst.1.to_be_bytes());
        udp.extend_from_slice(&(udp_len as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(payload);
        let mut pseudo = Vec::new();
        pseudo.extend_from_slice(&src.0.octets());
        pseudo.extend_from_slice(&dst.0.octets());
        pseudo.extend_from_slice(&[0, 17]);
        pseudo.extend_from_slice(&(udp_len as u16).to_be_bytes());
        pseudo.extend_from_slice(&udp);
        let mut c = csum(&pseudo, 0);
        if c == 0 {
            c = 0xffff;
        }
        udp[6..8].copy_from_slice(&c.to_be_bytes());

        let total = 20 + udp_len;
        let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 17, 0, 0];
        ip[2..4].copy_from_slice(&(total as u16).to_be_bytes());
        ip.extend_from_slice(&src.0.octets());
        ip.extend_from_slice(&dst.0.octets());
        let c = csum(&ip, 0);
        ip[10..12].copy_from_slice(&c.to_be_bytes());

        let mut frame = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
        frame.extend_from_slice(&ip);
        frame.extend_from_slice(&udp);

        let d = t.duration_since(UNIX_EPOCH).unwrap();
        self.0
            .extend_from_slice(&(d.as_secs() as u32).to_le_bytes());
        self.0.extend_from_slice(&d.subsec_micros().to_le_bytes());
        self.0
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.0
            .extend_from_slice(&(frame.len() as u32).to_le_bytes());
        self.0.extend_from_slice(&frame);
    }
}

#[test]
fn tshark_decodes_registrations_without_errors() {
    let now = SystemTime::now();
    let (cred, keys) = testing::issue_ticket(
        "mn@EXAMPLE.COM",
        SERVICE,
        Etype::Aes256CtsHmacSha196,
        now - Duration::from_secs(60),
        Duration::from_secs(3600),
    );
    let sa = SecurityAssociation::new(0x1000, b"tshark test key").unwrap();
    let sha = SecurityAssociation::new(0x8000_0001, b"tshark sha256 key").unwrap();
    let mut c = HomeAgentConfig::new(HA);
    c.service = Some(Principal::parse(SERVICE).unwrap());
    let mut ha = HomeAgent::new(
        c,
        vec![NodeConfig {
            home_address: HOME,
            security_associations: vec![sa.clone(), sha.clone()],
            principal: None,
            require_kerberos: true,
        }],
        Arc::new(keys),
    );
    let mut mn = MobileNode::new(
        MobileNodeConfig {
            home_address: HOME,
            home_agent: HA,
            security_association: sa.clone(),
            credential: Some(cred.clone()),
            lifetime: 300,
            reverse_tunnel: true,
            co_located: true,
            tunnel_grace: Duration::from_secs(5),
        },
        Box::new(|| 0x1234),
    );
    let mut pcap = Pcap::new();
    let mut n = 0;
    let mut exchange = |pcap: &mut Pcap, req: &[u8], t: SystemTime| {
        pcap.udp(t, (COA, MN_PORT), (HA, MIP_PORT), req);
        let out = ha.handle_request(req, IpAddr::V4(COA), t);
        let reply = out.reply.expect("a reply");
        pcap.udp(t, (HA, MIP_PORT), (COA, MN_PORT), &reply);
        n += 2;
        (out.code, reply)
    };
    // Registration with the Kerberos CVSE, accepted.
    let req = mn.register(COA, now).unwrap().send.unwrap();
    let (code, reply) = exchange(&mut pcap, &req, now);
    assert_eq!(code, Some(0));
    mn.handle_reply(&reply, now).unwrap();
    // The same request replayed: 133 with our time.
    let (code, _) = exchange(&mut pcap, &req, now + Duration::from_secs(1));
    assert_eq!(code, Some(133));
    // A registration under the HMAC-SHA256 SPI (no AP-REQ: 131).
    let t = now + Duration::from_secs(2);
    let repr = wire::RequestRepr {
        flags: wire::flags::T,
        lifetime: 300,
        home_address: HOME,
        home_agent: HA,
        care_of_address: COA,
        identification: roamgate_mip::identification::timestamp(t, 9),
    };
    let req = sha.append_mn_ha_auth(repr.to_bytes().to_vec());
    let (code, _) = exchange(&mut pcap, &req, t);
    assert_eq!(code, Some(131));
    // Deregistration.
    let t = now + Duration::from_secs(3);
    let req = mn.deregister(t).unwrap().send.unwrap();
    let (code, _) = exchange(&mut pcap, &req, t);
    assert_eq!(code, Some(0));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("registrations.pcap");
    std::fs::write(&path, &pcap.0).unwrap();
    // ROAMGATE_MIP_PCAP=FILE keeps a copy of the capture for inspection.
    if let Some(keep) = std::env::var_os("ROAMGATE_MIP_PCAP") {
        std::fs::copy(&path, keep).unwrap();
    }
    let out = Command::new("tshark")
        .args([
            "-n",
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
            "-r",
        ])
        .arg(&path)
        .arg("-V")
        .output()
        .expect("run tshark (apt-get install -y tshark)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.matches("\nMobile IP\n").count() == n,
        "not every frame decoded as Mobile IP:\n{text}"
    );
    // IPv4 header and UDP checksums verified by tshark itself.
    assert_eq!(
        text.matches("[Header checksum status: Good]").count(),
        n,
        "{text}"
    );
    assert_eq!(text.matches("[Checksum Status: Good]").count(), n, "{text}");
    assert_eq!(
        text.matches("Message Type: Registration Request").count(),
        4,
        "{text}"
    );
    assert_eq!(
        text.matches("Message Type: Registration Reply").count(),
        4,
        "{text}"
    );
    assert!(
        text.contains("Critical Vendor/Organization Specific Extension"),
        "{text}"
    );
    assert!(
        text.contains("Mobile-Home Authentication Extension"),
        "{text}"
    );
    for bad in ["Malformed", "Expert Info (Error", "Expert Info (Warning"] {
        assert!(!text.contains(bad), "tshark reports {bad}:\n{text}");
    }
}
