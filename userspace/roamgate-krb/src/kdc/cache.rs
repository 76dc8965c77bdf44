//! The KDC's lookaside cache: a retransmitted request (same bytes) gets
//! the reply it got before, as MIT's KDC does. Without it, a UDP
//! retransmission of a TGS-REQ would trip the authenticator replay cache
//! (the crate's one [`crate::replay::ReplayCache`]).
//!
//! Keyed by SipHash with a per-process random key, so an attacker cannot
//! aim collisions; evicts in insertion order, which is also expiry order
//! because every entry lives for the same span.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::Arc;

/// A keyed 64-bit fingerprint of a byte string.
#[derive(Debug)]
pub struct Fingerprinter(RandomState);

impl Default for Fingerprinter {
    fn default() -> Self {
        Self(RandomState::new())
    }
}

impl Fingerprinter {
    pub fn of(&self, parts: &[&[u8]]) -> u64 {
        use std::hash::Hasher as _;
        let mut h = self.0.build_hasher();
        for p in parts {
            h.write_usize(p.len());
            h.write(p);
        }
        h.finish()
    }
}

/// Replies to recent requests, by request fingerprint.
#[derive(Debug)]
pub struct Lookaside {
    capacity: usize,
    lifetime: i64,
    map: HashMap<u64, Arc<Vec<u8>>>,
    order: VecDeque<(i64, u64)>,
}

impl Lookaside {
    pub fn new(capacity: usize, lifetime_secs: i64) -> Self {
        Self {
            capacity,
            lifetime: lifetime_secs,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn expire(&mut self, now: i64) {
        while let Some(&(t, k)) = self.order.front() {
            if t + self.lifetime > now && self.order.len() <= self.capacity {
                break;
            }
            self.order.pop_front();
            self.map.remove(&k);
        }
    }

    pub fn get(&mut self, key: u64, now: i64) -> Option<Arc<Vec<u8>>> {
        self.expire(now);
        self.map.get(&key).cloned()
    }

    /// Remembers a reply; the oldest entry goes when the cache is full.
    pub fn insert(&mut self, key: u64, reply: Arc<Vec<u8>>, now: i64) {
        if self.capacity == 0 {
            return;
        }
        if self.map.insert(key, reply).is_none() {
            self.order.push_back((now, key));
        }
        self.expire(now);
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_separate_parts() {
        let f = Fingerprinter::default();
        assert_eq!(f.of(&[b"ab"]), f.of(&[b"ab"]));
        assert_ne!(f.of(&[b"ab", b"c"]), f.of(&[b"a", b"bc"]));
    }

    #[test]
    fn lookaside_returns_and_expires() {
        let mut l = Lookaside::new(2, 10);
        l.insert(1, Arc::new(vec![1]), 100);
        assert_eq!(l.get(1, 105).as_deref(), Some(&vec![1]));
        assert_eq!(l.get(1, 110), None);
        l.insert(1, Arc::new(vec![1]), 200);
        l.insert(2, Arc::new(vec![2]), 200);
        l.insert(3, Arc::new(vec![3]), 200);
        assert_eq!(l.len(), 2);
        assert_eq!(l.get(1, 200), None);
        assert!(l.get(3, 200).is_some());
    }
}
