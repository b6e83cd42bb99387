//! The transfer rule, as pure code: who pays whom, and whether the payer can.

use ledger_contract::Direction;
use money::Amount;
use rust_decimal::Decimal;

/// The reason recorded when a payer cannot cover an amount (the seed's wording).
pub const INSUFFICIENT_FUNDS: &str = "Insufficient funds";

/// The outcome of applying a transfer to two balances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// The money moved; the new balances of payer and payee.
    Moved { payer_after: Decimal, payee_after: Decimal },
    /// The payer could not cover the amount; nothing moved.
    InsufficientFunds,
}

/// Moves `amount` from the payer's balance to the payee's, unless that would leave the payer below zero.
pub fn settle(payer_balance: Decimal, payee_balance: Decimal, amount: Amount) -> Settlement {
    let amount = amount.value();
    if payer_balance < amount {
        return Settlement::InsufficientFunds;
    }
    Settlement::Moved { payer_after: payer_balance - amount, payee_after: payee_balance + amount }
}

/// A bank transaction touches one account: a credit adds, a debit takes if the balance covers it.
pub fn settle_with_bank(balance: Decimal, amount: Amount, direction: Direction) -> Option<Decimal> {
    match direction {
        Direction::Credit => Some(balance + amount.value()),
        Direction::Debit => (balance >= amount.value()).then(|| balance - amount.value()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cents(value: i64) -> Decimal {
        Decimal::new(value, 2)
    }

    fn amount(value: i64) -> Amount {
        Amount::try_from(cents(value)).expect("positive test amount")
    }

    #[test]
    fn a_payer_with_exactly_the_amount_can_pay_down_to_zero() {
        assert_eq!(
            settle(cents(500), cents(0), amount(500)),
            Settlement::Moved { payer_after: cents(0), payee_after: cents(500) }
        );
    }

    #[test]
    fn a_payer_one_cent_short_fails() {
        assert_eq!(settle(cents(499), cents(0), amount(500)), Settlement::InsufficientFunds);
    }

    #[test]
    fn a_bank_debit_cannot_overdraw() {
        assert_eq!(settle_with_bank(cents(100), amount(101), Direction::Debit), None);
        assert_eq!(settle_with_bank(cents(100), amount(100), Direction::Debit), Some(cents(0)));
        assert_eq!(settle_with_bank(cents(0), amount(100), Direction::Credit), Some(cents(100)));
    }

    proptest! {
        #[test]
        fn a_transfer_conserves_money_and_never_goes_negative(
            payer in 0i64..1_000_000_000,
            payee in 0i64..1_000_000_000,
            value in 1i64..1_000_000_000,
        ) {
            match settle(cents(payer), cents(payee), amount(value)) {
                Settlement::Moved { payer_after, payee_after } => {
                    prop_assert!(payer >= value);
                    prop_assert_eq!(payer_after + payee_after, cents(payer) + cents(payee));
                    prop_assert!(payer_after >= Decimal::ZERO);
                    prop_assert_eq!(payee_after - cents(payee), cents(value));
                }
                Settlement::InsufficientFunds => prop_assert!(payer < value),
            }
        }

        #[test]
        fn any_sequence_of_transfers_keeps_the_total_and_every_balance_non_negative(
            start in proptest::collection::vec(0i64..10_000, 2..6),
            moves in proptest::collection::vec((0usize..6, 0usize..6, 1i64..5_000), 0..200),
        ) {
            let mut balances: Vec<Decimal> = start.iter().map(|&v| cents(v)).collect();
            let total: Decimal = balances.iter().sum();
            for (from, to, value) in moves {
                let (from, to) = (from % balances.len(), to % balances.len());
                if from == to { continue; }
                if let Settlement::Moved { payer_after, payee_after } = settle(balances[from], balances[to], amount(value)) {
                    balances[from] = payer_after;
                    balances[to] = payee_after;
                }
                prop_assert!(balances.iter().all(|b| *b >= Decimal::ZERO));
            }
            prop_assert_eq!(balances.iter().sum::<Decimal>(), total);
        }
    }
}
