//! Principal records: what the database holds per principal, and what a
//! new principal is created with.

use std::fmt;
use std::time::Duration;

use roamgate_krb_crypto::{Etype, Key};

use crate::principal::Principal;

/// Per-principal flags, stored as an integer bit set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrincipalFlags(pub u32);

impl PrincipalFlags {
    /// The AS exchange demands PA-ENC-TIMESTAMP.
    pub const REQUIRES_PREAUTH: u32 = 1 << 0;
    /// Tickets for or to this principal may be forwardable.
    pub const ALLOW_FORWARDABLE: u32 = 1 << 1;
    /// Tickets may be renewable.
    pub const ALLOW_RENEWABLE: u32 = 1 << 2;
    /// The principal may get no tickets at all and no tickets for it.
    pub const DISABLED: u32 = 1 << 3;
    /// The principal may be a service (tickets may be issued for it).
    pub const ALLOW_SERVICE: u32 = 1 << 4;

    pub const DEFAULT: PrincipalFlags = PrincipalFlags(
        Self::REQUIRES_PREAUTH
            | Self::ALLOW_FORWARDABLE
            | Self::ALLOW_RENEWABLE
            | Self::ALLOW_SERVICE,
    );

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

/// One long-term key of a principal.
#[derive(Clone, Debug)]
pub struct KeyEntry {
    pub kvno: u32,
    pub key: Key,
    /// The salt the key was made with (for ETYPE-INFO2). Random keys carry
    /// the default salt too, as MIT does.
    pub salt: Vec<u8>,
    /// The string-to-key parameters (4-byte iteration count).
    pub s2kparams: Vec<u8>,
}

/// A principal with its current keys, as the KDC core sees it.
#[derive(Clone, Debug)]
pub struct PrincipalEntry {
    pub principal: Principal,
    pub kvno: u32,
    pub flags: PrincipalFlags,
    /// 0 means "the realm's limit".
    pub max_life: Duration,
    pub max_renew: Duration,
    /// The current keys, one per etype, strongest first.
    pub keys: Vec<KeyEntry>,
}

impl PrincipalEntry {
    /// The current key of `etype`, if the principal has one.
    pub fn key(&self, etype: Etype) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| k.key.etype() == etype)
    }

    /// The key of `etype` and `kvno` (`None` kvno: the current one).
    pub fn key_version(&self, etype: Etype, kvno: Option<u32>) -> Option<&KeyEntry> {
        self.keys
            .iter()
            .find(|k| k.key.etype() == etype && kvno.is_none_or(|v| v == k.kvno))
    }

    /// The principal's preferred (strongest) key.
    pub fn strongest_key(&self) -> Option<&KeyEntry> {
        Etype::ALL.iter().find_map(|e| self.key(*e))
    }
}

/// How a new principal gets its keys.
pub enum NewKeys<'a> {
    /// String-to-key from a password, for each etype.
    Password(&'a [u8]),
    /// Random keys.
    Random,
    /// Keys made elsewhere (a unit's own, from its keytab export): one per
    /// etype asked for.
    Given(&'a [Key]),
}

impl fmt::Debug for NewKeys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NewKeys::Password(_) => f.write_str("Password(<redacted>)"),
            NewKeys::Random => f.write_str("Random"),
            NewKeys::Given(k) => write!(f, "Given({} keys)", k.len()),
        }
    }
}

/// Options for a new principal.
#[derive(Clone, Debug)]
pub struct NewPrincipal {
    pub etypes: Vec<Etype>,
    pub flags: PrincipalFlags,
    pub max_life: Duration,
    pub max_renew: Duration,
}

impl Default for NewPrincipal {
    fn default() -> Self {
        Self {
            etypes: Etype::ALL.to_vec(),
            flags: PrincipalFlags::DEFAULT,
            max_life: Duration::ZERO,
            max_renew: Duration::ZERO,
        }
    }
}
