//! Loan products: the terms an advance gets, and the amounts and first due times a product allows. Products
//! never change once added (an operator retires one and adds another), and an advance copies its product's terms
//! when it starts, so nothing done to a product later changes a running advance.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::terms::{add, AdvanceTerms, TermsError};

/// The longest product name.
pub const MAX_PRODUCT_NAME_CHARS: usize = 64;

/// A product as operators define it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub name: String,
    /// Regular payments of each advance.
    pub payments: u32,
    /// Time between payments, in milliseconds.
    pub interval_ms: u64,
    /// The least and the most one advance of this product may lend.
    pub min_amount: Decimal,
    pub max_amount: Decimal,
    /// Extra payments that may fail in a row before an advance defaults.
    pub max_failed_extra_payments: u32,
}

/// Why a product's definition is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProductError {
    #[error(
        "a product name is 1 to {MAX_PRODUCT_NAME_CHARS} of a-z 0-9 . _ - starting with a letter or digit, not {0:?}"
    )]
    Name(String),
    #[error("{0}")]
    Terms(#[from] TermsError),
    #[error("the minimum amount {min:.2} is above the maximum {max:.2}")]
    Bounds { min: Decimal, max: Decimal },
}

/// Why a request's terms do not fit the product.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("product {product} lends from {min:.2} to {max:.2}, not {amount:.2}")]
    Amount { product: String, min: Decimal, max: Decimal, amount: Decimal },
    #[error(
        "first_due_at must be from {} to {} (at least {} and at most two intervals of {} ms after now)",
        earliest.to_rfc3339(), latest.to_rfc3339(), humantime(*lead), interval_ms
    )]
    FirstDue { earliest: DateTime<Utc>, latest: DateTime<Utc>, lead: Duration, interval_ms: u64 },
}

fn humantime(duration: Duration) -> String {
    let seconds = duration.as_secs();
    match seconds {
        0 => format!("{} ms", duration.as_millis()),
        s if s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s % 3_600 == 0 => format!("{} h", s / 3_600),
        s => format!("{s} s"),
    }
}

/// Whether `name` may name a product: lowercase a-z, 0-9, `.`, `_`, `-`, starting with a letter or digit.
pub fn valid_product_name(name: &str) -> bool {
    let valid_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    let valid_start = name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    !name.is_empty() && name.len() <= MAX_PRODUCT_NAME_CHARS && valid_chars && valid_start
}

impl Product {
    /// Checks the definition: a valid name, and terms that are valid for both the least and the most it lends
    /// (so every advance it admits has valid terms: at least a cent per payment, the money rule's maximum).
    pub fn validate(&self) -> Result<(), ProductError> {
        if !valid_product_name(&self.name) {
            return Err(ProductError::Name(self.name.clone()));
        }
        for amount in [self.min_amount, self.max_amount] {
            self.terms(Uuid::nil(), Uuid::nil(), amount, None).validate()?;
        }
        if self.min_amount > self.max_amount {
            return Err(ProductError::Bounds { min: self.min_amount, max: self.max_amount });
        }
        Ok(())
    }

    /// The terms of an advance of `amount` under this product.
    pub fn terms(
        &self,
        advance_id: Uuid,
        account_id: Uuid,
        amount: Decimal,
        first_due_at: Option<DateTime<Utc>>,
    ) -> AdvanceTerms {
        AdvanceTerms {
            advance_id,
            account_id,
            amount,
            payments: self.payments,
            interval_ms: self.interval_ms,
            max_failed_extra_payments: self.max_failed_extra_payments,
            product: Some(self.name.clone()),
            first_due_at,
        }
    }

    /// Checks a request against the product: the amount within its bounds, and a chosen first due time at
    /// least `min_lead` and at most two intervals after `now`.
    pub fn admits(
        &self,
        amount: Decimal,
        first_due_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
        min_lead: Duration,
    ) -> Result<(), RequestError> {
        if amount < self.min_amount || amount > self.max_amount {
            return Err(RequestError::Amount {
                product: self.name.clone(),
                min: self.min_amount,
                max: self.max_amount,
                amount,
            });
        }
        if let Some(first) = first_due_at {
            let (earliest, latest) = (add(now, min_lead, 1), add(now, Duration::from_millis(self.interval_ms), 2));
            if first < earliest || first > latest {
                return Err(RequestError::FirstDue { earliest, latest, lead: min_lead, interval_ms: self.interval_ms });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{at, dec};
    use crate::Advance;

    fn standard() -> Product {
        Product {
            name: "standard".into(),
            payments: 12,
            interval_ms: 7 * 86_400_000,
            min_amount: dec("10"),
            max_amount: dec("500"),
            max_failed_extra_payments: 12,
        }
    }

    #[test]
    fn a_definition_needs_a_name_sane_terms_and_ordered_bounds() {
        assert_eq!(standard().validate(), Ok(()));
        let bad_name = Product { name: "Standard".into(), ..standard() };
        assert!(matches!(bad_name.validate(), Err(ProductError::Name(_))));
        let below_a_cent = Product { min_amount: dec("0.11"), ..standard() };
        assert_eq!(below_a_cent.validate(), Err(ProductError::Terms(TermsError::Amount)));
        let too_much = Product { max_amount: dec("1000000000000.01"), ..standard() };
        assert_eq!(too_much.validate(), Err(ProductError::Terms(TermsError::Amount)));
        let reversed = Product { min_amount: dec("600"), ..standard() };
        assert_eq!(reversed.validate(), Err(ProductError::Bounds { min: dec("600"), max: dec("500") }));
        let no_interval = Product { interval_ms: 0, ..standard() };
        assert_eq!(no_interval.validate(), Err(ProductError::Terms(TermsError::Interval)));
    }

    #[test]
    fn amounts_outside_the_bounds_are_refused_naming_them() {
        let product = standard();
        let day = Duration::from_secs(86_400);
        assert_eq!(product.admits(dec("10"), None, at(0), day), Ok(()));
        assert_eq!(product.admits(dec("500"), None, at(0), day), Ok(()));
        let refused = product.admits(dec("999999999999.00"), None, at(0), day);
        assert_eq!(
            refused.map_err(|error| error.to_string()),
            Err("product standard lends from 10.00 to 500.00, not 999999999999.00".to_owned())
        );
        assert!(product.admits(dec("9.99"), None, at(0), day).is_err());
    }

    #[test]
    fn a_first_due_time_is_from_the_lead_to_two_intervals_ahead() {
        let product = standard();
        let day = Duration::from_secs(86_400);
        let ok = |seconds: i64| product.admits(dec("100"), Some(at(seconds)), at(0), day).is_ok();
        assert!(!ok(86_399), "less than a day ahead");
        assert!(ok(86_400));
        assert!(ok(14 * 86_400), "two intervals");
        assert!(!ok(14 * 86_400 + 1));
    }

    #[test]
    fn payments_follow_the_chosen_first_due_time_at_the_interval() {
        let product = Product { interval_ms: 1000, ..standard() };
        let first = at(3);
        let mut advance = Advance::new(product.terms(Uuid::from_u128(1), Uuid::from_u128(2), dec("120"), Some(first)));
        advance.granted(at(0), Uuid::from_u128(3));
        assert_eq!(advance.payments[0].due_at, Some(at(3)));
        assert_eq!(advance.payments[11].due_at, Some(at(14)));
        // Granted after the chosen time (the ledger was down): due one interval after the grant, as without one.
        let mut late = Advance::new(product.terms(Uuid::from_u128(1), Uuid::from_u128(2), dec("120"), Some(first)));
        late.granted(at(5), Uuid::from_u128(3));
        assert_eq!(late.payments[0].due_at, Some(at(6)));
        assert_eq!(late.terms.product.as_deref(), Some("standard"));
    }
}
