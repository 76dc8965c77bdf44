//! Ticket lifetime, renew-until and clock-skew policy (RFC 4120 §3.1.3,
//! §3.3.3). Pure functions over Unix seconds, so tests need no clock.

use std::time::Duration;

use super::errors::KdcError;

/// The maximum tolerated difference between client and KDC clocks.
pub const CLOCK_SKEW: Duration = Duration::from_secs(300);
/// The realm-wide default maximum ticket life (MIT's default).
pub const DEFAULT_MAX_LIFE: Duration = Duration::from_secs(24 * 3600);
/// The realm-wide default maximum renewable life.
pub const DEFAULT_MAX_RENEW: Duration = Duration::from_secs(7 * 24 * 3600);

/// Realm-wide limits. Per-principal limits narrow these further.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub max_life: Duration,
    pub max_renew: Duration,
    pub clock_skew: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_life: DEFAULT_MAX_LIFE,
            max_renew: DEFAULT_MAX_RENEW,
            clock_skew: CLOCK_SKEW,
        }
    }
}

/// What the client asked for, in Unix seconds. `till`/`rtime` of 0 (the
/// KerberosTime 19700101000000Z) mean "as long as policy allows", as MIT and
/// Heimdal clients use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requested {
    pub from: Option<i64>,
    pub till: i64,
    pub rtime: Option<i64>,
    pub renewable: bool,
    pub renewable_ok: bool,
}

/// Times granted for a new ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    pub start: i64,
    pub end: i64,
    /// `Some` exactly when the ticket is renewable.
    pub renew_till: Option<i64>,
}

fn secs(d: Duration) -> i64 {
    i64::try_from(d.as_secs()).unwrap_or(i64::MAX)
}

fn requested_or_max(t: i64) -> i64 {
    if t <= 0 {
        i64::MAX
    } else {
        t
    }
}

impl Policy {
    /// Is `t` within the clock-skew limit of `now`?
    pub fn within_skew(&self, t: i64, now: i64) -> bool {
        now.abs_diff(t) <= self.clock_skew.as_secs()
    }

    /// Lifetime of a ticket issued at `now`.
    ///
    /// * `life_limits`: the maximum lives of the principals involved
    ///   (client and server in AS; server in TGS), 0 meaning no own limit.
    /// * `renew_limits`: likewise for renewable life.
    /// * `cap_end` / `cap_renew`: absolute limits from a TGT (TGS only).
    #[allow(clippy::too_many_arguments)]
    pub fn grant(
        &self,
        now: i64,
        req: &Requested,
        life_limits: &[Duration],
        renew_limits: &[Duration],
        renewable_allowed: bool,
        cap_end: Option<i64>,
        cap_renew: Option<i64>,
    ) -> Result<Granted, KdcError> {
        if let Some(from) = req.from {
            if from > now.saturating_add(secs(self.clock_skew)) {
                // roamgate issues no postdated tickets.
                return Err(KdcError::CannotPostdate);
            }
        }
        let start = now;
        let mut max_life = self.max_life;
        for l in life_limits.iter().filter(|l| !l.is_zero()) {
            max_life = max_life.min(*l);
        }
        let till = requested_or_max(req.till);
        let mut end = till.min(start.saturating_add(secs(max_life)));
        if let Some(cap) = cap_end {
            end = end.min(cap);
        }
        if end <= start {
            return Err(if cap_end.is_some_and(|c| c <= start) {
                KdcError::TicketExpired
            } else {
                KdcError::NeverValid
            });
        }

        let mut want_renew = None;
        if req.renewable {
            want_renew = Some(requested_or_max(req.rtime.unwrap_or(0)));
        } else if req.renewable_ok && till > end {
            want_renew = Some(till);
        }
        let renew_till = match want_renew {
            Some(r) if renewable_allowed => {
                let mut max_renew = self.max_renew;
                for l in renew_limits.iter().filter(|l| !l.is_zero()) {
                    max_renew = max_renew.min(*l);
                }
                let mut r = r.min(start.saturating_add(secs(max_renew)));
                if let Some(cap) = cap_renew {
                    r = r.min(cap);
                }
                // A renew-until no later than the end gives nothing to renew.
                (r > end).then_some(r)
            }
            _ => None,
        };
        Ok(Granted {
            start,
            end,
            renew_till,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000;
    const H: i64 = 3600;

    fn req(till: i64) -> Requested {
        Requested {
            from: None,
            till,
            rtime: None,
            renewable: false,
            renewable_ok: false,
        }
    }

    #[test]
    fn lifetime_is_capped_by_realm_and_principal() {
        let p = Policy::default();
        let g = p.grant(NOW, &req(0), &[], &[], true, None, None).unwrap();
        assert_eq!(g.end, NOW + 24 * H);
        assert_eq!(g.renew_till, None);
        let g = p
            .grant(
                NOW,
                &req(NOW + 30 * H),
                &[Duration::from_secs(10 * 3600), Duration::ZERO],
                &[],
                true,
                None,
                None,
            )
            .unwrap();
        assert_eq!(g.end, NOW + 10 * H);
        let g = p
            .grant(NOW, &req(NOW + H), &[], &[], true, None, None)
            .unwrap();
        assert_eq!(g.end, NOW + H);
    }

    #[test]
    fn end_before_start_is_never_valid() {
        let p = Policy::default();
        assert_eq!(
            p.grant(NOW, &req(NOW - 10), &[], &[], true, None, None),
            Err(KdcError::NeverValid)
        );
    }

    #[test]
    fn expired_tgt_cap_is_ticket_expired() {
        let p = Policy::default();
        assert_eq!(
            p.grant(NOW, &req(0), &[], &[], true, Some(NOW - 1), None),
            Err(KdcError::TicketExpired)
        );
    }

    #[test]
    fn postdating_is_refused_beyond_skew() {
        let p = Policy::default();
        let mut r = req(0);
        r.from = Some(NOW + 299);
        assert!(p.grant(NOW, &r, &[], &[], true, None, None).is_ok());
        r.from = Some(NOW + 3600);
        assert_eq!(
            p.grant(NOW, &r, &[], &[], true, None, None),
            Err(KdcError::CannotPostdate)
        );
    }

    #[test]
    fn renewable_is_capped_and_needs_permission() {
        let p = Policy::default();
        let mut r = req(NOW + H);
        r.renewable = true;
        r.rtime = Some(NOW + 30 * 24 * H);
        let g = p.grant(NOW, &r, &[], &[], true, None, None).unwrap();
        assert_eq!(g.renew_till, Some(NOW + 7 * 24 * H));
        let g = p.grant(NOW, &r, &[], &[], false, None, None).unwrap();
        assert_eq!(g.renew_till, None);
        let g = p
            .grant(NOW, &r, &[], &[], true, None, Some(NOW + 2 * H))
            .unwrap();
        assert_eq!(g.renew_till, Some(NOW + 2 * H));
    }

    #[test]
    fn renewable_ok_turns_long_till_into_renew_till() {
        let p = Policy::default();
        let mut r = req(NOW + 48 * H);
        r.renewable_ok = true;
        let g = p.grant(NOW, &r, &[], &[], true, None, None).unwrap();
        assert_eq!(g.end, NOW + 24 * H);
        assert_eq!(g.renew_till, Some(NOW + 48 * H));
    }

    #[test]
    fn skew_window_is_300_seconds() {
        let p = Policy::default();
        assert!(p.within_skew(NOW + 300, NOW));
        assert!(p.within_skew(NOW - 300, NOW));
        assert!(!p.within_skew(NOW + 301, NOW));
        assert!(!p.within_skew(NOW - 301, NOW));
    }
}
