//! An in-memory store.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use roamgate_krb_crypto::{Etype, Key};

use super::{DbError, KeyEntry, PrincipalEntry, PrincipalFlags, PrincipalStore};
use crate::principal::Principal;

/// An in-memory store, for tests and embedding.
#[derive(Default)]
pub struct MemoryStore {
    realm: String,
    entries: RwLock<HashMap<String, Arc<PrincipalEntry>>>,
}

impl MemoryStore {
    pub fn new(realm: &str) -> Self {
        Self {
            realm: realm.to_owned(),
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// Adds or replaces a principal.
    pub fn insert(&self, entry: PrincipalEntry) {
        if let Ok(mut m) = self.entries.write() {
            m.insert(entry.principal.name(), Arc::new(entry));
        }
    }

    /// A principal with password-derived keys of `etypes` at kvno 1.
    pub fn add_password(
        &self,
        principal: &Principal,
        password: &[u8],
        etypes: &[Etype],
        flags: PrincipalFlags,
    ) -> Result<(), DbError> {
        let salt = principal.default_salt();
        let keys = etypes
            .iter()
            .map(|&e| {
                let s2k = e.default_s2kparams();
                Ok(KeyEntry {
                    kvno: 1,
                    key: Key::from_password(e, password, &salt, Some(&s2k))
                        .map_err(DbError::StringToKey)?,
                    salt: salt.clone(),
                    s2kparams: s2k,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        self.insert(PrincipalEntry {
            principal: principal.clone(),
            kvno: 1,
            flags,
            max_life: Duration::ZERO,
            max_renew: Duration::ZERO,
            keys,
        });
        Ok(())
    }

    /// A principal with random keys of `etypes` at kvno 1.
    pub fn add_random(&self, principal: &Principal, etypes: &[Etype], flags: PrincipalFlags) {
        let salt = principal.default_salt();
        self.insert(PrincipalEntry {
            principal: principal.clone(),
            kvno: 1,
            flags,
            max_life: Duration::ZERO,
            max_renew: Duration::ZERO,
            keys: etypes
                .iter()
                .map(|&e| KeyEntry {
                    kvno: 1,
                    key: Key::random(e),
                    salt: salt.clone(),
                    s2kparams: e.default_s2kparams(),
                })
                .collect(),
        });
    }
}

impl PrincipalStore for MemoryStore {
    fn realm(&self) -> &str {
        &self.realm
    }
    fn get(&self, principal: &Principal) -> Result<Option<Arc<PrincipalEntry>>, DbError> {
        if principal.realm != self.realm {
            return Ok(None);
        }
        Ok(self
            .entries
            .read()
            .ok()
            .and_then(|m| m.get(&principal.name()).cloned()))
    }
}
