//! Registration Identification with timestamps (RFC 5944 §5.7, §5.7.1).
//!
//! The 64-bit Identification is an NTP-format timestamp: the high-order 32
//! bits are seconds since 1900-01-01, the low-order 32 bits the fraction of
//! a second, with the bits below the clock's precision filled with random
//! bits. The home agent accepts a request only if its timestamp is within
//! the configured skew of its own clock and greater than the last
//! Identification it accepted from that node. Otherwise it answers 133 and
//! puts its own time in the high-order 32 bits of the reply's
//! Identification (the low-order 32 bits copied from the request), so the
//! node can resynchronise.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Seconds between the NTP epoch (1900) and the Unix epoch (1970).
pub const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Default accepted difference between a request's timestamp and the home
/// agent's clock (RFC 5944 §5.7 leaves it to configuration; 7 s is the
/// common default of deployed home agents; roamgate's configs may raise it
/// up to [`MAX_SKEW`]).
pub const DEFAULT_SKEW: Duration = Duration::from_secs(7);
/// The largest skew roamgate allows (its clock-skew limit everywhere).
pub const MAX_SKEW: Duration = Duration::from_secs(300);

/// NTP seconds (mod 2^32, era 0) of `t`.
pub fn ntp_seconds(t: SystemTime) -> u32 {
    let unix = t.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    (unix.wrapping_add(NTP_UNIX_OFFSET) & 0xffff_ffff) as u32
}

/// An Identification for time `t`: NTP seconds, then 16 bits of the
/// fraction of a second from the clock and 16 random bits (`random`'s low
/// half).
pub fn timestamp(t: SystemTime, random: u32) -> u64 {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let frac16 = (u64::from(d.subsec_nanos()) << 16) / 1_000_000_000;
    (u64::from(ntp_seconds(t)) << 32) | (frac16 << 16) | u64::from(random & 0xffff)
}

/// The seconds part of an Identification.
pub fn seconds_of(id: u64) -> u32 {
    (id >> 32) as u32
}

/// The Identification of a 133 reply: our seconds, the request's low half.
pub fn mismatch_reply(now: SystemTime, request_id: u64) -> u64 {
    (u64::from(ntp_seconds(now)) << 32) | (request_id & 0xffff_ffff)
}

/// Why an Identification was refused (reply code 133).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentificationError {
    #[error("timestamp {theirs} is {diff} s from our clock {ours} (skew limit {limit} s)")]
    OutOfSkew {
        theirs: u32,
        ours: u32,
        diff: u64,
        limit: u64,
    },
    #[error("Identification {got:#018x} is not newer than the last accepted {last:#018x}")]
    NotNewer { got: u64, last: u64 },
}

/// Signed difference `a - b` of two NTP second counts, modulo 2^32.
fn diff_secs(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

/// Whether `id` is later than `last` in serial-number arithmetic (RFC
/// 1982) on the 64-bit Identification. The NTP seconds wrap to 0 on
/// 2036-02-07T06:28:16Z (the end of NTP era 0, RFC 5905 §6); a plain
/// comparison would then refuse every new Identification as older.
/// Serial order is right as long as the two are less than 2^31 s (68
/// years) apart, which the skew check guarantees for any Identification
/// the home agent accepts.
pub fn is_later(id: u64, last: u64) -> bool {
    (id.wrapping_sub(last) as i64) > 0
}

/// The later of two Identifications ([`is_later`]).
pub fn later(a: u64, b: u64) -> u64 {
    if is_later(a, b) {
        a
    } else {
        b
    }
}

/// Checks a request's Identification against our clock and the node's last
/// accepted one.
pub fn check(
    id: u64,
    last_accepted: Option<u64>,
    now: SystemTime,
    skew: Duration,
) -> Result<(), IdentificationError> {
    let theirs = seconds_of(id);
    let ours = ntp_seconds(now);
    let diff = diff_secs(theirs, ours).unsigned_abs();
    if diff > skew.as_secs() {
        return Err(IdentificationError::OutOfSkew {
            theirs,
            ours,
            diff,
            limit: skew.as_secs(),
        });
    }
    if let Some(last) = last_accepted {
        if !is_later(id, last) {
            return Err(IdentificationError::NotNewer { got: id, last });
        }
    }
    Ok(())
}

/// The offset (home agent clock minus ours, in seconds) learnt from a 133
/// reply's Identification.
pub fn resync_offset(reply_id: u64, our_now: SystemTime) -> i64 {
    diff_secs(seconds_of(reply_id), ntp_seconds(our_now))
}

/// `t` shifted by `offset` seconds.
pub fn shifted(t: SystemTime, offset: i64) -> SystemTime {
    if offset >= 0 {
        t + Duration::from_secs(offset as u64)
    } else {
        t.checked_sub(Duration::from_secs(offset.unsigned_abs()))
            .unwrap_or(UNIX_EPOCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn ntp_format() {
        // 2024-01-01T00:00:00Z = 1704067200 Unix = 3913056000 NTP.
        assert_eq!(ntp_seconds(at(1_704_067_200)), 3_913_056_000);
        let t = at(1_704_067_200) + Duration::from_millis(500);
        let id = timestamp(t, 0xabcd_1234);
        assert_eq!(seconds_of(id), 3_913_056_000);
        // Half a second is 0x8000 in the top 16 bits of the fraction.
        assert_eq!((id >> 16) & 0xffff, 0x8000);
        assert_eq!(id & 0xffff, 0x1234);
    }

    #[test]
    fn skew_and_monotonicity() {
        let now = at(1_000_000);
        let skew = Duration::from_secs(7);
        let id = timestamp(now, 1);
        check(id, None, now, skew).unwrap();
        check(timestamp(at(1_000_007), 1), None, now, skew).unwrap();
        check(timestamp(at(999_993), 1), None, now, skew).unwrap();
        assert!(matches!(
            check(timestamp(at(1_000_008), 1), None, now, skew),
            Err(IdentificationError::OutOfSkew { diff: 8, .. })
        ));
        assert!(matches!(
            check(timestamp(at(999_992), 1), None, now, skew),
            Err(IdentificationError::OutOfSkew { diff: 8, .. })
        ));
        // Replay of the same Identification, or an older one.
        assert_eq!(
            check(id, Some(id), now, skew),
            Err(IdentificationError::NotNewer { got: id, last: id })
        );
        assert!(check(id - 1, Some(id), now, skew).is_err());
        check(id + 1, Some(id), now, skew).unwrap();
    }

    #[test]
    fn order_survives_the_ntp_era_wrap() {
        // 2036-02-07T06:28:16Z: NTP seconds wrap from 0xffffffff to 0.
        let wrap = at(2_085_978_496);
        assert_eq!(ntp_seconds(wrap), 0);
        assert_eq!(ntp_seconds(wrap - Duration::from_secs(1)), u32::MAX);
        let skew = Duration::from_secs(7);
        let before = timestamp(wrap - Duration::from_secs(2), 1);
        let after = timestamp(wrap + Duration::from_secs(2), 1);
        let now = wrap + Duration::from_secs(2);
        check(after, Some(before), now, skew).unwrap();
        assert_eq!(
            check(before, Some(after), now, skew),
            Err(IdentificationError::NotNewer {
                got: before,
                last: after
            })
        );
        assert_eq!(later(before, after), after);
        assert_eq!(later(after, before), after);
        assert_eq!(resync_offset(after, wrap - Duration::from_secs(2)), 4);
    }

    #[test]
    fn mismatch_reply_carries_our_time_and_their_low_bits() {
        let ha_now = at(2_000_000);
        let req = timestamp(at(1_000_000), 0x5555);
        let rep = mismatch_reply(ha_now, req);
        assert_eq!(seconds_of(rep), ntp_seconds(ha_now));
        assert_eq!(rep & 0xffff_ffff, req & 0xffff_ffff);
        let offset = resync_offset(rep, at(1_000_000));
        assert_eq!(offset, 1_000_000);
        assert_eq!(shifted(at(1_000_000), offset), ha_now);
        assert_eq!(shifted(ha_now, -offset), at(1_000_000));
    }
}
