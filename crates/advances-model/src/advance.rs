//! The state of one advance and its payment schedule: the grant, each payment's start, success and failure,
//! rolling a failed amount into the next payment (or a new one after the last), and the default.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::keys::payment_id;
use crate::status::{AdvanceStatus, PaymentKind, PaymentStatus};
use crate::terms::{add, split, AdvanceTerms};

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
    /// Regular, or a prepayment (absent in states recorded before prepayments existed: regular).
    #[serde(default, skip_serializing_if = "PaymentKind::is_regular")]
    pub kind: PaymentKind,
    /// A prepayment's: what it took from which scheduled payments, given back if it fails.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub covers: Vec<Cover>,
}

/// An amount a prepayment took from a scheduled payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cover {
    pub number: u32,
    pub amount: Decimal,
}

impl Payment {
    /// A scheduled regular payment.
    pub(crate) fn scheduled(advance_id: Uuid, number: u32, amount: Decimal, due_at: Option<DateTime<Utc>>) -> Self {
        Self {
            payment_id: payment_id(advance_id, number),
            number,
            amount,
            due_at,
            status: PaymentStatus::Scheduled,
            transaction_id: None,
            failure_reason: None,
            moved_to: None,
            kind: PaymentKind::Regular,
            covers: Vec::new(),
        }
    }
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
    /// What was recorded as lost by a write-off (absent until then).
    #[serde(default, skip_serializing_if = "Decimal::is_zero")]
    pub written_off: Decimal,
    /// The last regular payment's number once a reschedule made a new plan (absent: the terms' count); failed
    /// payments after it count toward a default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regular_through: Option<u32>,
}

/// An operator's pause: nothing new is collected until it is resumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    pub since: DateTime<Utc>,
    pub reason: String,
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
    #[error("the advance is already paused")]
    AlreadyPaused,
    #[error("a withdrawal is under way; try again once it is recorded")]
    Processing,
    #[error("a prepayment is under way; try again once it is recorded")]
    PrepaymentUnderWay,
    #[error("{0}")]
    Terms(String),
}

impl Advance {
    /// A new advance, before its grant: the payments are known, their due times are not.
    pub fn new(terms: AdvanceTerms) -> Self {
        let payments = split(terms.amount, terms.payments)
            .into_iter()
            .zip(1..)
            .map(|(amount, number)| Payment::scheduled(terms.advance_id, number, amount, None))
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
            written_off: Decimal::ZERO,
            regular_through: None,
        }
    }

    /// The last regular payment's number: the terms' count, or the end of a reschedule's new plan.
    pub fn regular_through(&self) -> u32 {
        self.regular_through.unwrap_or(self.terms.payments)
    }

    pub(crate) fn changed(&mut self) {
        self.revision += 1;
    }

    pub(crate) fn payment_mut(&mut self, number: u32) -> Option<&mut Payment> {
        self.payments.iter_mut().find(|payment| payment.number == number)
    }

    pub(crate) fn require_active(&self) -> Result<(), ScheduleError> {
        match self.status {
            AdvanceStatus::Active => Ok(()),
            other => Err(ScheduleError::NotActive(other.as_str())),
        }
    }

    /// The grant went through at `at`: payment k is due k intervals later, or k − 1 intervals after the first
    /// due time the client chose.
    pub fn granted(&mut self, at: DateTime<Utc>, transaction_id: Uuid) {
        for payment in &mut self.payments {
            payment.due_at = Some(self.terms.due_at(at, payment.number));
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

    pub(crate) fn close(&mut self, status: AdvanceStatus, reason: &str) {
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

    /// The next payment to collect and when it is due: a scheduled prepayment first, else the lowest-numbered
    /// scheduled payment.
    pub fn next_due(&self) -> Option<(u32, DateTime<Utc>)> {
        if self.status != AdvanceStatus::Active || self.paused.is_some() {
            return None;
        }
        self.payments
            .iter()
            .filter(|payment| payment.status == PaymentStatus::Scheduled)
            .min_by_key(|payment| (payment.kind.is_regular(), payment.number))
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
        if self.payments.iter().any(|p| p.number == number && p.kind == PaymentKind::Prepayment) {
            return self.prepayment_failed(number, reason);
        }
        let regular = self.regular_through();
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
            // Closed while this one was processing: nothing more is collected. After a write-off, what it failed
            // to collect is written off too.
            if self.status == AdvanceStatus::WrittenOff {
                self.written_off += amount;
            }
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
                let due_at = due.map(|due| add(due, interval, 1));
                self.payments.push(Payment::scheduled(self.terms.advance_id, number, Decimal::ZERO, due_at));
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

    /// Where the advance stands, in one line, for an operator (the workflow's current details in the Web UI).
    pub fn describe(&self) -> String {
        let paid = self.payments.iter().filter(|p| p.status == PaymentStatus::Paid).count();
        let mut text =
            format!("{}: {paid} payments paid ({} of {})", self.status.as_str(), self.paid_amount(), self.terms.amount);
        if let Some(pause) = &self.paused {
            text.push_str(&format!("; paused since {}: {}", pause.since.format("%Y-%m-%d %H:%M:%S UTC"), pause.reason));
        }
        if !self.written_off.is_zero() {
            text.push_str(&format!("; {} written off", self.written_off));
        }
        if let Some(payment) = self.payments.iter().find(|p| p.status == PaymentStatus::Processing) {
            let what = if payment.kind.is_regular() { "payment" } else { "prepayment" };
            text.push_str(&format!("; collecting {what} {}: {}", payment.number, payment.amount));
        } else if let Some((number, due)) = self.next_due() {
            text.push_str(&format!("; next: payment {number} due {}", due.format("%Y-%m-%d %H:%M:%S UTC")));
        }
        if let Some(reason) = &self.status_reason {
            text.push_str(&format!("; {reason}"));
        }
        text
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

    /// The seed's formula, generalised: paid + scheduled + processing + written off = the advance's amount.
    pub fn formula_holds(&self) -> bool {
        self.sum(PaymentStatus::is_owed) + self.written_off == self.terms.amount
    }

    /// Whether a withdrawal is under way.
    pub fn processing(&self) -> Option<u32> {
        self.payments.iter().find(|p| p.status == PaymentStatus::Processing).map(|p| p.number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, collect, dec, granted, terms};

    #[test]
    fn describe_says_where_the_advance_stands() {
        let mut advance = Advance::new(AdvanceTerms {
            advance_id: Uuid::from_u128(1),
            account_id: Uuid::from_u128(2),
            amount: Decimal::new(120, 0),
            payments: 12,
            interval_ms: 1000,
            max_failed_extra_payments: 3,
            product: None,
            first_due_at: None,
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
    fn events_for_the_wrong_payment_are_refused() {
        let mut advance = granted("120");
        assert_eq!(advance.paid(1, Uuid::nil()), Err(ScheduleError::Payment(1)), "not processing");
        assert_eq!(advance.failed(99, "x"), Err(ScheduleError::Payment(99)));
        assert!(advance.start(1).is_ok());
        assert!(advance.start(1).is_err(), "already processing");
    }
}
