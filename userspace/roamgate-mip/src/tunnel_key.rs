//! The tunnel's keys, the one owner of them: the master key a registration
//! derives ([`derive_tunnel`], docs/mobile-ip.md "Tunnel master key"), the
//! per-direction data-plane keys derived from it ([`derive_keys`],
//! docs/wire.md §3), and the one HKDF-SHA256 provider both use (the
//! RustCrypto `hkdf` + `sha2` crates).
//!
//! Secrets here have a redacting `Debug`, are zeroised on drop and have no
//! `PartialEq`: compare them with `ct_eq` (constant time).

use std::net::Ipv4Addr;

use roamgate_common::{maps::Role, siphash::Key};
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

use crate::auth::FIRST_SPI;

/// HKDF-SHA256 salt of the tunnel master key derivation.
pub const TUNNEL_KDF_SALT: &[u8] = b"roamgate mip v1";
/// HKDF-SHA256 info prefix; Identification (8 bytes), home address and home
/// agent address (4 bytes each, network order) follow.
pub const TUNNEL_KDF_LABEL: &[u8] = b"roamgate tunnel master key";

/// HKDF-SHA256 salt of the per-direction key derivation (docs/wire.md §3).
pub const KDF_SALT: &[u8] = b"roamgate-tunnel-v1";
/// HKDF info label of the home agent → mobile node (care-of) direction; the
/// SPI and the home address (4 bytes each, network order) follow.
pub const KDF_INFO_HA_TO_MN: &[u8] = b"roamgate tunnel ha->mn";
/// HKDF info label of the mobile node (care-of) → home agent direction.
pub const KDF_INFO_MN_TO_HA: &[u8] = b"roamgate tunnel mn->ha";

/// Why bytes are not a tunnel master key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("a tunnel master key is 16 to 64 bytes, got {0}")]
    Length(usize),
    #[error("a tunnel master key in hex has only the digits 0-9a-f")]
    Hex,
}

/// A tunnel master key (the MN–HA key material of the registration):
/// [`MasterKey::MIN_LEN`] to [`MasterKey::MAX_LEN`] bytes, from which the
/// data plane's per-direction keys are derived.
#[derive(Clone)]
pub struct MasterKey(Vec<u8>);

impl MasterKey {
    /// docs/wire.md §3: at least 16 random bytes.
    pub const MIN_LEN: usize = 16;
    pub const MAX_LEN: usize = 64;

    pub fn new(bytes: [u8; 32]) -> Self {
        Self(bytes.to_vec())
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyError> {
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&bytes.len()) {
            return Err(KeyError::Length(bytes.len()));
        }
        Ok(Self(bytes.to_vec()))
    }

    /// From hex digits (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Self, KeyError> {
        let t = text.trim();
        if !t.len().is_multiple_of(2) || !t.is_ascii() {
            return Err(KeyError::Hex);
        }
        let mut out = vec![0u8; t.len() / 2];
        for (i, o) in out.iter_mut().enumerate() {
            match u8::from_str_radix(&t[2 * i..2 * i + 2], 16) {
                Ok(b) => *o = b,
                Err(_) => {
                    out.zeroize();
                    return Err(KeyError::Hex);
                }
            }
        }
        let k = Self::from_slice(&out);
        out.zeroize();
        k
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Equality in constant time (for a given length).
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The two SipHash keys of one tunnel, as seen from one end.
#[derive(Clone)]
pub struct TunnelKeys {
    /// Key of what this end sends.
    pub tx: Key,
    /// Key of what this end receives.
    pub rx: Key,
}

impl TunnelKeys {
    /// Equality in constant time.
    pub fn ct_eq(&self, other: &Self) -> bool {
        (self.tx[..].ct_eq(&other.tx[..]) & self.rx[..].ct_eq(&other.rx[..])).into()
    }
}

impl std::fmt::Debug for TunnelKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TunnelKeys { tx: <redacted>, rx: <redacted> }")
    }
}

impl Drop for TunnelKeys {
    fn drop(&mut self) {
        self.tx.zeroize();
        self.rx.zeroize();
    }
}

/// HKDF-SHA256 (RFC 5869) of `ikm` with `salt`, info the concatenation of
/// `info`, filling `out`. `out` must be at most 255 * 32 bytes; every caller
/// asks for a fixed length far below that.
fn hkdf_sha256(salt: &[u8], ikm: &[u8], info: &[&[u8]], out: &mut [u8]) {
    hkdf::Hkdf::<sha2::Sha256>::new(Some(salt), ikm)
        .expand_multi_info(info, out)
        .expect("HKDF-SHA256 output of at most 255 * 32 bytes is always valid");
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
) -> (MasterKey, u32) {
    let mut okm = [0u8; 36];
    hkdf_sha256(
        TUNNEL_KDF_SALT,
        ikm,
        &[
            TUNNEL_KDF_LABEL,
            &identification.to_be_bytes(),
            &home.octets(),
            &home_agent.octets(),
        ],
        &mut okm,
    );
    let key = MasterKey(okm[..32].to_vec());
    let mut spi = u32::from_be_bytes([okm[32], okm[33], okm[34], okm[35]]);
    if spi < FIRST_SPI {
        spi += FIRST_SPI;
    }
    okm.zeroize();
    (key, spi)
}

/// The key of one direction: HKDF-SHA256(salt = [`KDF_SALT`], IKM = master,
/// info = label || SPI || home address), 16 bytes (docs/wire.md §3).
pub fn derive_direction_key(master: &MasterKey, label: &[u8], spi: u32, home: Ipv4Addr) -> Key {
    let mut out = [0u8; 16];
    hkdf_sha256(
        KDF_SALT,
        master.as_bytes(),
        &[label, &spi.to_be_bytes(), &home.octets()],
        &mut out,
    );
    out
}

/// Both keys of tunnel `spi` for home address `home`, as `role` uses them.
pub fn derive_keys(master: &MasterKey, spi: u32, home: Ipv4Addr, role: Role) -> TunnelKeys {
    let ha_to_coa = derive_direction_key(master, KDF_INFO_HA_TO_MN, spi, home);
    let coa_to_ha = derive_direction_key(master, KDF_INFO_MN_TO_HA, spi, home);
    match role {
        Role::HomeAgent => TunnelKeys {
            tx: ha_to_coa,
            rx: coa_to_ha,
        },
        Role::CareOf => TunnelKeys {
            tx: coa_to_ha,
            rx: ha_to_coa,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::hmac_sha256;

    const H: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);

    fn master() -> MasterKey {
        MasterKey::new(core::array::from_fn(|i| i as u8))
    }

    /// RFC 5869 appendix A.1 (HKDF-SHA256 test case 1), through the same
    /// provider both derivations use.
    #[test]
    fn hkdf_matches_rfc5869_case_1() {
        let ikm = [0x0bu8; 22];
        let salt: Vec<u8> = (0x00..=0x0c).collect();
        let info: Vec<u8> = (0xf0..=0xf9).collect();
        let mut okm = [0u8; 42];
        hkdf_sha256(&salt, &ikm, &[&info], &mut okm);
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
    }

    #[test]
    fn derivation_is_deterministic_and_input_sensitive() {
        let h = Ipv4Addr::new(10, 0, 0, 5);
        let a = Ipv4Addr::new(10, 0, 0, 1);
        let (k1, s1) = derive_tunnel(b"subkey", 1, h, a);
        let (k2, s2) = derive_tunnel(b"subkey", 1, h, a);
        assert_eq!((k1.as_bytes(), s1), (k2.as_bytes(), s2));
        assert!(k1.ct_eq(&k2));
        assert!(s1 >= 256);
        for (k, s) in [
            derive_tunnel(b"subkez", 1, h, a),
            derive_tunnel(b"subkey", 2, h, a),
            derive_tunnel(b"subkey", 1, a, h),
        ] {
            assert_ne!(k.as_bytes(), k1.as_bytes());
            assert!(!k.ct_eq(&k1));
            assert_ne!(s, s1);
        }
        assert_eq!(format!("{k1:?}"), "MasterKey(<redacted>)");
    }

    /// The derivation written out with HMAC-SHA256 by hand, as
    /// docs/mobile-ip.md specifies it.
    #[test]
    fn derivation_matches_the_document() {
        let h = Ipv4Addr::new(192, 168, 1, 10);
        let a = Ipv4Addr::new(192, 168, 1, 1);
        let id = 0xeb12_3456_789a_bcdeu64;
        let (k, spi) = derive_tunnel(&[0x42; 32], id, h, a);
        // Recompute HKDF by hand: PRK = HMAC(salt, IKM); T1..T2 = HMAC(PRK, T(i-1) | info | i).
        let prk = hmac_sha256(TUNNEL_KDF_SALT, &[0x42; 32]);
        let mut info = TUNNEL_KDF_LABEL.to_vec();
        info.extend_from_slice(&id.to_be_bytes());
        info.extend_from_slice(&[192, 168, 1, 10, 192, 168, 1, 1]);
        let mut t1_in = info.clone();
        t1_in.push(1);
        let t1 = hmac_sha256(&prk, &t1_in);
        let mut t2_in = t1.to_vec();
        t2_in.extend_from_slice(&info);
        t2_in.push(2);
        let t2 = hmac_sha256(&prk, &t2_in);
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

    /// The example of docs/wire.md §3.
    #[test]
    fn wire_md_example() {
        let ha = derive_keys(&master(), 0x1001, H, Role::HomeAgent);
        assert_eq!(hex::encode(ha.tx), "38dc7011d00d9cd9c51aeefac3a265df");
        assert_eq!(hex::encode(ha.rx), "00eb2bde43bec4e1dcc14eef928798b4");
        let prk = hmac_sha256(KDF_SALT, master().as_bytes());
        assert_eq!(
            hex::encode(prk),
            "bfc00e00ebec7b9bcd9aaeb9330a989fbd732b19209dcc1e569c9957ea4382b4"
        );
    }

    #[test]
    fn the_two_ends_agree_and_directions_differ() {
        let ha = derive_keys(&master(), 0x1001, H, Role::HomeAgent);
        let coa = derive_keys(&master(), 0x1001, H, Role::CareOf);
        assert_eq!(ha.tx, coa.rx);
        assert_eq!(ha.rx, coa.tx);
        assert_ne!(ha.tx, ha.rx);
        assert!(ha.ct_eq(&derive_keys(&master(), 0x1001, H, Role::HomeAgent)));
        assert!(!ha.ct_eq(&coa));
        let other_spi = derive_keys(&master(), 0x1002, H, Role::HomeAgent);
        assert_ne!(ha.tx, other_spi.tx);
        let mut mk = master().as_bytes().to_vec();
        mk[0] ^= 1;
        let other = MasterKey::from_slice(&mk).unwrap();
        assert_ne!(derive_keys(&other, 0x1001, H, Role::HomeAgent).tx, ha.tx);
        let other_home = derive_keys(
            &master(),
            0x1001,
            Ipv4Addr::new(10, 1, 0, 2),
            Role::HomeAgent,
        );
        assert_ne!(other_home.tx, ha.tx);
    }

    #[test]
    fn direction_key_is_hkdf_of_label_and_spi() {
        // Independent recomputation with HMAC-SHA256 (RFC 5869 section 2).
        let prk = hmac_sha256(KDF_SALT, master().as_bytes());
        let mut t1_input = KDF_INFO_HA_TO_MN.to_vec();
        t1_input.extend_from_slice(&0x1001u32.to_be_bytes());
        t1_input.extend_from_slice(&H.octets());
        t1_input.push(1);
        let t1 = hmac_sha256(&prk, &t1_input);
        assert_eq!(
            &derive_direction_key(&master(), KDF_INFO_HA_TO_MN, 0x1001, H)[..],
            &t1[..16]
        );
    }

    #[test]
    fn secrets_are_redacted() {
        let k = derive_keys(&master(), 7, H, Role::CareOf);
        let s = format!("{k:?} {:?}", master());
        assert!(s.contains("redacted"), "{s}");
        assert!(
            !s.contains(&format!("{:?}", k.tx)) && !s.contains(&format!("{:?}", k.rx)),
            "{s}"
        );
        assert!(!s.contains(&format!("{:?}", master().as_bytes())), "{s}");
    }

    #[test]
    fn master_key_parsing() {
        let hex = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\n";
        assert!(MasterKey::from_hex(hex).unwrap().ct_eq(&master()));
        assert!(matches!(
            MasterKey::from_hex("00"),
            Err(KeyError::Length(1))
        ));
        assert!(matches!(MasterKey::from_hex("000"), Err(KeyError::Hex)));
        assert_eq!(
            MasterKey::from_hex(&"ab".repeat(16))
                .unwrap()
                .as_bytes()
                .len(),
            16
        );
        assert!(matches!(
            MasterKey::from_hex(&"zz".repeat(32)),
            Err(KeyError::Hex)
        ));
        assert!(MasterKey::from_slice(&[0; 15]).is_err());
        assert!(MasterKey::from_slice(&[0; 65]).is_err());
        // Different lengths are different keys.
        assert!(!MasterKey::from_slice(&[0; 16])
            .unwrap()
            .ct_eq(&MasterKey::from_slice(&[0; 17]).unwrap()));
    }
}
