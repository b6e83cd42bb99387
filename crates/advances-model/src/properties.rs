//! A property of the whole model: the seed's formula holds, and a mirror that sees only changes equals the
//! advance, through any run of payments, failures, a pay-off and a pause.

use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::testing::{at, granted};
use crate::{Advance, AdvanceStatus};

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
