//! Properties of the whole model: the seed's formula (and its generalisation) holds, and a mirror that sees only changes equals the
//! advance, through any run of payments, failures, a pay-off and a pause.

use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::testing::{at, granted};
use crate::{Advance, AdvanceStatus, Prepay, Reschedule};

proptest! {
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

/// One thing that may happen to an advance: the workflow's outcomes and every operator command.
#[derive(Debug, Clone)]
enum Step {
    /// The next due payment is collected (true) or refused (false).
    Collect(bool),
    /// The next due payment starts, and the step after finishes it (commands arrive in between).
    Start,
    Finish(bool),
    PayOff,
    Pause,
    Resume,
    Reschedule(u32, Option<i64>),
    /// A prepayment of this many thousandths of what is scheduled (at least a cent).
    Prepay(u64),
    WriteOff,
    Cancel,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => any::<bool>().prop_map(Step::Collect),
        2 => Just(Step::Start),
        2 => any::<bool>().prop_map(Step::Finish),
        1 => Just(Step::PayOff),
        1 => Just(Step::Pause),
        1 => Just(Step::Resume),
        1 => (1u32..30, proptest::option::of(1i64..100)).prop_map(|(n, first)| Step::Reschedule(n, first)),
        2 => (1u64..=1000).prop_map(Step::Prepay),
        1 => Just(Step::WriteOff),
        1 => Just(Step::Cancel),
    ]
}

proptest! {
    /// The generalised formula, paid + scheduled + processing + written off = amount, holds after every step
    /// of any sequence of outcomes and commands, pauses included, while the advance is open or written off; a
    /// written-off advance has nothing left to collect; the mirror, seeing only changes, equals the advance.
    #[test]
    fn the_generalised_formula_holds_through_every_command_in_any_order(
        cents in 12u64..10_000_000,
        steps in proptest::collection::vec(step(), 0..60),
    ) {
        let mut advance = granted("0");
        advance.terms.amount = Decimal::new(cents as i64, 2);
        advance = Advance::new(advance.terms);
        let mut mirror = advance.clone();
        advance.granted(at(0), Uuid::from_u128(1));
        let mut in_flight: Option<u32> = None;
        for (n, step) in steps.into_iter().enumerate() {
            let now = at(n as i64);
            let finish = |advance: &mut Advance, number: u32, pay: bool| {
                if pay { advance.paid(number, Uuid::from_u128(u128::from(number))) } else { advance.failed(number, "no") }
            };
            match step {
                Step::Collect(pay) if in_flight.is_none() => {
                    if let Some((number, _)) = advance.next_due() {
                        prop_assert!(advance.start(number).is_ok());
                        prop_assert!(finish(&mut advance, number, pay).is_ok());
                    }
                }
                Step::Start if in_flight.is_none() => {
                    if let Some((number, _)) = advance.next_due() {
                        prop_assert!(advance.start(number).is_ok());
                        in_flight = Some(number);
                    }
                }
                Step::Finish(pay) => {
                    if let Some(number) = in_flight.take() {
                        prop_assert!(finish(&mut advance, number, pay).is_ok());
                    }
                }
                Step::Collect(_) | Step::Start => {}
                Step::PayOff => { let _ = advance.pay_off(now); }
                Step::Pause => { let _ = advance.pause(now, "p"); }
                Step::Resume => { let _ = advance.resume(now); }
                Step::Reschedule(payments, first) => {
                    let request = Reschedule { payments, first_due_at: first.map(|s| at(n as i64 + s)), reason: String::new() };
                    let _ = advance.reschedule(&request, now);
                }
                Step::Prepay(permille) => {
                    let scheduled: Decimal = advance.payments.iter().filter(|p| p.status == crate::PaymentStatus::Scheduled).map(|p| p.amount).sum();
                    let amount = (scheduled * Decimal::new(permille as i64, 3)).round_dp(2).max(Decimal::new(1, 2));
                    let _ = advance.prepay(&Prepay { amount, reason: String::new() }, now);
                }
                Step::WriteOff => { let _ = advance.write_off("w"); }
                Step::Cancel => { let _ = advance.cancel("c"); }
            }
            if advance.status.is_open() || advance.status == AdvanceStatus::WrittenOff {
                prop_assert!(advance.formula_holds(), "after {:?}: {:?}", n, advance);
            }
            if advance.status == AdvanceStatus::WrittenOff {
                prop_assert!(advance.payments.iter().all(|p| p.status != crate::PaymentStatus::Scheduled));
                prop_assert_eq!(advance.next_due(), None);
            }
            prop_assert!(advance.payments.iter().all(|p| p.amount >= Decimal::ZERO));
            prop_assert!(advance.paid_amount() + advance.written_off <= advance.terms.amount);
            prop_assert_eq!(mirror.apply(advance.changes_since(&mirror)), Ok(()));
            prop_assert_eq!(&mirror, &advance);
        }
        let ids: std::collections::HashSet<_> = advance.payments.iter().map(|p| p.payment_id).collect();
        prop_assert_eq!(ids.len(), advance.payments.len(), "payment ids are unique");
        if advance.status == AdvanceStatus::Completed {
            prop_assert_eq!(advance.paid_amount(), advance.terms.amount);
        }
    }
}
