//! MIT credential cache files, format version 4 (0x0504), read and written.
//!
//! ```text
//! ccache     = 05 04, u16 header_len, header tags, principal default, credential*
//! tag        = u16 tag, u16 len, bytes   (tag 1: i32 kdc offset seconds, i32 microseconds)
//! principal  = u32 name_type, u32 count, data realm, data component[count]
//! credential = principal client, principal server,
//!              u16 enctype, data key,
//!              u32 authtime, u32 starttime, u32 endtime, u32 renew_till,
//!              u8 is_skey, u32 ticket_flags,
//!              u32 n, (u16 addrtype, data address)[n],
//!              u32 n, (u16 ad_type, data contents)[n],
//!              data ticket, data second_ticket
//! data       = u32 length, bytes
//! ```
//! All integers are big-endian. MIT stores cache configuration (for
//! example `fast_avail` and `pa_type`) as credentials whose server realm is
//! `X-CACHECONF:`; [`CCache::tickets`] leaves those out, and they are kept
//! and written back as they were.
//!
//! Parsing never panics: every length is checked against what remains.
//! Files are written atomically with mode 0600.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use roamgate_krb_crypto::{CryptoError, Key};
use zeroize::Zeroizing;

use crate::keytab::{same_principal, write_private_file};
use crate::principal::Principal;

/// The file format version this module reads and writes.
pub const VERSION: u16 = 0x0504;
/// Header tag carrying the KDC time offset.
pub const TAG_KDC_OFFSET: u16 = 1;
/// The realm of MIT's cache configuration entries.
pub const CONFIG_REALM: &str = "X-CACHECONF:";
/// The first component of a cache configuration entry's server name.
pub const CONFIG_NAME: &str = "krb5_ccache_conf_data";

#[derive(Debug, thiserror::Error)]
pub enum CCacheError {
    #[error("credential cache format version {0:#06x} is not supported (only 0x0504)")]
    UnsupportedVersion(u16),
    #[error("credential cache truncated at byte {offset}: {needed} more bytes needed")]
    Truncated { offset: usize, needed: usize },
    #[error(
        "credential cache header tag {tag} at byte {offset} has length {len}, expected {expected}"
    )]
    BadHeaderTag {
        offset: usize,
        tag: u16,
        len: usize,
        expected: usize,
    },
    #[error("credential cache principal at byte {offset} has a name that is not UTF-8")]
    NonUtf8Name { offset: usize },
    #[error("credential cache field too long to encode: {0}")]
    TooLong(&'static str),
    #[error("reading credential cache {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing credential cache {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// A session key as the cache stores it: any etype, including 0 for the
/// empty key of configuration entries. Debug shows the etype and length.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct KeyBlock {
    pub etype: i32,
    bytes: Zeroizing<Vec<u8>>,
}

impl KeyBlock {
    pub fn new(etype: i32, bytes: &[u8]) -> Self {
        Self {
            etype,
            bytes: Zeroizing::new(bytes.to_vec()),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The session key as a protocol key.
    pub fn to_key(&self) -> Result<Key, CryptoError> {
        Key::from_raw(self.etype, &self.bytes)
    }
}

impl From<&Key> for KeyBlock {
    fn from(k: &Key) -> Self {
        Self::new(k.etype().to_i32(), k.as_bytes())
    }
}

impl fmt::Debug for KeyBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyBlock")
            .field("etype", &self.etype)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// The ticket times, in seconds since the Unix epoch (0 = absent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Times {
    pub authtime: u32,
    pub starttime: u32,
    pub endtime: u32,
    pub renew_till: u32,
}

/// A HostAddress or an AuthorizationData element: a type and opaque bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Typed {
    pub kind: u16,
    pub data: Vec<u8>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    pub client: Principal,
    pub server: Principal,
    pub key: KeyBlock,
    pub times: Times,
    pub is_skey: bool,
    /// RFC 4120 TicketFlags, bit 0 (reserved) as the most significant bit.
    pub ticket_flags: u32,
    pub addresses: Vec<Typed>,
    pub authdata: Vec<Typed>,
    /// The Ticket, DER-encoded.
    pub ticket: Vec<u8>,
    /// The second ticket (user-to-user), DER-encoded, or empty.
    pub second_ticket: Vec<u8>,
}

impl Credential {
    /// True for MIT cache configuration entries (server realm `X-CACHECONF:`).
    pub fn is_config(&self) -> bool {
        self.server.realm == CONFIG_REALM
    }
}

/// The KDC time offset from header tag 1: KDC time minus local time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KdcOffset {
    pub seconds: i32,
    pub microseconds: i32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CCache {
    /// Header tag 1, if present.
    pub kdc_offset: Option<KdcOffset>,
    /// Other header tags, kept as read.
    pub other_tags: Vec<Typed>,
    pub default_principal: Principal,
    /// Tickets and configuration entries, in file order.
    pub credentials: Vec<Credential>,
}

impl CCache {
    /// An empty cache for `default_principal`, with a zero KDC offset tag
    /// as MIT writes it.
    pub fn new(default_principal: Principal) -> Self {
        Self {
            kdc_offset: Some(KdcOffset::default()),
            other_tags: Vec::new(),
            default_principal,
            credentials: Vec::new(),
        }
    }

    /// Parses a whole version 4 credential cache file.
    pub fn parse(data: &[u8]) -> Result<Self, CCacheError> {
        let mut r = Reader::new(data);
        let version = r.u16()?;
        if version != VERSION {
            return Err(CCacheError::UnsupportedVersion(version));
        }
        let header_len = usize::from(r.u16()?);
        let header_start = r.pos;
        let header = r.take(header_len)?;
        let mut h = Reader::at(header, header_start);
        let mut kdc_offset = None;
        let mut other_tags = Vec::new();
        while h.remaining() > 0 {
            let offset = h.base + h.pos;
            let tag = h.u16()?;
            let len = usize::from(h.u16()?);
            let body = h.take(len)?;
            if tag == TAG_KDC_OFFSET {
                if len != 8 {
                    return Err(CCacheError::BadHeaderTag {
                        offset,
                        tag,
                        len,
                        expected: 8,
                    });
                }
                kdc_offset = Some(KdcOffset {
                    seconds: i32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                    microseconds: i32::from_be_bytes([body[4], body[5], body[6], body[7]]),
                });
            } else {
                other_tags.push(Typed {
                    kind: tag,
                    data: body.to_vec(),
                });
            }
        }
        let default_principal = r.principal()?;
        let mut credentials = Vec::new();
        while r.remaining() > 0 {
            credentials.push(r.credential()?);
        }
        Ok(Self {
            kdc_offset,
            other_tags,
            default_principal,
            credentials,
        })
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, CCacheError> {
        let mut out = VERSION.to_be_bytes().to_vec();
        let mut header = Vec::new();
        if let Some(o) = self.kdc_offset {
            header.extend_from_slice(&TAG_KDC_OFFSET.to_be_bytes());
            header.extend_from_slice(&8u16.to_be_bytes());
            header.extend_from_slice(&o.seconds.to_be_bytes());
            header.extend_from_slice(&o.microseconds.to_be_bytes());
        }
        for t in &self.other_tags {
            header.extend_from_slice(&t.kind.to_be_bytes());
            let len =
                u16::try_from(t.data.len()).map_err(|_| CCacheError::TooLong("header tag"))?;
            header.extend_from_slice(&len.to_be_bytes());
            header.extend_from_slice(&t.data);
        }
        let hlen = u16::try_from(header.len()).map_err(|_| CCacheError::TooLong("header"))?;
        out.extend_from_slice(&hlen.to_be_bytes());
        out.extend_from_slice(&header);
        put_principal(&mut out, &self.default_principal)?;
        for c in &self.credentials {
            put_credential(&mut out, c)?;
        }
        Ok(out)
    }

    /// Reads and parses the cache at `path`.
    pub fn load(path: &Path) -> Result<Self, CCacheError> {
        let data = Zeroizing::new(fs::read(path).map_err(|source| CCacheError::Read {
            path: path.to_owned(),
            source,
        })?);
        Self::parse(&data)
    }

    /// Writes the cache to `path` atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), CCacheError> {
        let data = Zeroizing::new(self.to_bytes()?);
        write_private_file(path, &data).map_err(|source| CCacheError::Write {
            path: path.to_owned(),
            source,
        })
    }

    /// The tickets, without MIT's configuration entries.
    pub fn tickets(&self) -> impl Iterator<Item = &Credential> {
        self.credentials.iter().filter(|c| !c.is_config())
    }

    /// The configuration entries.
    pub fn config_entries(&self) -> impl Iterator<Item = &Credential> {
        self.credentials.iter().filter(|c| c.is_config())
    }

    /// The value of configuration entry `key` (e.g. `fast_avail`), for
    /// `principal` if given (MIT names the TGS principal there), else
    /// for the entry without one.
    pub fn config_value(&self, key: &str, principal: Option<&str>) -> Option<&[u8]> {
        self.config_entries()
            .find(|c| {
                let comps = &c.server.components;
                comps.first().map(String::as_str) == Some(CONFIG_NAME)
                    && comps.get(1).map(String::as_str) == Some(key)
                    && comps.get(2).map(String::as_str) == principal
            })
            .map(|c| c.ticket.as_slice())
    }

    /// The newest-stored ticket for `server` (realm and components).
    pub fn find_ticket(&self, server: &Principal) -> Option<&Credential> {
        self.tickets()
            .filter(|c| same_principal(&c.server, server))
            .last()
    }

    /// Stores a ticket, replacing any ticket for the same client and
    /// server; configuration entries are untouched.
    pub fn store(&mut self, cred: Credential) {
        if let Some(slot) = self.credentials.iter_mut().find(|c| {
            !c.is_config()
                && same_principal(&c.client, &cred.client)
                && same_principal(&c.server, &cred.server)
        }) {
            *slot = cred;
        } else {
            self.credentials.push(cred);
        }
    }
}

fn put_data(out: &mut Vec<u8>, data: &[u8], what: &'static str) -> Result<(), CCacheError> {
    let len = u32::try_from(data.len()).map_err(|_| CCacheError::TooLong(what))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    Ok(())
}

fn put_principal(out: &mut Vec<u8>, p: &Principal) -> Result<(), CCacheError> {
    out.extend_from_slice(&(p.name_type as u32).to_be_bytes());
    let n = u32::try_from(p.components.len()).map_err(|_| CCacheError::TooLong("components"))?;
    out.extend_from_slice(&n.to_be_bytes());
    put_data(out, p.realm.as_bytes(), "realm")?;
    for c in &p.components {
        put_data(out, c.as_bytes(), "principal component")?;
    }
    Ok(())
}

fn put_typed_list(
    out: &mut Vec<u8>,
    list: &[Typed],
    what: &'static str,
) -> Result<(), CCacheError> {
    let n = u32::try_from(list.len()).map_err(|_| CCacheError::TooLong(what))?;
    out.extend_from_slice(&n.to_be_bytes());
    for t in list {
        out.extend_from_slice(&t.kind.to_be_bytes());
        put_data(out, &t.data, what)?;
    }
    Ok(())
}

fn put_credential(out: &mut Vec<u8>, c: &Credential) -> Result<(), CCacheError> {
    put_principal(out, &c.client)?;
    put_principal(out, &c.server)?;
    let etype = u16::try_from(c.key.etype).map_err(|_| CCacheError::TooLong("enctype"))?;
    out.extend_from_slice(&etype.to_be_bytes());
    put_data(out, c.key.as_bytes(), "key")?;
    for t in [
        c.times.authtime,
        c.times.starttime,
        c.times.endtime,
        c.times.renew_till,
    ] {
        out.extend_from_slice(&t.to_be_bytes());
    }
    out.push(u8::from(c.is_skey));
    out.extend_from_slice(&c.ticket_flags.to_be_bytes());
    put_typed_list(out, &c.addresses, "addresses")?;
    put_typed_list(out, &c.authdata, "authdata")?;
    put_data(out, &c.ticket, "ticket")?;
    put_data(out, &c.second_ticket, "second ticket")?;
    Ok(())
}

/// A bounds-checked big-endian reader; `base` is the offset of `data` in
/// the whole file, for error messages.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self::at(data, 0)
    }

    fn at(data: &'a [u8], base: usize) -> Self {
        Self { data, pos: 0, base }
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], CCacheError> {
        if n > self.remaining() {
            return Err(CCacheError::Truncated {
                offset: self.base + self.pos,
                needed: n - self.remaining(),
            });
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, CCacheError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, CCacheError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, CCacheError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn data(&mut self) -> Result<&'a [u8], CCacheError> {
        let len = self.u32()? as usize;
        self.take(len)
    }

    fn string(&mut self, offset: usize) -> Result<String, CCacheError> {
        let b = self.data()?;
        String::from_utf8(b.to_vec()).map_err(|_| CCacheError::NonUtf8Name { offset })
    }

    fn principal(&mut self) -> Result<Principal, CCacheError> {
        let offset = self.base + self.pos;
        let name_type = self.u32()? as i32;
        let count = self.u32()?;
        let realm = self.string(offset)?;
        let mut components = Vec::new();
        for _ in 0..count {
            // Each component takes at least its 4-byte length, so a huge
            // count fails with Truncated before it allocates much.
            components.push(self.string(offset)?);
        }
        Ok(Principal {
            realm,
            name_type,
            components,
        })
    }

    fn typed_list(&mut self) -> Result<Vec<Typed>, CCacheError> {
        let n = self.u32()?;
        let mut out = Vec::new();
        for _ in 0..n {
            let kind = self.u16()?;
            let data = self.data()?.to_vec();
            out.push(Typed { kind, data });
        }
        Ok(out)
    }

    fn credential(&mut self) -> Result<Credential, CCacheError> {
        let client = self.principal()?;
        let server = self.principal()?;
        let etype = i32::from(self.u16()?);
        let key = KeyBlock::new(etype, self.data()?);
        let times = Times {
            authtime: self.u32()?,
            starttime: self.u32()?,
            endtime: self.u32()?,
            renew_till: self.u32()?,
        };
        let is_skey = self.u8()? != 0;
        let ticket_flags = self.u32()?;
        let addresses = self.typed_list()?;
        let authdata = self.typed_list()?;
        let ticket = self.data()?.to_vec();
        let second_ticket = self.data()?.to_vec();
        Ok(Credential {
            client,
            server,
            key,
            times,
            is_skey,
            ticket_flags,
            addresses,
            authdata,
            ticket,
            second_ticket,
        })
    }
}
