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

use std::io;
use std::path::{Path, PathBuf};

use crate::messages::same_principal;
/// A session key as the cache stores it: any etype, including 0 for the
/// empty key of configuration entries.
pub use crate::mit_file::KeyBlock;
use crate::mit_file::{self, Reader, Width};
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
        let mut r = Reader::<CCacheError>::new(data);
        let version = r.u16()?;
        if version != VERSION {
            return Err(CCacheError::UnsupportedVersion(version));
        }
        let header_len = r.len(Width::U16)?;
        let header_start = r.offset();
        let header = r.take(header_len)?;
        let mut h = Reader::<CCacheError>::at(header, header_start);
        let mut kdc_offset = None;
        let mut other_tags = Vec::new();
        while h.remaining() > 0 {
            let offset = h.offset();
            let tag = h.u16()?;
            let len = h.len(Width::U16)?;
            let body_start = h.offset();
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
                let mut b = Reader::<CCacheError>::at(body, body_start);
                kdc_offset = Some(KdcOffset {
                    seconds: b.i32()?,
                    microseconds: b.i32()?,
                });
            } else {
                other_tags.push(Typed {
                    kind: tag,
                    data: body.to_vec(),
                });
            }
        }
        let default_principal = read_principal(&mut r)?;
        let mut credentials = Vec::new();
        while r.remaining() > 0 {
            credentials.push(read_credential(&mut r)?);
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
            mit_file::put_data::<CCacheError>(&mut header, &t.data, Width::U16, "header tag")?;
        }
        mit_file::put_data::<CCacheError>(&mut out, &header, Width::U16, "header")?;
        put_principal(&mut out, &self.default_principal)?;
        for c in &self.credentials {
            put_credential(&mut out, c)?;
        }
        Ok(out)
    }

    /// Reads and parses the cache at `path`.
    pub fn load(path: &Path) -> Result<Self, CCacheError> {
        mit_file::load(path, Self::parse)
    }

    /// Writes the cache to `path` atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), CCacheError> {
        mit_file::save(path, self.to_bytes()?)
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

fn put_principal(out: &mut Vec<u8>, p: &Principal) -> Result<(), CCacheError> {
    out.extend_from_slice(&(p.name_type as u32).to_be_bytes());
    mit_file::put_len::<CCacheError>(out, p.components.len(), Width::U32, "components")?;
    mit_file::put_data::<CCacheError>(out, p.realm.as_bytes(), Width::U32, "realm")?;
    for c in &p.components {
        mit_file::put_data::<CCacheError>(out, c.as_bytes(), Width::U32, "principal component")?;
    }
    Ok(())
}

fn put_typed_list(
    out: &mut Vec<u8>,
    list: &[Typed],
    what: &'static str,
) -> Result<(), CCacheError> {
    mit_file::put_len::<CCacheError>(out, list.len(), Width::U32, what)?;
    for t in list {
        out.extend_from_slice(&t.kind.to_be_bytes());
        mit_file::put_data::<CCacheError>(out, &t.data, Width::U32, what)?;
    }
    Ok(())
}

fn put_credential(out: &mut Vec<u8>, c: &Credential) -> Result<(), CCacheError> {
    put_principal(out, &c.client)?;
    put_principal(out, &c.server)?;
    let etype = u16::try_from(c.key.etype).map_err(|_| CCacheError::TooLong("enctype"))?;
    out.extend_from_slice(&etype.to_be_bytes());
    mit_file::put_data::<CCacheError>(out, c.key.as_bytes(), Width::U32, "key")?;
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
    mit_file::put_data::<CCacheError>(out, &c.ticket, Width::U32, "ticket")?;
    mit_file::put_data::<CCacheError>(out, &c.second_ticket, Width::U32, "second ticket")?;
    Ok(())
}

fn read_principal(r: &mut Reader<'_, CCacheError>) -> Result<Principal, CCacheError> {
    let offset = r.offset();
    let name_type = r.u32()? as i32;
    let count = r.u32()?;
    let realm = mit_file::name(r.data(Width::U32)?, offset)?;
    let mut components = Vec::new();
    for _ in 0..count {
        // Each component takes at least its 4-byte length, so a huge
        // count fails with Truncated before it allocates much.
        components.push(mit_file::name(r.data(Width::U32)?, offset)?);
    }
    Ok(Principal {
        realm,
        name_type,
        components,
    })
}

fn read_typed_list(r: &mut Reader<'_, CCacheError>) -> Result<Vec<Typed>, CCacheError> {
    let n = r.u32()?;
    let mut out = Vec::new();
    for _ in 0..n {
        let kind = r.u16()?;
        let data = r.data(Width::U32)?.to_vec();
        out.push(Typed { kind, data });
    }
    Ok(out)
}

fn read_credential(r: &mut Reader<'_, CCacheError>) -> Result<Credential, CCacheError> {
    let client = read_principal(r)?;
    let server = read_principal(r)?;
    let etype = i32::from(r.u16()?);
    let key = KeyBlock::new(etype, r.data(Width::U32)?);
    let times = Times {
        authtime: r.u32()?,
        starttime: r.u32()?,
        endtime: r.u32()?,
        renew_till: r.u32()?,
    };
    let is_skey = r.u8()? != 0;
    let ticket_flags = r.u32()?;
    let addresses = read_typed_list(r)?;
    let authdata = read_typed_list(r)?;
    let ticket = r.data(Width::U32)?.to_vec();
    let second_ticket = r.data(Width::U32)?.to_vec();
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

mit_file::file_error!(CCacheError);
