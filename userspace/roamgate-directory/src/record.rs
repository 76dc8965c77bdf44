//! A unit's initiating information ([`UnitRecord`]) and its byte encoding
//! inside the directory's KRB-PRIV (docs/directory.md, "Record").
//!
//! Every constructor and the decoder check the same rules, so a record the
//! store holds, the directory sends and the client accepts are all valid.

use std::fmt;
use std::net::Ipv4Addr;

use roamgate_krb::ap::KeySet;
use roamgate_krb::principal::name_type;
use roamgate_krb::Principal;
use roamgate_krb_crypto::{Etype, Key};
use roamgate_mip::auth::SecurityAssociation;
use zeroize::Zeroizing;

use crate::identity::IdentityCode;

/// Shortest MIP key: 128 bits, RFC 5944 §3.5.1's minimum for HMAC-MD5.
pub const MIP_KEY_MIN: usize = 16;
/// Longest MIP key (an HMAC-SHA256 block).
pub const MIP_KEY_MAX: usize = 64;
/// Longest subscriber principal, in bytes of its text form.
pub const PRINCIPAL_MAX: usize = 255;
/// Longest account id, in bytes.
pub const ACCOUNT_MAX: usize = 64;
/// Most digits in an E.164 number (ITU-T E.164 §6).
pub const E164_MAX_DIGITS: usize = 15;

/// Why a record (or one of its fields) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("subscriber principal {0:?} is not name@REALM: {1}")]
    Principal(String, String),
    #[error("subscriber principal is {0} bytes; at most {PRINCIPAL_MAX}")]
    PrincipalLength(usize),
    #[error("MIP SPI {0} is reserved (0-255); use an SPI of 256 or more")]
    ReservedSpi(u32),
    #[error("MIP key is {0} bytes; it must be {MIP_KEY_MIN} to {MIP_KEY_MAX} bytes")]
    MipKeyLength(usize),
    #[error("MIP key is not hex digits")]
    MipKeyHex,
    #[error(
        "account id is empty, longer than {ACCOUNT_MAX} bytes, or has control characters or spaces"
    )]
    Account,
    #[error(
        "dialled number {0:?} is not E.164: 1 to {E164_MAX_DIGITS} digits, optionally after '+'"
    )]
    DialledNumber(String),
    #[error("home address {0} is not a unicast address")]
    HomeAddress(Ipv4Addr),
    #[error("home agent address {0} is not a unicast address")]
    HomeAgent(Ipv4Addr),
    #[error("home address and home agent are both {0}")]
    SameAddress(Ipv4Addr),
    #[error("record bytes end early (needed {0} more)")]
    Truncated(usize),
    #[error("record has {0} bytes after its last field")]
    Trailing(usize),
    #[error("record text field is not UTF-8")]
    Utf8,
    #[error("the system random source failed")]
    Random,
    #[error("call key etype {0} is not one roamgate implements (17, 18, 19, 20)")]
    CallKeyEtype(i32),
    #[error("call key of etype {etype} is {len} bytes; that etype's keys are {want}")]
    CallKeyLength { etype: i32, len: usize, want: usize },
    #[error("call key field is {0} bytes; it must be 0 (none) or 8 + the key")]
    CallKeyField(usize),
}

/// The callee service principal of a unit, by convention
/// `call/<the subscriber's name components joined by '/'>@<its realm>`:
/// `unit1@HOME.TEST` calls itself `call/unit1@HOME.TEST`. A caller's proxy
/// gets a service ticket for it; the callee's proxy accepts AP-REQs for it
/// with the record's [`CallKey`] (docs/directory.md, "Record"). The one
/// place this convention is written down in code.
pub fn call_principal(subscriber: &Principal) -> Principal {
    let mut components = Vec::with_capacity(subscriber.components.len() + 1);
    components.push("call".to_owned());
    components.extend(subscriber.components.iter().cloned());
    Principal {
        realm: subscriber.realm.clone(),
        name_type: name_type::SRV_INST,
        components,
    }
}

/// The long-term key of a unit's call principal ([`call_principal`]): its
/// etype, its key version number and its bytes. Zeroised on drop; its
/// Debug is redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct CallKey {
    etype: i32,
    kvno: u32,
    key: Zeroizing<Vec<u8>>,
}

impl CallKey {
    /// Checks that `etype` is one roamgate-krb-crypto implements and that
    /// the key has its length.
    pub fn new(etype: i32, kvno: u32, key: &[u8]) -> Result<Self, RecordError> {
        let e = Etype::from_i32(etype).ok_or(RecordError::CallKeyEtype(etype))?;
        if key.len() != e.key_len() {
            return Err(RecordError::CallKeyLength {
                etype,
                len: key.len(),
                want: e.key_len(),
            });
        }
        Ok(Self {
            etype,
            kvno,
            key: Zeroizing::new(key.to_vec()),
        })
    }

    /// From a Kerberos key (e.g. a keytab entry's).
    pub fn from_key(kvno: u32, key: &Key) -> Self {
        Self {
            etype: key.etype().to_i32(),
            kvno,
            key: Zeroizing::new(key.as_bytes().to_vec()),
        }
    }

    pub fn etype(&self) -> i32 {
        self.etype
    }

    pub fn kvno(&self) -> u32 {
        self.kvno
    }

    /// The key bytes. Callers must not log them.
    pub fn expose(&self) -> &[u8] {
        &self.key
    }

    /// The Kerberos key.
    pub fn to_key(&self) -> Result<Key, RecordError> {
        Key::from_raw(self.etype, &self.key).map_err(|_| RecordError::CallKeyEtype(self.etype))
    }

    /// The field's content in the record and the store: etype (4, i32),
    /// kvno (4), key; big-endian. Secret, so zeroised when dropped.
    pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut b = Zeroizing::new(Vec::with_capacity(8 + self.key.len()));
        b.extend_from_slice(&self.etype.to_be_bytes());
        b.extend_from_slice(&self.kvno.to_be_bytes());
        b.extend_from_slice(&self.key);
        b
    }

    /// The inverse of [`CallKey::to_bytes`], with [`CallKey::new`]'s checks.
    pub fn from_bytes(b: &[u8]) -> Result<Self, RecordError> {
        if b.len() < 8 {
            return Err(RecordError::CallKeyField(b.len()));
        }
        let etype = i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
        let kvno = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
        Self::new(etype, kvno, &b[8..])
    }

    /// Hex digits of the key (for `show --show-keys` only).
    pub fn expose_hex(&self) -> Zeroizing<String> {
        hex(&self.key)
    }
}

impl fmt::Debug for CallKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CallKey(etype {}, kvno {}, <redacted {} bytes>)",
            self.etype,
            self.kvno,
            self.key.len()
        )
    }
}

fn hex(bytes: &[u8]) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::with_capacity(2 * bytes.len()));
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// The MN-HA key of a unit's mobility security association. Zeroised on
/// drop; its Debug is redacted; [`MipKey::expose`] is the one way out.
#[derive(Clone, PartialEq, Eq)]
pub struct MipKey(Zeroizing<Vec<u8>>);

impl MipKey {
    pub fn new(bytes: &[u8]) -> Result<Self, RecordError> {
        if !(MIP_KEY_MIN..=MIP_KEY_MAX).contains(&bytes.len()) {
            return Err(RecordError::MipKeyLength(bytes.len()));
        }
        Ok(Self(Zeroizing::new(bytes.to_vec())))
    }

    /// Parses hex digits (the provisioning CLI's form).
    pub fn from_hex(s: &str) -> Result<Self, RecordError> {
        let s = s.trim();
        if !s.len().is_multiple_of(2) || !s.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(RecordError::MipKeyHex);
        }
        let bytes: Zeroizing<Vec<u8>> = Zeroizing::new(
            (0..s.len() / 2)
                .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16))
                .collect::<Result<_, _>>()
                .map_err(|_| RecordError::MipKeyHex)?,
        );
        Self::new(&bytes)
    }

    /// A fresh random key of `len` bytes.
    pub fn generate(len: usize) -> Result<Self, RecordError> {
        use ring::rand::{SecureRandom, SystemRandom};
        let mut b = Zeroizing::new(vec![0u8; len]);
        SystemRandom::new()
            .fill(&mut b)
            .map_err(|_| RecordError::Random)?;
        Self::new(&b)
    }

    /// The key bytes. Callers must not log them.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// Hex digits of the key (for `show --show-keys` only).
    pub fn expose_hex(&self) -> Zeroizing<String> {
        hex(&self.0)
    }
}

impl fmt::Debug for MipKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MipKey(<redacted {} bytes>)", self.0.len())
    }
}

/// An E.164 number as digits only (no '+', no separators).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DialledNumber(String);

impl DialledNumber {
    pub fn parse(s: &str) -> Result<Self, RecordError> {
        let d = s.strip_prefix('+').unwrap_or(s);
        if d.is_empty() || d.len() > E164_MAX_DIGITS || !d.bytes().all(|c| c.is_ascii_digit()) {
            return Err(RecordError::DialledNumber(s.to_owned()));
        }
        Ok(Self(d.to_owned()))
    }

    pub fn digits(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DialledNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "+{}", self.0)
    }
}

/// A unit's initiating information: what a proxy needs to act as the
/// unit's mobile node and subscriber.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitRecord {
    pub code: IdentityCode,
    /// The only client principal the directory answers for this code.
    pub principal: Principal,
    pub home_address: Ipv4Addr,
    pub home_agent: Ipv4Addr,
    pub mip_spi: u32,
    pub mip_key: MipKey,
    pub account: String,
    pub dialled_number: Option<DialledNumber>,
    /// The long-term key of the unit's [`call_principal`], with which its
    /// proxy accepts calls; `None` for a unit that cannot be called.
    pub call_key: Option<CallKey>,
}

/// Parses and length-checks a subscriber principal.
pub fn parse_principal(s: &str) -> Result<Principal, RecordError> {
    if s.len() > PRINCIPAL_MAX {
        return Err(RecordError::PrincipalLength(s.len()));
    }
    Principal::parse(s).map_err(|e| RecordError::Principal(s.to_owned(), e.to_string()))
}

fn unicast(a: Ipv4Addr) -> bool {
    !(a.is_unspecified() || a.is_broadcast() || a.is_multicast() || a.is_loopback())
}

impl UnitRecord {
    /// Checks every field (the constructors of [`MipKey`] and
    /// [`DialledNumber`] checked theirs already).
    pub fn validate(&self) -> Result<(), RecordError> {
        let p = self.principal.to_string();
        if p.len() > PRINCIPAL_MAX {
            return Err(RecordError::PrincipalLength(p.len()));
        }
        parse_principal(&p)?;
        // The SPI and key as the mobile node will use them.
        SecurityAssociation::new(self.mip_spi, self.mip_key.expose())
            .map_err(|_| RecordError::ReservedSpi(self.mip_spi))?;
        MipKey::new(self.mip_key.expose())?;
        if !unicast(self.home_address) {
            return Err(RecordError::HomeAddress(self.home_address));
        }
        if !unicast(self.home_agent) {
            return Err(RecordError::HomeAgent(self.home_agent));
        }
        if self.home_address == self.home_agent {
            return Err(RecordError::SameAddress(self.home_address));
        }
        check_account(&self.account)?;
        if let Some(d) = &self.dialled_number {
            DialledNumber::parse(d.digits())?;
        }
        if let Some(k) = &self.call_key {
            CallKey::new(k.etype, k.kvno, &k.key)?;
        }
        Ok(())
    }

    /// The unit's callee service principal ([`call_principal`]).
    pub fn call_principal(&self) -> Principal {
        call_principal(&self.principal)
    }

    /// The call key as the service keys of the call principal, for
    /// `roamgate_call::handshake::answer`; `None` if the unit has none.
    pub fn call_key_set(&self) -> Result<Option<KeySet>, RecordError> {
        let Some(k) = &self.call_key else {
            return Ok(None);
        };
        Ok(Some(KeySet(vec![(
            self.call_principal(),
            k.kvno,
            k.to_key()?,
        )])))
    }

    /// The record's bytes (docs/directory.md, "Record"); secret, so
    /// zeroised when dropped.
    pub fn encode(&self) -> Zeroizing<Vec<u8>> {
        let p = self.principal.to_string();
        let mut b = Zeroizing::new(Vec::with_capacity(128));
        b.extend_from_slice(self.code.as_bytes());
        b.push(p.len() as u8);
        b.extend_from_slice(p.as_bytes());
        b.extend_from_slice(&self.home_address.octets());
        b.extend_from_slice(&self.home_agent.octets());
        b.extend_from_slice(&self.mip_spi.to_be_bytes());
        b.push(self.mip_key.expose().len() as u8);
        b.extend_from_slice(self.mip_key.expose());
        b.push(self.account.len() as u8);
        b.extend_from_slice(self.account.as_bytes());
        let d = self.dialled_number.as_ref().map_or("", |d| d.digits());
        b.push(d.len() as u8);
        b.extend_from_slice(d.as_bytes());
        match &self.call_key {
            None => b.push(0),
            Some(k) => {
                let kb = k.to_bytes();
                // 8 + at most 32 key bytes: fits.
                b.push(kb.len() as u8);
                b.extend_from_slice(&kb);
            }
        }
        b
    }

    /// Parses and validates record bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut r = Reader(bytes);
        let code = IdentityCode::from_bytes(r.array()?);
        let principal = parse_principal(r.text()?)?;
        let home_address = Ipv4Addr::from(r.array::<4>()?);
        let home_agent = Ipv4Addr::from(r.array::<4>()?);
        let mip_spi = u32::from_be_bytes(r.array()?);
        let mip_key = MipKey::new(r.field()?)?;
        let account = r.text()?.to_owned();
        let d = r.text()?;
        let dialled_number = (!d.is_empty())
            .then(|| DialledNumber::parse(d))
            .transpose()?;
        let c = r.field()?;
        let call_key = (!c.is_empty())
            .then(|| CallKey::from_bytes(c))
            .transpose()?;
        if !r.0.is_empty() {
            return Err(RecordError::Trailing(r.0.len()));
        }
        let rec = Self {
            code,
            principal,
            home_address,
            home_agent,
            mip_spi,
            mip_key,
            account,
            dialled_number,
            call_key,
        };
        rec.validate()?;
        Ok(rec)
    }
}

/// What a resolution answers (docs/directory.md §3.1): the dialled number
/// asked for, the callee's call principal and its home address. Nothing
/// secret: not the callee's keys, account, MIP key or identity code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    pub number: DialledNumber,
    pub call_principal: Principal,
    pub home_address: Ipv4Addr,
}

impl Resolution {
    /// The resolution of `number` to `record`'s unit.
    pub fn of(number: DialledNumber, record: &UnitRecord) -> Self {
        Self {
            number,
            call_principal: record.call_principal(),
            home_address: record.home_address,
        }
    }

    /// number (1 + d), call principal text (1 + p), home address (4).
    pub fn encode(&self) -> Vec<u8> {
        let p = self.call_principal.to_string();
        let d = self.number.digits();
        let mut b = Vec::with_capacity(6 + d.len() + p.len());
        b.push(d.len() as u8);
        b.extend_from_slice(d.as_bytes());
        b.push(p.len() as u8);
        b.extend_from_slice(p.as_bytes());
        b.extend_from_slice(&self.home_address.octets());
        b
    }

    /// Parses and checks resolution bytes: a number of 1 to 15 digits, a
    /// principal, a unicast home address, nothing after.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut r = Reader(bytes);
        let d = r.text()?;
        if d.starts_with('+') {
            return Err(RecordError::DialledNumber(d.to_owned()));
        }
        let number = DialledNumber::parse(d)?;
        let call_principal = parse_principal(r.text()?)?;
        let home_address = Ipv4Addr::from(r.array::<4>()?);
        if !r.0.is_empty() {
            return Err(RecordError::Trailing(r.0.len()));
        }
        if !unicast(home_address) {
            return Err(RecordError::HomeAddress(home_address));
        }
        Ok(Self {
            number,
            call_principal,
            home_address,
        })
    }
}

/// Checks an account id: 1-64 bytes of printable text without spaces.
pub fn check_account(a: &str) -> Result<(), RecordError> {
    if a.is_empty() || a.len() > ACCOUNT_MAX || a.chars().any(|c| c.is_control() || c == ' ') {
        return Err(RecordError::Account);
    }
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], RecordError> {
        if self.0.len() < n {
            return Err(RecordError::Truncated(n - self.0.len()));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], RecordError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    /// A field with a one-byte length prefix.
    fn field(&mut self) -> Result<&'a [u8], RecordError> {
        let n = self.take(1)?[0] as usize;
        self.take(n)
    }

    fn text(&mut self) -> Result<&'a str, RecordError> {
        std::str::from_utf8(self.field()?).map_err(|_| RecordError::Utf8)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(code: IdentityCode, principal: &str) -> UnitRecord {
        UnitRecord {
            code,
            principal: Principal::parse(principal).unwrap(),
            home_address: Ipv4Addr::new(10, 1, 0, 10),
            home_agent: Ipv4Addr::new(10, 1, 0, 1),
            mip_spi: 0x1000,
            mip_key: MipKey::new(&[0x5a; 16]).unwrap(),
            account: "acct-0001".into(),
            dialled_number: Some(DialledNumber::parse("+4930123456").unwrap()),
            call_key: None,
        }
    }

    pub(crate) fn call_key() -> CallKey {
        CallKey::new(18, 3, &[0xc4; 32]).unwrap()
    }

    #[test]
    fn encode_decode_round_trip_and_fixture() {
        let code = IdentityCode::from_bytes([0x11; 16]);
        let r = sample(code, "unit-a@EXAMPLE.COM");
        r.validate().unwrap();
        let b = r.encode();
        // Byte fixture (docs/directory.md, "Record").
        let mut want = vec![0x11; 16];
        want.push(18);
        want.extend_from_slice(b"unit-a@EXAMPLE.COM");
        want.extend_from_slice(&[10, 1, 0, 10, 10, 1, 0, 1, 0, 0, 0x10, 0]);
        want.push(16);
        want.extend_from_slice(&[0x5a; 16]);
        want.push(9);
        want.extend_from_slice(b"acct-0001");
        want.push(10);
        want.extend_from_slice(b"4930123456");
        want.push(0); // no call key
        assert_eq!(&b[..], &want[..]);
        assert_eq!(UnitRecord::decode(&b).unwrap(), r);
        let none = UnitRecord {
            dialled_number: None,
            ..r
        };
        assert_eq!(UnitRecord::decode(&none.encode()).unwrap(), none);
    }

    #[test]
    fn call_key_round_trip_fixture_and_rules() {
        let mut r = sample(IdentityCode::from_bytes([0x11; 16]), "unit-a@EXAMPLE.COM");
        r.call_key = Some(call_key());
        let b = r.encode();
        let mut tail = vec![40, 0, 0, 0, 18, 0, 0, 0, 3];
        tail.extend_from_slice(&[0xc4; 32]);
        assert_eq!(&b[b.len() - tail.len()..], &tail[..]);
        assert_eq!(UnitRecord::decode(&b).unwrap(), r);
        let ks = r.call_key_set().unwrap().unwrap();
        assert_eq!(ks.0.len(), 1);
        assert_eq!(
            ks.0[0].0,
            Principal::parse("call/unit-a@EXAMPLE.COM").unwrap()
        );
        assert_eq!(ks.0[0].1, 3);
        assert_eq!(ks.0[0].2.as_bytes(), &[0xc4; 32]);
        assert!(sample(r.code, "u@R").call_key_set().unwrap().is_none());
        assert_eq!(
            CallKey::new(23, 1, &[0; 16]),
            Err(RecordError::CallKeyEtype(23))
        );
        assert_eq!(
            CallKey::new(17, 1, &[0; 32]),
            Err(RecordError::CallKeyLength {
                etype: 17,
                len: 32,
                want: 16
            })
        );
        assert_eq!(
            CallKey::from_bytes(&[0; 7]),
            Err(RecordError::CallKeyField(7))
        );
        // A wrong-length key inside a record is refused by the decoder.
        let mut bad = b.to_vec();
        let at = bad.len() - tail.len();
        bad[at] = 39;
        bad.pop();
        assert!(UnitRecord::decode(&bad).is_err());
    }

    #[test]
    fn resolution_round_trip_and_refusals() {
        let mut rec = sample(IdentityCode::from_bytes([1; 16]), "unit-b@R");
        rec.call_key = Some(call_key());
        let n = DialledNumber::parse("+4930555").unwrap();
        let r = Resolution::of(n, &rec);
        let b = r.encode();
        let mut want = vec![7];
        want.extend_from_slice(b"4930555");
        want.push(13);
        want.extend_from_slice(b"call/unit-b@R");
        want.extend_from_slice(&[10, 1, 0, 10]);
        assert_eq!(b, want);
        assert_eq!(Resolution::decode(&b).unwrap(), r);
        for n in 0..b.len() {
            assert!(Resolution::decode(&b[..n]).is_err(), "prefix {n}");
        }
        let mut t = b.clone();
        t.push(0);
        assert_eq!(Resolution::decode(&t), Err(RecordError::Trailing(1)));
        // No key material in it.
        assert!(!b.windows(4).any(|w| w == [0xc4; 4] || w == [0x5a; 4]));
    }

    #[test]
    fn call_principal_convention() {
        let p = |s: &str| Principal::parse(s).unwrap();
        assert_eq!(
            call_principal(&p("unit1@HOME.TEST")),
            p("call/unit1@HOME.TEST")
        );
        assert_eq!(call_principal(&p("a/b@R")), p("call/a/b@R"));
        assert_eq!(
            call_principal(&p("unit1@HOME.TEST")).to_string(),
            "call/unit1@HOME.TEST"
        );
    }

    #[test]
    fn call_key_never_shows_in_debug() {
        let mut r = sample(IdentityCode::from_bytes([1; 16]), "u@R");
        r.call_key = Some(call_key());
        let dbg = format!("{r:?}");
        assert!(
            dbg.contains("CallKey(etype 18, kvno 3, <redacted 32 bytes>)"),
            "{dbg}"
        );
        assert!(!dbg.contains("196"), "{dbg}");
        assert_eq!(&*call_key().expose_hex(), &"c4".repeat(32));
    }

    #[test]
    fn every_prefix_and_trailing_byte_is_refused() {
        let mut r = sample(IdentityCode::from_bytes([1; 16]), "u@R");
        r.call_key = Some(call_key());
        let b = r.encode();
        for n in 0..b.len() {
            assert!(UnitRecord::decode(&b[..n]).is_err(), "prefix {n}");
        }
        let mut long = b.to_vec();
        long.push(0);
        assert_eq!(UnitRecord::decode(&long), Err(RecordError::Trailing(1)));
    }

    #[test]
    fn field_rules() {
        let base = sample(IdentityCode::from_bytes([1; 16]), "u@R");
        let bad = |f: &dyn Fn(&mut UnitRecord)| {
            let mut r = base.clone();
            f(&mut r);
            r.validate().unwrap_err()
        };
        assert_eq!(bad(&|r| r.mip_spi = 255), RecordError::ReservedSpi(255));
        assert_eq!(
            bad(&|r| r.home_address = Ipv4Addr::UNSPECIFIED),
            RecordError::HomeAddress(Ipv4Addr::UNSPECIFIED)
        );
        assert_eq!(
            bad(&|r| r.home_agent = Ipv4Addr::BROADCAST),
            RecordError::HomeAgent(Ipv4Addr::BROADCAST)
        );
        assert!(matches!(
            bad(&|r| r.home_agent = r.home_address),
            RecordError::SameAddress(_)
        ));
        assert_eq!(
            bad(&|r| r.account = "has space".into()),
            RecordError::Account
        );
        assert_eq!(bad(&|r| r.account.clear()), RecordError::Account);
        assert_eq!(MipKey::new(&[1; 15]), Err(RecordError::MipKeyLength(15)));
        assert_eq!(MipKey::new(&[1; 65]), Err(RecordError::MipKeyLength(65)));
        assert_eq!(MipKey::from_hex("zz"), Err(RecordError::MipKeyHex));
        assert_eq!(MipKey::from_hex("abc"), Err(RecordError::MipKeyHex));
        assert!(DialledNumber::parse("").is_err());
        assert!(DialledNumber::parse("+1234567890123456").is_err());
        assert!(DialledNumber::parse("12-34").is_err());
        assert_eq!(DialledNumber::parse("+49301").unwrap().digits(), "49301");
        assert!(matches!(
            parse_principal("no-realm"),
            Err(RecordError::Principal(..))
        ));
    }

    #[test]
    fn mip_key_never_shows_in_debug() {
        let r = sample(IdentityCode::from_bytes([1; 16]), "u@R");
        let dbg = format!("{r:?}");
        assert!(dbg.contains("<redacted 16 bytes>"), "{dbg}");
        assert!(!dbg.contains("90, 90"), "{dbg}");
        let k = MipKey::from_hex(&"5a".repeat(16)).unwrap();
        assert_eq!(k, r.mip_key);
        assert_eq!(&*k.expose_hex(), &"5a".repeat(16));
    }
}
