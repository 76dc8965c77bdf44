//! The replay list of RFC 3711 §3.3.2 as a sliding bitmap, and the index
//! estimate of §3.3.1 / Appendix A.
//!
//! One [`Window`] per SSRC and direction holds the highest index accepted so
//! far and a bitmap of the [`WINDOW_SIZE`] indices below it. The same type
//! serves SRTP (48-bit packet index: ROC << 16 | SEQ) and SRTCP (31-bit
//! SRTCP index).

use crate::Error;

/// Packets accepted behind the highest index (RFC 3711 §3.3.2 asks for at
/// least 64).
pub const WINDOW_SIZE: u64 = 128;

/// The largest SRTP packet index (48 bits).
pub const MAX_SRTP_INDEX: u64 = (1 << 48) - 1;

/// A replay window: the highest index accepted and the indices below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    highest: u64,
    /// Bit `d` set: index `highest - d` was accepted.
    seen: u128,
}

impl Window {
    /// A window whose first accepted index is `index`.
    pub fn starting_at(index: u64) -> Self {
        Window {
            highest: index,
            seen: 0,
        }
    }

    /// The highest index accepted so far.
    pub fn highest(&self) -> u64 {
        self.highest
    }

    /// The rollover counter of the highest index accepted (SRTP).
    pub fn roc(&self) -> u32 {
        // 48-bit index: the top 32 bits are the ROC; truncation cannot lose
        // bits because indices never exceed MAX_SRTP_INDEX.
        ((self.highest >> 16) & 0xffff_ffff) as u32
    }

    /// RFC 3711 Appendix A: the packet index of sequence number `seq`
    /// relative to the highest index accepted, s_l and ROC. A guess below
    /// zero (ROC 0, a sequence number far ahead of s_l) is read as ROC 0,
    /// as libsrtp does, since no index is negative.
    pub fn estimate(&self, seq: u16) -> Result<u64, Error> {
        let s_l = i64::from((self.highest & 0xffff) as u16);
        let roc = i64::from(self.roc());
        let seq_i = i64::from(seq);
        let v = if s_l < 32768 {
            if seq_i - s_l > 32768 {
                roc - 1
            } else {
                roc
            }
        } else if s_l - 32768 > seq_i {
            roc + 1
        } else {
            roc
        };
        let v = v.max(0);
        let index = (v << 16) | seq_i;
        // v <= 2^32, so index < 2^49: no overflow of i64 nor sign issue.
        let index = index as u64;
        if index > MAX_SRTP_INDEX {
            return Err(Error::IndexExhausted);
        }
        Ok(index)
    }

    /// §3.3.2: may `index` be accepted? `Replayed` if seen, `TooOld` if it
    /// is left of the window.
    pub fn check(&self, index: u64) -> Result<(), Error> {
        if index > self.highest {
            return Ok(());
        }
        let delta = self.highest - index;
        if delta >= WINDOW_SIZE {
            return Err(Error::TooOld);
        }
        if self.seen & (1u128 << delta) != 0 {
            return Err(Error::Replayed);
        }
        Ok(())
    }

    /// Record `index` as accepted (after it was authenticated).
    pub fn accept(&mut self, index: u64) {
        if index > self.highest {
            let shift = index - self.highest;
            self.seen = if shift >= WINDOW_SIZE {
                0
            } else {
                self.seen << shift
            };
            self.seen |= 1;
            self.highest = index;
        } else {
            let delta = self.highest - index;
            if delta < WINDOW_SIZE {
                self.seen |= 1u128 << delta;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepted(first: u64) -> Window {
        let mut w = Window::starting_at(first);
        w.accept(first);
        w
    }

    #[test]
    fn fresh_duplicate_and_old() {
        let mut w = accepted(1000);
        assert_eq!(w.check(1000), Err(Error::Replayed));
        assert_eq!(w.check(1001), Ok(()));
        w.accept(1001);
        // Reordered, inside the window.
        assert_eq!(w.check(990), Ok(()));
        w.accept(990);
        assert_eq!(w.check(990), Err(Error::Replayed));
        // Edge of the window.
        assert_eq!(w.check(1001 - (WINDOW_SIZE - 1)), Ok(()));
        assert_eq!(w.check(1001 - WINDOW_SIZE), Err(Error::TooOld));
        // A jump wider than the window forgets everything behind it.
        w.accept(5000);
        assert_eq!(w.check(5000), Err(Error::Replayed));
        assert_eq!(w.check(4999), Ok(()));
        assert_eq!(w.check(1001), Err(Error::TooOld));
    }

    #[test]
    fn estimate_appendix_a() {
        // s_l < 32768: a sequence number far above is from the previous ROC.
        let w = accepted((5 << 16) | 100);
        assert_eq!(w.estimate(101), Ok((5 << 16) | 101));
        assert_eq!(w.estimate(60000), Ok((4 << 16) | 60000));
        // s_l >= 32768: a sequence number far below is from the next ROC.
        let w = accepted((5 << 16) | 65500);
        assert_eq!(w.estimate(3), Ok((6 << 16) | 3));
        assert_eq!(w.estimate(65000), Ok((5 << 16) | 65000));
        // ROC 0: no negative guess.
        let w = accepted(100);
        assert_eq!(w.estimate(60000), Ok(60000));
        // Past 2^48: exhausted.
        let w = accepted(MAX_SRTP_INDEX);
        assert_eq!(w.estimate(0), Err(Error::IndexExhausted));
    }
}
