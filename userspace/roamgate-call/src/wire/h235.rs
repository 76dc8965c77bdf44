//! H.235 tokens (module H235-SECURITY-MESSAGES, H.235.0 09/2005) and the
//! H.235.1 style integrity protection of every call signalling message.
//!
//! # The hashed token
//!
//! Each message carries, in the UUIE's `cryptoTokens`, one
//! `nestedcryptoToken` → `cryptoHashedToken`:
//!
//! - `tokenOID` = [`OID_A`] `{itu-t(0) recommendation(0) h(8) 235 version(0) 2 1}`
//!   ("A": the hash covers all fields of the RAS/call signalling message);
//! - `hashedVals` = a ClearToken with `tokenOID` = [`OID_T`]
//!   `{0 0 8 235 0 2 5}` ("T": ClearToken), `timeStamp` (seconds since
//!   1970), `random` (a per-call sequence number), `generalID` (the
//!   receiver's identity) and `sendersID` (the sender's identity): the
//!   replay protection, checked by the call state machine;
//! - `token` = HASHED { `algorithmOID` = [`OID_U`] `{0 0 8 235 0 2 6}` ("U":
//!   HMAC-SHA1-96), `paramS` = {}, `hash` = 96 bits }.
//!
//! These are the object identifiers of H.235.1 (09/2005) Table 3 (Annex D of
//! H.235 v2), the ones wireshark's H.235 dissector names.
//!
//! The hash is HMAC-SHA1-96 (the first 12 bytes of HMAC-SHA1, H.235.1 §8)
//! under the key of the Kerberos AP exchange, computed over the whole
//! message as sent (TPKT, Q.931 and the PER H323-UserInformation) with the
//! 96 hash bits zero, then patched in. [`verify`] zeroes the hash bytes of
//! the received message in place, recomputes the HMAC over all of it and
//! compares in constant time.
//!
//! # The Kerberos carrier
//!
//! The AP-REQ / AP-REP DER travels in `tokens` as a ClearToken whose
//! `tokenOID` is [`OID_KERBEROS`] 1.2.840.113554.1.2.2 (the Kerberos V5 GSS
//! mechanism, RFC 1964) and whose `nonStandard` NonStandardParameter has the
//! same object identifier and the DER as `data`
//! ([`CallMessage::kerberos_token`](super::CallMessage::kerberos_token)).

use rasn::prelude::*;
use ring::hmac;

use super::h225::CallMessage;
use super::h245::Unused;
use super::Error;

/// "A": CryptoToken tokenOID, the hash covers all fields (H.235.1 Table 3).
pub const OID_A: &Oid = Oid::const_new(&[0, 0, 8, 235, 0, 2, 1]);
/// "T": ClearToken tokenOID inside hashedVals (H.235.1 Table 3).
pub const OID_T: &Oid = Oid::const_new(&[0, 0, 8, 235, 0, 2, 5]);
/// "U": HMAC-SHA1-96 (H.235.1 Table 3).
pub const OID_U: &Oid = Oid::const_new(&[0, 0, 8, 235, 0, 2, 6]);
/// The Kerberos V5 GSS-API mechanism (RFC 1964 §1).
pub const OID_KERBEROS: &Oid = Oid::const_new(&[1, 2, 840, 113554, 1, 2, 2]);

/// HMAC-SHA1-96: 12 bytes.
pub const HASH_LEN: usize = 12;

/// ClearToken ::= SEQUENCE { tokenOID, timeStamp, password, dhkey,
/// challenge, random, certificate, generalID, nonStandard, ..., eckasdhkey,
/// sendersID, h235Key, profileInfo }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
pub struct ClearToken {
    pub token_oid: ObjectIdentifier,
    /// TimeStamp ::= INTEGER (1..4294967295)
    #[rasn(value("1..=4294967295"))]
    pub time_stamp: Option<u64>,
    pub password: Option<Unused>,
    pub dhkey: Option<Unused>,
    pub challenge: Option<Unused>,
    /// RandomVal ::= INTEGER
    pub random: Option<Integer>,
    pub certificate: Option<Unused>,
    /// Identifier ::= BMPString (SIZE (1..128))
    #[rasn(size("1..=128"))]
    pub general_id: Option<BmpString>,
    pub non_standard: Option<NonStandardParameter>,
    #[rasn(extension_addition)]
    pub eckasdhkey: Option<Unused>,
    #[rasn(extension_addition, size("1..=128"))]
    pub senders_id: Option<BmpString>,
}

impl ClearToken {
    pub fn new(token_oid: &Oid) -> Self {
        Self {
            token_oid: token_oid.to_owned(),
            time_stamp: None,
            password: None,
            dhkey: None,
            challenge: None,
            random: None,
            certificate: None,
            general_id: None,
            non_standard: None,
            eckasdhkey: None,
            senders_id: None,
        }
    }
}

/// NonStandardParameter ::= SEQUENCE { nonStandardIdentifier OBJECT
/// IDENTIFIER, data OCTET STRING } (the H.235 one).
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
pub struct NonStandardParameter {
    pub non_standard_identifier: ObjectIdentifier,
    pub data: OctetString,
}

/// CryptoToken ::= CHOICE { cryptoEncryptedToken, cryptoSignedToken,
/// cryptoHashedToken, cryptoPwdEncr, ... }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(choice, automatic_tags)]
#[non_exhaustive]
pub enum CryptoToken {
    CryptoEncryptedToken(Unused),
    CryptoSignedToken(Unused),
    CryptoHashedToken(Box<CryptoHashedToken>),
    CryptoPwdEncr(Unused),
}

/// cryptoHashedToken SEQUENCE { tokenOID, hashedVals ClearToken, token
/// HASHED {EncodedGeneralToken} }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
pub struct CryptoHashedToken {
    pub token_oid: ObjectIdentifier,
    pub hashed_vals: ClearToken,
    pub token: Hashed,
}

/// HASHED {ToBeHashed} ::= SEQUENCE { algorithmOID, paramS Params, hash BIT
/// STRING }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
pub struct Hashed {
    pub algorithm_oid: ObjectIdentifier,
    pub params: Params,
    pub hash: BitString,
}

/// Params ::= SEQUENCE { ranInt INTEGER OPTIONAL, iv8 IV8 OPTIONAL, ...,
/// iv16, iv, clearSalt }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq, Default)]
#[rasn(automatic_tags)]
#[non_exhaustive]
pub struct Params {
    pub ran_int: Option<Integer>,
    pub iv8: Option<FixedOctetString<8>>,
}

/// The replay-protection fields of the hashed token (its `hashedVals`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenFields {
    /// Seconds since 1970-01-01 UTC (must be non-zero).
    pub timestamp: u32,
    /// The per-call sequence number.
    pub random: u32,
    /// The receiver's identity.
    pub general_id: String,
    /// The sender's identity.
    pub senders_id: String,
}

/// The hashed token of a message: its fields and the 96-bit hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Integrity {
    pub fields: TokenFields,
    pub hash: [u8; HASH_LEN],
}

fn bmp(s: &str, what: &'static str) -> Result<BmpString, Error> {
    // SIZE (1..128) counts 16-bit units.
    let n = s.encode_utf16().count();
    if !(1..=128).contains(&n) {
        return Err(Error::InvalidField(what));
    }
    // rasn reads the bytes of a BMPString as big-endian UTF-16 units.
    let units: Vec<u8> = s.encode_utf16().flat_map(u16::to_be_bytes).collect();
    BmpString::try_from(units).map_err(|_| Error::InvalidField(what))
}

fn from_bmp(b: &BmpString) -> String {
    char::decode_utf16(b.clone().into_vec())
        .map(|c| c.unwrap_or(char::REPLACEMENT_CHARACTER))
        .collect()
}

impl Integrity {
    pub(crate) fn to_crypto_token(&self) -> Result<CryptoToken, Error> {
        if self.fields.timestamp == 0 {
            return Err(Error::InvalidField("token timeStamp"));
        }
        let mut vals = ClearToken::new(OID_T);
        vals.time_stamp = Some(u64::from(self.fields.timestamp));
        vals.random = Some(Integer::from(i64::from(self.fields.random)));
        vals.general_id = Some(bmp(&self.fields.general_id, "token generalID")?);
        vals.senders_id = Some(bmp(&self.fields.senders_id, "token sendersID")?);
        Ok(CryptoToken::CryptoHashedToken(Box::new(
            CryptoHashedToken {
                token_oid: OID_A.to_owned(),
                hashed_vals: vals,
                token: Hashed {
                    algorithm_oid: OID_U.to_owned(),
                    params: Params::default(),
                    hash: BitString::from_slice(&self.hash),
                },
            },
        )))
    }

    pub(crate) fn from_crypto_token(t: &CryptoToken) -> Result<Self, Error> {
        let CryptoToken::CryptoHashedToken(h) = t else {
            return Err(Error::NoIntegrityToken);
        };
        if *h.token_oid != *OID_A
            || *h.hashed_vals.token_oid != *OID_T
            || *h.token.algorithm_oid != *OID_U
        {
            return Err(Error::WrongTokenOid);
        }
        let v = &h.hashed_vals;
        let timestamp = v
            .time_stamp
            .and_then(|t| u32::try_from(t).ok())
            .ok_or(Error::MissingField("token timeStamp"))?;
        let random = v
            .random
            .as_ref()
            .and_then(|r| i64::try_from(r.clone()).ok())
            .and_then(|r| u32::try_from(r).ok())
            .ok_or(Error::MissingField("token random"))?;
        let general_id = v
            .general_id
            .as_ref()
            .map(from_bmp)
            .ok_or(Error::MissingField("token generalID"))?;
        let senders_id = v
            .senders_id
            .as_ref()
            .map(from_bmp)
            .ok_or(Error::MissingField("token sendersID"))?;
        let bits = &h.token.hash;
        if bits.len() != HASH_LEN * 8 {
            return Err(Error::InvalidField("token hash"));
        }
        let mut hash = [0u8; HASH_LEN];
        hash.copy_from_slice(bits.as_raw_slice());
        Ok(Self {
            fields: TokenFields {
                timestamp,
                random,
                general_id,
                senders_id,
            },
            hash,
        })
    }
}

/// The Kerberos carrier ClearToken.
pub(crate) fn kerberos_clear_token(der: &[u8]) -> ClearToken {
    let mut t = ClearToken::new(OID_KERBEROS);
    t.non_standard = Some(NonStandardParameter {
        non_standard_identifier: OID_KERBEROS.to_owned(),
        data: OctetString::from(der.to_vec()),
    });
    t
}

/// The Kerberos DER of a ClearToken, if it is the carrier.
pub(crate) fn kerberos_der(t: &ClearToken) -> Option<&[u8]> {
    if *t.token_oid != *OID_KERBEROS {
        return None;
    }
    let ns = t.non_standard.as_ref()?;
    (*ns.non_standard_identifier == *OID_KERBEROS).then_some(&ns.data[..])
}

fn hmac96(key: &[u8], data: &[u8]) -> [u8; HASH_LEN] {
    let k = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
    let tag = hmac::sign(&k, data);
    let mut out = [0u8; HASH_LEN];
    out.copy_from_slice(&tag.as_ref()[..HASH_LEN]);
    out
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Encodes `msg` with a hashed token of `fields` under `key`: the whole
/// message with the hash zero, HMAC-SHA1-96 over it, the hash patched in.
pub fn sign(msg: &CallMessage, fields: &TokenFields, key: &[u8]) -> Result<Vec<u8>, Error> {
    let mut m = msg.clone();
    m.integrity = Some(Integrity {
        fields: fields.clone(),
        hash: [0; HASH_LEN],
    });
    let zeroed = m.to_bytes()?;
    let hash = hmac96(key, &zeroed);
    if let Some(i) = m.integrity.as_mut() {
        i.hash = hash;
    }
    let signed = m.to_bytes()?;
    // The hash is a fixed-size field: only its 12 bytes differ.
    if signed.len() != zeroed.len() {
        return Err(Error::Encode("hash changed the message length".into()));
    }
    Ok(signed)
}

/// Parses `bytes` and checks its hashed token under `key`; returns the
/// message and the token's fields, whose freshness the caller checks.
///
/// The HMAC is recomputed over the received bytes with the hash's 12 bytes
/// zeroed in place (in aligned PER a 96-bit BIT STRING is octet-aligned, so
/// the hash is whole bytes of the message), so every byte received is
/// covered, whether roamgate's decoder reads it or skips it.
pub fn verify_message(bytes: &[u8], key: &[u8]) -> Result<(CallMessage, TokenFields), Error> {
    let msg = CallMessage::parse(bytes)?;
    let Some(integrity) = msg.integrity.clone() else {
        return Err(Error::NoIntegrityToken);
    };
    // The cryptoTokens come after the tokens (and the Kerberos bytes): the
    // last occurrence is the hash field.
    let pos = bytes
        .windows(HASH_LEN)
        .rposition(|w| w == integrity.hash)
        .ok_or(Error::NotCanonical)?;
    let mut zeroed = bytes.to_vec();
    zeroed[pos..pos + HASH_LEN].fill(0);
    let expected = hmac96(key, &zeroed);
    if !ct_eq(&expected, &integrity.hash) {
        return Err(Error::IntegrityFailed);
    }
    Ok((msg, integrity.fields))
}

/// [`verify_message`], the token's fields only.
pub fn verify(bytes: &[u8], key: &[u8]) -> Result<TokenFields, Error> {
    verify_message(bytes, key).map(|(_, f)| f)
}
