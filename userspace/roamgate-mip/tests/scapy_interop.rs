//! Interop with an independent implementation: scapy's Mobile IP layers
//! (python3-scapy, `scapy.layers.mobileip`) build a Registration Request,
//! Python's own `hmac` computes the RFC 5944 HMAC-MD5 MN-HA authenticator,
//! and the home-agent core accepts it; the same request with one bit
//! flipped gets 131. A second request carries roamgate's Kerberos CVSE
//! (the AP-REQ made here, the framing done in Python).
//!
//! Needs `/usr/bin/python3` with scapy: `apt-get install -y python3-scapy`.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use roamgate_krb::ap::KeySet;
use roamgate_krb::Principal;
use roamgate_krb_crypto::Etype;
use roamgate_mip::auth::SecurityAssociation;
use roamgate_mip::home_agent::{HomeAgent, HomeAgentConfig, NodeConfig};
use roamgate_mip::wire::{self, code, RequestRepr};
use roamgate_mip::{identification, kerberos, Action};
use roamgate_testkit::mip as testing;

const PYTHON: &str = "/usr/bin/python3";
const HOME: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
const HA: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const COA: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
const SPI: u32 = 0x0000_1001;
const KEY: &[u8] = b"scapy interop MN-HA key";
const SERVICE: &str = "mip/ha.example.com@EXAMPLE.COM";

/// Builds the request in Python. argv: flags lifetime home ha coa id spi
/// key-hex [cvse-hex]. Prints the UDP payload as hex.
const SCRIPT: &str = r#"
import sys, hmac, hashlib, struct
from scapy.layers.mobileip import MobileIP, MobileIPRRQ
from scapy.compat import raw
flags, lifetime, home, ha, coa, ident, spi, key = sys.argv[1:9]
cvse = bytes.fromhex(sys.argv[9]) if len(sys.argv) > 9 else b""
pkt = MobileIP(type=1) / MobileIPRRQ(flags=int(flags), lifetime=int(lifetime),
        homeaddr=home, haaddr=ha, coaddr=coa, id=int(ident))
msg = raw(pkt)
if cvse:
    # RFC 3115 CVSE: type 38, reserved, 16-bit length, vendor-id, cvse-type, data
    msg += struct.pack("!BBHIH", 38, 0, 6 + len(cvse), 32473, 1) + cvse
# RFC 5944 3.5.2 MN-HA auth: type 32, length 4+16, SPI, HMAC-MD5 over all before it + SPI
msg += struct.pack("!BBI", 32, 20, int(spi))
msg += hmac.new(bytes.fromhex(key), msg, hashlib.md5).digest()
print(msg.hex())
"#;

fn scapy(repr: &RequestRepr, cvse: Option<&[u8]>) -> Vec<u8> {
    let mut cmd = Command::new(PYTHON);
    cmd.args(["-c", SCRIPT]).args([
        repr.flags.to_string(),
        repr.lifetime.to_string(),
        repr.home_address.to_string(),
        repr.home_agent.to_string(),
        repr.care_of_address.to_string(),
        repr.identification.to_string(),
        SPI.to_string(),
        hex::encode(KEY),
    ]);
    if let Some(c) = cvse {
        cmd.arg(hex::encode(c));
    }
    let out = cmd
        .output()
        .expect("run /usr/bin/python3 (apt-get install -y python3-scapy)");
    assert!(
        out.status.success(),
        "scapy script failed (apt-get install -y python3-scapy): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    hex::decode(String::from_utf8(out.stdout).unwrap().trim()).unwrap()
}

fn home_agent(kerberos: bool, keys: KeySet) -> HomeAgent {
    let mut c = HomeAgentConfig::new(HA);
    c.service = Some(Principal::parse(SERVICE).unwrap());
    HomeAgent::new(
        c,
        vec![NodeConfig {
            home_address: HOME,
            security_associations: vec![SecurityAssociation::new(SPI, KEY).unwrap()],
            principal: None,
            require_kerberos: kerberos,
        }],
        Arc::new(keys),
    )
}

fn repr(now: SystemTime) -> RequestRepr {
    RequestRepr {
        flags: wire::flags::T,
        lifetime: 300,
        home_address: HOME,
        home_agent: HA,
        care_of_address: COA,
        identification: identification::timestamp(now, 0x4242),
    }
}

#[test]
fn scapy_request_with_hmac_md5_is_accepted_and_one_flipped_bit_gets_131() {
    let now = SystemTime::now();
    let r = repr(now);
    let bytes = scapy(&r, None);
    // scapy laid out the fixed part exactly as RFC 5944 §3.3 (and we) do.
    assert_eq!(&bytes[..24], &r.to_bytes()[..]);
    assert_eq!(bytes.len(), 24 + 6 + 16);

    // The flipped one first (a bit of the lifetime), then the original.
    let src = IpAddr::V4(COA);
    for bit in [17, 8 * 13 + 3, 8 * 40] {
        let mut ha = home_agent(false, KeySet::default());
        let mut bad = bytes.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        let out = ha.handle_request(&bad, src, now);
        assert_eq!(out.code, Some(code::MN_FAILED_AUTHENTICATION), "bit {bit}");
        assert!(out.actions.is_empty());
        assert_eq!(ha.binding_count(), 0);
    }
    let mut ha = home_agent(false, KeySet::default());
    let out = ha.handle_request(&bytes, src, now);
    assert_eq!(out.code, Some(code::ACCEPTED), "{:?}", out.rejection);
    assert!(matches!(out.actions[0], Action::InstallTunnel(_)));
    assert_eq!(ha.binding(HOME).unwrap().care_of, COA);
}

#[test]
fn scapy_request_with_kerberos_cvse_is_accepted() {
    let now = SystemTime::now();
    let (cred, keys) = testing::issue_ticket(
        "mn@EXAMPLE.COM",
        SERVICE,
        Etype::Aes256CtsHmacSha384192,
        now - Duration::from_secs(60),
        Duration::from_secs(3600),
    );
    let r = repr(now);
    let (ap_req, client) = kerberos::build_registration_ap_req(&cred, &r.to_bytes(), now).unwrap();
    let bytes = scapy(&r, Some(&ap_req));
    let mut ha = home_agent(true, keys);
    let out = ha.handle_request(&bytes, IpAddr::V4(COA), now);
    assert_eq!(out.code, Some(code::ACCEPTED), "{:?}", out.rejection);
    // The home agent's tunnel key is the one the node derives from its subkey.
    let (want_key, want_spi) = roamgate_mip::tunnel_key::derive_tunnel(
        client.subkey().unwrap().as_bytes(),
        r.identification,
        HOME,
        HA,
    );
    let Action::InstallTunnel(t) = &out.actions[0] else {
        panic!("{:?}", out.actions);
    };
    assert_eq!(t.spi, want_spi);
    assert!(t.master_key.ct_eq(&want_key));
}
