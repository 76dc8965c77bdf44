//! The Kerberos AP-REQ in a registration and the tunnel key derived from it
//! (docs/mobile-ip.md, "Kerberos CVSE" and "Tunnel master key").
//!
//! A thin adapter over `roamgate_krb::ap`: the mobile node builds an AP-REQ
//! with a fresh subkey whose authenticator checksum covers the 24-byte
//! fixed part of the registration (so the AP-REQ is bound to that
//! Identification), and carries it in an RFC 3115 CVSE. The home agent
//! verifies it with its service key and replay cache. Both then derive the
//! tunnel master key and the tunnel SPI with HKDF-SHA256 from the subkey and
//! the registration's Identification.

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use roamgate_krb::ap::{self, AcceptParams, Accepted, ApClient, ApError, ApReqParams, ServiceKeys};
use roamgate_krb::client::Credential;
use roamgate_krb::replay::ReplayCache;
use roamgate_krb::Principal;
use zeroize::Zeroize;

use crate::auth::FIRST_SPI;

/// The Vendor/Organization-ID of roamgate's CVSEs: 32473, the IANA
/// enterprise number reserved for documentation (RFC 5612) until roamgate
/// has a number of its own. Replace it in one place when it does.
pub const ROAMGATE_VENDOR_ID: u32 = 32473;
/// Vendor-CVSE-Type of the Kerberos AP-REQ CVSE (Registration Request).
pub const CVSE_KRB_AP_REQ: u16 = 1;

/// HKDF-SHA256 salt of the tunnel master key derivation.
pub const TUNNEL_KDF_SALT: &[u8] = b"roamgate mip v1";
/// HKDF-SHA256 info prefix; Identification (8 bytes), home address and home
/// agent address (4 bytes each, network order) follow.
pub const TUNNEL_KDF_LABEL: &[u8] = b"roamgate tunnel master key";

/// The AP-REQ authenticator skew limit (RFC 4120, roamgate-wide).
pub const AP_REQ_SKEW: Duration = Duration::from_secs(300);

/// The master key of one tunnel (32 bytes), from which the data plane's
/// per-direction keys are derived (docs/wire.md, "Keys"). Redacting `Debug`,
/// wiped on drop.
#[derive(Clone, PartialEq, Eq)]
pub struct TunnelMasterKey([u8; 32]);

impl TunnelMasterKey {
    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Debug for TunnelMasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TunnelMasterKey(<redacted>)")
    }
}

impl Drop for TunnelMasterKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// Derives the tunnel master key and the tunnel SPI of one registration:
///
/// `OKM = HKDF-SHA256(salt = "roamgate mip v1", IKM = ikm,
///        info = "roamgate tunnel master key" || Identification(8, BE)
///               || home address(4) || home agent(4), L = 36)`
///
/// master key = OKM[0..32]; SPI = OKM[32..36] read big-endian, plus 256 if
/// it falls in the reserved range 0-255.
pub fn derive_tunnel(
    ikm: &[u8],
    identification: u64,
    home: Ipv4Addr,
    home_agent: Ipv4Addr,
) -> (TunnelMasterKey, u32) {
    let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(TUNNEL_KDF_SALT), ikm);
    let mut info = Vec::with_capacity(TUNNEL_KDF_LABEL.len() + 16);
    info.extend_from_slice(TUNNEL_KDF_LABEL);
    info.extend_from_slice(&identification.to_be_bytes());
    info.extend_from_slice(&home.octets());
    info.extend_from_slice(&home_agent.octets());
    let mut okm = [0u8; 36];
    // 36 bytes is far below HKDF-SHA256's 255 * 32 limit.
    hk.expand(&info, &mut okm)
        .expect("36 bytes is a valid HKDF-SHA256 length");
    let mut key = [0u8; 32];
    key.copy_from_slice(&okm[..32]);
    let mut spi = u32::from_be_bytes([okm[32], okm[33], okm[34], okm[35]]);
    if spi < FIRST_SPI {
        spi += FIRST_SPI;
    }
    okm.zeroize();
    (TunnelMasterKey(key), spi)
}

/// Builds the AP-REQ for a registration whose fixed part is `header`: a
/// fresh subkey, no mutual authentication, the authenticator checksum over
/// `header`.
pub fn build_registration_ap_req(
    cred: &Credential,
    header: &[u8],
    now: SystemTime,
) -> Result<(Vec<u8>, ApClient), ApError> {
    ap::build_ap_req(
        cred,
        &ApReqParams {
            mutual: false,
            subkey: true,
            seq_number: None,
            app_data: Some(header),
        },
        now,
    )
}

/// Verifies a registration's AP-REQ: ticket for `service`, authenticator
/// within 300 s, not replayed, checksum over `header`.
pub fn verify_registration_ap_req<K: ServiceKeys + ?Sized>(
    ap_req: &[u8],
    keys: &K,
    service: Option<&Principal>,
    header: &[u8],
    replay: &mut ReplayCache,
    now: SystemTime,
) -> Result<Accepted, ApError> {
    ap::accept_ap_req(
        ap_req,
        keys,
        &AcceptParams {
            service,
            app_data: Some(header),
            skew: AP_REQ_SKEW,
        },
        replay,
        now,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derivation_is_deterministic_and_input_sensitive() {
        let h = Ipv4Addr::new(10, 0, 0, 5);
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let (k1, s1) = derive_tunnel(b"subkey", 1, h, a);
        let (k2, s2) = derive_tunnel(b"subkey", 1, h, a);
        assert_eq!((k1.as_bytes(), s1), (k2.as_bytes(), s2));
        assert!(s1 >= 256);
        for (k, s) in [
            derive_tunnel(b"subkez", 1, h, a),
            derive_tunnel(b"subkey", 2, h, a),
            derive_tunnel(b"subkey", 1, a, h),
        ] {
            assert_ne!(k.as_bytes(), k1.as_bytes());
            assert_ne!(s, s1);
        }
        assert_eq!(format!("{k1:?}"), "TunnelMasterKey(<redacted>)");
    }

    /// The derivation written out with a second HKDF implementation (ring),
    /// as docs/mobile-ip.md specifies it.
    #[test]
    fn derivation_matches_the_document() {
        let h = Ipv4Addr::new(192, 168, 1, 10);
        let a = Ipv4Addr::new(192, 168, 1, 1);
        let id = 0xeb12_3456_789a_bcdeu64;
        let (k, spi) = derive_tunnel(&[0x42; 32], id, h, a);
        // Recompute HKDF by hand: PRK = HMAC(salt, IKM); T1..T2 = HMAC(PRK, T(i-1) | info | i).
        let prk = crate::auth::hmac_sha256(TUNNEL_KDF_SALT, &[0x42; 32]);
        let mut info = TUNNEL_KDF_LABEL.to_vec();
        info.extend_from_slice(&id.to_be_bytes());
        info.extend_from_slice(&[192, 168, 1, 10, 192, 168, 1, 1]);
        let mut t1_in = info.clone();
        t1_in.push(1);
        let t1 = crate::auth::hmac_sha256(&prk, &t1_in);
        let mut t2_in = t1.to_vec();
        t2_in.extend_from_slice(&info);
        t2_in.push(2);
        let t2 = crate::auth::hmac_sha256(&prk, &t2_in);
        assert_eq!(k.as_bytes(), &t1);
        let want = u32::from_be_bytes([t2[0], t2[1], t2[2], t2[3]]);
        assert_eq!(spi, if want < 256 { want + 256 } else { want });
        // The worked example of docs/mobile-ip.md (computed with Python's
        // hmac/hashlib).
        assert_eq!(
            hex::encode(k.as_bytes()),
            "4b80c2d2e969a4ded904e886817cd79e30fd00760397a022ecf677d4c9f63b94"
        );
        assert_eq!(spi, 0xf59e_b5f7);
    }
}
