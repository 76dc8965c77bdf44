//! The MN-HA authenticator (RFC 5944 §3.5).
//!
//! The Mobile-Home Authentication Extension (type 32) carries an SPI and an
//! authenticator. The authenticator is a keyed MAC over the UDP payload
//! from the first byte of the registration message up to and including the
//! SPI field of that extension (RFC 5944 §3.5.1): every extension before
//! it is covered, anything after it (foreign-agent extensions) is not.
//!
//! Algorithm selection is by SPI (documented in docs/mobile-ip.md,
//! "MN-HA security associations"):
//! - SPI 0-255: reserved by RFC 5944 §1.6, never used;
//! - SPI 256 ..= 0x7fff_ffff: HMAC-MD5 (RFC 2104), the RFC 5944 default,
//!   16-byte authenticator;
//! - SPI 0x8000_0000 ..= 0xffff_ffff: HMAC-SHA256 (RFC 4231), 32-byte
//!   authenticator, roamgate's stronger option.
//!
//! MACs are compared in constant time (`subtle`). Keys have a redacting
//! `Debug` and are wiped on drop.

use hmac::{Hmac, Mac};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::wire::{ext_type, ExtensionRepr, AUTH_EXT_THROUGH_SPI};

/// The first SPI that is not reserved (RFC 5944 §1.6: 0-255 reserved).
pub const FIRST_SPI: u32 = 256;
/// SPIs from here up select HMAC-SHA256.
pub const SHA256_SPI_BASE: u32 = 0x8000_0000;

/// The label of [`SecurityAssociation::tunnel_ikm`].
pub const TUNNEL_IKM_LABEL: &[u8] = b"roamgate tunnel ikm";

/// A keyed MAC for MN-HA authentication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// HMAC-MD5, RFC 5944's default (§3.5.1), 16 bytes.
    HmacMd5,
    /// HMAC-SHA256, 32 bytes.
    HmacSha256,
}

impl Algorithm {
    /// The algorithm an SPI selects; `None` for the reserved SPIs 0-255.
    pub fn for_spi(spi: u32) -> Option<Self> {
        match spi {
            0..FIRST_SPI => None,
            FIRST_SPI..SHA256_SPI_BASE => Some(Algorithm::HmacMd5),
            _ => Some(Algorithm::HmacSha256),
        }
    }

    /// Authenticator length in bytes.
    pub fn mac_len(self) -> usize {
        match self {
            Algorithm::HmacMd5 => 16,
            Algorithm::HmacSha256 => 32,
        }
    }

    /// The MAC of `data` under `key`.
    pub fn mac(self, key: &[u8], data: &[u8]) -> Vec<u8> {
        match self {
            Algorithm::HmacMd5 => hmac_md5(key, data).to_vec(),
            Algorithm::HmacSha256 => hmac_sha256(key, data).to_vec(),
        }
    }
}

/// HMAC-MD5 (RFC 2104).
pub fn hmac_md5(key: &[u8], data: &[u8]) -> [u8; 16] {
    // HMAC accepts keys of any length: new_from_slice cannot fail.
    let mut m = <Hmac<md5::Md5> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// HMAC-SHA256 (RFC 4231).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut m =
        <Hmac<sha2::Sha256> as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(data);
    m.finalize().into_bytes().into()
}

/// Why an MN-HA authentication extension was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no Mobile-Home Authentication Extension")]
    Missing,
    #[error("SPI {0} is reserved")]
    ReservedSpi(u32),
    #[error("no security association with SPI {0}")]
    UnknownSpi(u32),
    #[error("authenticator is {got} bytes, SPI {spi} needs {want}")]
    WrongLength { spi: u32, got: usize, want: usize },
    #[error("MN-HA authenticator does not match (SPI {0})")]
    InvalidMac(u32),
    #[error("the message is shorter than its authentication extension")]
    BadOffset,
}

/// A mobility security association between a mobile node and its home
/// agent: SPI, algorithm (from the SPI) and shared key.
#[derive(Clone)]
pub struct SecurityAssociation {
    spi: u32,
    algorithm: Algorithm,
    key: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for SecurityAssociation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityAssociation")
            .field("spi", &self.spi)
            .field("algorithm", &self.algorithm)
            .field("key", &"<redacted>")
            .finish()
    }
}

impl SecurityAssociation {
    /// A security association; refuses the reserved SPIs and empty keys.
    pub fn new(spi: u32, key: &[u8]) -> Result<Self, AuthError> {
        let algorithm = Algorithm::for_spi(spi).ok_or(AuthError::ReservedSpi(spi))?;
        if key.is_empty() {
            return Err(AuthError::WrongLength {
                spi,
                got: 0,
                want: 1,
            });
        }
        Ok(Self {
            spi,
            algorithm,
            key: Zeroizing::new(key.to_vec()),
        })
    }

    pub fn spi(&self) -> u32 {
        self.spi
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The authenticator over `covered` (the message through the SPI).
    pub fn authenticator(&self, covered: &[u8]) -> Vec<u8> {
        self.algorithm.mac(&self.key, covered)
    }

    /// Input keying material for the tunnel master key when a registration
    /// carries no Kerberos AP-REQ: HMAC(MN-HA key, "roamgate tunnel ikm"),
    /// a one-way function of the MN-HA key (docs/mobile-ip.md).
    pub fn tunnel_ikm(&self) -> Vec<u8> {
        self.authenticator(TUNNEL_IKM_LABEL)
    }

    /// Appends a Mobile-Home Authentication Extension to `message` (which
    /// holds the fixed part and every extension before it) and returns the
    /// completed message.
    pub fn append_mn_ha_auth(&self, mut message: Vec<u8>) -> Vec<u8> {
        let mac_len = self.algorithm.mac_len();
        message.push(ext_type::MN_HA_AUTH);
        // 4 + 16 or 4 + 32: always fits a byte.
        message.push((4 + mac_len) as u8);
        message.extend_from_slice(&self.spi.to_be_bytes());
        let mac = self.authenticator(&message);
        message.extend_from_slice(&mac);
        message
    }

    /// Checks the MN-HA extension found at `offset` in `message`: its
    /// authenticator must equal the MAC over `message[..offset + 6]`,
    /// compared in constant time.
    pub fn verify(
        &self,
        message: &[u8],
        offset: usize,
        authenticator: &[u8],
    ) -> Result<(), AuthError> {
        let want = self.algorithm.mac_len();
        if authenticator.len() != want {
            return Err(AuthError::WrongLength {
                spi: self.spi,
                got: authenticator.len(),
                want,
            });
        }
        let covered = message
            .get(..offset + AUTH_EXT_THROUGH_SPI)
            .ok_or(AuthError::BadOffset)?;
        let mac = self.authenticator(covered);
        if bool::from(mac.ct_eq(authenticator)) {
            Ok(())
        } else {
            Err(AuthError::InvalidMac(self.spi))
        }
    }
}

/// Finds the MN-HA extension in `extensions` and verifies it with the
/// association `lookup(spi)` returns. On success returns the SPI and the
/// index (in `extensions`) of the MN-HA extension: extensions after it are
/// not authenticated.
pub fn verify_mn_ha<'s>(
    message: &[u8],
    extensions: &[(usize, ExtensionRepr<'_>)],
    lookup: impl FnOnce(u32) -> Option<&'s SecurityAssociation>,
) -> Result<(u32, usize), AuthError> {
    let (index, offset, spi, authenticator) = extensions
        .iter()
        .enumerate()
        .find_map(|(i, (off, e))| match e {
            ExtensionRepr::Auth {
                ty: ext_type::MN_HA_AUTH,
                spi,
                authenticator,
            } => Some((i, *off, *spi, *authenticator)),
            _ => None,
        })
        .ok_or(AuthError::Missing)?;
    if Algorithm::for_spi(spi).is_none() {
        return Err(AuthError::ReservedSpi(spi));
    }
    let sa = lookup(spi).ok_or(AuthError::UnknownSpi(spi))?;
    sa.verify(message, offset, authenticator)?;
    Ok((spi, index))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::{parse_reply, parse_request, RequestRepr};
    use std::net::Ipv4Addr;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    /// RFC 2202 §2, test cases 1-7 for HMAC-MD5 (the first three are also
    /// RFC 2104's appendix vectors).
    #[test]
    fn rfc2202_hmac_md5_vectors() {
        let cases: [(Vec<u8>, Vec<u8>, &str); 7] = [
            (
                vec![0x0b; 16],
                b"Hi There".to_vec(),
                "9294727a3638bb1c13f48ef8158bfc9d",
            ),
            (
                b"Jefe".to_vec(),
                b"what do ya want for nothing?".to_vec(),
                "750c783e6ab0b503eaa86e310a5db738",
            ),
            (
                vec![0xaa; 16],
                vec![0xdd; 50],
                "56be34521d144c88dbb8c733f0e8b3f6",
            ),
            (
                h("0102030405060708090a0b0c0d0e0f10111213141516171819"),
                vec![0xcd; 50],
                "697eaf0aca3a3aea3a75164746ffaa79",
            ),
            (
                vec![0x0c; 16],
                b"Test With Truncation".to_vec(),
                "56461ef2342edc00f9bab995690efd4c",
            ),
            (
                vec![0xaa; 80],
                b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
                "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd",
            ),
            (
                vec![0xaa; 80],
                b"Test Using Larger Than Block-Size Key and Larger Than One Block-Size Data"
                    .to_vec(),
                "6f630fad67cda0ee1fb1f562db3aa53e",
            ),
        ];
        for (i, (key, data, digest)) in cases.iter().enumerate() {
            assert_eq!(hex::encode(hmac_md5(key, data)), *digest, "case {}", i + 1);
        }
        // RFC 2202 case 5's 96-bit truncation.
        assert_eq!(
            hex::encode(&hmac_md5(&[0x0c; 16], b"Test With Truncation")[..12]),
            "56461ef2342edc00f9bab995"
        );
    }

    /// RFC 4231 §4.2 and §4.3 (test cases 1 and 2) for HMAC-SHA256.
    #[test]
    fn rfc4231_hmac_sha256_vectors() {
        assert_eq!(
            hex::encode(hmac_sha256(&[0x0b; 20], b"Hi There")),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn spi_ranges_select_the_algorithm() {
        assert_eq!(Algorithm::for_spi(0), None);
        assert_eq!(Algorithm::for_spi(255), None);
        assert_eq!(Algorithm::for_spi(256), Some(Algorithm::HmacMd5));
        assert_eq!(Algorithm::for_spi(0x7fff_ffff), Some(Algorithm::HmacMd5));
        assert_eq!(Algorithm::for_spi(0x8000_0000), Some(Algorithm::HmacSha256));
        assert_eq!(Algorithm::for_spi(u32::MAX), Some(Algorithm::HmacSha256));
        assert!(matches!(
            SecurityAssociation::new(3, b"k"),
            Err(AuthError::ReservedSpi(3))
        ));
    }

    fn header() -> Vec<u8> {
        RequestRepr {
            flags: 0x02,
            lifetime: 600,
            home_address: Ipv4Addr::new(10, 1, 0, 10),
            home_agent: Ipv4Addr::new(10, 1, 0, 1),
            care_of_address: Ipv4Addr::new(198, 51, 100, 20),
            identification: 0xeb00_0000_1234_5678,
        }
        .to_bytes()
        .to_vec()
    }

    /// A full registration: the authenticator equals HMAC-MD5 over the
    /// fixed part, every extension before the MHAE, and the MHAE's type,
    /// length and SPI; computed independently here.
    #[test]
    fn full_registration_authenticator() {
        let key = b"0123456789abcdef";
        let sa = SecurityAssociation::new(0x1000, key).unwrap();
        let mut msg = header();
        msg.extend_from_slice(&[131, 4, b'm', b'n', b'@', b'x']); // NAI, covered
        let msg = sa.append_mn_ha_auth(msg);
        assert_eq!(msg.len(), 24 + 6 + 6 + 16);
        let mut covered = header();
        covered.extend_from_slice(&[131, 4, b'm', b'n', b'@', b'x']);
        covered.extend_from_slice(&[32, 20, 0, 0, 0x10, 0]);
        assert_eq!(&msg[..covered.len()], &covered[..]);
        assert_eq!(&msg[covered.len()..], &hmac_md5(key, &covered));

        let req = parse_request(&msg).unwrap();
        let lookup = |spi| (spi == 0x1000).then_some(&sa);
        assert_eq!(verify_mn_ha(&msg, &req.extensions, lookup), Ok((0x1000, 1)));

        // Every single-bit flip in the covered part or the MAC is caught.
        for bit in 0..msg.len() * 8 {
            let mut bad = msg.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            let Ok(req) = parse_request(&bad) else {
                continue;
            };
            let lookup = |spi| (spi == 0x1000).then_some(&sa);
            assert!(
                verify_mn_ha(&bad, &req.extensions, lookup).is_err(),
                "bit {bit} not detected"
            );
        }
        // Another key: invalid MAC.
        let other = SecurityAssociation::new(0x1000, b"another key").unwrap();
        let req = parse_request(&msg).unwrap();
        assert_eq!(
            verify_mn_ha(&msg, &req.extensions, |_| Some(&other)),
            Err(AuthError::InvalidMac(0x1000))
        );
        assert_eq!(
            verify_mn_ha(&msg, &req.extensions, |_| None),
            Err(AuthError::UnknownSpi(0x1000))
        );
        assert_eq!(
            verify_mn_ha(&header(), &[], |_| Some(&sa)),
            Err(AuthError::Missing)
        );
    }

    #[test]
    fn sha256_spi_and_reply_authentication() {
        let sa = SecurityAssociation::new(0x8000_0001, b"a stronger key").unwrap();
        let reply = crate::wire::ReplyRepr {
            code: 0,
            lifetime: 600,
            home_address: Ipv4Addr::new(10, 1, 0, 10),
            home_agent: Ipv4Addr::new(10, 1, 0, 1),
            identification: 7,
        };
        let msg = sa.append_mn_ha_auth(reply.to_bytes().to_vec());
        assert_eq!(msg.len(), 20 + 6 + 32);
        let r = parse_reply(&msg).unwrap();
        assert_eq!(
            verify_mn_ha(&msg, &r.extensions, |_| Some(&sa)),
            Ok((0x8000_0001, 0))
        );
        // An MD5-length authenticator under a SHA-256 SPI is refused.
        let md5 = SecurityAssociation::new(0x100, b"k").unwrap();
        let short = md5.append_mn_ha_auth(reply.to_bytes().to_vec());
        let r = parse_reply(&short).unwrap();
        assert_eq!(
            verify_mn_ha(&short, &r.extensions, |_| Some(&sa)),
            Err(AuthError::WrongLength {
                spi: 0x8000_0001,
                got: 16,
                want: 32
            })
        );
        assert!(!format!("{sa:?}").contains("stronger"));
    }
}
