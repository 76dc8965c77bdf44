//! The SRTP/SRTCP context: session keys, and per-SSRC replay state for the
//! two directions (what this end protects, what it unprotects).

use std::collections::HashMap;

use aes::cipher::KeyInit;
use aes::Aes128;
use ring::{aead, hmac};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::kdf::{self, Label};
use crate::replay::Window;
use crate::wire::{self, RtcpPacket, RtpPacket};
use crate::{Error, MasterKey, MasterSalt, Profile};

/// HMAC-SHA1-80: the tag is the HMAC's first 80 bits.
const CM_TAG_LEN: usize = 10;
/// HMAC-SHA1 session authentication key, 160 bits (RFC 3711 §4.2.1).
const CM_AUTH_KEY_LEN: usize = 20;
const GCM_TAG_LEN: usize = 16;
/// RTCP header and sender SSRC: the part SRTCP leaves in the clear.
const RTCP_CLEAR_LEN: usize = wire::RTCP_HEADER_LEN;
/// The E flag of the SRTCP trailer word (RFC 3711 §3.4).
const E_FLAG: u32 = 0x8000_0000;
/// SRTCP indices are 31 bits.
const MAX_SRTCP_INDEX: u64 = 0x7fff_ffff;
/// The SRTCP trailer word: E flag and SRTCP index.
const SRTCP_INDEX_LEN: usize = 4;

/// Context limits and choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// SSRCs tracked per direction; a new SSRC past this is refused with
    /// [`Error::TooManyStreams`].
    pub max_streams: usize,
    /// Encrypt SRTCP (E flag set). Authentication is always on.
    pub encrypt_rtcp: bool,
}

impl Config {
    pub const DEFAULT_MAX_STREAMS: usize = 16;
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_streams: Self::DEFAULT_MAX_STREAMS,
            encrypt_rtcp: true,
        }
    }
}

/// AES-CM session keys for SRTP or SRTCP.
struct CmKeys {
    cipher: Aes128,
    salt: [u8; 14],
    auth: hmac::Key,
}

impl CmKeys {
    fn derive(key: &MasterKey, salt: &MasterSalt, labels: [Label; 3]) -> Self {
        let [enc_label, auth_label, salt_label] = labels;
        let mut enc = Zeroizing::new([0u8; 16]);
        kdf::derive(key.bytes(), salt.padded(), enc_label, &mut enc[..]);
        let mut auth = Zeroizing::new([0u8; CM_AUTH_KEY_LEN]);
        kdf::derive(key.bytes(), salt.padded(), auth_label, &mut auth[..]);
        let mut session_salt = [0u8; 14];
        kdf::derive(key.bytes(), salt.padded(), salt_label, &mut session_salt);
        Self::from_session(&enc, &auth[..], session_salt)
    }

    fn from_session(enc: &[u8; 16], auth: &[u8], salt: [u8; 14]) -> Self {
        CmKeys {
            cipher: Aes128::new(enc.into()),
            salt,
            auth: hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, auth),
        }
    }

    fn tag(&self, parts: &[&[u8]]) -> [u8; CM_TAG_LEN] {
        let mut ctx = hmac::Context::with_key(&self.auth);
        for p in parts {
            ctx.update(p);
        }
        let full = ctx.sign();
        let mut tag = [0u8; CM_TAG_LEN];
        tag.copy_from_slice(&full.as_ref()[..CM_TAG_LEN]);
        tag
    }

    fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> Result<(), Error> {
        let want = self.tag(parts);
        if bool::from(want.ct_eq(tag)) {
            Ok(())
        } else {
            Err(Error::AuthFailed)
        }
    }

    /// RFC 3711 §4.1.1: IV = (k_s * 2^16) XOR (SSRC * 2^64) XOR (i * 2^16).
    fn iv(&self, ssrc: u32, index: u64) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..14].copy_from_slice(&self.salt);
        xor(&mut iv[4..8], &ssrc.to_be_bytes());
        xor(&mut iv[8..14], &index.to_be_bytes()[2..]);
        iv
    }
}

impl Drop for CmKeys {
    // `Aes128` zeroizes its key schedule itself (the `zeroize` feature);
    // ring's HMAC key offers no zeroization.
    fn drop(&mut self) {
        self.salt.zeroize();
    }
}

/// AES-GCM session keys for SRTP or SRTCP.
struct GcmKeys {
    aead: aead::LessSafeKey,
    salt: [u8; 12],
}

impl GcmKeys {
    fn derive(key: &MasterKey, salt: &MasterSalt, labels: [Label; 2]) -> Result<Self, Error> {
        let [enc_label, salt_label] = labels;
        let mut enc = Zeroizing::new([0u8; 16]);
        kdf::derive(key.bytes(), salt.padded(), enc_label, &mut enc[..]);
        let mut session_salt = [0u8; 12];
        kdf::derive(key.bytes(), salt.padded(), salt_label, &mut session_salt);
        Self::from_session(&enc, session_salt)
    }

    fn from_session(enc: &[u8; 16], salt: [u8; 12]) -> Result<Self, Error> {
        let unbound =
            aead::UnboundKey::new(&aead::AES_128_GCM, enc).map_err(|_| Error::KeyLength(16))?;
        Ok(GcmKeys {
            aead: aead::LessSafeKey::new(unbound),
            salt,
        })
    }

    /// RFC 7714 §8.1: IV = salt XOR (0x0000 || SSRC || ROC || SEQ); the
    /// 48-bit index is ROC || SEQ.
    fn rtp_nonce(&self, ssrc: u32, index: u64) -> aead::Nonce {
        let mut n = [0u8; 12];
        n[2..6].copy_from_slice(&ssrc.to_be_bytes());
        n[6..12].copy_from_slice(&index.to_be_bytes()[2..]);
        xor(&mut n, &self.salt);
        aead::Nonce::assume_unique_for_key(n)
    }

    /// RFC 7714 §9.1: IV = salt XOR (0x0000 || SSRC || 0x0000 || 0 || index).
    fn rtcp_nonce(&self, ssrc: u32, index: u32) -> aead::Nonce {
        let mut n = [0u8; 12];
        n[2..6].copy_from_slice(&ssrc.to_be_bytes());
        n[8..12].copy_from_slice(&index.to_be_bytes());
        xor(&mut n, &self.salt);
        aead::Nonce::assume_unique_for_key(n)
    }
}

impl Drop for GcmKeys {
    // ring's AEAD key offers no zeroization.
    fn drop(&mut self) {
        self.salt.zeroize();
    }
}

// One `Keys` per context, inline: boxing the larger variant would only add
// a pointer chase per packet.
#[allow(clippy::large_enum_variant)]
enum Keys {
    Cm { rtp: CmKeys, rtcp: CmKeys },
    Gcm { rtp: GcmKeys, rtcp: GcmKeys },
}

fn xor(dst: &mut [u8], src: &[u8]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d ^= s;
    }
}

/// Replay state of one SSRC in one direction.
#[derive(Debug, Default, Clone, Copy)]
struct Stream {
    rtp: Option<Window>,
    rtcp: Option<Window>,
    /// Sending side: the next SRTCP index.
    rtcp_next: u64,
}

/// The SSRCs of one direction, bounded.
#[derive(Debug)]
struct Streams {
    map: HashMap<u32, Stream>,
    max: usize,
}

impl Streams {
    fn new(max: usize) -> Self {
        Streams {
            map: HashMap::new(),
            max,
        }
    }

    fn get(&self, ssrc: u32) -> Option<&Stream> {
        self.map.get(&ssrc)
    }

    fn room_for(&self, ssrc: u32) -> Result<(), Error> {
        if self.map.len() < self.max || self.map.contains_key(&ssrc) {
            Ok(())
        } else {
            Err(Error::TooManyStreams)
        }
    }

    fn entry(&mut self, ssrc: u32) -> Result<&mut Stream, Error> {
        self.room_for(ssrc)?;
        Ok(self.map.entry(ssrc).or_default())
    }
}

fn accept(window: &mut Option<Window>, index: u64) {
    window
        .get_or_insert_with(|| Window::starting_at(index))
        .accept(index);
}

fn be32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_be_bytes(a)
}

/// An SRTP/SRTCP session under one master key: protects what this end
/// sends and unprotects what it receives, each SSRC with its own replay
/// window per direction.
pub struct Context {
    profile: Profile,
    config: Config,
    keys: Keys,
    tx: Streams,
    rx: Streams,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("profile", &self.profile)
            .field("config", &self.config)
            .field("tx_streams", &self.tx.map.len())
            .field("rx_streams", &self.rx.map.len())
            .finish_non_exhaustive()
    }
}

impl Context {
    /// A context with the default [`Config`].
    pub fn new(profile: Profile, key: &MasterKey, salt: &MasterSalt) -> Result<Self, Error> {
        Self::with_config(profile, key, salt, Config::default())
    }

    pub fn with_config(
        profile: Profile,
        key: &MasterKey,
        salt: &MasterSalt,
        config: Config,
    ) -> Result<Self, Error> {
        if salt.len() != profile.master_salt_len() {
            return Err(Error::SaltLength {
                expected: profile.master_salt_len(),
                got: salt.len(),
            });
        }
        let keys = match profile {
            Profile::AesCm128HmacSha1_80 => Keys::Cm {
                rtp: CmKeys::derive(
                    key,
                    salt,
                    [
                        Label::RtpEncryption,
                        Label::RtpAuthentication,
                        Label::RtpSalt,
                    ],
                ),
                rtcp: CmKeys::derive(
                    key,
                    salt,
                    [
                        Label::RtcpEncryption,
                        Label::RtcpAuthentication,
                        Label::RtcpSalt,
                    ],
                ),
            },
            Profile::AeadAes128Gcm => Keys::Gcm {
                rtp: GcmKeys::derive(key, salt, [Label::RtpEncryption, Label::RtpSalt])?,
                rtcp: GcmKeys::derive(key, salt, [Label::RtcpEncryption, Label::RtcpSalt])?,
            },
        };
        Ok(Self::from_keys(profile, keys, config))
    }

    fn from_keys(profile: Profile, keys: Keys, config: Config) -> Self {
        Context {
            profile,
            config,
            keys,
            tx: Streams::new(config.max_streams),
            rx: Streams::new(config.max_streams),
        }
    }

    pub fn profile(&self) -> Profile {
        self.profile
    }

    /// The ROC of the highest SRTP index sent on `ssrc`.
    pub fn tx_roc(&self, ssrc: u32) -> Option<u32> {
        self.tx.get(ssrc)?.rtp.map(|w| w.roc())
    }

    /// The ROC of the highest SRTP index accepted on `ssrc`.
    pub fn rx_roc(&self, ssrc: u32) -> Option<u32> {
        self.rx.get(ssrc)?.rtp.map(|w| w.roc())
    }

    /// SSRCs tracked: (sending, receiving).
    pub fn stream_count(&self) -> (usize, usize) {
        (self.tx.map.len(), self.rx.map.len())
    }

    /// Forget an SSRC in both directions (e.g. on an RTCP BYE).
    pub fn remove_stream(&mut self, ssrc: u32) {
        self.tx.map.remove(&ssrc);
        self.rx.map.remove(&ssrc);
    }

    /// Protect the RTP packet in `pkt` into an SRTP packet.
    pub fn protect_rtp(&mut self, pkt: &mut Vec<u8>) -> Result<(), Error> {
        let len = pkt.len();
        pkt.resize(len + self.profile.rtp_trailer_len(), 0);
        let out = self.protect_rtp_in_place(pkt, len);
        pkt.truncate(*out.as_ref().unwrap_or(&len));
        out.map(|_| ())
    }

    /// Unprotect the SRTP packet in `pkt` into the RTP packet.
    pub fn unprotect_rtp(&mut self, pkt: &mut Vec<u8>) -> Result<(), Error> {
        let n = self.unprotect_rtp_in_place(pkt)?;
        pkt.truncate(n);
        Ok(())
    }

    /// Protect the RTCP packet (compound) in `pkt` into an SRTCP packet.
    pub fn protect_rtcp(&mut self, pkt: &mut Vec<u8>) -> Result<(), Error> {
        let len = pkt.len();
        pkt.resize(len + self.profile.rtcp_trailer_len(), 0);
        let out = self.protect_rtcp_in_place(pkt, len);
        pkt.truncate(*out.as_ref().unwrap_or(&len));
        out.map(|_| ())
    }

    /// Unprotect the SRTCP packet in `pkt` into the RTCP packet.
    pub fn unprotect_rtcp(&mut self, pkt: &mut Vec<u8>) -> Result<(), Error> {
        let n = self.unprotect_rtcp_in_place(pkt)?;
        pkt.truncate(n);
        Ok(())
    }

    /// Protect the RTP packet `buf[..len]` in place; `buf` must have room
    /// for the trailer ([`Profile::rtp_trailer_len`]). Returns the SRTP
    /// packet's length.
    pub fn protect_rtp_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        let trailer = self.profile.rtp_trailer_len();
        let pkt = RtpPacket::new_checked(buf.get(..len).ok_or(Error::BufferTooSmall)?)?;
        let hdr = pkt.header_len();
        let seq = pkt.sequence_number();
        let ssrc = pkt.ssrc();
        let total = len.checked_add(trailer).ok_or(Error::BufferTooSmall)?;
        if buf.len() < total {
            return Err(Error::BufferTooSmall);
        }
        let stream = self.tx.entry(ssrc)?;
        // The sender never reuses an index: a keystream (CM) or a GCM nonce
        // used twice would leak the plaintexts.
        let index = match &stream.rtp {
            Some(w) => {
                let i = w.estimate(seq)?;
                w.check(i)?;
                i
            }
            None => u64::from(seq),
        };
        match &self.keys {
            Keys::Cm { rtp, .. } => {
                let iv = rtp.iv(ssrc, index);
                kdf::aes_cm_apply(&rtp.cipher, &iv, &mut buf[hdr..len]);
                let roc = (index >> 16) as u32;
                let tag = rtp.tag(&[&buf[..len], &roc.to_be_bytes()]);
                buf[len..total].copy_from_slice(&tag);
            }
            Keys::Gcm { rtp, .. } => {
                let nonce = rtp.rtp_nonce(ssrc, index);
                let (head, rest) = buf.split_at_mut(hdr);
                let tag = rtp
                    .aead
                    .seal_in_place_separate_tag(
                        nonce,
                        aead::Aad::from(&*head),
                        &mut rest[..len - hdr],
                    )
                    .map_err(|_| Error::BufferTooSmall)?;
                buf[len..total].copy_from_slice(tag.as_ref());
            }
        }
        accept(&mut stream.rtp, index);
        Ok(total)
    }

    /// Unprotect the SRTP packet `pkt` in place. Returns the RTP packet's
    /// length (its prefix of `pkt`).
    pub fn unprotect_rtp_in_place(&mut self, pkt: &mut [u8]) -> Result<usize, Error> {
        let trailer = self.profile.rtp_trailer_len();
        let len = pkt.len().checked_sub(trailer).ok_or(Error::Truncated)?;
        let view = RtpPacket::new_checked(&pkt[..len])?;
        let hdr = view.header_len();
        let seq = view.sequence_number();
        let ssrc = view.ssrc();
        let window = self.rx.get(ssrc).and_then(|s| s.rtp);
        let index = match &window {
            Some(w) => {
                let i = w.estimate(seq)?;
                w.check(i)?;
                i
            }
            None => {
                self.rx.room_for(ssrc)?;
                u64::from(seq)
            }
        };
        match &self.keys {
            Keys::Cm { rtp, .. } => {
                let roc = (index >> 16) as u32;
                let (body, tag) = pkt.split_at_mut(len);
                rtp.verify(&[body, &roc.to_be_bytes()], tag)?;
                let iv = rtp.iv(ssrc, index);
                kdf::aes_cm_apply(&rtp.cipher, &iv, &mut body[hdr..]);
            }
            Keys::Gcm { rtp, .. } => {
                let nonce = rtp.rtp_nonce(ssrc, index);
                let (head, rest) = pkt.split_at_mut(hdr);
                rtp.aead
                    .open_in_place(nonce, aead::Aad::from(&*head), rest)
                    .map_err(|_| Error::AuthFailed)?;
            }
        }
        // Only an authenticated packet creates or moves a stream's state.
        let stream = self.rx.entry(ssrc)?;
        accept(&mut stream.rtp, index);
        Ok(len)
    }

    /// Protect the RTCP packet `buf[..len]` in place; `buf` must have room
    /// for the trailer ([`Profile::rtcp_trailer_len`]). Returns the SRTCP
    /// packet's length.
    pub fn protect_rtcp_in_place(&mut self, buf: &mut [u8], len: usize) -> Result<usize, Error> {
        let trailer = self.profile.rtcp_trailer_len();
        let ssrc = RtcpPacket::new_checked(buf.get(..len).ok_or(Error::BufferTooSmall)?)?.ssrc();
        let total = len.checked_add(trailer).ok_or(Error::BufferTooSmall)?;
        if buf.len() < total {
            return Err(Error::BufferTooSmall);
        }
        let stream = self.tx.entry(ssrc)?;
        let index = stream.rtcp_next;
        if index > MAX_SRTCP_INDEX {
            return Err(Error::IndexExhausted);
        }
        let encrypt = self.config.encrypt_rtcp;
        // index <= 2^31 - 1: fits.
        let index32 = index as u32;
        let word = (index32 | if encrypt { E_FLAG } else { 0 }).to_be_bytes();
        match &self.keys {
            Keys::Cm { rtcp, .. } => {
                if encrypt {
                    let iv = rtcp.iv(ssrc, index);
                    kdf::aes_cm_apply(&rtcp.cipher, &iv, &mut buf[RTCP_CLEAR_LEN..len]);
                }
                buf[len..len + SRTCP_INDEX_LEN].copy_from_slice(&word);
                let tag = rtcp.tag(&[&buf[..len + SRTCP_INDEX_LEN]]);
                buf[len + SRTCP_INDEX_LEN..total].copy_from_slice(&tag);
            }
            Keys::Gcm { rtcp, .. } => {
                // RFC 7714 §9: ... || tag || E || SRTCP index.
                let nonce = rtcp.rtcp_nonce(ssrc, index32);
                let tag = if encrypt {
                    let mut aad = [0u8; RTCP_CLEAR_LEN + SRTCP_INDEX_LEN];
                    aad[..RTCP_CLEAR_LEN].copy_from_slice(&buf[..RTCP_CLEAR_LEN]);
                    aad[RTCP_CLEAR_LEN..].copy_from_slice(&word);
                    rtcp.aead.seal_in_place_separate_tag(
                        nonce,
                        aead::Aad::from(aad),
                        &mut buf[RTCP_CLEAR_LEN..len],
                    )
                } else {
                    // Authentication only: the whole packet and the index
                    // word are the AAD, the plaintext is empty.
                    buf[len..len + SRTCP_INDEX_LEN].copy_from_slice(&word);
                    rtcp.aead.seal_in_place_separate_tag(
                        nonce,
                        aead::Aad::from(&buf[..len + SRTCP_INDEX_LEN]),
                        &mut [],
                    )
                }
                .map_err(|_| Error::BufferTooSmall)?;
                buf[len..len + GCM_TAG_LEN].copy_from_slice(tag.as_ref());
                buf[len + GCM_TAG_LEN..total].copy_from_slice(&word);
            }
        }
        stream.rtcp_next = index + 1;
        Ok(total)
    }

    /// Unprotect the SRTCP packet `pkt` in place. Returns the RTCP packet's
    /// length (its prefix of `pkt`).
    pub fn unprotect_rtcp_in_place(&mut self, pkt: &mut [u8]) -> Result<usize, Error> {
        let trailer = self.profile.rtcp_trailer_len();
        let ssrc = RtcpPacket::new_checked(&*pkt)?.ssrc();
        if pkt.len() < RTCP_CLEAR_LEN + trailer {
            return Err(Error::Truncated);
        }
        let len = pkt.len() - trailer;
        let word_at = match self.profile {
            Profile::AesCm128HmacSha1_80 => len,
            Profile::AeadAes128Gcm => len + GCM_TAG_LEN,
        };
        let word = be32(pkt, word_at);
        let encrypted = word & E_FLAG != 0;
        let index = u64::from(word & !E_FLAG);
        match self.rx.get(ssrc).and_then(|s| s.rtcp) {
            Some(w) => w.check(index)?,
            None => self.rx.room_for(ssrc)?,
        }
        match &self.keys {
            Keys::Cm { rtcp, .. } => {
                let (body, tag) = pkt.split_at_mut(len + SRTCP_INDEX_LEN);
                rtcp.verify(&[body], tag)?;
                if encrypted {
                    let iv = rtcp.iv(ssrc, index);
                    kdf::aes_cm_apply(&rtcp.cipher, &iv, &mut body[RTCP_CLEAR_LEN..len]);
                }
            }
            Keys::Gcm { rtcp, .. } => {
                let nonce = rtcp.rtcp_nonce(ssrc, word & !E_FLAG);
                if encrypted {
                    let mut aad = [0u8; RTCP_CLEAR_LEN + SRTCP_INDEX_LEN];
                    aad[..RTCP_CLEAR_LEN].copy_from_slice(&pkt[..RTCP_CLEAR_LEN]);
                    aad[RTCP_CLEAR_LEN..].copy_from_slice(&word.to_be_bytes());
                    rtcp.aead
                        .open_in_place(
                            nonce,
                            aead::Aad::from(aad),
                            &mut pkt[RTCP_CLEAR_LEN..len + GCM_TAG_LEN],
                        )
                        .map_err(|_| Error::AuthFailed)?;
                } else {
                    // packet || tag || word  ->  packet || word || tag, so
                    // the AAD (packet || word) is contiguous.
                    pkt[len..].rotate_right(SRTCP_INDEX_LEN);
                    let (aad, tag) = pkt.split_at_mut(len + SRTCP_INDEX_LEN);
                    let opened = rtcp.aead.open_in_place(nonce, aead::Aad::from(&*aad), tag);
                    if opened.is_err() {
                        pkt[len..].rotate_left(SRTCP_INDEX_LEN);
                        return Err(Error::AuthFailed);
                    }
                }
            }
        }
        let stream = self.rx.entry(ssrc)?;
        accept(&mut stream.rtcp, index);
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(s: &str) -> Vec<u8> {
        hex::decode(s.replace([' ', '\n'], "")).expect("hex")
    }

    /// RFC 7714 §16/§17 give session keys directly (no KDF).
    fn rfc7714_context() -> Context {
        let key: [u8; 16] = h("000102030405060708090a0b0c0d0e0f")
            .try_into()
            .expect("16");
        let salt: [u8; 12] = h("517569642070726f2071756f").try_into().expect("12");
        let keys = Keys::Gcm {
            rtp: GcmKeys::from_session(&key, salt).expect("key"),
            rtcp: GcmKeys::from_session(&key, salt).expect("key"),
        };
        Context::from_keys(Profile::AeadAes128Gcm, keys, Config::default())
    }

    const RFC7714_RTP: &str = "8040f17b 8041f8d3 5501a0b2 47616c6c 69612065 7374206f
        6d6e6973 20646976 69736120 696e2070 61727465 73207472 6573";
    const RFC7714_RTCP: &str = "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a
        0000e930 4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef";
    const MARS: u32 = 0x4d61_7273;

    /// RFC 7714 §16.1.1 (encryption) and §16.1.2 (decryption), then a
    /// replay of the same packet.
    #[test]
    fn rfc7714_16_1_srtp_gcm128() {
        let want = h(
            "8040f17b 8041f8d3 5501a0b2 f24de3a3 fb34de6c acba861c 9d7e4bca
            be633bd5 0d294e6f 42a5f47a 51c7d19b 36de3adf 8833899d 7f27beb1 6a9152cf
            765ee439 0cce",
        );
        assert_eq!(
            rfc7714_context().keys_rtp_nonce(0x5501_a0b2, 0xf17b),
            h("51753c6580c2726f20718414")
        );
        let mut pkt = h(RFC7714_RTP);
        rfc7714_context().protect_rtp(&mut pkt).expect("protect");
        assert_eq!(pkt, want);

        let mut rx = rfc7714_context();
        rx.unprotect_rtp(&mut pkt).expect("unprotect");
        assert_eq!(pkt, h(RFC7714_RTP));
        let mut again = want.clone();
        assert_eq!(rx.unprotect_rtp(&mut again), Err(Error::Replayed));
        let mut forged = want;
        forged[20] ^= 1;
        assert_eq!(
            rfc7714_context().unprotect_rtp(&mut forged),
            Err(Error::AuthFailed)
        );
    }

    /// RFC 7714 §17.1 (SRTCP encryption, E = 1) and its decryption.
    #[test]
    fn rfc7714_17_1_srtcp_gcm128() {
        let want = h(
            "81c8000d 4d617273 63e94885 dcdab67c a727d766 2f6b7e99 7ff5c0f7
            6c06f32d c676a5f1 730d6fda 4ce09b46 86303ded 0bb9275b c84aa458 96cf4d2f
            c5abf872 45d9eade 800005d4",
        );
        let mut tx = rfc7714_context();
        tx.tx.entry(MARS).expect("room").rtcp_next = 0x5d4;
        let mut pkt = h(RFC7714_RTCP);
        tx.protect_rtcp(&mut pkt).expect("protect");
        assert_eq!(pkt, want);

        let mut rx = rfc7714_context();
        rx.unprotect_rtcp(&mut pkt).expect("unprotect");
        assert_eq!(pkt, h(RFC7714_RTCP));
        let mut again = want;
        assert_eq!(rx.unprotect_rtcp(&mut again), Err(Error::Replayed));
    }

    /// RFC 7714 §17.3 (SRTCP authentication only, E = 0) and its check.
    #[test]
    fn rfc7714_17_3_srtcp_gcm128_auth_only() {
        let want = h(
            "81c8000d 4d617273 4e545031 4e545032 52545020 0000042a 0000e930
            4c756e61 deadbeef deadbeef deadbeef deadbeef deadbeef 841dd968 3dd78ec9
            2ae58790 125f62b3 000005d4",
        );
        let mut tx = rfc7714_context();
        tx.config.encrypt_rtcp = false;
        tx.tx.entry(MARS).expect("room").rtcp_next = 0x5d4;
        let mut pkt = h(RFC7714_RTCP);
        tx.protect_rtcp(&mut pkt).expect("protect");
        assert_eq!(pkt, want);

        let mut rx = rfc7714_context();
        rx.unprotect_rtcp(&mut pkt).expect("unprotect");
        assert_eq!(pkt, h(RFC7714_RTCP));
        let mut forged = want;
        forged[9] ^= 0x80;
        let before = forged.clone();
        let mut fresh = rfc7714_context();
        assert_eq!(fresh.unprotect_rtcp(&mut forged), Err(Error::AuthFailed));
        assert_eq!(forged, before, "a refused packet is left as it was");
    }

    /// libsrtp's own reference packets (test/srtp_driver.c, srtp_validate):
    /// AES_CM_128_HMAC_SHA1_80 under the RFC 3711 B.3 master key and salt,
    /// through the whole path (key derivation, AES-CM, HMAC-SHA1-80). Its
    /// SRTCP index is 1.
    #[test]
    fn libsrtp_validate_cm_reference_packets() {
        let key = MasterKey::from_slice(&h("e1f97a0d3e018be0d64fa32c06de4139")).expect("key");
        let salt = MasterSalt::from_slice(&h("0ec675ad498afeebb6960b3aabe6")).expect("salt");
        let new = || Context::new(Profile::AesCm128HmacSha1_80, &key, &salt).expect("ctx");
        let rtp = h("800f1234 decafbad cafebabe abababab abababab abababab abababab");
        let srtp = h(
            "800f1234 decafbad cafebabe 4e55dc4c e79978d8 8ca4d215 949d2402
            b78d6acc 99ea179b 8dbb",
        );
        let mut p = rtp.clone();
        new().protect_rtp(&mut p).expect("protect");
        assert_eq!(p, srtp);
        new().unprotect_rtp(&mut p).expect("unprotect");
        assert_eq!(p, rtp);

        let rtcp = h("81c8000b cafebabe abababab abababab abababab abababab");
        let srtcp = h(
            "81c8000b cafebabe 7128035b e487b9bd bef89041 f977a5a8 80000001
            993e08cd 54d6c123 0798",
        );
        let mut tx = new();
        tx.tx.entry(0xcafe_babe).expect("room").rtcp_next = 1;
        let mut p = rtcp.clone();
        tx.protect_rtcp(&mut p).expect("protect");
        assert_eq!(p, srtcp);
        new().unprotect_rtcp(&mut p).expect("unprotect");
        assert_eq!(p, rtcp);
    }

    impl Context {
        fn keys_rtp_nonce(&self, ssrc: u32, index: u64) -> Vec<u8> {
            let Keys::Gcm { rtp, .. } = &self.keys else {
                return Vec::new();
            };
            let mut n = [0u8; 12];
            n[2..6].copy_from_slice(&ssrc.to_be_bytes());
            n[6..12].copy_from_slice(&index.to_be_bytes()[2..]);
            xor(&mut n, &rtp.salt);
            n.to_vec()
        }
    }

    fn pair(profile: Profile) -> (Context, Context) {
        let key = MasterKey::new([7; 16]);
        let salt = MasterSalt::from_slice(&[9; 14][..profile.master_salt_len()]).expect("salt");
        (
            Context::new(profile, &key, &salt).expect("ctx"),
            Context::new(profile, &key, &salt).expect("ctx"),
        )
    }

    fn rtp(seq: u16, ssrc: u32, payload: &[u8]) -> Vec<u8> {
        let mut p = vec![0x80, 0x00];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&1234u32.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(payload);
        p
    }

    const PROFILES: [Profile; 2] = [Profile::AesCm128HmacSha1_80, Profile::AeadAes128Gcm];

    #[test]
    fn roundtrip_across_roc_wrap_with_reordering() {
        for profile in PROFILES {
            let (mut tx, mut rx) = pair(profile);
            let seqs: Vec<u16> = (65530u16..=65535).chain(0..5).collect();
            let mut wire = Vec::new();
            for &s in &seqs {
                let mut p = rtp(s, 0xabc, &[s as u8; 160]);
                tx.protect_rtp(&mut p).expect("protect");
                assert_eq!(p.len(), 12 + 160 + profile.rtp_trailer_len());
                wire.push(p);
            }
            assert_eq!(tx.tx_roc(0xabc), Some(1));
            // Deliver 65535 after 0 and 1 of the next ROC.
            wire.swap(5, 7);
            for p in wire.iter_mut() {
                let s = RtpPacket::new_checked(&p[..])
                    .expect("rtp")
                    .sequence_number();
                rx.unprotect_rtp(p).expect("unprotect");
                assert_eq!(*p, rtp(s, 0xabc, &[s as u8; 160]), "{profile:?} {s}");
            }
            assert_eq!(rx.rx_roc(0xabc), Some(1));
        }
    }

    #[test]
    fn sender_refuses_index_reuse() {
        for profile in PROFILES {
            let (mut tx, _) = pair(profile);
            let mut p = rtp(10, 1, b"abc");
            tx.protect_rtp(&mut p).expect("protect");
            let mut p = rtp(10, 1, b"abc");
            assert_eq!(tx.protect_rtp(&mut p), Err(Error::Replayed));
            assert_eq!(p, rtp(10, 1, b"abc"));
        }
    }

    #[test]
    fn replay_window_rtp_and_rtcp() {
        for profile in PROFILES {
            let (mut tx, mut rx) = pair(profile);
            let mut wire = Vec::new();
            for s in 0..200u16 {
                let mut p = rtp(s, 5, b"x");
                tx.protect_rtp(&mut p).expect("protect");
                wire.push(p);
            }
            let mut last = wire[199].clone();
            rx.unprotect_rtp(&mut last).expect("newest");
            let mut inside = wire[199 - 127].clone();
            rx.unprotect_rtp(&mut inside).expect("inside the window");
            let mut again = wire[199 - 127].clone();
            assert_eq!(rx.unprotect_rtp(&mut again), Err(Error::Replayed));
            let mut old = wire[199 - 128].clone();
            assert_eq!(rx.unprotect_rtp(&mut old), Err(Error::TooOld));

            let rtcp = h("80c90001 00000005");
            let mut a = rtcp.clone();
            tx.protect_rtcp(&mut a).expect("protect");
            assert_eq!(a.len(), 8 + profile.rtcp_trailer_len());
            let mut b = a.clone();
            rx.unprotect_rtcp(&mut a).expect("unprotect");
            assert_eq!(a, rtcp);
            assert_eq!(rx.unprotect_rtcp(&mut b), Err(Error::Replayed));
        }
    }

    #[test]
    fn forged_packets_leave_no_state() {
        for profile in PROFILES {
            let (mut tx, mut rx) = pair(profile);
            let mut p = rtp(1, 9, &[0; 20]);
            tx.protect_rtp(&mut p).expect("protect");
            for i in 0..p.len() {
                let mut f = p.clone();
                f[i] ^= 0x01;
                let r = rx.unprotect_rtp(&mut f);
                assert!(r.is_err(), "{profile:?} flip at {i} accepted");
            }
            assert_eq!(rx.stream_count(), (0, 0));
            rx.unprotect_rtp(&mut p).expect("genuine");
            assert_eq!(rx.stream_count(), (0, 1));
        }
    }

    #[test]
    fn streams_are_bounded() {
        for profile in PROFILES {
            let key = MasterKey::new([1; 16]);
            let salt = MasterSalt::from_slice(&[2; 14][..profile.master_salt_len()]).expect("s");
            let config = Config {
                max_streams: 2,
                encrypt_rtcp: true,
            };
            let mut tx = Context::with_config(profile, &key, &salt, config).expect("ctx");
            let mut rx = Context::with_config(profile, &key, &salt, config).expect("ctx");
            let mut wire = Vec::new();
            for ssrc in 1..=2 {
                let mut p = rtp(0, ssrc, b"v");
                tx.protect_rtp(&mut p).expect("protect");
                wire.push(p);
            }
            let mut third = rtp(0, 3, b"v");
            assert_eq!(tx.protect_rtp(&mut third), Err(Error::TooManyStreams));
            for p in wire.iter_mut() {
                rx.unprotect_rtp(p).expect("unprotect");
            }
            let mut big = Context::new(profile, &key, &salt).expect("ctx");
            let mut p = rtp(0, 3, b"v");
            big.protect_rtp(&mut p).expect("protect");
            assert_eq!(rx.unprotect_rtp(&mut p), Err(Error::TooManyStreams));
            rx.remove_stream(1);
            rx.unprotect_rtp(&mut p).expect("room again");
        }
    }

    #[test]
    fn malformed_input_is_an_error() {
        for profile in PROFILES {
            let (_, mut rx) = pair(profile);
            for len in 0..64 {
                for fill in [0x00u8, 0x80, 0x90, 0x9f, 0xff] {
                    let mut p = vec![fill; len];
                    assert!(rx.unprotect_rtp_in_place(&mut p).is_err());
                    assert!(rx.unprotect_rtcp_in_place(&mut p).is_err());
                }
            }
            // Header extension longer than the packet.
            let mut p = rtp(0, 1, &[0xbe, 0xde, 0xff, 0xff]);
            p[0] |= 0x10;
            p.extend_from_slice(&[0; 16]);
            assert_eq!(rx.unprotect_rtp(&mut p), Err(Error::Truncated));
            let mut v1 = rtp(0, 1, &[0; 40]);
            v1[0] = 0x40;
            assert_eq!(rx.unprotect_rtp(&mut v1), Err(Error::BadVersion));
            let (mut tx, _) = pair(profile);
            let mut small = [0u8; 20];
            small[..12].copy_from_slice(&rtp(0, 1, &[])[..]);
            // 12 + 10 (or 16) octets do not fit in 20.
            assert_eq!(
                tx.protect_rtp_in_place(&mut small, 12),
                Err(Error::BufferTooSmall)
            );
            assert_eq!(
                tx.protect_rtp_in_place(&mut small, 21),
                Err(Error::BufferTooSmall)
            );
        }
    }

    #[test]
    fn srtcp_authentication_only_roundtrip() {
        for profile in PROFILES {
            let key = MasterKey::new([4; 16]);
            let salt = MasterSalt::from_slice(&[6; 14][..profile.master_salt_len()]).expect("s");
            let config = Config {
                encrypt_rtcp: false,
                ..Config::default()
            };
            let mut tx = Context::with_config(profile, &key, &salt, config).expect("ctx");
            let mut rx = Context::new(profile, &key, &salt).expect("ctx");
            let plain = h("80c90001 00000042 81ca0003 00000042 01047573 65720000");
            let mut p = plain.clone();
            tx.protect_rtcp(&mut p).expect("protect");
            assert_eq!(
                &p[..plain.len()],
                &plain[..],
                "{profile:?}: sent in the clear"
            );
            let word = &p[p.len() - profile.rtcp_trailer_len()..];
            let word = match profile {
                Profile::AesCm128HmacSha1_80 => &word[..4],
                Profile::AeadAes128Gcm => &word[16..],
            };
            assert_eq!(word, [0, 0, 0, 0], "{profile:?}: E = 0, index 0");
            let mut forged = p.clone();
            forged[12] ^= 1;
            let before = forged.clone();
            assert_eq!(rx.unprotect_rtcp(&mut forged), Err(Error::AuthFailed));
            assert_eq!(
                forged, before,
                "{profile:?}: a refused packet is left as it was"
            );
            rx.unprotect_rtcp(&mut p).expect("unprotect");
            assert_eq!(p, plain);
        }
    }

    #[test]
    fn salt_length_must_fit_the_profile() {
        let key = MasterKey::new([0; 16]);
        let salt14 = MasterSalt::from_slice(&[0; 14]).expect("14");
        assert_eq!(
            Context::new(Profile::AeadAes128Gcm, &key, &salt14).map(|_| ()),
            Err(Error::SaltLength {
                expected: 12,
                got: 14
            })
        );
        assert!(MasterSalt::from_slice(&[0; 13]).is_err());
        assert!(MasterKey::from_slice(&[0; 15]).is_err());
    }
}
