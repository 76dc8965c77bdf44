//! A bounded read-through cache in front of any store.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use super::{DbError, PrincipalEntry, PrincipalStore};
use crate::principal::Principal;

/// When an entry was loaded, and what was found.
type CacheSlot = (Instant, Option<Arc<PrincipalEntry>>);

/// A read-through cache in front of another store: entries (present and
/// absent) are reused for `ttl`, and the cache holds at most `capacity`
/// names, so a flood of unknown names cannot grow memory without bound.
pub struct CachedStore<S> {
    inner: S,
    ttl: Duration,
    capacity: usize,
    map: RwLock<HashMap<String, CacheSlot>>,
}

impl<S: PrincipalStore> CachedStore<S> {
    pub const DEFAULT_TTL: Duration = Duration::from_secs(5);
    pub const DEFAULT_CAPACITY: usize = 65_536;

    pub fn new(inner: S) -> Self {
        Self::with_limits(inner, Self::DEFAULT_TTL, Self::DEFAULT_CAPACITY)
    }

    pub fn with_limits(inner: S, ttl: Duration, capacity: usize) -> Self {
        Self {
            inner,
            ttl,
            capacity: capacity.max(1),
            map: RwLock::new(HashMap::new()),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Number of cached names (present and absent).
    pub fn cached(&self) -> usize {
        self.map.read().map(|m| m.len()).unwrap_or(0)
    }
}

impl<S: PrincipalStore> PrincipalStore for CachedStore<S> {
    fn realm(&self) -> &str {
        self.inner.realm()
    }

    fn get(&self, principal: &Principal) -> Result<Option<Arc<PrincipalEntry>>, DbError> {
        if principal.realm != self.inner.realm() {
            return Ok(None);
        }
        let name = principal.name();
        let now = Instant::now();
        if let Ok(map) = self.map.read() {
            if let Some((at, e)) = map.get(&name) {
                if now.duration_since(*at) < self.ttl {
                    return Ok(e.clone());
                }
            }
        }
        let e = self.inner.get(principal)?;
        if let Ok(mut map) = self.map.write() {
            if map.len() >= self.capacity {
                map.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
                if map.len() >= self.capacity {
                    map.clear();
                }
            }
            map.insert(name, (now, e.clone()));
        }
        Ok(e)
    }
}
