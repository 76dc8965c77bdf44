//! Token buckets for the rate limit ([`RateLimit`]).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::SystemTime;

use super::config::RateLimit;

#[derive(Debug, Clone, Copy)]
pub(super) struct Bucket {
    tokens: f64,
    last: SystemTime,
}

impl Bucket {
    pub(super) fn full(cfg: &RateLimit, now: SystemTime) -> Self {
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
    pub(super) fn take(&mut self, cfg: &RateLimit, now: SystemTime) -> bool {
        self.refill(cfg, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn is_full(&mut self, cfg: &RateLimit, now: SystemTime) -> bool {
        self.refill(cfg, now);
        self.tokens >= f64::from(cfg.burst)
    }
}

/// One bucket per source address, for requests not (yet) proven authentic
/// and fresh; the table holds at most `max_sources` sources.
#[derive(Debug)]
pub(super) struct SourceLimiter {
    pub(super) cfg: RateLimit,
    buckets: HashMap<IpAddr, Bucket>,
}

impl SourceLimiter {
    pub(super) fn new(cfg: RateLimit) -> Self {
        Self {
            cfg,
            buckets: HashMap::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.buckets.len()
    }

    /// Takes a token for `src`; false when it has none left or the table
    /// is full of active sources.
    pub(super) fn allow(&mut self, src: IpAddr, now: SystemTime) -> bool {
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
    pub(super) fn forget_idle(&mut self, now: SystemTime) {
        let cfg = self.cfg;
        self.buckets.retain(|_, b| !b.is_full(&cfg, now));
    }
}
