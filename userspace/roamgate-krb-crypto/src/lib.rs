//! Kerberos V5 cryptography (RFC 3961, RFC 3962, RFC 8009).
//!
//! Four encryption types, all AES in CBC mode with ciphertext stealing:
//!
//! | etype | name                          | profile                         | checksum type |
//! |-------|-------------------------------|---------------------------------|---------------|
//! | 17    | aes128-cts-hmac-sha1-96       | RFC 3961 simplified, RFC 3962   | 15            |
//! | 18    | aes256-cts-hmac-sha1-96       | RFC 3961 simplified, RFC 3962   | 16            |
//! | 19    | aes128-cts-hmac-sha256-128    | RFC 8009                        | 19            |
//! | 20    | aes256-cts-hmac-sha384-192    | RFC 8009                        | 20            |
//!
//! HMAC, PBKDF2, digests and randomness come from ring. ring has no raw AES
//! block cipher, so the RustCrypto `aes` crate supplies it and [`cts`]
//! builds CBC-CTS over it. MACs are compared in constant time with
//! `subtle`; key bytes are zeroized on drop.
//!
//! Nothing here panics on untrusted input: short or tampered ciphertexts
//! and checksums give a [`CryptoError`].

use std::fmt;
use std::num::NonZeroU32;

use ring::rand::SecureRandom;
use ring::{digest, hmac, pbkdf2};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

pub mod cts;
mod nfold;

pub use nfold::nfold;

use cts::{Aes, BLOCK};

/// Kerberos encryption types (RFC 3961 §8, RFC 8009 §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(i32)]
pub enum Etype {
    Aes128CtsHmacSha196 = 17,
    Aes256CtsHmacSha196 = 18,
    Aes128CtsHmacSha256128 = 19,
    Aes256CtsHmacSha384192 = 20,
}

impl Etype {
    /// Every supported etype, strongest first: 20 (AES-256 with SHA-384),
    /// 18 (AES-256 with SHA-1), 19 (AES-128 with SHA-256), 17 (AES-128 with
    /// SHA-1). Key size ranks before the hash, as MIT's default
    /// `permitted_enctypes` order does. Use it as a preference list.
    pub const ALL: [Etype; 4] = [
        Etype::Aes256CtsHmacSha384192,
        Etype::Aes256CtsHmacSha196,
        Etype::Aes128CtsHmacSha256128,
        Etype::Aes128CtsHmacSha196,
    ];

    pub fn from_i32(v: i32) -> Option<Etype> {
        match v {
            17 => Some(Etype::Aes128CtsHmacSha196),
            18 => Some(Etype::Aes256CtsHmacSha196),
            19 => Some(Etype::Aes128CtsHmacSha256128),
            20 => Some(Etype::Aes256CtsHmacSha384192),
            _ => None,
        }
    }

    pub fn to_i32(self) -> i32 {
        self as i32
    }

    /// Protocol key length in bytes.
    pub fn key_len(self) -> usize {
        match self {
            Etype::Aes128CtsHmacSha196 | Etype::Aes128CtsHmacSha256128 => 16,
            Etype::Aes256CtsHmacSha196 | Etype::Aes256CtsHmacSha384192 => 32,
        }
    }

    /// The etype's keyed checksum type (RFC 3962 §7, RFC 8009 §7).
    pub fn checksum_type(self) -> i32 {
        match self {
            Etype::Aes128CtsHmacSha196 => 15,
            Etype::Aes256CtsHmacSha196 => 16,
            Etype::Aes128CtsHmacSha256128 => 19,
            Etype::Aes256CtsHmacSha384192 => 20,
        }
    }

    /// The etype whose checksum type is `cksumtype`.
    pub fn from_checksum_type(cksumtype: i32) -> Option<Etype> {
        Etype::ALL
            .into_iter()
            .find(|e| e.checksum_type() == cksumtype)
    }

    /// Length in bytes of the checksum, which is also the MAC length of an
    /// encryption.
    pub fn checksum_len(self) -> usize {
        match self {
            Etype::Aes128CtsHmacSha196 | Etype::Aes256CtsHmacSha196 => 12,
            Etype::Aes128CtsHmacSha256128 => 16,
            Etype::Aes256CtsHmacSha384192 => 24,
        }
    }

    /// Length of the random confounder prefixed to every plaintext.
    pub fn confounder_len(self) -> usize {
        BLOCK
    }

    /// The shortest valid ciphertext: confounder plus MAC.
    pub fn min_ciphertext_len(self) -> usize {
        self.confounder_len() + self.checksum_len()
    }

    /// Ciphertext length for `plaintext_len` bytes of plaintext.
    pub fn ciphertext_len(self, plaintext_len: usize) -> usize {
        self.min_ciphertext_len() + plaintext_len
    }

    /// MIT's name for the etype.
    pub fn name(self) -> &'static str {
        match self {
            Etype::Aes128CtsHmacSha196 => "aes128-cts-hmac-sha1-96",
            Etype::Aes256CtsHmacSha196 => "aes256-cts-hmac-sha1-96",
            Etype::Aes128CtsHmacSha256128 => "aes128-cts-hmac-sha256-128",
            Etype::Aes256CtsHmacSha384192 => "aes256-cts-hmac-sha384-192",
        }
    }

    /// Parses MIT's names and its aliases (`aes256-cts`, `aes128-sha2`, ...),
    /// case-insensitively.
    pub fn from_name(name: &str) -> Option<Etype> {
        match name.to_ascii_lowercase().as_str() {
            "aes128-cts-hmac-sha1-96" | "aes128-cts" | "aes128-sha1" => {
                Some(Etype::Aes128CtsHmacSha196)
            }
            "aes256-cts-hmac-sha1-96" | "aes256-cts" | "aes256-sha1" => {
                Some(Etype::Aes256CtsHmacSha196)
            }
            "aes128-cts-hmac-sha256-128" | "aes128-sha2" => Some(Etype::Aes128CtsHmacSha256128),
            "aes256-cts-hmac-sha384-192" | "aes256-sha2" => Some(Etype::Aes256CtsHmacSha384192),
            _ => None,
        }
    }

    /// The default string-to-key parameters: the PBKDF2 iteration count as
    /// four big-endian bytes, 4096 for RFC 3962 and 32768 for RFC 8009.
    pub fn default_s2kparams(self) -> Vec<u8> {
        self.default_iterations().to_be_bytes().to_vec()
    }

    fn default_iterations(self) -> u32 {
        if self.is_sha2() {
            32768
        } else {
            4096
        }
    }

    fn is_sha2(self) -> bool {
        matches!(
            self,
            Etype::Aes128CtsHmacSha256128 | Etype::Aes256CtsHmacSha384192
        )
    }

    /// RFC 8009 hash and the length in bits of Kc and Ki.
    fn sha2_params(self) -> (hmac::Algorithm, pbkdf2::Algorithm, u32) {
        match self {
            Etype::Aes256CtsHmacSha384192 => (hmac::HMAC_SHA384, pbkdf2::PBKDF2_HMAC_SHA384, 192),
            _ => (hmac::HMAC_SHA256, pbkdf2::PBKDF2_HMAC_SHA256, 128),
        }
    }
}

impl fmt::Display for Etype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl TryFrom<i32> for Etype {
    type Error = CryptoError;
    fn try_from(v: i32) -> Result<Self, Self::Error> {
        Etype::from_i32(v).ok_or(CryptoError::UnsupportedEtype(v))
    }
}

/// The largest PBKDF2 iteration count [`Key::from_password`] accepts. A
/// KDC (or an attacker posing as one) names the count; this bounds the CPU
/// time it can make a client spend (RFC 3962 §8).
pub const MAX_S2K_ITERATIONS: u32 = 1 << 24;

#[derive(Clone, thiserror::Error, Debug, PartialEq, Eq)]
pub enum CryptoError {
    #[error("encryption type {0} is not supported")]
    UnsupportedEtype(i32),
    #[error("integrity check failed: wrong key, wrong key usage, or tampered data")]
    IntegrityCheckFailed,
    #[error("ciphertext of {len} bytes is shorter than the minimum of {min}")]
    CiphertextTooShort { len: usize, min: usize },
    #[error("a key for etype {etype} must not be {len} bytes long")]
    BadKeyLength { etype: i32, len: usize },
    #[error("string-to-key parameters must be a 4-byte iteration count between 1 and 2^24")]
    BadS2kParams,
    #[error("checksum of {len} bytes, expected {expected}")]
    BadChecksumLength { len: usize, expected: usize },
    #[error("an AES key must be 16 or 32 bytes, not {0}")]
    BadAesKeyLength(usize),
    #[error("CBC-CTS needs at least one 16-byte block, got {0} bytes")]
    CtsInputTooShort(usize),
    #[error("confounder must be {expected} bytes, got {len}")]
    BadConfounderLength { len: usize, expected: usize },
}

/// A protocol key. Debug prints the etype only, never the bytes. Zeroized on drop.
#[derive(Clone)]
pub struct Key {
    etype: Etype,
    bytes: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key")
            .field("etype", &self.etype)
            .finish_non_exhaustive()
    }
}

/// Keys compare in constant time.
impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.etype == other.etype && bool::from(self.bytes.ct_eq(&other.bytes))
    }
}
impl Eq for Key {}

/// Fills a new buffer with `len` bytes from the system CSPRNG.
///
/// # Panics
/// If the operating system's random source fails, which ring reports only
/// when no source exists at all; no key may be made then.
pub fn random_bytes(len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    ring::rand::SystemRandom::new()
        .fill(&mut buf)
        .expect("the system random source failed");
    buf
}

fn usage_constant(usage: u32, kind: u8) -> [u8; 5] {
    let u = usage.to_be_bytes();
    [u[0], u[1], u[2], u[3], kind]
}

const KC: u8 = 0x99;
const KE: u8 = 0xAA;
const KI: u8 = 0x55;

fn hmac_parts(alg: hmac::Algorithm, key: &[u8], parts: &[&[u8]]) -> hmac::Tag {
    let k = hmac::Key::new(alg, key);
    let mut ctx = hmac::Context::with_key(&k);
    for p in parts {
        ctx.update(p);
    }
    ctx.sign()
}

/// RFC 3961 §5.1 DR: the key-derivation pseudo-random stream, for AES a
/// chain of single-block encryptions of n-fold(constant).
fn dr(key: &[u8], constant: &[u8], out_len: usize) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let aes = Aes::new(key)?;
    let mut block = [0u8; BLOCK];
    block.copy_from_slice(&nfold(constant, BLOCK));
    let mut out = Zeroizing::new(Vec::with_capacity(out_len + BLOCK));
    while out.len() < out_len {
        aes.encrypt_block(&mut block);
        out.extend_from_slice(&block);
    }
    out.truncate(out_len);
    Ok(out)
}

/// RFC 8009 §3 KDF-HMAC-SHA2(key, label, [context,] k): the first k bits of
/// HMAC(key, 00000001 | label | 00 | context | k).
fn kdf_sha2(
    alg: hmac::Algorithm,
    key: &[u8],
    label: &[u8],
    context: &[u8],
    k_bits: u32,
) -> Zeroizing<Vec<u8>> {
    let tag = hmac_parts(
        alg,
        key,
        &[
            &1u32.to_be_bytes(),
            label,
            &[0u8],
            context,
            &k_bits.to_be_bytes(),
        ],
    );
    let n = (k_bits / 8) as usize;
    Zeroizing::new(tag.as_ref()[..n].to_vec())
}

impl Key {
    pub fn new(etype: Etype, bytes: &[u8]) -> Result<Key, CryptoError> {
        if bytes.len() != etype.key_len() {
            return Err(CryptoError::BadKeyLength {
                etype: etype.to_i32(),
                len: bytes.len(),
            });
        }
        Ok(Key {
            etype,
            bytes: Zeroizing::new(bytes.to_vec()),
        })
    }

    /// Builds a key from a wire etype number.
    pub fn from_raw(etype: i32, bytes: &[u8]) -> Result<Key, CryptoError> {
        Key::new(Etype::try_from(etype)?, bytes)
    }

    pub fn etype(&self) -> Etype {
        self.etype
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A fresh random key (random-to-key is the identity for AES).
    pub fn random(etype: Etype) -> Key {
        let bytes = Zeroizing::new(random_bytes(etype.key_len()));
        Key { etype, bytes }
    }

    /// String-to-key: RFC 3962 §4 for etypes 17/18, RFC 8009 §4 for 19/20.
    /// `s2kparams` is the 4-byte big-endian iteration count; `None` takes
    /// the etype's default. A count of 0 (meaning 2^32 in RFC 3962) or above
    /// [`MAX_S2K_ITERATIONS`] is refused with `BadS2kParams`.
    pub fn from_password(
        etype: Etype,
        password: &[u8],
        salt: &[u8],
        s2kparams: Option<&[u8]>,
    ) -> Result<Key, CryptoError> {
        let iterations = match s2kparams {
            None => etype.default_iterations(),
            Some(p) => {
                let arr: [u8; 4] = p.try_into().map_err(|_| CryptoError::BadS2kParams)?;
                u32::from_be_bytes(arr)
            }
        };
        if iterations > MAX_S2K_ITERATIONS {
            return Err(CryptoError::BadS2kParams);
        }
        let iterations = NonZeroU32::new(iterations).ok_or(CryptoError::BadS2kParams)?;
        let mut tkey = Zeroizing::new(vec![0u8; etype.key_len()]);
        let bytes = if etype.is_sha2() {
            let (hmac_alg, pbkdf2_alg, _) = etype.sha2_params();
            let mut saltp = etype.name().as_bytes().to_vec();
            saltp.push(0);
            saltp.extend_from_slice(salt);
            pbkdf2::derive(pbkdf2_alg, iterations, &saltp, password, &mut tkey);
            kdf_sha2(
                hmac_alg,
                &tkey,
                b"kerberos",
                &[],
                (etype.key_len() * 8) as u32,
            )
        } else {
            pbkdf2::derive(
                pbkdf2::PBKDF2_HMAC_SHA1,
                iterations,
                salt,
                password,
                &mut tkey,
            );
            dr(&tkey, b"kerberos", etype.key_len())?
        };
        Ok(Key { etype, bytes })
    }

    /// The derived protocol key for `constant`: RFC 3961 DK for etypes
    /// 17/18, RFC 8009 KDF-HMAC-SHA2 with k = the key size for 19/20.
    pub fn derive(&self, constant: &[u8]) -> Key {
        Key {
            etype: self.etype,
            bytes: self.derive_random(constant, (self.etype.key_len() * 8) as u32),
        }
    }

    /// Derives `bits` bits (a multiple of 8) of key material from this key
    /// and `constant`: RFC 3961 DR for etypes 17/18, RFC 8009
    /// KDF-HMAC-SHA2(key, constant, bits) for 19/20 (at most the hash
    /// length). [`Key::derive`] is this with the key's own length; this form
    /// also gives RFC 8009's 192-bit Kc and Ki.
    pub fn derive_random(&self, constant: &[u8], bits: u32) -> Zeroizing<Vec<u8>> {
        if self.etype.is_sha2() {
            let (alg, _, _) = self.etype.sha2_params();
            kdf_sha2(alg, &self.bytes, constant, &[], bits)
        } else {
            // The length of self.bytes was checked when the Key was made.
            dr(&self.bytes, constant, (bits / 8) as usize).unwrap_or_default()
        }
    }

    /// Ke: the encryption key for `usage`.
    fn ke(&self, usage: u32) -> Zeroizing<Vec<u8>> {
        self.derive_random(
            &usage_constant(usage, KE),
            (self.etype.key_len() * 8) as u32,
        )
    }

    /// Ki (`kind` = KI) or Kc (`kind` = KC): the integrity keys.
    fn ki(&self, usage: u32, kind: u8) -> Zeroizing<Vec<u8>> {
        let bits = if self.etype.is_sha2() {
            self.etype.sha2_params().2
        } else {
            (self.etype.key_len() * 8) as u32
        };
        self.derive_random(&usage_constant(usage, kind), bits)
    }

    fn mac(&self, ki: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        let alg = if self.etype.is_sha2() {
            self.etype.sha2_params().0
        } else {
            hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY
        };
        let tag = hmac_parts(alg, ki, parts);
        tag.as_ref()[..self.etype.checksum_len()].to_vec()
    }

    /// Encrypts with a fresh random confounder.
    pub fn encrypt(&self, usage: u32, plaintext: &[u8]) -> Vec<u8> {
        let confounder = random_bytes(self.etype.confounder_len());
        self.encrypt_with_confounder(usage, &confounder, plaintext)
    }

    /// Encrypts with the given confounder, for test vectors. A confounder of
    /// the wrong length is padded with zeros or cut to 16 bytes; production
    /// code uses [`Key::encrypt`].
    pub fn encrypt_with_confounder(
        &self,
        usage: u32,
        confounder: &[u8],
        plaintext: &[u8],
    ) -> Vec<u8> {
        let mut conf = [0u8; BLOCK];
        let n = confounder.len().min(BLOCK);
        conf[..n].copy_from_slice(&confounder[..n]);
        let mut data = Zeroizing::new(Vec::with_capacity(BLOCK + plaintext.len()));
        data.extend_from_slice(&conf);
        data.extend_from_slice(plaintext);
        let ke = self.ke(usage);
        let ki = self.ki(usage, KI);
        let iv = [0u8; BLOCK];
        // ke has the etype's key length and data is at least one block, so
        // the CTS encryption cannot fail.
        let (mut c, _) = cts::encrypt(&ke, &iv, &data).unwrap_or_default();
        let h = if self.etype.is_sha2() {
            // RFC 8009 §5: the MAC covers the cipher state and the ciphertext.
            self.mac(&ki, &[&iv, &c])
        } else {
            // RFC 3961 §5.3: the MAC covers the plaintext with confounder.
            self.mac(&ki, &[&data])
        };
        c.extend_from_slice(&h);
        c
    }

    /// Decrypts, verifies the MAC in constant time and strips the
    /// confounder. The plaintext (tickets, authenticators, session keys)
    /// is zeroized when the caller drops it.
    pub fn decrypt(
        &self,
        usage: u32,
        ciphertext: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
        let min = self.etype.min_ciphertext_len();
        if ciphertext.len() < min {
            return Err(CryptoError::CiphertextTooShort {
                len: ciphertext.len(),
                min,
            });
        }
        let (c, h) = ciphertext.split_at(ciphertext.len() - self.etype.checksum_len());
        let ke = self.ke(usage);
        let ki = self.ki(usage, KI);
        let iv = [0u8; BLOCK];
        if self.etype.is_sha2() {
            let expected = self.mac(&ki, &[&iv, c]);
            if !bool::from(expected.ct_eq(h)) {
                return Err(CryptoError::IntegrityCheckFailed);
            }
            let (p, _) = cts::decrypt(&ke, &iv, c)?;
            let p = Zeroizing::new(p);
            Ok(Zeroizing::new(p[BLOCK..].to_vec()))
        } else {
            let (p, _) = cts::decrypt(&ke, &iv, c)?;
            let p = Zeroizing::new(p);
            let expected = self.mac(&ki, &[&p]);
            if !bool::from(expected.ct_eq(h)) {
                return Err(CryptoError::IntegrityCheckFailed);
            }
            Ok(Zeroizing::new(p[BLOCK..].to_vec()))
        }
    }

    /// The keyed checksum of the etype's checksum type, under Kc for `usage`.
    pub fn checksum(&self, usage: u32, data: &[u8]) -> Vec<u8> {
        let kc = self.ki(usage, KC);
        self.mac(&kc, &[data])
    }

    /// Verifies a checksum made by [`Key::checksum`], in constant time.
    pub fn verify_checksum(
        &self,
        usage: u32,
        data: &[u8],
        cksum: &[u8],
    ) -> Result<(), CryptoError> {
        let expected_len = self.etype.checksum_len();
        if cksum.len() != expected_len {
            return Err(CryptoError::BadChecksumLength {
                len: cksum.len(),
                expected: expected_len,
            });
        }
        let expected = self.checksum(usage, data);
        if bool::from(expected.ct_eq(cksum)) {
            Ok(())
        } else {
            Err(CryptoError::IntegrityCheckFailed)
        }
    }

    /// The etype's pseudo-random function: RFC 3962 §4 (16 bytes) for
    /// etypes 17/18, RFC 8009 §5 (32 or 48 bytes) for 19/20.
    pub fn prf(&self, input: &[u8]) -> Vec<u8> {
        if self.etype.is_sha2() {
            let (alg, _, _) = self.etype.sha2_params();
            let bits = if self.etype == Etype::Aes256CtsHmacSha384192 {
                384
            } else {
                256
            };
            kdf_sha2(alg, &self.bytes, b"prf", input, bits).to_vec()
        } else {
            let tmp1 = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, input);
            let mut block = [0u8; BLOCK];
            block.copy_from_slice(&tmp1.as_ref()[..BLOCK]);
            let dk = self.derive_random(b"prf", (self.etype.key_len() * 8) as u32);
            match Aes::new(&dk) {
                Ok(aes) => aes.encrypt_block(&mut block),
                Err(_) => return Vec::new(),
            }
            block.to_vec()
        }
    }

    /// RFC 6113 §5.1 PRF+: PRF(key, 1 | input) | PRF(key, 2 | input) | ...,
    /// cut to `len` bytes (at most 255 PRF outputs).
    pub fn prf_plus(&self, input: &[u8], len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 48);
        let mut counter: u8 = 1;
        let mut buf = Vec::with_capacity(input.len() + 1);
        while out.len() < len {
            buf.clear();
            buf.push(counter);
            buf.extend_from_slice(input);
            out.extend_from_slice(&self.prf(&buf));
            if counter == u8::MAX {
                break;
            }
            counter += 1;
        }
        out.truncate(len);
        out
    }
}

/// RFC 6113 §5.1 KRB-FX-CF2: combines two keys into one of `k1`'s etype,
/// random-to-key(PRF+(k1, pepper1) XOR PRF+(k2, pepper2)).
pub fn cf2(k1: &Key, k2: &Key, pepper1: &[u8], pepper2: &[u8]) -> Key {
    let n = k1.etype.key_len();
    let a = Zeroizing::new(k1.prf_plus(pepper1, n));
    let b = Zeroizing::new(k2.prf_plus(pepper2, n));
    let bytes: Vec<u8> = a.iter().zip(b.iter()).map(|(x, y)| x ^ y).collect();
    Key {
        etype: k1.etype,
        bytes: Zeroizing::new(bytes),
    }
}
