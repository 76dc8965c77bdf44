//! Tariffs: a setup fee and a per-second rate, in integer minor units of
//! the operator's currency (cents, say). No floating point touches money:
//! every sum is checked `i64` arithmetic and an overflow is a typed error.
//!
//! A call is billed **per started second**: 1 ms of talk is one second,
//! 1.000 s is one second, 1.001 s is two. So
//! `charge = setup_fee + ceil(duration / 1 s) * per_second`.

use std::time::Duration;

/// The largest amount anything in the ledger may hold or move. Amounts are
/// stored as SQLite INTEGERs (`i64`), and a balance must stay representable
/// after any one charge, so single amounts are bounded well below
/// `i64::MAX`.
pub const MAX_AMOUNT: i64 = i64::MAX / 4;

/// What is wrong with an amount or a tariff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("negative amount {0}")]
    Negative(i64),
    #[error("amount overflows (more than {MAX_AMOUNT} minor units)")]
    Overflow,
}

/// Checks one amount: `0 ..= MAX_AMOUNT`.
pub fn check_amount(amount: i64) -> Result<i64, AmountError> {
    if amount < 0 {
        Err(AmountError::Negative(amount))
    } else if amount > MAX_AMOUNT {
        Err(AmountError::Overflow)
    } else {
        Ok(amount)
    }
}

/// One account's tariff. Build it with [`Tariff::new`], which checks both
/// amounts; the fields stay private so an unchecked tariff cannot exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Tariff {
    setup_fee: i64,
    per_second: i64,
}

impl Tariff {
    pub fn new(setup_fee: i64, per_second: i64) -> Result<Self, AmountError> {
        Ok(Self {
            setup_fee: check_amount(setup_fee)?,
            per_second: check_amount(per_second)?,
        })
    }

    pub fn setup_fee(&self) -> i64 {
        self.setup_fee
    }

    pub fn per_second(&self) -> i64 {
        self.per_second
    }

    /// The seconds billed for `duration`: every started second counts.
    pub fn billed_seconds(duration: Duration) -> u64 {
        let whole = duration.as_secs();
        if duration.subsec_nanos() > 0 {
            whole.saturating_add(1)
        } else {
            whole
        }
    }

    /// The charge for `seconds` billed seconds: setup fee plus
    /// `seconds * per_second`, or [`AmountError::Overflow`].
    pub fn charge_seconds(&self, seconds: u64) -> Result<i64, AmountError> {
        let secs = i64::try_from(seconds).map_err(|_| AmountError::Overflow)?;
        let talk = secs
            .checked_mul(self.per_second)
            .ok_or(AmountError::Overflow)?;
        let total = talk
            .checked_add(self.setup_fee)
            .ok_or(AmountError::Overflow)?;
        check_amount(total)
    }

    /// The charge for a call of `duration` (per started second).
    pub fn charge(&self, duration: Duration) -> Result<i64, AmountError> {
        self.charge_seconds(Self::billed_seconds(duration))
    }

    /// How many whole seconds `budget` pays for after the setup fee:
    /// `None` when the rate is 0 (no limit from this tariff), `Some(0)`
    /// when the budget does not even cover the setup fee.
    pub fn affordable_seconds(&self, budget: i64) -> Option<u64> {
        if self.per_second == 0 {
            return None;
        }
        let after_setup = budget.saturating_sub(self.setup_fee).max(0);
        // per_second > 0 here; both are non-negative.
        Some((after_setup / self.per_second).unsigned_abs())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_started_second_is_billed() {
        let t = Tariff::new(50, 3).unwrap();
        assert_eq!(t.charge(Duration::ZERO), Ok(50));
        assert_eq!(t.charge(Duration::from_millis(1)), Ok(53));
        assert_eq!(t.charge(Duration::from_secs(1)), Ok(53));
        assert_eq!(t.charge(Duration::from_millis(1001)), Ok(56));
        assert_eq!(t.charge(Duration::from_secs(60)), Ok(230));
    }

    #[test]
    fn negative_and_huge_amounts_are_refused() {
        assert_eq!(Tariff::new(-1, 0), Err(AmountError::Negative(-1)));
        assert_eq!(Tariff::new(0, -5), Err(AmountError::Negative(-5)));
        assert_eq!(Tariff::new(i64::MAX, 0), Err(AmountError::Overflow));
        assert_eq!(check_amount(MAX_AMOUNT), Ok(MAX_AMOUNT));
        assert_eq!(check_amount(MAX_AMOUNT + 1), Err(AmountError::Overflow));
    }

    #[test]
    fn an_overflowing_charge_is_an_error() {
        let t = Tariff::new(1, MAX_AMOUNT).unwrap();
        assert_eq!(t.charge_seconds(2), Err(AmountError::Overflow));
        assert_eq!(t.charge_seconds(u64::MAX), Err(AmountError::Overflow));
        let t = Tariff::new(MAX_AMOUNT, 1).unwrap();
        assert_eq!(t.charge_seconds(1), Err(AmountError::Overflow));
        assert_eq!(
            t.charge(Duration::from_secs(u64::MAX)),
            Err(AmountError::Overflow)
        );
    }

    #[test]
    fn affordable_seconds_floor_after_the_setup_fee() {
        let t = Tariff::new(10, 3).unwrap();
        assert_eq!(t.affordable_seconds(9), Some(0));
        assert_eq!(t.affordable_seconds(10), Some(0));
        assert_eq!(t.affordable_seconds(12), Some(0));
        assert_eq!(t.affordable_seconds(13), Some(1));
        assert_eq!(t.affordable_seconds(-100), Some(0));
        assert_eq!(Tariff::new(10, 0).unwrap().affordable_seconds(0), None);
        // What affordable_seconds grants is always payable.
        for budget in [13, 100, 1_000_003] {
            let s = t.affordable_seconds(budget).unwrap();
            assert!(t.charge_seconds(s).unwrap() <= budget);
            assert!(t.charge_seconds(s + 1).unwrap() > budget);
        }
    }
}
