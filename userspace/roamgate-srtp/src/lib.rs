//! SRTP and SRTCP for the proxies' voice (RFC 3711, RFC 7714). Sans-IO:
//! a [`Context`] takes a packet and returns the protected or unprotected one.
//!
//! Profiles ([`Profile`]):
//! - `AES_CM_128_HMAC_SHA1_80` (RFC 3711 §4.1.1, §4.2.1): AES-CM encryption,
//!   an 80-bit HMAC-SHA1 tag for SRTP and SRTCP.
//! - `AEAD_AES_128_GCM` (RFC 7714): AES-128-GCM, 12-octet IV from the
//!   session salt and (SSRC, ROC, SEQ) or (SSRC, SRTCP index), a 16-octet tag.
//!
//! Session keys come from the master key and salt through the AES-CM PRF of
//! RFC 3711 §4.3 (key derivation rate 0). Each direction of each SSRC has its
//! own replay window (RFC 3711 §3.3.2, [`replay::WINDOW_SIZE`] packets); the
//! number of SSRCs a context tracks is bounded ([`Config::max_streams`]).
//!
//! No input makes any function here panic: every length is checked before
//! use and every failure is an [`Error`].

mod context;
pub mod kdf;
pub mod replay;
pub mod wire;

pub use context::{Config, Context};

use zeroize::Zeroize;

/// Why a packet was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Shorter than its header, its header's own lengths, or its trailer.
    #[error("packet truncated")]
    Truncated,
    /// The RTP/RTCP version field is not 2.
    #[error("RTP/RTCP version is not 2")]
    BadVersion,
    /// The authentication tag does not verify.
    #[error("authentication failed")]
    AuthFailed,
    /// The index was already accepted (RFC 3711 §3.3.2).
    #[error("replayed packet")]
    Replayed,
    /// The index is left of the replay window.
    #[error("packet older than the replay window")]
    TooOld,
    /// A new SSRC past [`Config::max_streams`].
    #[error("too many streams")]
    TooManyStreams,
    /// The buffer cannot hold the protected packet (see [`MAX_TRAILER_LEN`]).
    #[error("buffer too small for the SRTP trailer")]
    BufferTooSmall,
    /// The master salt's length does not fit the profile.
    #[error("master salt is {got} octets, the profile takes {expected}")]
    SaltLength { expected: usize, got: usize },
    /// The master key's length is not 16 octets.
    #[error("master key is {0} octets, not 16")]
    KeyLength(usize),
    /// The packet index (2^48 SRTP, 2^31 SRTCP) is used up: rekey.
    #[error("packet index exhausted; rekey")]
    IndexExhausted,
}

/// The most octets protection appends (GCM SRTCP: 16-octet tag and the
/// 4-octet E flag and index).
pub const MAX_TRAILER_LEN: usize = 20;

/// An SRTP protection profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    /// RFC 3711 AES_CM_128_HMAC_SHA1_80 (DTLS-SRTP SRTP_AES128_CM_SHA1_80).
    AesCm128HmacSha1_80,
    /// RFC 7714 AEAD_AES_128_GCM (DTLS-SRTP SRTP_AEAD_AES_128_GCM).
    AeadAes128Gcm,
}

impl Profile {
    /// Master key length in octets.
    pub const fn master_key_len(self) -> usize {
        16
    }

    /// Master salt length in octets: 112 bits (RFC 3711), 96 bits (RFC 7714).
    pub const fn master_salt_len(self) -> usize {
        match self {
            Profile::AesCm128HmacSha1_80 => 14,
            Profile::AeadAes128Gcm => 12,
        }
    }

    /// Octets SRTP protection appends to an RTP packet (the tag).
    pub const fn rtp_trailer_len(self) -> usize {
        match self {
            Profile::AesCm128HmacSha1_80 => 10,
            Profile::AeadAes128Gcm => 16,
        }
    }

    /// Octets SRTCP protection appends to an RTCP packet (E flag and index,
    /// and the tag).
    pub const fn rtcp_trailer_len(self) -> usize {
        4 + self.rtp_trailer_len()
    }
}

/// The SRTP master key (128 bits). Zeroized on drop; `Debug` redacts it.
#[derive(Clone)]
pub struct MasterKey([u8; 16]);

impl MasterKey {
    pub fn new(bytes: [u8; 16]) -> Self {
        MasterKey(bytes)
    }

    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        let key: [u8; 16] = bytes
            .try_into()
            .map_err(|_| Error::KeyLength(bytes.len()))?;
        Ok(MasterKey(key))
    }

    pub(crate) fn bytes(&self) -> &[u8; 16] {
        &self.0
    }
}

impl Drop for MasterKey {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

/// The SRTP master salt: 14 octets for AES-CM, 12 for GCM. Zeroized on
/// drop; `Debug` redacts it.
#[derive(Clone)]
pub struct MasterSalt {
    /// The salt, right-padded with zeros to 112 bits (the PRF's input).
    padded: [u8; 14],
    len: usize,
}

impl MasterSalt {
    /// A 12- or 14-octet salt.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
        if bytes.len() != 12 && bytes.len() != 14 {
            return Err(Error::SaltLength {
                expected: 14,
                got: bytes.len(),
            });
        }
        let mut padded = [0u8; 14];
        padded[..bytes.len()].copy_from_slice(bytes);
        Ok(MasterSalt {
            padded,
            len: bytes.len(),
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub(crate) fn padded(&self) -> &[u8; 14] {
        &self.padded
    }
}

impl Drop for MasterSalt {
    fn drop(&mut self) {
        self.padded.zeroize();
    }
}

impl std::fmt::Debug for MasterSalt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MasterSalt({} octets, ..)", self.len)
    }
}
