//! The advance model: its terms, its payment schedule and every state change, as pure code (no Temporal,
//! no clock, no I/O).
//!
//! The workflow holds an [`Advance`] as its state and calls these methods as things happen; every method
//! keeps the seed's formula: `paid + scheduled + processing = amount` while the advance is open. The store
//! mirrors the same [`Advance`] and the API shows it.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ledger_contract::UnknownValue;
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

    fn interval(&self) -> Duration {
        Duration::from_millis(self.interval_ms)
    }
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

/// A payment's id: derived from the advance and the payment's number, so the API can list the payments
/// before the workflow runs, and a replay of the workflow finds the same ids.
pub fn payment_id(advance_id: Uuid, number: u32) -> Uuid {
    Uuid::new_v5(&advance_id, format!("payment-{number}").as_bytes())
}

/// The ledger key of a payment's withdrawal.
pub fn payment_key(payment_id: Uuid) -> String {
    format!("payment-{payment_id}")
}

/// The ledger key of an advance's grant.
pub fn grant_key(advance_id: Uuid) -> String {
    format!("advance-{advance_id}-grant")
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdvanceStatus {
    /// Started; the grant is being made.
    Granting,
    /// Granted; payments are being collected.
    Active,
    /// Everything is paid.
    Completed,
    /// The grant was refused (nothing was lent).
    Failed,
    /// Too many extra payments failed in a row.
    Defaulted,
    /// An operator stopped future collection.
    Cancelled,
}

impl AdvanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Granting => "granting",
            Self::Active => "active",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Defaulted => "defaulted",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Granting, Self::Active, Self::Completed, Self::Failed, Self::Defaulted, Self::Cancelled]
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    /// The statuses of an advance that still collects.
    pub const OPEN: [Self; 2] = [Self::Granting, Self::Active];

    /// Whether the advance still collects (reconciliation checks open advances).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Granting | Self::Active)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Not due yet.
    Scheduled,
    /// Its withdrawal is under way.
    Processing,
    /// Withdrawn; `transaction_id` is the ledger's.
    Paid,
    /// Refused; its amount moved to `moved_to`.
    Failed,
    /// Merged into an earlier payment by a pay-off; its amount moved to `moved_to`.
    Superseded,
    /// Will never be collected (cancelled advance or refused grant).
    Cancelled,
}

impl TryFrom<String> for AdvanceStatus {
    type Error = UnknownValue;

    fn try_from(text: String) -> Result<Self, UnknownValue> {
        Self::parse(&text).ok_or(UnknownValue { what: "advance status", value: text })
    }
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Processing => "processing",
            Self::Paid => "paid",
            Self::Failed => "failed",
            Self::Superseded => "superseded",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Scheduled, Self::Processing, Self::Paid, Self::Failed, Self::Superseded, Self::Cancelled]
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    /// Counted by the seed's formula.
    pub fn is_owed(self) -> bool {
        matches!(self, Self::Scheduled | Self::Processing | Self::Paid)
    }
}

impl TryFrom<String> for PaymentStatus {
    type Error = UnknownValue;

    fn try_from(text: String) -> Result<Self, UnknownValue> {
        Self::parse(&text).ok_or(UnknownValue { what: "payment status", value: text })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub payment_id: Uuid,
    /// 1-based; numbers above the regular count are extra payments.
    pub number: u32,
    pub amount: Decimal,
    /// Set once the grant is made.
    pub due_at: Option<DateTime<Utc>>,
    pub status: PaymentStatus,
    pub transaction_id: Option<Uuid>,
    /// Why it failed.
    pub failure_reason: Option<String>,
    /// The number of the payment its amount went to (failed or superseded).
    pub moved_to: Option<u32>,
}

/// The state of one advance: the workflow's state, what its query returns, what the database mirrors.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Advance {
    pub terms: AdvanceTerms,
    pub status: AdvanceStatus,
    pub granted_at: Option<DateTime<Utc>>,
    pub grant_transaction_id: Option<Uuid>,
    /// Why the advance failed, defaulted or was cancelled.
    pub status_reason: Option<String>,
    pub payments: Vec<Payment>,
    /// Extra payments failed since the last success.
    pub failed_extra_in_row: u32,
    /// Grows with every change, so a mirror never overwrites a newer state with an older one.
    pub revision: u64,
    /// Set while an operator has paused collection (absent in states recorded before pausing existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Pause>,
}

/// An operator's pause: nothing new is collected until it is resumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub since: DateTime<Utc>,
    pub reason: String,
}

/// What changed in an advance since an earlier state of it: every field but the terms, and only the payments
/// that changed or are new. The workflow mirrors this instead of the whole advance, so that its history grows
/// with what happened, not with the length of the schedule times the number of changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvanceChange {
    pub advance_id: Uuid,
    /// The revision of the state before this change; applying it to any other state is refused.
    pub from_revision: u64,
    pub revision: u64,
    pub status: AdvanceStatus,
    pub granted_at: Option<DateTime<Utc>>,
    pub grant_transaction_id: Option<Uuid>,
    pub status_reason: Option<String>,
    pub failed_extra_in_row: u32,
    pub paused: Option<Pause>,
    pub payments: Vec<Payment>,
}

/// What the workflow sends to be mirrored: its whole state the first time, then what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mirror")]
pub enum Mirror {
    Whole { advance: Advance },
    Change { change: AdvanceChange },
}

impl Mirror {
    pub fn advance_id(&self) -> Uuid {
        match self {
            Self::Whole { advance } => advance.terms.advance_id,
            Self::Change { change } => change.advance_id,
        }
    }

    pub fn revision(&self) -> u64 {
        match self {
            Self::Whole { advance } => advance.revision,
            Self::Change { change } => change.revision,
        }
    }
}

/// How an [`AdvanceChange`] does not fit the state it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("the change is for advance {change}, not {advance}")]
    OtherAdvance { advance: Uuid, change: Uuid },
    #[error("the change follows revision {from}, but the state is at revision {at}")]
    OtherRevision { from: u64, at: u64 },
}

/// An operator command or event that does not apply to the advance as it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("the advance is {0}, not active")]
    NotActive(&'static str),
    #[error("payment {0} is not in a state that allows this")]
    Payment(u32),
    #[error("nothing is left to pay")]
    NothingOutstanding,
    #[error("the advance is paused; resume it first")]
    Paused,
    #[error("the advance is not paused")]
    NotPaused,
}

fn add(at: DateTime<Utc>, interval: Duration, times: u32) -> DateTime<Utc> {
    let step = chrono::Duration::from_std(interval * times).unwrap_or(chrono::Duration::MAX);
    at.checked_add_signed(step).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl Advance {
    /// A new advance, before its grant: the payments are known, their due times are not.
    pub fn new(terms: AdvanceTerms) -> Self {
        let payments = split(terms.amount, terms.payments)
            .into_iter()
            .zip(1..)
            .map(|(amount, number)| Payment {
                payment_id: payment_id(terms.advance_id, number),
                number,
                amount,
                due_at: None,
                status: PaymentStatus::Scheduled,
                transaction_id: None,
                failure_reason: None,
                moved_to: None,
            })
            .collect();
        Self {
            terms,
            status: AdvanceStatus::Granting,
            granted_at: None,
            grant_transaction_id: None,
            status_reason: None,
            payments,
            failed_extra_in_row: 0,
            revision: 0,
            paused: None,
        }
    }

    fn changed(&mut self) {
        self.revision += 1;
    }

    fn payment_mut(&mut self, number: u32) -> Option<&mut Payment> {
        self.payments.iter_mut().find(|payment| payment.number == number)
    }

    fn require_active(&self) -> Result<(), ScheduleError> {
        match self.status {
            AdvanceStatus::Active => Ok(()),
            other => Err(ScheduleError::NotActive(other.as_str())),
        }
    }

    /// The grant went through at `at`: payment k is due k intervals later.
    pub fn granted(&mut self, at: DateTime<Utc>, transaction_id: Uuid) {
        let interval = self.terms.interval();
        for payment in &mut self.payments {
            payment.due_at = Some(add(at, interval, payment.number));
        }
        self.status = AdvanceStatus::Active;
        self.granted_at = Some(at);
        self.grant_transaction_id = Some(transaction_id);
        self.changed();
    }

    /// The grant was refused: nothing was lent and nothing will be collected.
    pub fn grant_refused(&mut self, reason: &str) {
        self.close(AdvanceStatus::Failed, reason);
    }

    fn close(&mut self, status: AdvanceStatus, reason: &str) {
        for payment in &mut self.payments {
            if payment.status == PaymentStatus::Scheduled {
                payment.status = PaymentStatus::Cancelled;
            }
        }
        self.status = status;
        self.status_reason = Some(reason.to_owned());
        self.paused = None;
        self.changed();
    }

    /// The next payment to collect and when it is due: the lowest-numbered scheduled payment.
    pub fn next_due(&self) -> Option<(u32, DateTime<Utc>)> {
        if self.status != AdvanceStatus::Active || self.paused.is_some() {
            return None;
        }
        self.payments
            .iter()
            .filter(|payment| payment.status == PaymentStatus::Scheduled)
            .min_by_key(|payment| payment.number)
            .and_then(|payment| payment.due_at.map(|due| (payment.number, due)))
    }

    /// A payment's withdrawal begins.
    pub fn start(&mut self, number: u32) -> Result<&Payment, ScheduleError> {
        self.require_active()?;
        if self.paused.is_some() {
            return Err(ScheduleError::Paused);
        }
        let payment = self.payment_mut(number).filter(|p| p.status == PaymentStatus::Scheduled);
        let payment = payment.ok_or(ScheduleError::Payment(number))?;
        payment.status = PaymentStatus::Processing;
        self.changed();
        self.payments.iter().find(|p| p.number == number).ok_or(ScheduleError::Payment(number))
    }

    /// A payment was withdrawn. When nothing is left to collect, the advance is completed.
    pub fn paid(&mut self, number: u32, transaction_id: Uuid) -> Result<(), ScheduleError> {
        let payment = self.payment_mut(number).filter(|p| p.status == PaymentStatus::Processing);
        let payment = payment.ok_or(ScheduleError::Payment(number))?;
        payment.status = PaymentStatus::Paid;
        payment.transaction_id = Some(transaction_id);
        self.failed_extra_in_row = 0;
        if self.status == AdvanceStatus::Active && self.outstanding_amount().is_zero() {
            self.status = AdvanceStatus::Completed;
            self.paused = None;
        }
        self.changed();
        Ok(())
    }

    /// A payment was refused. Its amount goes to the next scheduled payment or, after the last, to a new
    /// payment one interval after it; after too many extra payments failed in a row, the advance defaults.
    pub fn failed(&mut self, number: u32, reason: &str) -> Result<(), ScheduleError> {
        let regular = self.terms.payments;
        let limit = self.terms.max_failed_extra_payments;
        let interval = self.terms.interval();
        let next = self
            .payments
            .iter()
            .filter(|p| p.status == PaymentStatus::Scheduled && p.number > number)
            .map(|p| p.number)
            .min();
        let last_number = self.payments.iter().map(|p| p.number).max().unwrap_or(number);
        let active = self.status == AdvanceStatus::Active;
        let payment = self.payment_mut(number).filter(|p| p.status == PaymentStatus::Processing);
        let payment = payment.ok_or(ScheduleError::Payment(number))?;
        payment.status = PaymentStatus::Failed;
        payment.failure_reason = Some(reason.to_owned());
        let (amount, due) = (payment.amount, payment.due_at);
        if number > regular {
            self.failed_extra_in_row += 1;
        }
        if !active {
            // Cancelled while this one was processing: nothing more is collected.
            self.changed();
            return Ok(());
        }
        if self.failed_extra_in_row >= limit {
            let reason = format!("{} extra payments failed in a row", self.failed_extra_in_row);
            self.close(AdvanceStatus::Defaulted, &reason);
            return Ok(());
        }
        let target = match next {
            Some(next) => next,
            None => {
                let number = last_number + 1;
                self.payments.push(Payment {
                    payment_id: payment_id(self.terms.advance_id, number),
                    number,
                    amount: Decimal::ZERO,
                    due_at: due.map(|due| add(due, interval, 1)),
                    status: PaymentStatus::Scheduled,
                    transaction_id: None,
                    failure_reason: None,
                    moved_to: None,
                });
                number
            }
        };
        if let Some(target_payment) = self.payment_mut(target) {
            target_payment.amount += amount;
        }
        if let Some(failed) = self.payment_mut(number) {
            failed.moved_to = Some(target);
        }
        self.changed();
        Ok(())
    }

    /// An operator asks to collect everything outstanding now: the scheduled payments merge into the first
    /// of them, due at `now`. Returns that payment's number.
    pub fn pay_off(&mut self, now: DateTime<Utc>) -> Result<u32, ScheduleError> {
        self.require_active()?;
        if self.paused.is_some() {
            return Err(ScheduleError::Paused);
        }
        let mut scheduled: Vec<u32> =
            self.payments.iter().filter(|p| p.status == PaymentStatus::Scheduled).map(|p| p.number).collect();
        scheduled.sort_unstable();
        let (&first, rest) = scheduled.split_first().ok_or(ScheduleError::NothingOutstanding)?;
        let mut moved = Decimal::ZERO;
        for &number in rest {
            if let Some(payment) = self.payment_mut(number) {
                moved += payment.amount;
                payment.status = PaymentStatus::Superseded;
                payment.moved_to = Some(first);
            }
        }
        if let Some(payment) = self.payment_mut(first) {
            payment.amount += moved;
            payment.due_at = Some(payment.due_at.map_or(now, |due| due.min(now)));
        }
        self.changed();
        Ok(first)
    }

    /// Where the advance stands, in one line, for an operator (the workflow's current details in the Web UI).
    pub fn describe(&self) -> String {
        let paid = self.payments.iter().filter(|p| p.status == PaymentStatus::Paid).count();
        let mut text =
            format!("{}: {paid} payments paid ({} of {})", self.status.as_str(), self.paid_amount(), self.terms.amount);
        if let Some(pause) = &self.paused {
            text.push_str(&format!("; paused since {}: {}", pause.since.format("%Y-%m-%d %H:%M:%S UTC"), pause.reason));
        }
        if let Some(payment) = self.payments.iter().find(|p| p.status == PaymentStatus::Processing) {
            text.push_str(&format!("; collecting payment {}: {}", payment.number, payment.amount));
        } else if let Some((number, due)) = self.next_due() {
            text.push_str(&format!("; next: payment {number} due {}", due.format("%Y-%m-%d %H:%M:%S UTC")));
        }
        if let Some(reason) = &self.status_reason {
            text.push_str(&format!("; {reason}"));
        }
        text
    }

    /// An operator pauses collection at `at`: nothing new is collected (a withdrawal under way finishes) until
    /// [`Advance::resume`]. The amounts do not change, so the formula holds throughout.
    pub fn pause(&mut self, at: DateTime<Utc>, reason: &str) -> Result<(), ScheduleError> {
        self.require_active()?;
        if self.paused.is_some() {
            return Err(ScheduleError::Paused);
        }
        self.paused = Some(Pause { since: at, reason: reason.to_owned() });
        self.changed();
        Ok(())
    }

    /// An operator resumes collection at `at`: every payment still scheduled moves later by the time the advance
    /// was paused, so the client keeps the same spacing between payments it had before the pause. Returns that time.
    pub fn resume(&mut self, at: DateTime<Utc>) -> Result<chrono::Duration, ScheduleError> {
        self.require_active()?;
        let pause = self.paused.take().ok_or(ScheduleError::NotPaused)?;
        let paused_for = (at - pause.since).max(chrono::Duration::zero());
        for payment in &mut self.payments {
            if payment.status == PaymentStatus::Scheduled {
                payment.due_at = payment.due_at.map(|due| due.checked_add_signed(paused_for).unwrap_or(due));
            }
        }
        self.changed();
        Ok(paused_for)
    }

    /// What changed since `before` (an earlier state of this advance): see [`AdvanceChange`].
    pub fn changes_since(&self, before: &Advance) -> AdvanceChange {
        let payments = self
            .payments
            .iter()
            .filter(|payment| before.payments.iter().find(|old| old.number == payment.number) != Some(*payment))
            .cloned()
            .collect();
        AdvanceChange {
            advance_id: self.terms.advance_id,
            from_revision: before.revision,
            revision: self.revision,
            status: self.status,
            granted_at: self.granted_at,
            grant_transaction_id: self.grant_transaction_id,
            status_reason: self.status_reason.clone(),
            failed_extra_in_row: self.failed_extra_in_row,
            paused: self.paused.clone(),
            payments,
        }
    }

    /// Applies a change made by [`Advance::changes_since`] from this very state.
    pub fn apply(&mut self, change: AdvanceChange) -> Result<(), ChangeError> {
        if change.advance_id != self.terms.advance_id {
            return Err(ChangeError::OtherAdvance { advance: self.terms.advance_id, change: change.advance_id });
        }
        if change.from_revision != self.revision {
            return Err(ChangeError::OtherRevision { from: change.from_revision, at: self.revision });
        }
        self.revision = change.revision;
        self.status = change.status;
        self.granted_at = change.granted_at;
        self.grant_transaction_id = change.grant_transaction_id;
        self.status_reason = change.status_reason;
        self.failed_extra_in_row = change.failed_extra_in_row;
        self.paused = change.paused;
        for payment in change.payments {
            match self.payment_mut(payment.number) {
                Some(slot) => *slot = payment,
                None => self.payments.push(payment),
            }
        }
        self.payments.sort_by_key(|payment| payment.number);
        Ok(())
    }

    /// An operator stops future collection. A withdrawal already under way finishes and is recorded.
    pub fn cancel(&mut self, reason: &str) -> Result<(), ScheduleError> {
        self.require_active()?;
        self.close(AdvanceStatus::Cancelled, reason);
        Ok(())
    }

    fn sum(&self, keep: impl Fn(PaymentStatus) -> bool) -> Decimal {
        self.payments.iter().filter(|p| keep(p.status)).map(|p| p.amount).sum()
    }

    pub fn paid_amount(&self) -> Decimal {
        self.sum(|status| status == PaymentStatus::Paid)
    }

    /// What is still to be collected: scheduled and processing payments.
    pub fn outstanding_amount(&self) -> Decimal {
        self.sum(|status| matches!(status, PaymentStatus::Scheduled | PaymentStatus::Processing))
    }

    /// The seed's formula: paid + scheduled + processing = the advance's amount.
    pub fn formula_holds(&self) -> bool {
        self.sum(PaymentStatus::is_owed) == self.terms.amount
    }

    /// Whether a withdrawal is under way.
    pub fn processing(&self) -> Option<u32> {
        self.payments.iter().find(|p| p.status == PaymentStatus::Processing).map(|p| p.number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(text: &str) -> Decimal {
        Decimal::from_str_exact(text).expect("a test decimal")
    }

    fn terms(amount: &str) -> AdvanceTerms {
        AdvanceTerms {
            advance_id: Uuid::from_u128(7),
            account_id: Uuid::from_u128(8),
            amount: dec(amount),
            payments: 12,
            interval_ms: 1000,
            max_failed_extra_payments: 3,
        }
    }

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap_or_default()
    }

    fn granted(amount: &str) -> Advance {
        let mut advance = Advance::new(terms(amount));
        advance.granted(at(0), Uuid::from_u128(1));
        advance
    }

    fn collect(advance: &mut Advance, pay: bool) -> u32 {
        let (number, _) = advance.next_due().unwrap_or((0, at(0)));
        assert!(advance.start(number).is_ok());
        assert!(advance.formula_holds() || !advance.status.is_open());
        let result = if pay {
            advance.paid(number, Uuid::from_u128(u128::from(number) + 100))
        } else {
            advance.failed(number, "Insufficient funds")
        };
        assert_eq!(result, Ok(()));
        number
    }

    #[test]
    fn describe_says_where_the_advance_stands() {
        let mut advance = Advance::new(AdvanceTerms {
            advance_id: Uuid::from_u128(1),
            account_id: Uuid::from_u128(2),
            amount: Decimal::new(120, 0),
            payments: 12,
            interval_ms: 1000,
            max_failed_extra_payments: 3,
        });
        assert_eq!(advance.describe(), "granting: 0 payments paid (0 of 120)");
        let granted = DateTime::<Utc>::from_timestamp(1_800_000_000, 0).unwrap_or_default();
        advance.granted(granted, Uuid::from_u128(3));
        assert_eq!(
            advance.describe(),
            "active: 0 payments paid (0 of 120); next: payment 1 due 2027-01-15 08:00:01 UTC"
        );
        let _ = advance.start(1);
        assert_eq!(advance.describe(), "active: 0 payments paid (0 of 120); collecting payment 1: 10");
    }

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

    #[test]
    fn payments_are_listed_before_the_grant_and_due_one_interval_apart_after_it() {
        let advance = Advance::new(terms("100"));
        assert_eq!(advance.payments.len(), 12);
        assert!(advance.payments.iter().all(|p| p.due_at.is_none()));
        assert_eq!(advance.next_due(), None, "nothing is collected before the grant");
        let advance = granted("100");
        assert_eq!(advance.status, AdvanceStatus::Active);
        assert_eq!(advance.payments[0].due_at, Some(at(1)));
        assert_eq!(advance.payments[11].due_at, Some(at(12)));
        assert_eq!(advance.next_due(), Some((1, at(1))));
        assert_eq!(advance.payments[3].payment_id, payment_id(Uuid::from_u128(7), 4), "ids are stable");
    }

    #[test]
    fn twelve_paid_payments_complete_the_advance() {
        let mut advance = granted("100");
        for _ in 0..12 {
            collect(&mut advance, true);
        }
        assert_eq!(advance.status, AdvanceStatus::Completed);
        assert_eq!(advance.paid_amount(), dec("100"));
        assert_eq!(advance.outstanding_amount(), Decimal::ZERO);
        assert_eq!(advance.next_due(), None);
    }

    #[test]
    fn a_failed_payment_rolls_into_the_next_one() {
        let mut advance = granted("120");
        collect(&mut advance, false);
        assert_eq!(advance.payments[0].status, PaymentStatus::Failed);
        assert_eq!(advance.payments[0].moved_to, Some(2));
        assert_eq!(advance.payments[1].amount, dec("20"));
        assert!(advance.formula_holds());
        assert_eq!(advance.failed_extra_in_row, 0, "regular payments do not count toward a default");
    }

    #[test]
    fn a_failed_last_payment_makes_a_new_one_an_interval_later() {
        let mut advance = granted("120");
        for _ in 0..12 {
            collect(&mut advance, false);
        }
        assert_eq!(advance.payments.len(), 13);
        let extra = &advance.payments[12];
        assert_eq!((extra.number, extra.amount, extra.due_at), (13, dec("120"), Some(at(13))));
        assert_eq!(advance.payments[11].moved_to, Some(13));
        assert!(advance.formula_holds());
        collect(&mut advance, true);
        assert_eq!(advance.status, AdvanceStatus::Completed);
        assert_eq!(advance.paid_amount(), dec("120"));
    }

    #[test]
    fn too_many_failed_extra_payments_in_a_row_default_the_advance() {
        let mut advance = granted("120");
        for _ in 0..12 {
            collect(&mut advance, false);
        }
        collect(&mut advance, false);
        collect(&mut advance, false);
        assert_eq!(advance.status, AdvanceStatus::Active);
        collect(&mut advance, false);
        assert_eq!(advance.status, AdvanceStatus::Defaulted);
        assert_eq!(advance.status_reason.as_deref(), Some("3 extra payments failed in a row"));
        assert_eq!(advance.next_due(), None);
        assert_eq!(advance.payments.len(), 15, "no new payment after the default");
    }

    #[test]
    fn a_success_resets_the_count_of_failed_extra_payments() {
        let mut advance = granted("120");
        for _ in 0..12 {
            collect(&mut advance, false);
        }
        collect(&mut advance, false);
        assert_eq!(advance.failed_extra_in_row, 1);
        // A pay-off is not a success: the count stays until money actually arrives.
        assert!(advance.pay_off(at(20)).is_ok());
        assert_eq!(advance.failed_extra_in_row, 1);
        collect(&mut advance, true);
        assert_eq!(advance.failed_extra_in_row, 0);
    }

    #[test]
    fn pay_off_merges_everything_outstanding_into_one_payment_due_now() {
        let mut advance = granted("120");
        collect(&mut advance, true);
        let first = advance.pay_off(at(1) + chrono::Duration::milliseconds(500));
        assert_eq!(first, Ok(2));
        assert_eq!(advance.payments[1].amount, dec("110"));
        assert_eq!(advance.payments[1].due_at, Some(at(1) + chrono::Duration::milliseconds(500)));
        assert!(advance.payments[2..].iter().all(|p| p.status == PaymentStatus::Superseded && p.moved_to == Some(2)));
        assert!(advance.formula_holds());
        collect(&mut advance, true);
        assert_eq!(advance.status, AdvanceStatus::Completed);
    }

    #[test]
    fn operator_commands_need_an_active_advance() {
        let mut advance = Advance::new(terms("120"));
        assert_eq!(advance.cancel("x"), Err(ScheduleError::NotActive("granting")));
        assert_eq!(advance.pay_off(at(0)), Err(ScheduleError::NotActive("granting")));
        advance.grant_refused("account does not exist");
        assert_eq!(advance.status, AdvanceStatus::Failed);
        assert!(advance.payments.iter().all(|p| p.status == PaymentStatus::Cancelled));
        let mut advance = granted("120");
        assert_eq!(advance.cancel("operator"), Ok(()));
        assert_eq!(advance.cancel("again"), Err(ScheduleError::NotActive("cancelled")));
        assert_eq!(advance.next_due(), None);
    }

    #[test]
    fn a_payment_in_flight_when_cancelled_is_still_recorded() {
        let mut advance = granted("120");
        assert!(advance.start(1).is_ok());
        assert_eq!(advance.cancel("operator"), Ok(()));
        assert_eq!(advance.paid(1, Uuid::from_u128(5)), Ok(()));
        assert_eq!(advance.status, AdvanceStatus::Cancelled);
        assert_eq!(advance.paid_amount(), dec("10"));
        assert_eq!(advance.start(2), Err(ScheduleError::NotActive("cancelled")));
    }

    #[test]
    fn a_pause_across_a_due_time_moves_every_unpaid_payment_by_the_time_paused() {
        let mut advance = granted("120");
        collect(&mut advance, true);
        // Payment 2 is due at 2 s; pause at 1.5 s, resume at 4 s: paused for 2.5 s, across that due time.
        let paused_at = at(1) + chrono::Duration::milliseconds(500);
        assert_eq!(advance.pause(paused_at, "client on holiday"), Ok(()));
        assert_eq!(advance.next_due(), None, "nothing falls due while paused");
        assert_eq!(advance.start(2), Err(ScheduleError::Paused));
        assert_eq!(advance.pay_off(at(3)), Err(ScheduleError::Paused));
        assert_eq!(advance.pause(at(3), "again"), Err(ScheduleError::Paused));
        assert!(advance.formula_holds());
        assert!(advance.describe().contains("paused since"), "{}", advance.describe());
        assert_eq!(advance.resume(at(4)), Ok(chrono::Duration::milliseconds(2500)));
        assert_eq!(advance.resume(at(5)), Err(ScheduleError::NotPaused));
        let due = |number: u32| advance.payments[number as usize - 1].due_at;
        assert_eq!(due(1), Some(at(1)), "a paid payment keeps its due time");
        assert_eq!(due(2), Some(at(4) + chrono::Duration::milliseconds(500)));
        assert_eq!(due(12), Some(at(14) + chrono::Duration::milliseconds(500)));
        assert_eq!(advance.next_due().map(|(number, _)| number), Some(2));
        assert!(advance.formula_holds());
    }

    #[test]
    fn a_payment_under_way_when_paused_finishes_and_a_close_ends_the_pause() {
        let mut advance = granted("120");
        assert!(advance.start(1).is_ok());
        assert_eq!(advance.pause(at(1), "fraud check"), Ok(()));
        assert_eq!(advance.failed(1, "Insufficient funds"), Ok(()));
        assert_eq!(advance.payments[1].amount, dec("20"), "a failure still rolls over while paused");
        assert!(advance.formula_holds());
        assert_eq!(advance.cancel("fraud"), Ok(()));
        assert_eq!((advance.status, advance.paused.as_ref()), (AdvanceStatus::Cancelled, None));
        assert_eq!(Advance::new(terms("120")).pause(at(0), "x"), Err(ScheduleError::NotActive("granting")));
    }

    #[test]
    fn a_change_applies_only_to_the_state_it_was_made_from() {
        let before = granted("120");
        let mut after = before.clone();
        assert!(after.start(1).is_ok());
        let change = after.changes_since(&before);
        assert_eq!(change.payments.len(), 1, "only payment 1 changed: {change:?}");
        let mut stale = Advance::new(terms("120"));
        assert_eq!(stale.apply(change.clone()), Err(ChangeError::OtherRevision { from: 1, at: 0 }));
        let mut other = before.clone();
        other.terms.advance_id = Uuid::from_u128(99);
        assert!(matches!(other.apply(change.clone()), Err(ChangeError::OtherAdvance { .. })));
        let mut mirror = before;
        assert_eq!(mirror.apply(change), Ok(()));
        assert_eq!(mirror, after);
    }

    #[test]
    fn statuses_parse_back_from_their_names() {
        use PaymentStatus::*;
        for status in [Scheduled, Processing, Paid, Failed, Superseded, Cancelled] {
            assert_eq!(PaymentStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(PaymentStatus::parse("paid "), None);
        assert_eq!(AdvanceStatus::parse("active"), Some(AdvanceStatus::Active));
    }

    #[test]
    fn events_for_the_wrong_payment_are_refused() {
        let mut advance = granted("120");
        assert_eq!(advance.paid(1, Uuid::nil()), Err(ScheduleError::Payment(1)), "not processing");
        assert_eq!(advance.failed(99, "x"), Err(ScheduleError::Payment(99)));
        assert!(advance.start(1).is_ok());
        assert!(advance.start(1).is_err(), "already processing");
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

        #[test]
        fn the_formula_holds_through_any_run_of_outcomes(
            cents in 12u64..100_000_000,
            outcomes in proptest::collection::vec(any::<bool>(), 0..40),
            pay_off_at in proptest::option::of(0usize..40),
            paused in proptest::option::of((0usize..40, 1usize..5)),
        ) {
            let mut advance = granted("0");
            advance.terms.amount = Decimal::new(cents as i64, 2);
            advance = Advance::new(advance.terms);
            // The mirror only ever sees changes, as the store does.
            let mut mirror = advance.clone();
            advance.granted(at(0), Uuid::from_u128(1));
            let mut dues = Vec::new();
            for (step, pay) in outcomes.into_iter().enumerate() {
                if pay_off_at == Some(step) {
                    let _ = advance.pay_off(at(step as i64));
                }
                match paused {
                    Some((from, _)) if from == step => { let _ = advance.pause(at(step as i64), "p"); }
                    Some((from, length)) if from + length == step => { let _ = advance.resume(at(step as i64)); }
                    _ => {}
                }
                if advance.status.is_open() {
                    prop_assert!(advance.formula_holds(), "{:?}", advance);
                }
                prop_assert_eq!(mirror.apply(advance.changes_since(&mirror)), Ok(()));
                prop_assert_eq!(&mirror, &advance);
                let Some((number, due)) = advance.next_due() else { continue };
                dues.push(due);
                prop_assert!(advance.start(number).is_ok());
                let result = if pay { advance.paid(number, Uuid::from_u128(number as u128)) } else { advance.failed(number, "no") };
                prop_assert!(result.is_ok());
                if advance.status.is_open() {
                    prop_assert!(advance.formula_holds(), "{:?}", advance);
                }
                prop_assert!(advance.paid_amount() <= advance.terms.amount);
                prop_assert!(advance.failed_extra_in_row <= advance.terms.max_failed_extra_payments);
            }
            prop_assert!(dues.windows(2).all(|w| w[0] <= w[1]), "payments come due in order");
            let ids: std::collections::HashSet<_> = advance.payments.iter().map(|p| p.payment_id).collect();
            prop_assert_eq!(ids.len(), advance.payments.len(), "payment ids are unique");
            match advance.status {
                AdvanceStatus::Completed => prop_assert_eq!(advance.paid_amount(), advance.terms.amount),
                AdvanceStatus::Active | AdvanceStatus::Defaulted => {}
                other => prop_assert!(false, "unexpected status {:?}", other),
            }
        }
    }
}
