//! Fixtures the model's unit tests share.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::{Advance, AdvanceTerms};

pub(crate) fn dec(text: &str) -> Decimal {
    Decimal::from_str_exact(text).expect("a test decimal")
}

pub(crate) fn terms(amount: &str) -> AdvanceTerms {
    AdvanceTerms {
        advance_id: Uuid::from_u128(7),
        account_id: Uuid::from_u128(8),
        amount: dec(amount),
        payments: 12,
        interval_ms: 1000,
        max_failed_extra_payments: 3,
        product: None,
        first_due_at: None,
    }
}

pub(crate) fn at(seconds: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_700_000_000 + seconds, 0).unwrap_or_default()
}

pub(crate) fn granted(amount: &str) -> Advance {
    let mut advance = Advance::new(terms(amount));
    advance.granted(at(0), Uuid::from_u128(1));
    advance
}

pub(crate) fn collect(advance: &mut Advance, pay: bool) -> u32 {
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
