//! What a change of an advance tells the world: the events the store writes with each mirrored state, derived
//! from the state before and after (so every way of changing an advance, the workflow's own steps and the
//! operators' commands alike, is told the same way, and a mirror written twice tells nothing twice).

use crate::advance::{Advance, Payment};
use crate::status::{AdvanceStatus, PaymentStatus};

/// One thing that happened to an advance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Happened {
    /// The grant was made: the money is on the account.
    Granted,
    /// The grant was refused: nothing was lent.
    Refused,
    /// A payment was withdrawn (the payment's number).
    PaymentPaid(u32),
    /// A payment was refused; its amount moved to `moved_to`.
    PaymentFailed(u32),
    /// Payments were replaced (a reschedule, a prepayment or a pay-off re-spread them).
    Rescheduled,
    Paused,
    Resumed,
    Completed,
    Defaulted,
    Cancelled,
    WrittenOff,
}

/// What happened between `before` (absent: the advance is new to the store) and `after`, payments first, then
/// the schedule, the pause, and the advance's new status.
pub fn happened(before: Option<&Advance>, after: &Advance) -> Vec<Happened> {
    let mut said = Vec::new();
    let was = |payment: &Payment| {
        before.and_then(|b| b.payments.iter().find(|p| p.number == payment.number)).map(|p| p.status)
    };
    let mut superseded = false;
    for payment in &after.payments {
        if was(payment) == Some(payment.status) {
            continue;
        }
        match payment.status {
            PaymentStatus::Paid => said.push(Happened::PaymentPaid(payment.number)),
            PaymentStatus::Failed => said.push(Happened::PaymentFailed(payment.number)),
            PaymentStatus::Superseded => superseded = true,
            PaymentStatus::Scheduled | PaymentStatus::Processing | PaymentStatus::Cancelled => {}
        }
    }
    if superseded {
        said.push(Happened::Rescheduled);
    }
    let was_paused = before.is_some_and(|b| b.paused.is_some());
    match (was_paused, after.paused.is_some()) {
        (false, true) => said.push(Happened::Paused),
        (true, false) if after.status.is_open() => said.push(Happened::Resumed),
        _ => {}
    }
    let status_before = before.map(|b| b.status);
    if status_before != Some(after.status) {
        let granted = after.status != AdvanceStatus::Granting && after.granted_at.is_some();
        if granted && before.is_none_or(|b| b.granted_at.is_none()) {
            said.push(Happened::Granted);
        }
        match after.status {
            AdvanceStatus::Granting | AdvanceStatus::Active => {}
            AdvanceStatus::Failed => said.push(Happened::Refused),
            AdvanceStatus::Completed => said.push(Happened::Completed),
            AdvanceStatus::Defaulted => said.push(Happened::Defaulted),
            AdvanceStatus::Cancelled => said.push(Happened::Cancelled),
            AdvanceStatus::WrittenOff => said.push(Happened::WrittenOff),
        }
    }
    said
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{granted, terms};

    #[test]
    fn a_grant_then_a_payment_then_a_failure_are_told_once_each() {
        let new = Advance::new(terms("120"));
        assert_eq!(happened(None, &new), vec![], "registered, not yet granted");
        let active = granted("120");
        assert_eq!(happened(Some(&new), &active), vec![Happened::Granted]);
        assert_eq!(happened(Some(&active), &active), vec![], "the same state again tells nothing");

        let mut paid = active.clone();
        paid.payments[0].status = PaymentStatus::Paid;
        assert_eq!(happened(Some(&active), &paid), vec![Happened::PaymentPaid(1)]);
        let mut failed = paid.clone();
        failed.payments[1].status = PaymentStatus::Failed;
        failed.payments[1].moved_to = Some(3);
        assert_eq!(happened(Some(&paid), &failed), vec![Happened::PaymentFailed(2)]);
    }

    #[test]
    fn the_last_payment_and_the_completion_come_in_that_order() {
        let before = granted("120");
        let mut after = before.clone();
        for payment in &mut after.payments {
            payment.status = PaymentStatus::Paid;
        }
        after.status = AdvanceStatus::Completed;
        let told = happened(Some(&before), &after);
        assert_eq!(told.last(), Some(&Happened::Completed));
        assert_eq!(told.len(), after.payments.len() + 1);
    }

    #[test]
    fn pauses_refusals_and_operators_ends_are_told() {
        let active = granted("120");
        let mut paused = active.clone();
        paused.paused = Some(crate::Pause { since: chrono::DateTime::UNIX_EPOCH, reason: "dispute".into() });
        assert_eq!(happened(Some(&active), &paused), vec![Happened::Paused]);
        assert_eq!(happened(Some(&paused), &active), vec![Happened::Resumed]);
        let mut cancelled = paused.clone();
        cancelled.paused = None;
        cancelled.status = AdvanceStatus::Cancelled;
        assert_eq!(happened(Some(&paused), &cancelled), vec![Happened::Cancelled], "a cancel is not a resume");

        let new = Advance::new(terms("120"));
        let mut refused = new.clone();
        refused.status = AdvanceStatus::Failed;
        assert_eq!(happened(Some(&new), &refused), vec![Happened::Refused]);
        let mut rescheduled = active.clone();
        rescheduled.payments[2].status = PaymentStatus::Superseded;
        rescheduled.status = AdvanceStatus::WrittenOff;
        assert_eq!(happened(Some(&active), &rescheduled), vec![Happened::Rescheduled, Happened::WrittenOff]);
    }
}
