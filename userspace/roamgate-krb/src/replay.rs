//! The one authenticator replay cache of roamgate-krb (RFC 4120 §3.2.3),
//! used by the KDC for PA-TGS-REQ authenticators and by every acceptor of
//! AP-REQs, KRB-CRED, KRB-PRIV and KRB-SAFE.
//!
//! An authenticator is identified by the client, the server, its ctime and
//! cusec, and a SHA-256 hash of its ciphertext (as MIT's rcache does, so two
//! different authenticators in the same microsecond do not collide).
//! Entries are kept until their ctime falls out of the clock-skew window:
//! after that the skew check alone rejects the authenticator.
//!
//! The cache never forgets a live entry, since that would let its
//! authenticator be replayed. Instead, when it is full after expiring old
//! entries, it refuses the new authenticator, whose replays it could not
//! detect. Once the cache is half full, a client holding
//! [`ReplayCache::per_client_limit`] live entries or more is refused, so
//! one client flooding requests fills at most half the cache and is the
//! only one refused, while the other half stays for everyone else. Below
//! half, a busy client is not held to its share: its load (a gateway's own
//! principal, a benchmark) is no attack while there is room.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The clock-skew limit of RFC 4120 as roamgate applies it.
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);

/// How far apart two times are, whichever is the later: the skew of a
/// peer's clock as a message's time shows it.
pub fn skew_between(a: SystemTime, b: SystemTime) -> Duration {
    a.duration_since(b)
        .or_else(|_| b.duration_since(a))
        .unwrap_or_default()
}

/// Default number of authenticators kept.
pub const DEFAULT_CAPACITY: usize = 100_000;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReplayError {
    #[error("replayed authenticator (KRB_AP_ERR_REPEAT)")]
    Replay,
    #[error("replay cache full ({0} live authenticators); refusing new ones")]
    Full(usize),
    #[error(
        "this client has {0} live authenticators in the replay cache, its limit; \
         refusing more from it until they expire"
    )]
    ClientFull(usize),
}

/// What identifies one authenticator.
#[derive(Clone, Debug)]
pub struct AuthenticatorId<'a> {
    pub client: &'a str,
    pub server: &'a str,
    pub ctime: SystemTime,
    pub cusec: u32,
    /// The authenticator's ciphertext (hashed, not stored).
    pub ciphertext: &'a [u8],
}

type Digest = [u8; 32];

/// A bounded replay cache. Not thread-safe by itself; wrap in a mutex.
#[derive(Debug)]
pub struct ReplayCache {
    window: Duration,
    capacity: usize,
    per_client: usize,
    /// id -> its client.
    entries: HashMap<Digest, Arc<str>>,
    /// (expiry, id), for expiring in order.
    by_expiry: BTreeSet<(u64, Digest)>,
    /// Live entries per client.
    clients: HashMap<Arc<str>, usize>,
}

impl Default for ReplayCache {
    fn default() -> Self {
        Self::new(CLOCK_SKEW, DEFAULT_CAPACITY)
    }
}

fn secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn digest(id: &AuthenticatorId<'_>) -> Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    // Length-prefix each variable field so that no two ids hash alike.
    for field in [id.client.as_bytes(), id.server.as_bytes(), id.ciphertext] {
        ctx.update(&(field.len() as u64).to_be_bytes());
        ctx.update(field);
    }
    ctx.update(&secs(id.ctime).to_be_bytes());
    ctx.update(&id.cusec.to_be_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl ReplayCache {
    /// A cache remembering authenticators for `window` past their ctime
    /// (the skew limit), holding at most `capacity`, with no limit per
    /// client below that.
    pub fn new(window: Duration, capacity: usize) -> Self {
        Self {
            window,
            capacity,
            per_client: capacity,
            entries: HashMap::new(),
            by_expiry: BTreeSet::new(),
            clients: HashMap::new(),
        }
    }

    /// Limits each client to `limit` live entries.
    pub fn with_per_client_limit(mut self, limit: usize) -> Self {
        self.per_client = limit;
        self
    }

    pub fn per_client_limit(&self) -> usize {
        self.per_client
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Live entries of `client`.
    pub fn client_len(&self, client: &str) -> usize {
        self.clients.get(client).copied().unwrap_or(0)
    }

    /// Drops every entry whose ctime + window is before `now`.
    pub fn expire(&mut self, now: SystemTime) {
        let now = secs(now);
        while let Some(&(exp, d)) = self.by_expiry.first() {
            if exp >= now {
                break;
            }
            self.by_expiry.remove(&(exp, d));
            if let Some(client) = self.entries.remove(&d) {
                if let Some(n) = self.clients.get_mut(&client) {
                    *n -= 1;
                    if *n == 0 {
                        self.clients.remove(&client);
                    }
                }
            }
        }
    }

    /// Records an authenticator; an error if it was seen before, or if the
    /// cache (or the client's share of it) is full of live entries.
    pub fn check_and_insert(
        &mut self,
        id: &AuthenticatorId<'_>,
        now: SystemTime,
    ) -> Result<(), ReplayError> {
        self.expire(now);
        let d = digest(id);
        if self.entries.contains_key(&d) {
            return Err(ReplayError::Replay);
        }
        if self.entries.len() >= self.capacity {
            return Err(ReplayError::Full(self.entries.len()));
        }
        let held = self.client_len(id.client);
        if held >= self.per_client && self.entries.len() >= self.capacity / 2 {
            return Err(ReplayError::ClientFull(held));
        }
        // Remember it until both its ctime and our now are past the window
        // (ctime may be ahead of us by up to the skew).
        let exp = secs(id.ctime).max(secs(now)) + self.window.as_secs();
        let client: Arc<str> = match self.clients.get_key_value(id.client) {
            Some((k, _)) => Arc::clone(k),
            None => Arc::from(id.client),
        };
        *self.clients.entry(Arc::clone(&client)).or_insert(0) += 1;
        self.entries.insert(d, client);
        self.by_expiry.insert((exp, d));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn id(ct: &[u8], ctime: u64, cusec: u32) -> AuthenticatorId<'_> {
        AuthenticatorId {
            client: "alice@R",
            server: "host/x@R",
            ctime: at(ctime),
            cusec,
            ciphertext: ct,
        }
    }

    #[test]
    fn rejects_replay_within_window() {
        let mut rc = ReplayCache::default();
        rc.check_and_insert(&id(b"a", 1000, 5), at(1000)).unwrap();
        assert_eq!(
            rc.check_and_insert(&id(b"a", 1000, 5), at(1100)),
            Err(ReplayError::Replay)
        );
        // Same time, different authenticator: fine.
        rc.check_and_insert(&id(b"b", 1000, 5), at(1100)).unwrap();
        // Same ciphertext, different cusec: a different id.
        rc.check_and_insert(&id(b"a", 1000, 6), at(1100)).unwrap();
        assert_eq!(rc.len(), 3);
    }

    #[test]
    fn expires_after_window() {
        let mut rc = ReplayCache::new(Duration::from_secs(300), 10);
        rc.check_and_insert(&id(b"a", 1000, 0), at(1000)).unwrap();
        rc.expire(at(1300));
        assert_eq!(rc.len(), 1);
        rc.expire(at(1301));
        assert!(rc.is_empty());
    }

    #[test]
    fn full_cache_refuses_instead_of_forgetting() {
        let mut rc = ReplayCache::new(Duration::from_secs(300), 2);
        rc.check_and_insert(&id(b"a", 1000, 0), at(1000)).unwrap();
        rc.check_and_insert(&id(b"b", 1000, 0), at(1000)).unwrap();
        assert_eq!(
            rc.check_and_insert(&id(b"c", 1000, 0), at(1000)),
            Err(ReplayError::Full(2))
        );
        // The old entries are still there.
        assert_eq!(
            rc.check_and_insert(&id(b"a", 1000, 0), at(1001)),
            Err(ReplayError::Replay)
        );
        // Once they expire there is room again.
        rc.check_and_insert(&id(b"c", 2000, 0), at(2000)).unwrap();
        assert_eq!(rc.len(), 1);
    }

    #[test]
    fn future_ctime_is_kept_until_it_is_old() {
        let mut rc = ReplayCache::new(Duration::from_secs(300), 10);
        // ctime 250 s ahead of our clock.
        rc.check_and_insert(&id(b"a", 1250, 0), at(1000)).unwrap();
        assert_eq!(
            rc.check_and_insert(&id(b"a", 1250, 0), at(1540)),
            Err(ReplayError::Replay)
        );
    }

    #[test]
    fn one_client_fills_only_its_share_under_pressure() {
        let mut rc = ReplayCache::new(Duration::from_secs(300), 10).with_per_client_limit(3);
        let of = |client, ct: &'static [u8]| AuthenticatorId {
            client,
            server: "krbtgt/R@R",
            ctime: at(1000),
            cusec: 0,
            ciphertext: ct,
        };
        // Below half the capacity the share does not bind.
        for ct in [b"1", b"2", b"3", b"4", b"5"] {
            rc.check_and_insert(&of("mallory@R", ct), at(1000)).unwrap();
        }
        assert_eq!(
            rc.check_and_insert(&of("mallory@R", b"6"), at(1000)),
            Err(ReplayError::ClientFull(5))
        );
        // Replays are still told apart from refusals.
        assert_eq!(
            rc.check_and_insert(&of("mallory@R", b"1"), at(1000)),
            Err(ReplayError::Replay)
        );
        // The other half is everyone else's.
        for ct in [b"a", b"b", b"c"] {
            rc.check_and_insert(&of("bob@R", ct), at(1000)).unwrap();
        }
        rc.check_and_insert(&of("carol@R", b"a"), at(1000)).unwrap();
        assert_eq!(rc.client_len("mallory@R"), 5);
        // Expiry gives the client's share back.
        rc.expire(at(1301));
        assert_eq!(rc.client_len("mallory@R"), 0);
        assert!(rc.is_empty());
        rc.check_and_insert(&of("mallory@R", b"6"), at(1301))
            .unwrap();
    }
}
