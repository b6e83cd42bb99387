//! An advance's terms, fixed when its workflow starts, and how its amount is split into payments.

use std::time::Duration;

use chrono::{DateTime, Utc};
use money::Amount;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What an advance is, fixed when its workflow starts: changing a setting later never changes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvanceTerms {
    pub advance_id: Uuid,
    pub account_id: Uuid,
    pub amount: Decimal,
    /// How many regular payments (the seed's 12).
    pub payments: u32,
    /// Time between payments, in milliseconds (a week in production, a second in tests).
    pub interval_ms: u64,
    /// After this many extra payments (those after the regular ones) fail in a row, the advance defaults.
    pub max_failed_extra_payments: u32,
    /// The product the terms were copied from (absent in advances started before products existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// When the first payment falls due, if the client chose it; the others follow at the interval. Absent:
    /// one interval after the grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_due_at: Option<DateTime<Utc>>,
}

/// Why terms are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TermsError {
    #[error("payments must be between 1 and {MAX_PAYMENTS}")]
    Payments,
    #[error("the amount must be a valid amount (positive, at most 2 decimal places, at most 1000000000000.00) and at least 0.01 per payment")]
    Amount,
    #[error("the payment interval must be between 1 ms and 365 days")]
    Interval,
    #[error("the limit of failed extra payments must be between 1 and {MAX_PAYMENTS}")]
    FailureLimit,
}

/// The most regular payments, and the most failed extra payments in a row, an advance may have.
pub const MAX_PAYMENTS: u32 = 520;
const MAX_INTERVAL_MS: u64 = 365 * 24 * 3600 * 1000;

impl AdvanceTerms {
    /// Checks the terms: every payment must be at least one cent.
    pub fn validate(&self) -> Result<(), TermsError> {
        if self.payments == 0 || self.payments > MAX_PAYMENTS {
            return Err(TermsError::Payments);
        }
        // The money rule is the `money` crate's; an advance adds that every payment is at least a cent.
        let cent = Decimal::new(1, 2);
        if Amount::try_from(self.amount).is_err() || self.amount < cent * Decimal::from(self.payments) {
            return Err(TermsError::Amount);
        }
        if self.interval_ms == 0 || self.interval_ms > MAX_INTERVAL_MS {
            return Err(TermsError::Interval);
        }
        if self.max_failed_extra_payments == 0 || self.max_failed_extra_payments > MAX_PAYMENTS {
            return Err(TermsError::FailureLimit);
        }
        Ok(())
    }

    pub(crate) fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }

    /// When payment `number` falls due for a grant made at `granted_at`: `first_due_at` and then one interval
    /// apart, or `number` intervals after the grant. A chosen first due time the grant came too late for (the
    /// ledger was down past it) is ignored: no payment is ever due before its grant.
    pub(crate) fn due_at(&self, granted_at: DateTime<Utc>, number: u32) -> DateTime<Utc> {
        let interval = self.interval();
        match self.first_due_at.filter(|first| *first > granted_at) {
            Some(first) => add(first, interval, number.saturating_sub(1)),
            None => add(granted_at, interval, number),
        }
    }
}

/// `at` plus `times` intervals, saturating at the latest time there is.
pub(crate) fn add(at: DateTime<Utc>, interval: Duration, times: u32) -> DateTime<Utc> {
    let step = chrono::Duration::from_std(interval * times).unwrap_or(chrono::Duration::MAX);
    at.checked_add_signed(step).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Splits `amount` into `count` payments equal to the cent, the remainder on the last.
pub fn split(amount: Decimal, count: u32) -> Vec<Decimal> {
    if count == 0 {
        return Vec::new();
    }
    let base = (amount / Decimal::from(count)).round_dp_with_strategy(2, RoundingStrategy::ToZero);
    let mut parts = vec![base; count as usize];
    let last = amount - base * Decimal::from(count - 1);
    if let Some(slot) = parts.last_mut() {
        *slot = last;
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{dec, terms};
    use proptest::prelude::*;

    #[test]
    fn splits_equal_to_the_cent_with_the_remainder_on_the_last() {
        assert_eq!(split(dec("100"), 12)[..11], vec![dec("8.33"); 11][..]);
        assert_eq!(split(dec("100"), 12)[11], dec("8.37"));
        assert_eq!(split(dec("1200"), 12), vec![dec("100"); 12]);
        assert_eq!(split(dec("0.12"), 12), vec![dec("0.01"); 12]);
        assert_eq!(split(dec("0.13"), 12)[11], dec("0.02"));
        assert!(split(dec("5"), 0).is_empty());
    }

    #[test]
    fn terms_need_a_cent_per_payment_and_sane_bounds() {
        assert_eq!(terms("0.12").validate(), Ok(()));
        assert_eq!(terms("0.11").validate(), Err(TermsError::Amount));
        assert_eq!(terms("10.001").validate(), Err(TermsError::Amount));
        assert_eq!(terms("-5").validate(), Err(TermsError::Amount));
        assert_eq!(terms("1000000000000.01").validate(), Err(TermsError::Amount), "the money rule's maximum");
        assert_eq!(AdvanceTerms { payments: 0, ..terms("10") }.validate(), Err(TermsError::Payments));
        assert_eq!(AdvanceTerms { interval_ms: 0, ..terms("10") }.validate(), Err(TermsError::Interval));
        assert_eq!(
            AdvanceTerms { max_failed_extra_payments: 0, ..terms("10") }.validate(),
            Err(TermsError::FailureLimit)
        );
    }

    proptest! {
        #[test]
        fn split_sums_exactly_and_differs_only_on_the_last(cents in 1u64..10_000_000_000, count in 1u32..60) {
            let amount = Decimal::new(cents as i64, 2);
            prop_assume!(amount >= Decimal::new(i64::from(count), 2));
            let parts = split(amount, count);
            prop_assert_eq!(parts.len(), count as usize);
            prop_assert_eq!(parts.iter().copied().sum::<Decimal>(), amount);
            let base = parts[0];
            prop_assert!(parts[..parts.len() - 1].iter().all(|p| *p == base));
            prop_assert!(parts.iter().all(|p| *p > Decimal::ZERO && p.scale() <= 2));
            let last = parts[parts.len() - 1];
            prop_assert!(last >= base && last - base < Decimal::new(i64::from(count), 2));
        }

    }
}
