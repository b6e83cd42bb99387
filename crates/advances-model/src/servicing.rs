//! What a lender does for a customer beyond the schedule: reschedule (hardship), prepay, write off, and the
//! quote of a pay-off. Each keeps the generalised formula, paid + scheduled + processing + written off = amount.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::advance::{Advance, Cover, Payment, ScheduleError};
use crate::status::{AdvanceStatus, PaymentKind, PaymentStatus};
use crate::terms::{add, split, MAX_PAYMENTS};

/// A reschedule: what is outstanding (not under way) spread over `payments` new equal payments at the product's
/// interval, the first at `first_due_at` (or one interval after it is made).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reschedule {
    pub payments: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_due_at: Option<DateTime<Utc>>,
    /// Why (kept in the Web UI's summary and the log).
    #[serde(default)]
    pub reason: String,
}

/// A prepayment: `amount` collected now, in one debit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Prepay {
    pub amount: Decimal,
    #[serde(default)]
    pub reason: String,
}

impl Advance {
    fn scheduled(&self) -> impl Iterator<Item = &Payment> {
        self.payments.iter().filter(|p| p.status == PaymentStatus::Scheduled)
    }

    fn scheduled_amount(&self) -> Decimal {
        self.scheduled().map(|p| p.amount).sum()
    }

    fn next_number(&self) -> u32 {
        self.payments.iter().map(|p| p.number).max().unwrap_or(0) + 1
    }

    pub(crate) fn require_no_prepayment(&self) -> Result<(), ScheduleError> {
        let under_way = self.payments.iter().any(|p| {
            p.kind == PaymentKind::Prepayment
                && matches!(p.status, PaymentStatus::Scheduled | PaymentStatus::Processing)
        });
        if under_way {
            return Err(ScheduleError::PrepaymentUnderWay);
        }
        Ok(())
    }

    fn require_nothing_processing(&self) -> Result<(), ScheduleError> {
        match self.processing() {
            Some(_) => Err(ScheduleError::Processing),
            None => Ok(()),
        }
    }

    /// Whether [`Advance::reschedule`] applies now (paused advances, and a regular withdrawal under way,
    /// included): active, no prepayment under way, something scheduled, and at least a cent a new payment.
    pub fn can_reschedule(&self, request: &Reschedule) -> Result<(), ScheduleError> {
        self.require_active()?;
        self.require_no_prepayment()?;
        let outstanding = self.scheduled_amount();
        if outstanding.is_zero() {
            return Err(ScheduleError::NothingOutstanding);
        }
        if request.payments == 0 || request.payments > MAX_PAYMENTS {
            return Err(ScheduleError::Terms(format!("payments must be between 1 and {MAX_PAYMENTS}")));
        }
        if outstanding < Decimal::new(i64::from(request.payments), 2) {
            return Err(ScheduleError::Terms(format!(
                "{outstanding:.2} outstanding cannot make {} payments of at least 0.01",
                request.payments
            )));
        }
        Ok(())
    }

    /// Re-spreads what is scheduled (not a withdrawal under way: if it fails, its amount rolls into the new plan's
    /// first payment, as into any next payment) over `payments` new payments, equal to the cent with the remainder on the last,
    /// one interval apart from `first_due_at` (a time already past when this runs: one interval after `now`). The
    /// replaced payments are superseded, moved to the first new one; the new plan's payments are regular, and
    /// the count of failed extra payments starts over. A paused advance stays paused, its pause counted from now.
    pub fn reschedule(&mut self, request: &Reschedule, now: DateTime<Utc>) -> Result<u32, ScheduleError> {
        self.can_reschedule(request)?;
        let interval = self.terms.interval();
        let first_due = request.first_due_at.filter(|first| *first > now).unwrap_or_else(|| add(now, interval, 1));
        let first = self.next_number();
        let outstanding = self.scheduled_amount();
        for payment in self.payments.iter_mut().filter(|p| p.status == PaymentStatus::Scheduled) {
            payment.status = PaymentStatus::Superseded;
            payment.moved_to = Some(first);
        }
        for (amount, number) in split(outstanding, request.payments).into_iter().zip(first..) {
            let due = add(first_due, interval, number - first);
            self.payments.push(Payment::scheduled(self.terms.advance_id, number, amount, Some(due)));
        }
        self.regular_through = Some(first + request.payments - 1);
        self.failed_extra_in_row = 0;
        if let Some(pause) = self.paused.as_mut() {
            pause.since = now;
        }
        self.changed();
        Ok(first)
    }

    /// Whether [`Advance::prepay`] applies now: active, not paused, nothing under way, and at most what is
    /// scheduled.
    pub fn can_prepay(&self, request: &Prepay) -> Result<(), ScheduleError> {
        self.require_active()?;
        if self.paused.is_some() {
            return Err(ScheduleError::Paused);
        }
        self.require_nothing_processing()?;
        self.require_no_prepayment()?;
        let outstanding = self.scheduled_amount();
        if request.amount <= Decimal::ZERO || request.amount.scale() > 2 || request.amount > outstanding {
            return Err(ScheduleError::Terms(format!(
                "a prepayment is from 0.01 to what is scheduled, {outstanding:.2}, not {}",
                request.amount
            )));
        }
        Ok(())
    }

    /// An operator collects `amount` now: a prepayment due now, collected before anything else, which takes its
    /// amount from the scheduled payments from the last backwards (those it takes whole are superseded). If it
    /// fails, they get it back and nothing else changes. Returns its number.
    pub fn prepay(&mut self, request: &Prepay, now: DateTime<Utc>) -> Result<u32, ScheduleError> {
        self.can_prepay(request)?;
        let number = self.next_number();
        let mut left = request.amount;
        let mut covers = Vec::new();
        let mut scheduled: Vec<u32> = self.scheduled().map(|p| p.number).collect();
        scheduled.sort_unstable_by(|a, b| b.cmp(a));
        for taken_from in scheduled {
            if left.is_zero() {
                break;
            }
            let Some(payment) = self.payment_mut(taken_from) else { continue };
            let amount = payment.amount.min(left);
            payment.amount -= amount;
            if payment.amount.is_zero() {
                payment.amount = amount;
                payment.status = PaymentStatus::Superseded;
                payment.moved_to = Some(number);
            }
            left -= amount;
            covers.push(Cover { number: taken_from, amount });
        }
        let mut prepayment = Payment::scheduled(self.terms.advance_id, number, request.amount, Some(now));
        prepayment.kind = PaymentKind::Prepayment;
        prepayment.covers = covers;
        self.payments.push(prepayment);
        self.changed();
        Ok(number)
    }

    /// A prepayment was refused: the payments it took from get their amounts back (after a write-off, it is
    /// written off instead), and it stays as a failed prepayment with its reason.
    pub(crate) fn prepayment_failed(&mut self, number: u32, reason: &str) -> Result<(), ScheduleError> {
        let payment = self.payment_mut(number).filter(|p| p.status == PaymentStatus::Processing);
        let payment = payment.ok_or(ScheduleError::Payment(number))?;
        payment.status = PaymentStatus::Failed;
        payment.failure_reason = Some(reason.to_owned());
        let (amount, covers) = (payment.amount, payment.covers.clone());
        match self.status {
            AdvanceStatus::Active => {
                for cover in covers {
                    let Some(taken) = self.payment_mut(cover.number) else { continue };
                    if taken.status == PaymentStatus::Superseded && taken.moved_to == Some(number) {
                        taken.status = PaymentStatus::Scheduled;
                        taken.moved_to = None;
                    } else {
                        taken.amount += cover.amount;
                    }
                }
            }
            AdvanceStatus::WrittenOff => self.written_off += amount,
            _ => {}
        }
        self.changed();
        Ok(())
    }

    /// Whether [`Advance::write_off`] applies now (paused advances included).
    pub fn can_write_off(&self) -> Result<(), ScheduleError> {
        self.require_active()
    }

    /// An operator stops collection and records what is scheduled as written off; the advance is `written_off`.
    /// A withdrawal under way finishes and is recorded (what it fails to collect is written off too).
    pub fn write_off(&mut self, reason: &str) -> Result<(), ScheduleError> {
        self.can_write_off()?;
        self.written_off += self.scheduled_amount();
        self.close(AdvanceStatus::WrittenOff, reason);
        Ok(())
    }

    /// What [`Advance::pay_off`] would collect at `at`, if the payments due before then are collected when due:
    /// the scheduled payments due after `at` (all of them while paused: nothing is collected meanwhile).
    pub fn payoff_quote(&self, at: DateTime<Utc>) -> Result<Decimal, ScheduleError> {
        self.require_active()?;
        self.require_no_prepayment()?;
        let paused = self.paused.is_some();
        Ok(self.scheduled().filter(|p| paused || p.due_at.is_none_or(|due| due > at)).map(|p| p.amount).sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, collect, dec, granted};
    use uuid::Uuid;

    fn reschedule(payments: u32, first_due_at: Option<DateTime<Utc>>) -> Reschedule {
        Reschedule { payments, first_due_at, reason: "hardship".into() }
    }

    fn amounts(advance: &Advance, status: PaymentStatus) -> Vec<(u32, Decimal)> {
        advance.payments.iter().filter(|p| p.status == status).map(|p| (p.number, p.amount)).collect()
    }

    #[test]
    fn a_reschedule_spreads_what_is_scheduled_over_new_regular_payments() {
        let mut advance = granted("120");
        collect(&mut advance, true);
        collect(&mut advance, false); // payment 2 failed: 20 moved to payment 3
        assert_eq!(advance.reschedule(&reschedule(4, Some(at(100))), at(5)), Ok(13));
        assert!(advance.formula_holds());
        assert_eq!(
            amounts(&advance, PaymentStatus::Scheduled),
            vec![(13, dec("27.5")), (14, dec("27.5")), (15, dec("27.5")), (16, dec("27.5"))]
        );
        let due: Vec<_> = advance.payments[12..].iter().map(|p| p.due_at).collect();
        assert_eq!(due, vec![Some(at(100)), Some(at(101)), Some(at(102)), Some(at(103))]);
        assert!(advance.payments[2..12]
            .iter()
            .all(|p| p.status == PaymentStatus::Superseded && p.moved_to == Some(13)));
        assert_eq!(advance.regular_through(), 16);
        // The new plan's payments are regular: failing them rolls over without counting toward a default.
        for _ in 0..3 {
            collect(&mut advance, false);
        }
        assert_eq!((advance.status, advance.failed_extra_in_row), (AdvanceStatus::Active, 0));
        assert_eq!(amounts(&advance, PaymentStatus::Scheduled), vec![(16, dec("110"))]);
    }

    #[test]
    fn a_paused_advance_can_be_rescheduled_and_its_pause_counts_from_then() {
        let mut advance = granted("120");
        assert!(advance.pause(at(1), "hardship").is_ok());
        assert_eq!(advance.reschedule(&reschedule(2, None), at(50)), Ok(13));
        assert_eq!(advance.payments[12].due_at, Some(at(51)), "one interval after, without a chosen time");
        assert_eq!(advance.next_due(), None, "still paused");
        assert_eq!(advance.resume(at(53)), Ok(chrono::Duration::seconds(3)), "only the pause since the new plan");
        assert_eq!(advance.next_due(), Some((13, at(54))));
        assert!(advance.formula_holds());
    }

    #[test]
    fn a_reschedule_needs_an_active_advance_and_a_cent_a_payment_and_leaves_a_debit_under_way_alone() {
        let mut advance = granted("0.12");
        assert!(matches!(advance.can_reschedule(&reschedule(13, None)), Err(ScheduleError::Terms(_))));
        assert!(matches!(advance.can_reschedule(&reschedule(0, None)), Err(ScheduleError::Terms(_))));
        assert!(advance.start(1).is_ok());
        assert_eq!(advance.reschedule(&reschedule(2, None), at(0)), Ok(13), "what is scheduled, not the debit");
        assert_eq!(amounts(&advance, PaymentStatus::Scheduled), vec![(13, dec("0.05")), (14, dec("0.06"))]);
        assert!(advance.failed(1, "Insufficient funds").is_ok());
        assert_eq!(advance.payments[0].moved_to, Some(13), "a failed debit rolls into the new plan");
        assert!(advance.formula_holds() && advance.failed_extra_in_row == 0);
        assert!(advance.cancel("stop").is_ok());
        assert_eq!(advance.can_reschedule(&reschedule(2, None)), Err(ScheduleError::NotActive("cancelled")));
    }

    #[test]
    fn a_prepayment_takes_from_the_last_payments_and_is_collected_first() {
        let mut advance = granted("120");
        assert_eq!(advance.prepay(&Prepay { amount: dec("25"), reason: String::new() }, at(0)), Ok(13));
        assert!(advance.formula_holds());
        assert_eq!((advance.payments[11].status, advance.payments[11].moved_to), (PaymentStatus::Superseded, Some(13)));
        assert_eq!((advance.payments[10].status, advance.payments[10].amount), (PaymentStatus::Superseded, dec("10")));
        assert_eq!(advance.payments[9].amount, dec("5"), "the last 25: 10 + 10 + 5 of the tenth");
        assert_eq!(advance.next_due(), Some((13, at(0))), "before payment 1");
        assert_eq!(advance.can_pay_off(), Err(ScheduleError::PrepaymentUnderWay));
        assert!(advance.start(13).is_ok());
        assert!(advance.paid(13, Uuid::from_u128(99)).is_ok());
        assert_eq!(advance.paid_amount(), dec("25"));
        assert_eq!(advance.outstanding_amount(), dec("95"));
        assert!(advance.formula_holds());
    }

    #[test]
    fn a_failed_prepayment_gives_every_amount_back_and_changes_nothing_else() {
        let mut advance = granted("120");
        let before = advance.clone();
        assert_eq!(advance.prepay(&Prepay { amount: dec("25"), reason: String::new() }, at(0)), Ok(13));
        assert!(advance.start(13).is_ok());
        assert!(advance.failed(13, "Insufficient funds").is_ok());
        assert_eq!(advance.payments[..12], before.payments[..12], "the schedule is as it was");
        let failed = &advance.payments[12];
        assert_eq!(
            (failed.kind, failed.status, failed.moved_to),
            (PaymentKind::Prepayment, PaymentStatus::Failed, None)
        );
        assert_eq!(failed.failure_reason.as_deref(), Some("Insufficient funds"));
        assert_eq!(advance.failed_extra_in_row, 0);
        assert!(advance.formula_holds());
    }

    #[test]
    fn a_prepayment_of_everything_left_completes_the_advance() {
        let mut advance = granted("120");
        collect(&mut advance, true);
        assert!(
            advance.prepay(&Prepay { amount: dec("110.01"), reason: String::new() }, at(1)).is_err(),
            "more than scheduled"
        );
        assert_eq!(advance.prepay(&Prepay { amount: dec("110"), reason: String::new() }, at(1)), Ok(13));
        assert!(amounts(&advance, PaymentStatus::Scheduled) == vec![(13, dec("110"))]);
        assert!(advance.start(13).is_ok());
        assert!(advance.paid(13, Uuid::from_u128(99)).is_ok());
        assert_eq!(advance.status, AdvanceStatus::Completed);
    }

    #[test]
    fn a_write_off_records_what_is_left_and_a_debit_under_way_still_counts() {
        let mut advance = granted("120");
        collect(&mut advance, true);
        assert!(advance.start(2).is_ok());
        assert!(advance.write_off("customer deceased").is_ok());
        assert_eq!((advance.status, advance.written_off), (AdvanceStatus::WrittenOff, dec("100")));
        assert!(advance.formula_holds(), "10 paid + 10 processing + 100 written off");
        assert_eq!(advance.next_due(), None);
        assert!(advance.failed(2, "Insufficient funds").is_ok());
        assert_eq!(advance.written_off, dec("110"));
        assert!(advance.formula_holds());
        assert!(advance.payments.iter().all(|p| p.status != PaymentStatus::Scheduled), "nothing left to collect");
        assert_eq!(advance.write_off("again"), Err(ScheduleError::NotActive("written_off")));
        assert_eq!(advance.exposure().written_off, dec("110"));
    }

    #[test]
    fn a_quote_is_what_a_pay_off_would_collect_then() {
        let mut advance = granted("120");
        assert_eq!(advance.payoff_quote(at(0)), Ok(dec("120")));
        assert_eq!(advance.payoff_quote(at(3)), Ok(dec("90")), "payments 1 to 3 are collected by then");
        assert!(advance.pause(at(1), "p").is_ok());
        assert_eq!(advance.payoff_quote(at(3)), Ok(dec("120")), "nothing is collected while paused");
        assert!(advance.resume(at(1)).is_ok());
        let quote = advance.payoff_quote(at(0));
        assert!(advance.pay_off(at(0)).is_ok());
        assert_eq!(quote, Ok(advance.payments[0].amount), "the quote is the pay-off's payment");
    }
}
