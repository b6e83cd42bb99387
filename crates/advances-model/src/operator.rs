//! An operator's commands on an advance: pay off, pause, resume, cancel. Each keeps the seed's formula.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use crate::advance::{Advance, Pause, ScheduleError};
use crate::status::{AdvanceStatus, PaymentStatus};

impl Advance {
    /// Whether [`Advance::pay_off`] applies now: the one place of its rule, which the workflow's update
    /// validator asks too.
    pub fn can_pay_off(&self) -> Result<(), ScheduleError> {
        self.require_active()?;
        if self.paused.is_some() {
            return Err(ScheduleError::Paused);
        }
        self.require_no_prepayment()?;
        match self.payments.iter().any(|p| p.status == PaymentStatus::Scheduled) {
            true => Ok(()),
            false => Err(ScheduleError::NothingOutstanding),
        }
    }

    /// Whether [`Advance::pause`] applies now.
    pub fn can_pause(&self) -> Result<(), ScheduleError> {
        self.require_active()?;
        match self.paused {
            Some(_) => Err(ScheduleError::AlreadyPaused),
            None => Ok(()),
        }
    }

    /// Whether [`Advance::resume`] applies now.
    pub fn can_resume(&self) -> Result<(), ScheduleError> {
        self.require_active()?;
        match self.paused {
            Some(_) => Ok(()),
            None => Err(ScheduleError::NotPaused),
        }
    }

    /// Whether [`Advance::cancel`] applies now.
    pub fn can_cancel(&self) -> Result<(), ScheduleError> {
        self.require_active()
    }

    /// An operator asks to collect everything outstanding now: the scheduled payments merge into the first
    /// of them, due at `now`. Returns that payment's number.
    pub fn pay_off(&mut self, now: DateTime<Utc>) -> Result<u32, ScheduleError> {
        self.can_pay_off()?;
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

    /// An operator pauses collection at `at`: nothing new is collected (a withdrawal under way finishes) until
    /// [`Advance::resume`]. The amounts do not change, so the formula holds throughout.
    pub fn pause(&mut self, at: DateTime<Utc>, reason: &str) -> Result<(), ScheduleError> {
        self.can_pause()?;
        self.paused = Some(Pause { since: at, reason: reason.to_owned() });
        self.changed();
        Ok(())
    }

    /// An operator resumes collection at `at`: every payment still scheduled moves later by the time the advance
    /// was paused, so the client keeps the same spacing between payments it had before the pause. Returns that time.
    pub fn resume(&mut self, at: DateTime<Utc>) -> Result<chrono::Duration, ScheduleError> {
        self.can_resume()?;
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

    /// An operator stops future collection. A withdrawal already under way finishes and is recorded.
    pub fn cancel(&mut self, reason: &str) -> Result<(), ScheduleError> {
        self.can_cancel()?;
        self.close(AdvanceStatus::Cancelled, reason);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, collect, dec, granted, terms};
    use uuid::Uuid;

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
        assert_eq!(advance.pause(at(3), "again"), Err(ScheduleError::AlreadyPaused));
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
    fn each_commands_check_says_exactly_what_the_command_does() {
        let mut paused = granted("120");
        assert_eq!(paused.pause(at(1), "p"), Ok(()));
        let mut cancelled = granted("120");
        assert_eq!(cancelled.cancel("c"), Ok(()));
        let mut paid_off = granted("120");
        assert!(paid_off.pay_off(at(1)).is_ok() && paid_off.start(1).is_ok(), "nothing scheduled, one processing");
        for advance in [Advance::new(terms("120")), granted("120"), paused, cancelled, paid_off] {
            let (mut a, mut b, mut c, mut d) = (advance.clone(), advance.clone(), advance.clone(), advance.clone());
            assert_eq!(advance.can_pay_off(), a.pay_off(at(2)).map(|_| ()), "{advance:?}");
            assert_eq!(advance.can_pause(), b.pause(at(2), "p"), "{advance:?}");
            assert_eq!(advance.can_resume(), c.resume(at(2)).map(|_| ()), "{advance:?}");
            assert_eq!(advance.can_cancel(), d.cancel("c"), "{advance:?}");
        }
    }
}
