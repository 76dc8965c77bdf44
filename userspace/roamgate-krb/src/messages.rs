//! RFC 4120 messages: thin glue over `rasn-kerberos` (DER via `rasn`).
//!
//! The ASN.1 types themselves are re-exported from [`rasn_kerberos`] as
//! [`asn`]. This module adds what every user of them needs:
//!
//! - [`encode`] / [`decode`] with typed errors ([`MessageError`]): a
//!   truncated message, malformed DER and the wrong application tag are told
//!   apart, so that a KDC can answer each properly and a fuzzer never panics.
//! - [`KerberosTime`] <-> [`SystemTime`] (second precision, `YYYYMMDDHHMMSSZ`).
//! - [`Principal`] <-> ([`PrincipalName`], realm).
//! - [`seal`] / [`open`]: DER-encode and encrypt a value into an
//!   [`EncryptedData`] under a key usage, and the reverse, checking the etype.
//! - 32-bit `KerberosFlags` as `u32` bit masks (RFC 4120 numbers bit 0 as the
//!   most significant bit).
//! - KRB-ERROR building and recognising, message-type peeking, nonces.
//!
//! Nothing here panics on bad input.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use rasn::types::{Integer, OctetString};
pub use rasn_kerberos as asn;
use rasn_kerberos::{
    Checksum, EncryptedData, EncryptionKey, KdcOptions, KerberosFlags, KerberosString,
    KerberosTime, KrbError, PaData, PrincipalName, TicketFlags,
};

use zeroize::{Zeroize as _, Zeroizing};

use crate::principal::Principal;

/// Protocol version number, RFC 4120 `pvno`.
pub const PVNO: i64 = 5;

/// Message types (`msg-type`), RFC 4120 §7.5.7.
pub mod msg_type {
    pub const AS_REQ: i64 = 10;
    pub const AS_REP: i64 = 11;
    pub const TGS_REQ: i64 = 12;
    pub const TGS_REP: i64 = 13;
    pub const AP_REQ: i64 = 14;
    pub const AP_REP: i64 = 15;
    pub const KRB_SAFE: i64 = 20;
    pub const KRB_PRIV: i64 = 21;
    pub const KRB_CRED: i64 = 22;
    pub const KRB_ERROR: i64 = 30;
}

/// Pre-authentication data types, RFC 4120 §7.5.2 and later RFCs.
pub mod pa_type {
    pub const TGS_REQ: i32 = 1;
    pub const ENC_TIMESTAMP: i32 = 2;
    pub const PW_SALT: i32 = 3;
    pub const ETYPE_INFO: i32 = 11;
    pub const ETYPE_INFO2: i32 = 19;
    pub const PAC_REQUEST: i32 = 128;
    pub const FX_COOKIE: i32 = 133;
    pub const FX_FAST: i32 = 136;
    pub const ENCRYPTED_CHALLENGE: i32 = 138;
    pub const REQ_ENC_PA_REP: i32 = 149;
    pub const ENC_PA_REP: i32 = 149;
}

/// Error codes, RFC 4120 §7.5.9.
pub mod error_code {
    /// Declares each code once: the constant, and its name for [`name`].
    macro_rules! error_codes {
        ($($name:ident = $code:literal,)*) => {
            $(pub const $name: i32 = $code;)*

            /// The spec's own name for an error code, for messages and logs.
            pub fn name(code: i32) -> &'static str {
                match code {
                    $($name => stringify!($name),)*
                    _ => "unknown Kerberos error",
                }
            }
        };
    }

    error_codes! {
        KDC_ERR_NONE = 0,
        KDC_ERR_NAME_EXP = 1,
        KDC_ERR_SERVICE_EXP = 2,
        KDC_ERR_BAD_PVNO = 3,
        KDC_ERR_C_PRINCIPAL_UNKNOWN = 6,
        KDC_ERR_S_PRINCIPAL_UNKNOWN = 7,
        KDC_ERR_PRINCIPAL_NOT_UNIQUE = 8,
        KDC_ERR_NULL_KEY = 9,
        KDC_ERR_CANNOT_POSTDATE = 10,
        KDC_ERR_NEVER_VALID = 11,
        KDC_ERR_POLICY = 12,
        KDC_ERR_BADOPTION = 13,
        KDC_ERR_ETYPE_NOSUPP = 14,
        KDC_ERR_SUMTYPE_NOSUPP = 15,
        KDC_ERR_PADATA_TYPE_NOSUPP = 16,
        KDC_ERR_TRTYPE_NOSUPP = 17,
        KDC_ERR_CLIENT_REVOKED = 18,
        KDC_ERR_SERVICE_REVOKED = 19,
        KDC_ERR_TGT_REVOKED = 20,
        KDC_ERR_CLIENT_NOTYET = 21,
        KDC_ERR_SERVICE_NOTYET = 22,
        KDC_ERR_KEY_EXPIRED = 23,
        KDC_ERR_PREAUTH_FAILED = 24,
        KDC_ERR_PREAUTH_REQUIRED = 25,
        KDC_ERR_SERVER_NOMATCH = 26,
        KDC_ERR_MUST_USE_USER2USER = 27,
        KDC_ERR_PATH_NOT_ACCEPTED = 28,
        KDC_ERR_SVC_UNAVAILABLE = 29,
        KRB_AP_ERR_BAD_INTEGRITY = 31,
        KRB_AP_ERR_TKT_EXPIRED = 32,
        KRB_AP_ERR_TKT_NYV = 33,
        KRB_AP_ERR_REPEAT = 34,
        KRB_AP_ERR_NOT_US = 35,
        KRB_AP_ERR_BADMATCH = 36,
        KRB_AP_ERR_SKEW = 37,
        KRB_AP_ERR_BADADDR = 38,
        KRB_AP_ERR_BADVERSION = 39,
        KRB_AP_ERR_MSG_TYPE = 40,
        KRB_AP_ERR_MODIFIED = 41,
        KRB_AP_ERR_BADORDER = 42,
        KRB_AP_ERR_BADKEYVER = 44,
        KRB_AP_ERR_NOKEY = 45,
        KRB_AP_ERR_MUT_FAIL = 46,
        KRB_AP_ERR_BADDIRECTION = 47,
        KRB_AP_ERR_METHOD = 48,
        KRB_AP_ERR_BADSEQ = 49,
        KRB_AP_ERR_INAPP_CKSUM = 50,
        KRB_AP_PATH_NOT_ACCEPTED = 51,
        KRB_ERR_RESPONSE_TOO_BIG = 52,
        KRB_ERR_GENERIC = 60,
        KRB_ERR_FIELD_TOOLONG = 61,
        KDC_ERR_WRONG_REALM = 68,
    }
}

/// The `u32` mask of bit `n` of a 32-bit KerberosFlags, which RFC 4120
/// numbers from the most significant bit: `1 << (31 - n)`.
const fn flag_bit(n: u32) -> u32 {
    1 << (31 - n)
}

/// Ticket flags (RFC 4120 §5.3) as `u32` masks (see [`flag_bit`]).
pub mod ticket_flags {
    use super::flag_bit as bit;

    pub const FORWARDABLE: u32 = bit(1);
    pub const FORWARDED: u32 = bit(2);
    pub const PROXIABLE: u32 = bit(3);
    pub const PROXY: u32 = bit(4);
    pub const MAY_POSTDATE: u32 = bit(5);
    pub const POSTDATED: u32 = bit(6);
    pub const INVALID: u32 = bit(7);
    pub const RENEWABLE: u32 = bit(8);
    pub const INITIAL: u32 = bit(9);
    pub const PRE_AUTHENT: u32 = bit(10);
    pub const HW_AUTHENT: u32 = bit(11);
    pub const TRANSITED_POLICY_CHECKED: u32 = bit(12);
    pub const OK_AS_DELEGATE: u32 = bit(13);
}

/// KDC options (RFC 4120 §5.4.1) as `u32` masks.
pub mod kdc_options {
    use super::flag_bit as bit;

    pub const FORWARDABLE: u32 = bit(1);
    pub const FORWARDED: u32 = bit(2);
    pub const PROXIABLE: u32 = bit(3);
    pub const PROXY: u32 = bit(4);
    pub const ALLOW_POSTDATE: u32 = bit(5);
    pub const POSTDATED: u32 = bit(6);
    pub const RENEWABLE: u32 = bit(8);
    pub const CANONICALIZE: u32 = bit(15);
    pub const DISABLE_TRANSITED_CHECK: u32 = bit(26);
    pub const RENEWABLE_OK: u32 = bit(27);
    pub const ENC_TKT_IN_SKEY: u32 = bit(28);
    pub const RENEW: u32 = bit(30);
    pub const VALIDATE: u32 = bit(31);
}

/// AP options (RFC 4120 §5.5.1) as `u32` masks.
pub mod ap_options {
    use super::flag_bit as bit;

    pub const USE_SESSION_KEY: u32 = bit(1);
    pub const MUTUAL_REQUIRED: u32 = bit(2);
}

/// What went wrong turning bytes into a message, or a message into bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    #[error("empty message where {expected} was expected")]
    Empty { expected: &'static str },
    #[error("truncated {expected}: the header announces {needed} bytes, only {have} present")]
    Truncated {
        expected: &'static str,
        needed: usize,
        have: usize,
    },
    #[error(
        "expected {expected} but the message starts with tag byte {found:#04x} ({found_name})"
    )]
    WrongTag {
        expected: &'static str,
        found: u8,
        found_name: &'static str,
    },
    #[error("malformed DER in {expected}: {reason}")]
    BadDer {
        expected: &'static str,
        reason: String,
    },
    #[error("{field} {value:?} is not a valid KerberosString")]
    BadString { field: &'static str, value: String },
    #[error("principal name in {field} is not UTF-8 or is empty")]
    BadPrincipalName { field: &'static str },
    #[error("time {0:?} cannot be represented as KerberosTime")]
    TimeOutOfRange(SystemTime),
    #[error("{what} is encrypted with etype {found}, but the key is etype {expected}")]
    EtypeMismatch {
        what: &'static str,
        expected: i32,
        found: i32,
    },
    #[error("unsupported encryption type {0}")]
    UnsupportedEtype(i32),
    #[error("encryption key of etype {etype} has the wrong length {len}")]
    BadKey { etype: i32, len: usize },
    #[error("decrypting {what} failed: integrity check failed (wrong key or modified message)")]
    Decrypt { what: &'static str },
    #[error("{what} has checksum type {found}, the key's is {expected}")]
    ChecksumType {
        what: &'static str,
        expected: i32,
        found: i32,
    },
    #[error("checksum over {what} does not verify (modified message or wrong key)")]
    BadChecksum { what: &'static str },
    #[error("no random numbers available from the operating system")]
    Random,
}

impl MessageError {
    /// True when a sealed part did not open with the key: it was modified,
    /// or sealed with another key or etype.
    pub fn is_integrity_failure(&self) -> bool {
        matches!(
            self,
            MessageError::Decrypt { .. } | MessageError::EtypeMismatch { .. }
        )
    }
}

/// Short name of a type for error messages (`AsReq`, not the full path).
fn type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    full.rsplit("::").next().unwrap_or(full)
}

/// DER-encodes a Kerberos ASN.1 value.
pub fn encode<T: rasn::Encode>(value: &T) -> Vec<u8> {
    // The rasn-kerberos types carry no size or value constraints, and
    // their strings are validated when built, so DER encoding cannot fail.
    rasn::der::encode(value).unwrap_or_else(|e| {
        unreachable!(
            "DER encoding of {} failed: {e}; rasn-kerberos types have no constraints",
            type_name::<T>()
        )
    })
}

/// Reads the outer identifier and length of a DER TLV. Returns the
/// identifier's first byte and the total length the header announces, or
/// `None` when the header itself is cut short or uses the indefinite form.
fn outer_tlv(input: &[u8]) -> Option<(u8, Option<usize>)> {
    let first = *input.first()?;
    let mut pos = 1;
    if first & 0x1f == 0x1f {
        // High tag number form: continuation bytes while bit 8 is set.
        loop {
            let b = *input.get(pos)?;
            pos += 1;
            if b & 0x80 == 0 {
                break;
            }
            if pos > 6 {
                return Some((first, None));
            }
        }
    }
    let len0 = *input.get(pos)?;
    pos += 1;
    let len = if len0 & 0x80 == 0 {
        usize::from(len0)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 4 {
            // Indefinite length (not DER) or absurd: let rasn report it.
            return Some((first, None));
        }
        let bytes = input.get(pos..pos + n)?;
        pos += n;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    Some((first, pos.checked_add(len)))
}

/// The identifier byte a value of type `T` starts with, for the
/// constructed application and SEQUENCE tags Kerberos messages use.
fn expected_first_byte<T: rasn::AsnType>() -> Option<u8> {
    use rasn::types::{Class, Tag};
    let tag = T::TAG;
    if tag.class == Class::Application && tag.value < 31 {
        // Value bounded above by 30, so the cast is lossless.
        Some(0x60 | tag.value as u8)
    } else if tag.const_eq(&Tag::SEQUENCE) {
        Some(0x30)
    } else {
        None
    }
}

/// Names the Kerberos message an identifier byte starts, for errors.
pub fn tag_name(first: u8) -> &'static str {
    match first {
        0x61 => "Ticket",
        0x62 => "Authenticator",
        0x63 => "EncTicketPart",
        0x6a => "AS-REQ",
        0x6b => "AS-REP",
        0x6c => "TGS-REQ",
        0x6d => "TGS-REP",
        0x6e => "AP-REQ",
        0x6f => "AP-REP",
        0x74 => "KRB-SAFE",
        0x75 => "KRB-PRIV",
        0x76 => "KRB-CRED",
        0x79 => "EncASRepPart",
        0x7a => "EncTGSRepPart",
        0x7b => "EncAPRepPart",
        0x7c => "EncKrbPrivPart",
        0x7d => "EncKrbCredPart",
        0x7e => "KRB-ERROR",
        0x30 => "SEQUENCE",
        _ => "not a Kerberos message",
    }
}

/// DER-decodes a Kerberos ASN.1 value, with the whole input consumed.
pub fn decode<T: rasn::Decode>(input: &[u8]) -> Result<T, MessageError> {
    let expected = type_name::<T>();
    match outer_tlv(input) {
        None if input.is_empty() => return Err(MessageError::Empty { expected }),
        None => {
            return Err(MessageError::Truncated {
                expected,
                needed: input.len() + 1,
                have: input.len(),
            })
        }
        Some((first, total)) => {
            if let Some(want) = expected_first_byte::<T>() {
                if first != want {
                    return Err(MessageError::WrongTag {
                        expected,
                        found: first,
                        found_name: tag_name(first),
                    });
                }
            }
            if let Some(needed) = total {
                if needed > input.len() {
                    return Err(MessageError::Truncated {
                        expected,
                        needed,
                        have: input.len(),
                    });
                }
            }
        }
    }
    rasn::der::decode::<T>(input).map_err(|e| MessageError::BadDer {
        expected,
        reason: e.to_string(),
    })
}

/// Which Kerberos message a buffer holds, from its first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    AsReq,
    AsRep,
    TgsReq,
    TgsRep,
    ApReq,
    ApRep,
    KrbSafe,
    KrbPriv,
    KrbCred,
    KrbError,
}

impl MessageKind {
    /// Peeks at the application tag; `None` for anything else.
    pub fn of(input: &[u8]) -> Option<Self> {
        Some(match *input.first()? {
            0x6a => Self::AsReq,
            0x6b => Self::AsRep,
            0x6c => Self::TgsReq,
            0x6d => Self::TgsRep,
            0x6e => Self::ApReq,
            0x6f => Self::ApRep,
            0x74 => Self::KrbSafe,
            0x75 => Self::KrbPriv,
            0x76 => Self::KrbCred,
            0x7e => Self::KrbError,
            _ => return None,
        })
    }
}

// ---------------------------------------------------------------------------
// Integers, strings, flags

/// An ASN.1 INTEGER from an `i64`.
pub fn int(v: i64) -> Integer {
    Integer::from(v)
}

/// An ASN.1 INTEGER as `i64`, if it fits.
pub fn int_value(v: &Integer) -> Option<i64> {
    i64::try_from(v).ok()
}

/// Whether a message's `pvno` is 5 and its `msg-type` is `msg_type`.
pub fn is_version(pvno: &Integer, msg_type: &Integer, want: i64) -> bool {
    int_value(pvno) == Some(PVNO) && int_value(msg_type) == Some(want)
}

/// A microseconds field (cusec, usec, pausec) as a number in
/// 0..=999999, which RFC 4120 allows; a value out of range is clamped.
pub fn usec_value(usec: &Integer) -> u32 {
    // The clamp keeps the value within u32.
    u32::try_from(int_value(usec).unwrap_or(0).clamp(0, 999_999)).unwrap_or(0)
}

/// A KerberosString (GeneralString) from text.
pub fn kstring(field: &'static str, s: &str) -> Result<KerberosString, MessageError> {
    KerberosString::from_bytes(s.as_bytes()).map_err(|_| MessageError::BadString {
        field,
        value: s.to_owned(),
    })
}

/// A KerberosString as UTF-8 text, if it is.
pub fn kstring_text(s: &KerberosString) -> Option<&str> {
    std::str::from_utf8(s.as_bytes()).ok()
}

/// A 32-bit KerberosFlags BIT STRING from a mask (bit 0 = MSB).
pub fn flags(mask: u32) -> KerberosFlags {
    KerberosFlags::from_slice(&mask.to_be_bytes())
}

/// A KerberosFlags BIT STRING as a mask. Bits past 32 are ignored; a shorter
/// string is zero-extended, as RFC 4120 §5.2.8 asks receivers to do.
pub fn flags_value(f: &KerberosFlags) -> u32 {
    f.iter().take(32).enumerate().fold(
        0u32,
        |acc, (i, b)| if *b { acc | flag_bit(i as u32) } else { acc },
    )
}

pub fn ticket_flags(mask: u32) -> TicketFlags {
    TicketFlags(flags(mask))
}

pub fn kdc_options(mask: u32) -> KdcOptions {
    KdcOptions(flags(mask))
}

// ---------------------------------------------------------------------------
// Time

/// `SystemTime` -> KerberosTime, truncated to whole seconds, in UTC.
pub fn to_kerberos_time(t: SystemTime) -> Result<KerberosTime, MessageError> {
    let secs: i64 = match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).map_err(|_| MessageError::TimeOutOfRange(t))?,
        Err(e) => {
            // Before 1970: round towards the past so truncation stays monotone.
            let d = e.duration();
            let whole = i64::try_from(d.as_secs()).map_err(|_| MessageError::TimeOutOfRange(t))?;
            if d.subsec_nanos() > 0 {
                -whole - 1
            } else {
                -whole
            }
        }
    };
    let dt = chrono::DateTime::from_timestamp(secs, 0).ok_or(MessageError::TimeOutOfRange(t))?;
    Ok(KerberosTime(dt.fixed_offset()))
}

/// KerberosTime -> `SystemTime` (whole seconds; a fraction, if a peer sent
/// one, is dropped).
pub fn from_kerberos_time(t: &KerberosTime) -> SystemTime {
    let secs = t.0.timestamp();
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// Splits a time into KerberosTime and microseconds, as ctime/cusec,
/// patimestamp/pausec and stime/susec are carried.
pub fn to_kerberos_time_usec(t: SystemTime) -> Result<(KerberosTime, u32), MessageError> {
    let kt = to_kerberos_time(t)?;
    let usec = t
        .duration_since(from_kerberos_time(&kt))
        .map(|d| d.subsec_micros())
        .unwrap_or(0);
    Ok((kt, usec))
}

/// Joins KerberosTime and microseconds. Out-of-range microseconds
/// (RFC 4120 allows 0..=999999) are clamped.
pub fn from_kerberos_time_usec(t: &KerberosTime, usec: &Integer) -> SystemTime {
    from_kerberos_time(t) + Duration::from_micros(u64::from(usec_value(usec)))
}

// ---------------------------------------------------------------------------
// Principals

/// `Principal` -> (`PrincipalName`, realm).
pub fn to_principal_name(p: &Principal) -> Result<(PrincipalName, KerberosString), MessageError> {
    let string = p
        .components
        .iter()
        .map(|c| kstring("principal name", c))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((
        PrincipalName {
            r#type: p.name_type,
            string,
        },
        kstring("realm", &p.realm)?,
    ))
}

/// (`PrincipalName`, realm) -> `Principal`. `field` names the message
/// field for the error.
pub fn from_principal_name(
    field: &'static str,
    name: &PrincipalName,
    realm: &KerberosString,
) -> Result<Principal, MessageError> {
    let bad = || MessageError::BadPrincipalName { field };
    let realm = kstring_text(realm).ok_or_else(bad)?;
    if realm.is_empty() || name.string.is_empty() {
        return Err(bad());
    }
    let components = name
        .string
        .iter()
        .map(|c| kstring_text(c).map(str::to_owned).ok_or_else(bad))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Principal {
        realm: realm.to_owned(),
        name_type: name.r#type,
        components,
    })
}

/// Compares principal names ignoring the name type, as RFC 4120 §6.2
/// asks ("the name-type SHOULD be treated as a hint").
pub fn same_principal(a: &Principal, b: &Principal) -> bool {
    a.realm == b.realm && a.components == b.components
}

// ---------------------------------------------------------------------------
// Encryption

/// What [`seal`] and [`open`] need from a key. Implemented for
/// `roamgate_krb_crypto::Key`; tests may implement it for a fake.
pub trait SealKey {
    /// The RFC 3961 etype number.
    fn etype_number(&self) -> i32;
    /// Encrypts with the key derived for `usage`.
    fn seal_bytes(&self, usage: u32, plaintext: &[u8]) -> Vec<u8>;
    /// Decrypts and verifies; `None` when the integrity check fails. The
    /// plaintext is zeroized on drop.
    fn open_bytes(&self, usage: u32, ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>>;
}

/// DER-encodes `value` and encrypts it under `key` for key `usage`.
pub fn seal<K: SealKey, T: rasn::Encode>(
    key: &K,
    usage: u32,
    kvno: Option<u32>,
    value: &T,
) -> EncryptedData {
    seal_bytes(key, usage, kvno, &encode(value))
}

/// Encrypts raw bytes into an EncryptedData.
pub fn seal_bytes<K: SealKey>(
    key: &K,
    usage: u32,
    kvno: Option<u32>,
    plaintext: &[u8],
) -> EncryptedData {
    EncryptedData {
        etype: key.etype_number(),
        kvno,
        cipher: OctetString::from(key.seal_bytes(usage, plaintext)),
    }
}

/// Decrypts an EncryptedData under `key` for `usage` and DER-decodes it.
/// The etype must be the key's. The plaintext bytes are wiped; a decoded
/// type that carries keys is best held in [`Wiped`].
pub fn open<K: SealKey, T: rasn::Decode>(
    key: &K,
    usage: u32,
    data: &EncryptedData,
) -> Result<T, MessageError> {
    let plain = open_bytes(key, usage, data, type_name::<T>())?;
    decode(&plain)
}

/// Decrypts an EncryptedData to raw bytes. `what` names it for errors.
pub fn open_bytes<K: SealKey>(
    key: &K,
    usage: u32,
    data: &EncryptedData,
    what: &'static str,
) -> Result<Zeroizing<Vec<u8>>, MessageError> {
    if data.etype != key.etype_number() {
        return Err(MessageError::EtypeMismatch {
            what,
            expected: key.etype_number(),
            found: data.etype,
        });
    }
    key.open_bytes(usage, &data.cipher)
        .ok_or(MessageError::Decrypt { what })
}

impl SealKey for roamgate_krb_crypto::Key {
    fn etype_number(&self) -> i32 {
        self.etype().to_i32()
    }
    fn seal_bytes(&self, usage: u32, plaintext: &[u8]) -> Vec<u8> {
        self.encrypt(usage, plaintext)
    }
    fn open_bytes(&self, usage: u32, ciphertext: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        self.decrypt(usage, ciphertext).ok()
    }
}

/// Zeroizes the bytes of an OCTET STRING that rasn decoded, when this is
/// their only handle (a decoded value always is until it is cloned), and
/// leaves it empty.
pub fn wipe_octets(b: &mut OctetString) {
    if let Ok(mut owned) = bytes::Bytes::from(std::mem::take(b)).try_into_mut() {
        owned.as_mut().zeroize();
    }
}

/// A decrypted message part that carries key material.
pub trait HoldsKeys {
    /// Zeroizes the key bytes in it.
    fn wipe_keys(&mut self);
}

impl HoldsKeys for EncryptionKey {
    fn wipe_keys(&mut self) {
        wipe_octets(&mut self.value);
    }
}

impl HoldsKeys for rasn_kerberos::EncTicketPart {
    fn wipe_keys(&mut self) {
        self.key.wipe_keys();
    }
}

impl HoldsKeys for rasn_kerberos::Authenticator {
    fn wipe_keys(&mut self) {
        if let Some(k) = &mut self.subkey {
            k.wipe_keys();
        }
    }
}

impl HoldsKeys for rasn_kerberos::EncKdcRepPart {
    fn wipe_keys(&mut self) {
        self.key.wipe_keys();
    }
}

impl HoldsKeys for rasn_kerberos::EncApRepPart {
    fn wipe_keys(&mut self) {
        if let Some(k) = &mut self.subkey {
            k.wipe_keys();
        }
    }
}

impl HoldsKeys for rasn_kerberos::EncKrbCredPart {
    fn wipe_keys(&mut self) {
        for info in &mut self.ticket_info {
            info.key.wipe_keys();
        }
    }
}

/// A decrypted part whose keys are zeroized when it is dropped.
#[derive(Debug)]
pub struct Wiped<T: HoldsKeys>(pub T);

impl<T: HoldsKeys> std::ops::Deref for Wiped<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: HoldsKeys> std::ops::DerefMut for Wiped<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: HoldsKeys> Drop for Wiped<T> {
    fn drop(&mut self) {
        self.0.wipe_keys();
    }
}

/// [`open`] into a [`Wiped`] part.
pub fn open_wiped<K: SealKey, T: rasn::Decode + HoldsKeys>(
    key: &K,
    usage: u32,
    data: &EncryptedData,
) -> Result<Wiped<T>, MessageError> {
    open(key, usage, data).map(Wiped)
}

/// A crypto key in its wire form.
pub fn key_to_wire(key: &roamgate_krb_crypto::Key) -> EncryptionKey {
    encryption_key(key.etype().to_i32(), key.as_bytes())
}

/// A wire EncryptionKey as a crypto key; only etypes 17..=20.
pub fn key_from_wire(k: &EncryptionKey) -> Result<roamgate_krb_crypto::Key, MessageError> {
    let etype = roamgate_krb_crypto::Etype::from_i32(k.r#type)
        .ok_or(MessageError::UnsupportedEtype(k.r#type))?;
    roamgate_krb_crypto::Key::new(etype, &k.value).map_err(|_| MessageError::BadKey {
        etype: k.r#type,
        len: k.value.len(),
    })
}

/// The key's keyed checksum (its etype's mandatory checksum type) over
/// `data` for key `usage`.
pub fn checksum(key: &roamgate_krb_crypto::Key, usage: u32, data: &[u8]) -> Checksum {
    Checksum {
        r#type: key.etype().checksum_type(),
        checksum: OctetString::from(key.checksum(usage, data)),
    }
}

/// Verifies a keyed checksum; its type must be the key's checksum type.
/// The comparison is constant-time (in the crypto crate).
pub fn verify_checksum(
    key: &roamgate_krb_crypto::Key,
    usage: u32,
    data: &[u8],
    cksum: &Checksum,
    what: &'static str,
) -> Result<(), MessageError> {
    if cksum.r#type != key.etype().checksum_type() {
        return Err(MessageError::ChecksumType {
            what,
            expected: key.etype().checksum_type(),
            found: cksum.r#type,
        });
    }
    key.verify_checksum(usage, data, &cksum.checksum)
        .map_err(|_| MessageError::BadChecksum { what })
}

// ---------------------------------------------------------------------------
// PA-DATA

/// A PA-DATA element.
pub fn padata(r#type: i32, value: Vec<u8>) -> PaData {
    PaData {
        r#type,
        value: OctetString::from(value),
    }
}

/// The first PA-DATA of `type` in an optional list.
pub fn find_padata(list: Option<&[PaData]>, r#type: i32) -> Option<&PaData> {
    list?.iter().find(|p| p.r#type == r#type)
}

// ---------------------------------------------------------------------------
// KRB-ERROR

/// The fields of a KRB-ERROR a sender chooses; the rest come from `now`.
#[derive(Clone, Debug)]
pub struct ErrorSpec<'a> {
    pub code: i32,
    /// The server the error is about (`sname`/`realm`), e.g. krbtgt/REALM.
    pub server: &'a Principal,
    /// The client, if known (`cname`/`crealm`).
    pub client: Option<&'a Principal>,
    /// The client's time, echoed back if the request carried one.
    pub ctime: Option<(KerberosTime, Integer)>,
    pub e_text: Option<&'a str>,
    pub e_data: Option<Vec<u8>>,
}

/// Builds a KRB-ERROR stamped with `now` as stime/susec.
pub fn krb_error(spec: &ErrorSpec<'_>, now: SystemTime) -> Result<KrbError, MessageError> {
    let (stime, susec) = to_kerberos_time_usec(now)?;
    let (sname, realm) = to_principal_name(spec.server)?;
    let (cname, crealm) = match spec.client {
        Some(c) => {
            let (n, r) = to_principal_name(c)?;
            (Some(n), Some(r))
        }
        None => (None, None),
    };
    let (ctime, cusec) = match &spec.ctime {
        Some((t, u)) => (Some(t.clone()), Some(u.clone())),
        None => (None, None),
    };
    Ok(KrbError {
        pvno: int(PVNO),
        msg_type: int(msg_type::KRB_ERROR),
        ctime,
        cusec,
        stime,
        susec: int(i64::from(susec)),
        error_code: spec.code,
        crealm,
        cname,
        realm,
        sname,
        e_text: spec.e_text.map(|t| kstring("e-text", t)).transpose()?,
        e_data: spec.e_data.clone().map(OctetString::from),
    })
}

/// If `input` is a KRB-ERROR, decodes it. `Ok(None)` if it is some other
/// message; an error if it claims to be a KRB-ERROR but does not decode.
pub fn recognise_error(input: &[u8]) -> Result<Option<KrbError>, MessageError> {
    if MessageKind::of(input) == Some(MessageKind::KrbError) {
        decode::<KrbError>(input).map(Some)
    } else {
        Ok(None)
    }
}

/// The METHOD-DATA carried in a KRB-ERROR's e-data (e.g. with
/// KDC_ERR_PREAUTH_REQUIRED). Empty if there is none or it does not decode;
/// MIT sometimes sends other TYPED-DATA there.
pub fn error_method_data(err: &KrbError) -> Vec<PaData> {
    err.e_data
        .as_ref()
        .and_then(|d| decode::<Vec<PaData>>(d).ok())
        .unwrap_or_default()
}

/// The e-text of a KRB-ERROR, as text.
pub fn error_text(err: &KrbError) -> Option<String> {
    err.e_text
        .as_ref()
        .map(|t| String::from_utf8_lossy(t.as_bytes()).into_owned())
}

// ---------------------------------------------------------------------------
// Randomness

/// Fills `buf` from the operating system's CSPRNG.
pub fn random_bytes(buf: &mut [u8]) -> Result<(), MessageError> {
    use ring::rand::SecureRandom;
    ring::rand::SystemRandom::new()
        .fill(buf)
        .map_err(|_| MessageError::Random)
}

/// A random `u32` with only the bits of `mask` set.
fn random_u32(mask: u32) -> Result<u32, MessageError> {
    let mut b = [0u8; 4];
    random_bytes(&mut b)?;
    Ok(u32::from_be_bytes(b) & mask)
}

/// A random nonce in 0..2^31. MIT encodes nonces as a signed 32-bit
/// INTEGER, so staying below 2^31 keeps both readings equal.
pub fn random_nonce() -> Result<u32, MessageError> {
    random_u32(0x7fff_ffff)
}

/// A random initial sequence number, below 2^30 as MIT chooses them.
pub fn random_seq_number() -> Result<u32, MessageError> {
    random_u32(0x3fff_ffff)
}

/// An `EncryptionKey` (the wire form) from an etype and raw key bytes.
pub fn encryption_key(etype: i32, key: &[u8]) -> EncryptionKey {
    EncryptionKey {
        r#type: etype,
        value: OctetString::from(key.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rasn_kerberos::{
        ApReq, AsReq, Authenticator, KdcReq, KdcReqBody, KrbCred, KrbPriv, PaEncTsEnc,
    };

    fn alice() -> Principal {
        Principal::parse("alice@EXAMPLE.COM").unwrap()
    }

    fn sample_as_req() -> AsReq {
        let (cname, realm) = to_principal_name(&alice()).unwrap();
        let (sname, _) = to_principal_name(&Principal::krbtgt("EXAMPLE.COM")).unwrap();
        AsReq(KdcReq {
            pvno: int(PVNO),
            msg_type: int(msg_type::AS_REQ),
            padata: None,
            req_body: KdcReqBody {
                kdc_options: kdc_options(kdc_options::FORWARDABLE),
                cname: Some(cname),
                realm,
                sname: Some(sname),
                from: None,
                till: to_kerberos_time(UNIX_EPOCH + Duration::from_secs(1_800_000_000)).unwrap(),
                rtime: None,
                nonce: 0x7fff_fff0,
                etype: vec![18, 17, 20, 19],
                addresses: None,
                enc_authorization_data: None,
                additional_tickets: None,
            },
        })
    }

    /// An AS-REQ survives encode/decode and starts with [APPLICATION 10].
    #[test]
    fn parse_as_req_fixture() {
        let bytes = encode(&sample_as_req());
        // The outer bytes: [APPLICATION 10] then SEQUENCE.
        assert_eq!(bytes[0], 0x6a);
        let back: AsReq = decode(&bytes).unwrap();
        assert_eq!(back, sample_as_req());
        assert_eq!(MessageKind::of(&bytes), Some(MessageKind::AsReq));
    }

    #[test]
    fn kerberos_time_is_generalized_time_z_without_fraction() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_750);
        let kt = to_kerberos_time(t).unwrap();
        let der = encode(&kt);
        // GeneralizedTime tag 0x18, 15 bytes "20231114221320Z".
        assert_eq!(der, b"\x18\x0f20231114221320Z");
        assert_eq!(
            from_kerberos_time(&kt),
            UNIX_EPOCH + Duration::from_secs(1_700_000_000)
        );
        let (kt2, usec) = to_kerberos_time_usec(t).unwrap();
        assert_eq!(kt2, kt);
        assert_eq!(usec, 750_000);
        assert_eq!(from_kerberos_time_usec(&kt2, &int(i64::from(usec))), t);
    }

    #[test]
    fn kerberos_time_before_epoch() {
        let t = UNIX_EPOCH - Duration::from_millis(1500);
        let kt = to_kerberos_time(t).unwrap();
        assert_eq!(encode(&kt), b"\x18\x0f19691231235958Z");
    }

    #[test]
    fn flags_are_32_bits_msb_first() {
        let f = flags(ticket_flags::FORWARDABLE | ticket_flags::INITIAL);
        let der = encode(&f);
        // BIT STRING, 5 bytes: 0 unused bits, then 0x40 0x40 0x00 0x00.
        assert_eq!(der, [0x03, 0x05, 0x00, 0x40, 0x40, 0x00, 0x00]);
        assert_eq!(
            flags_value(&f),
            ticket_flags::FORWARDABLE | ticket_flags::INITIAL
        );
        // A short string from a sloppy peer is zero-extended.
        assert_eq!(
            flags_value(&KerberosFlags::from_slice(&[0x40])),
            ticket_flags::FORWARDABLE
        );
    }

    #[test]
    fn principal_round_trip() {
        let p = Principal::parse("host/ha.example.com@EXAMPLE.COM").unwrap();
        let (n, r) = to_principal_name(&p).unwrap();
        assert_eq!(n.r#type, crate::principal::name_type::SRV_INST);
        assert_eq!(from_principal_name("sname", &n, &r).unwrap(), p);
        let empty = PrincipalName {
            r#type: 1,
            string: vec![],
        };
        assert_eq!(
            from_principal_name("cname", &empty, &r),
            Err(MessageError::BadPrincipalName { field: "cname" })
        );
    }

    #[test]
    fn decode_rejects_wrong_tag() {
        let bytes = encode(&sample_as_req());
        let err = decode::<ApReq>(&bytes).unwrap_err();
        assert_eq!(
            err,
            MessageError::WrongTag {
                expected: "ApReq",
                found: 0x6a,
                found_name: "AS-REQ"
            }
        );
    }

    #[test]
    fn decode_rejects_truncation_at_every_length() {
        let bytes = encode(&sample_as_req());
        assert_eq!(
            decode::<AsReq>(&[]),
            Err(MessageError::Empty { expected: "AsReq" })
        );
        for n in 1..bytes.len() {
            match decode::<AsReq>(&bytes[..n]) {
                Err(MessageError::Truncated { needed, have, .. }) => {
                    assert!(needed > have, "length {n}")
                }
                other => panic!("length {n}: {other:?}"),
            }
        }
    }

    #[test]
    fn decode_rejects_garbage_and_trailing_bytes() {
        // Right tag, nonsense inside.
        assert!(matches!(
            decode::<AsReq>(&[0x6a, 0x03, 0x02, 0x01, 0x05]),
            Err(MessageError::BadDer { .. })
        ));
        let mut bytes = encode(&sample_as_req());
        bytes.push(0);
        assert!(matches!(
            decode::<AsReq>(&bytes),
            Err(MessageError::BadDer { .. })
        ));
        // Huge announced length.
        assert!(matches!(
            decode::<KrbCred>(&[0x76, 0x84, 0xff, 0xff, 0xff, 0xff, 0x30]),
            Err(MessageError::Truncated { .. })
        ));
        // Indefinite length is not DER.
        assert!(decode::<KrbPriv>(&[0x75, 0x80, 0x00, 0x00]).is_err());
        // High tag number form.
        assert!(matches!(
            decode::<Authenticator>(&[0x7f, 0x81, 0x01, 0x00]),
            Err(MessageError::WrongTag { .. })
        ));
    }

    struct XorKey(i32, u8);
    impl SealKey for XorKey {
        fn etype_number(&self) -> i32 {
            self.0
        }
        fn seal_bytes(&self, usage: u32, pt: &[u8]) -> Vec<u8> {
            let mut v: Vec<u8> = pt.iter().map(|b| b ^ self.1).collect();
            v.push(usage as u8);
            v
        }
        fn open_bytes(&self, usage: u32, ct: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
            let (last, body) = ct.split_last()?;
            (*last == usage as u8)
                .then(|| Zeroizing::new(body.iter().map(|b| b ^ self.1).collect()))
        }
    }

    #[test]
    fn seal_open_checks_etype_and_usage() {
        let key = XorKey(18, 0x5a);
        let ts = PaEncTsEnc {
            patimestamp: to_kerberos_time(UNIX_EPOCH + Duration::from_secs(5)).unwrap(),
            pausec: Some(int(7)),
        };
        let ed = seal(&key, 1, None, &ts);
        assert_eq!(ed.etype, 18);
        let back: PaEncTsEnc = open(&key, 1, &ed).unwrap();
        assert_eq!(back, ts);
        assert_eq!(
            open::<_, PaEncTsEnc>(&key, 2, &ed),
            Err(MessageError::Decrypt { what: "PaEncTsEnc" })
        );
        assert_eq!(
            open::<_, PaEncTsEnc>(&XorKey(17, 0x5a), 1, &ed),
            Err(MessageError::EtypeMismatch {
                what: "PaEncTsEnc",
                expected: 17,
                found: 18
            })
        );
    }

    #[test]
    fn seal_open_with_real_keys_and_checksums() {
        use roamgate_krb_crypto::{Etype, Key};
        for etype in Etype::ALL {
            let key = Key::random(etype);
            let ts = PaEncTsEnc {
                patimestamp: to_kerberos_time(UNIX_EPOCH + Duration::from_secs(9)).unwrap(),
                pausec: None,
            };
            let ed = seal(&key, 1, Some(3), &ts);
            assert_eq!(ed.etype, etype.to_i32());
            assert_eq!(open::<_, PaEncTsEnc>(&key, 1, &ed).unwrap(), ts);
            assert!(matches!(
                open::<_, PaEncTsEnc>(&Key::random(etype), 1, &ed),
                Err(MessageError::Decrypt { .. })
            ));
            let wire = key_to_wire(&key);
            assert_eq!(key_from_wire(&wire).unwrap(), key);
            let c = checksum(&key, 6, b"body");
            verify_checksum(&key, 6, b"body", &c, "body").unwrap();
            assert_eq!(
                verify_checksum(&key, 6, b"bodY", &c, "body"),
                Err(MessageError::BadChecksum { what: "body" })
            );
        }
        assert_eq!(
            key_from_wire(&encryption_key(23, &[0; 16])),
            Err(MessageError::UnsupportedEtype(23))
        );
        assert!(matches!(
            key_from_wire(&encryption_key(18, &[0; 16])),
            Err(MessageError::BadKey { .. })
        ));
    }

    #[test]
    fn krb_error_round_trip_with_method_data() {
        let tgs = Principal::krbtgt("EXAMPLE.COM");
        let md = vec![padata(pa_type::ETYPE_INFO2, vec![0x30, 0x00])];
        let now = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let err = krb_error(
            &ErrorSpec {
                code: error_code::KDC_ERR_PREAUTH_REQUIRED,
                server: &tgs,
                client: Some(&alice()),
                ctime: None,
                e_text: Some("pre-authentication required"),
                e_data: Some(encode(&md)),
            },
            now,
        )
        .unwrap();
        let bytes = encode(&err);
        let back = recognise_error(&bytes).unwrap().unwrap();
        assert_eq!(back.error_code, 25);
        assert_eq!(int_value(&back.susec), Some(123_456));
        assert_eq!(error_method_data(&back), md);
        assert_eq!(
            error_text(&back).as_deref(),
            Some("pre-authentication required")
        );
        assert_eq!(recognise_error(&encode(&sample_as_req())).unwrap(), None);
        assert_eq!(
            error_code::name(error_code::KRB_ERR_RESPONSE_TOO_BIG),
            "KRB_ERR_RESPONSE_TOO_BIG"
        );
    }

    /// The six messages of an MIT kinit + kvno, in order.
    fn mit_exchange() -> Vec<Vec<u8>> {
        include_str!("testdata/mit_exchange.txt")
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| {
                let hex = l.split_once(' ').unwrap().1;
                (0..hex.len())
                    .step_by(2)
                    .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                    .collect()
            })
            .collect()
    }

    /// MIT's messages decode, and re-encode to the very same bytes (our DER
    /// is MIT's DER).
    #[test]
    fn parse_mit_messages_and_reencode_identically() {
        use rasn_kerberos::{AsRep, TgsRep, TgsReq};
        let m = mit_exchange();
        assert_eq!(m.len(), 6);
        let kinds: Vec<_> = m.iter().map(|b| MessageKind::of(b).unwrap()).collect();
        assert_eq!(
            kinds,
            [
                MessageKind::AsReq,
                MessageKind::KrbError,
                MessageKind::AsReq,
                MessageKind::AsRep,
                MessageKind::TgsReq,
                MessageKind::TgsRep
            ]
        );
        let r0: AsReq = decode(&m[0]).unwrap();
        assert_eq!(encode(&r0), m[0]);
        assert_eq!(
            from_principal_name(
                "cname",
                r0.0.req_body.cname.as_ref().unwrap(),
                &r0.0.req_body.realm
            )
            .unwrap(),
            alice()
        );
        let e1 = recognise_error(&m[1]).unwrap().unwrap();
        assert_eq!(encode(&e1), m[1]);
        assert_eq!(e1.error_code, error_code::KDC_ERR_PREAUTH_REQUIRED);
        assert!(error_method_data(&e1)
            .iter()
            .any(|p| p.r#type == pa_type::ETYPE_INFO2));
        let r2: AsReq = decode(&m[2]).unwrap();
        assert_eq!(encode(&r2), m[2]);
        let p3: AsRep = decode(&m[3]).unwrap();
        assert_eq!(encode(&p3), m[3]);
        let r4: TgsReq = decode(&m[4]).unwrap();
        assert_eq!(encode(&r4), m[4]);
        let p5: TgsRep = decode(&m[5]).unwrap();
        assert_eq!(encode(&p5), m[5]);
    }

    /// Our crypto and message glue open everything MIT sealed: its
    /// PA-ENC-TIMESTAMP and AS-REP with the password key (salt from
    /// ETYPE-INFO2), the TGS-REQ authenticator and its checksum over the
    /// request body with the TGT session key.
    #[test]
    fn open_mit_exchange_with_the_password() {
        use crate::usage;
        use rasn_kerberos::{
            ApReq, AsRep, Authenticator, EncTgsRepPart, EncryptedData, EtypeInfo2Entry, TgsRep,
            TgsReq,
        };
        use roamgate_krb_crypto::{Etype, Key};
        let m = mit_exchange();
        let e1 = recognise_error(&m[1]).unwrap().unwrap();
        let md = error_method_data(&e1);
        let info: Vec<EtypeInfo2Entry> =
            decode(&find_padata(Some(&md), pa_type::ETYPE_INFO2).unwrap().value).unwrap();
        assert_eq!(info[0].etype, 18);
        let salt = info[0]
            .salt
            .as_ref()
            .map(|s| s.as_bytes().to_vec())
            .unwrap_or_else(|| alice().default_salt());
        let key = Key::from_password(
            Etype::Aes256CtsHmacSha196,
            b"pw1",
            &salt,
            info[0].s2kparams.as_deref(),
        )
        .unwrap();
        // PA-ENC-TIMESTAMP in the second AS-REQ.
        let r2: AsReq = decode(&m[2]).unwrap();
        let ts = find_padata(r2.0.padata.as_deref(), pa_type::ENC_TIMESTAMP).unwrap();
        let ts: EncryptedData = decode(&ts.value).unwrap();
        let ts: PaEncTsEnc = open(&key, usage::AS_REQ_PA_ENC_TIMESTAMP, &ts).unwrap();
        assert!(from_kerberos_time(&ts.patimestamp) > UNIX_EPOCH);
        // The AS-REP. MIT seals an EncTGSRepPart (tag 26) even here, as
        // RFC 4120 §5.4.2 warns; the client accepts both tags.
        let p3: AsRep = decode(&m[3]).unwrap();
        let plain = open_bytes(&key, usage::AS_REP_ENC_PART, &p3.0.enc_part, "AS-REP").unwrap();
        assert_eq!(plain[0], 0x7a);
        let part: EncTgsRepPart = decode(&plain).unwrap();
        assert_eq!(part.0.nonce, r2.0.req_body.nonce);
        let tgt_session = key_from_wire(&part.0.key).unwrap();
        // The TGS-REQ: authenticator under the TGT session key, checksum
        // over the DER request body.
        let r4: TgsReq = decode(&m[4]).unwrap();
        let ap: ApReq = decode(
            &find_padata(r4.0.padata.as_deref(), pa_type::TGS_REQ)
                .unwrap()
                .value,
        )
        .unwrap();
        assert_eq!(ap.ticket, p3.0.ticket);
        let auth: Authenticator = open(
            &tgt_session,
            usage::TGS_REQ_PA_TGS_REQ_AUTHENTICATOR,
            &ap.authenticator,
        )
        .unwrap();
        verify_checksum(
            &tgt_session,
            usage::TGS_REQ_PA_TGS_REQ_CKSUM,
            &encode(&r4.0.req_body),
            auth.cksum.as_ref().unwrap(),
            "TGS-REQ body",
        )
        .unwrap();
        // The TGS-REP: kvno armoured the TGS exchange with FAST (the KDC
        // advertised it), so the reply key is strengthened (RFC 6113) and
        // the reply carries PA-FX-FAST; roamgate's own client does not use
        // FAST. The subkey decodes, and the reply names our nonce's request.
        assert_eq!(
            key_from_wire(auth.subkey.as_ref().unwrap())
                .unwrap()
                .etype(),
            Etype::Aes256CtsHmacSha196
        );
        let p5: TgsRep = decode(&m[5]).unwrap();
        assert!(find_padata(p5.0.padata.as_deref(), pa_type::FX_FAST).is_some());
        assert_eq!(
            from_principal_name("sname", &p5.0.ticket.sname, &p5.0.ticket.realm)
                .unwrap()
                .to_string(),
            "host/h@EXAMPLE.COM"
        );
        // A wrong password does not open the AS-REP.
        let wrong = Key::from_password(Etype::Aes256CtsHmacSha196, b"pw2", &salt, None).unwrap();
        assert!(matches!(
            open::<_, EncTgsRepPart>(&wrong, usage::AS_REP_ENC_PART, &p3.0.enc_part),
            Err(MessageError::Decrypt { .. })
        ));
    }

    #[test]
    fn nonce_stays_below_2_pow_31() {
        for _ in 0..64 {
            assert!(random_nonce().unwrap() < 0x8000_0000);
            assert!(random_seq_number().unwrap() < 0x4000_0000);
        }
    }

    #[test]
    fn kstring_rejects_non_latin1() {
        assert!(kstring("realm", "EXAMPLE.COM").is_ok());
        assert!(matches!(
            kstring("realm", "\u{2603}"),
            Err(MessageError::BadString { .. })
        ));
    }

    #[test]
    fn wiped_parts_drop_their_keys() {
        let mut k = encryption_key(18, &[7; 32]);
        k.wipe_keys();
        assert!(k.value.is_empty());
        // A shared buffer is left to its other owner, never freed under it.
        let mut k = encryption_key(18, &[7; 32]);
        let other = k.value.clone();
        k.wipe_keys();
        assert!(k.value.is_empty());
        assert_eq!(other.as_ref(), &[7; 32]);
        // Decrypted bytes come back in a zeroizing buffer.
        let key = roamgate_krb_crypto::Key::random(roamgate_krb_crypto::Etype::Aes256CtsHmacSha196);
        let sealed = seal_bytes(&key, 2, None, b"ticket");
        let plain: Zeroizing<Vec<u8>> = open_bytes(&key, 2, &sealed, "ticket").unwrap();
        assert_eq!(plain.as_slice(), b"ticket");
    }
}
