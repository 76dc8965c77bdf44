//! Token buckets per source: the home agent's rate limit, and the attach
//! roles' per-source limits (base station, proxy manager).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::SystemTime;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests a node (or a source of unverified requests) may send at
    /// once.
    pub burst: u32,
    /// Sustained requests per second.
    pub per_second: u32,
    /// Sources of unverified requests tracked at most; when full, such
    /// requests from new sources get no reply until idle ones are
    /// forgotten.
    pub max_sources: usize,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            burst: 20,
            per_second: 10,
            max_sources: 65_536,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    last: SystemTime,
}

impl Bucket {
    pub fn full(cfg: &RateLimit, now: SystemTime) -> Self {
        Self {
            tokens: f64::from(cfg.burst),
            last: now,
        }
    }

    fn refill(&mut self, cfg: &RateLimit, now: SystemTime) {
        let dt = now
            .duration_since(self.last)
            .unwrap_or_default()
            .as_secs_f64();
        self.tokens = (self.tokens + dt * f64::from(cfg.per_second)).min(f64::from(cfg.burst));
        self.last = now;
    }

    /// Takes a token; false when none is left.
    pub fn take(&mut self, cfg: &RateLimit, now: SystemTime) -> bool {
        self.refill(cfg, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    pub fn is_full(&mut self, cfg: &RateLimit, now: SystemTime) -> bool {
        self.refill(cfg, now);
        self.tokens >= f64::from(cfg.burst)
    }
}

/// One bucket per source address, for requests not (yet) proven authentic
/// and fresh; the table holds at most `max_sources` sources.
#[derive(Debug)]
pub struct SourceLimiter {
    pub cfg: RateLimit,
    buckets: HashMap<IpAddr, Bucket>,
}

impl SourceLimiter {
    pub fn new(cfg: RateLimit) -> Self {
        Self {
            cfg,
            buckets: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.buckets.is_empty()
    }

    /// Takes a token for `src`; false when it has none left or the table
    /// is full of active sources.
    pub fn allow(&mut self, src: IpAddr, now: SystemTime) -> bool {
        if !self.buckets.contains_key(&src) && self.buckets.len() >= self.cfg.max_sources {
            self.forget_idle(now);
            if self.buckets.len() >= self.cfg.max_sources {
                return false;
            }
        }
        let cfg = self.cfg;
        self.buckets
            .entry(src)
            .or_insert_with(|| Bucket::full(&cfg, now))
            .take(&cfg, now)
    }

    /// Forgets sources whose bucket is full again (they look new anyway).
    pub fn forget_idle(&mut self, now: SystemTime) {
        let cfg = self.cfg;
        self.buckets.retain(|_, b| !b.is_full(&cfg, now));
    }
}
