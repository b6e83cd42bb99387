//! The transfer rule, as pure code: who pays whom, whether the payer can, and how a group of requests is
//! applied in arrival order against running balances. One request alone and a group-committed batch are
//! decided by the same functions.

use std::collections::{BTreeSet, HashMap};

use ledger_contract::Direction;
use money::Amount;
use rust_decimal::Decimal;
use uuid::Uuid;

/// The reason recorded when a payer cannot cover an amount (the seed's wording).
pub const INSUFFICIENT_FUNDS: &str = "Insufficient funds";

/// A request to move money between two accounts.
#[derive(Debug, Clone)]
pub struct TransferCommand {
    pub src_account_id: Uuid,
    pub dst_account_id: Uuid,
    pub amount: Amount,
    pub direction: Direction,
}

impl TransferCommand {
    /// Who pays and who is paid: `debit` means the source pays the destination, `credit` the reverse.
    pub fn payer_and_payee(&self) -> (Uuid, Uuid) {
        match self.direction {
            Direction::Debit => (self.src_account_id, self.dst_account_id),
            Direction::Credit => (self.dst_account_id, self.src_account_id),
        }
    }
}

/// A request to move money between the bank and one account.
#[derive(Debug, Clone)]
pub struct BankCommand {
    pub account_id: Uuid,
    pub amount: Amount,
    pub direction: Direction,
    pub description: Option<String>,
}

/// A request that moves money: what a committer applies, alone or in a batch.
#[derive(Debug, Clone)]
pub enum Movement {
    Transfer(TransferCommand),
    Bank(BankCommand),
}

impl Movement {
    /// The accounts the movement touches, payer first.
    pub fn accounts(&self) -> Vec<Uuid> {
        match self {
            Self::Transfer(t) => {
                let (payer, payee) = t.payer_and_payee();
                vec![payer, payee]
            }
            Self::Bank(b) => vec![b.account_id],
        }
    }

    /// What the request asks for, normalized, so that `12.3` and `"12.30"` are the same request.
    pub fn fingerprint(&self) -> Vec<u8> {
        match self {
            Self::Transfer(t) => super::fingerprint(&[
                "transfer",
                &t.src_account_id.to_string(),
                &t.dst_account_id.to_string(),
                &t.amount.to_string(),
                t.direction.as_str(),
            ]),
            Self::Bank(b) => super::fingerprint(&[
                "bank",
                &b.account_id.to_string(),
                &b.amount.to_string(),
                b.direction.as_str(),
                b.description.as_deref().unwrap_or("\u{0}none"),
            ]),
        }
    }
}

/// The balances of the accounts a group of movements touches, as they stand after each movement applied so
/// far, and which of them changed.
#[derive(Debug, Default)]
pub struct Balances {
    values: HashMap<Uuid, Decimal>,
    changed: BTreeSet<Uuid>,
}

impl Balances {
    /// The balances read (and locked) from the database; an account not among them does not exist.
    pub fn new(read: impl IntoIterator<Item = (Uuid, Decimal)>) -> Self {
        Self { values: read.into_iter().collect(), changed: BTreeSet::new() }
    }

    /// Applies one movement: `Err(account)` when an account does not exist (the first missing one, payer
    /// before payee), else `Ok(None)` when the money moved or `Ok(Some(reason))` when it could not.
    pub fn apply(&mut self, movement: &Movement) -> Result<Option<&'static str>, Uuid> {
        let missing = movement.accounts().into_iter().find(|id| !self.values.contains_key(id));
        if let Some(id) = missing {
            return Err(id);
        }
        let balance = |id: Uuid| self.values.get(&id).copied().unwrap_or_default();
        let moved: Vec<(Uuid, Decimal)> = match movement {
            Movement::Transfer(t) => {
                let (payer, payee) = t.payer_and_payee();
                match settle(balance(payer), balance(payee), t.amount) {
                    Settlement::Moved { payer_after, payee_after } => vec![(payer, payer_after), (payee, payee_after)],
                    Settlement::InsufficientFunds => return Ok(Some(INSUFFICIENT_FUNDS)),
                }
            }
            Movement::Bank(b) => match settle_with_bank(balance(b.account_id), b.amount, b.direction) {
                Some(after) => vec![(b.account_id, after)],
                None => return Ok(Some(INSUFFICIENT_FUNDS)),
            },
        };
        for (id, after) in moved {
            assert!(after >= Decimal::ZERO, "a settled balance is never negative");
            self.values.insert(id, after);
            self.changed.insert(id);
        }
        Ok(None)
    }

    /// An account's balance after every movement applied so far (`None` for an account not read).
    pub fn after(&self, id: Uuid) -> Option<Decimal> {
        self.values.get(&id).copied()
    }

    /// The accounts whose balance changed, in id order, with their balance now.
    pub fn changed(&self) -> (Vec<Uuid>, Vec<Decimal>) {
        self.changed.iter().map(|id| (*id, self.values[id])).unzip()
    }
}

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

    fn account(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn transfer(src: Uuid, dst: Uuid, value: i64, direction: Direction) -> Movement {
        Movement::Transfer(TransferCommand {
            src_account_id: src,
            dst_account_id: dst,
            amount: amount(value),
            direction,
        })
    }

    #[test]
    fn a_group_is_applied_in_arrival_order_against_running_balances() {
        let (a, b) = (account(1), account(2));
        let mut balances = Balances::new([(a, cents(500)), (b, cents(0))]);
        assert_eq!(balances.apply(&transfer(a, b, 300, Direction::Debit)), Ok(None));
        assert_eq!((balances.after(a), balances.after(b)), (Some(cents(200)), Some(cents(300))));
        assert_eq!(balances.apply(&transfer(a, b, 300, Direction::Debit)), Ok(Some(INSUFFICIENT_FUNDS)));
        assert_eq!((balances.after(a), balances.after(b)), (Some(cents(200)), Some(cents(300))), "unchanged");
        assert_eq!(balances.apply(&transfer(a, b, 300, Direction::Credit)), Ok(None), "credit: b pays a");
        assert_eq!((balances.after(a), balances.after(b)), (Some(cents(500)), Some(cents(0))));
        assert_eq!(balances.changed(), (vec![a, b], vec![cents(500), cents(0)]));
    }

    #[test]
    fn a_missing_account_is_reported_payer_first_and_moves_nothing() {
        let (a, missing, also_missing) = (account(1), account(2), account(3));
        let mut balances = Balances::new([(a, cents(500))]);
        assert_eq!(balances.apply(&transfer(a, missing, 100, Direction::Credit)), Err(missing), "credit: dst pays");
        assert_eq!(balances.apply(&transfer(missing, also_missing, 100, Direction::Debit)), Err(missing));
        assert_eq!(balances.changed(), (vec![], vec![]));
    }

    #[test]
    fn a_failed_movement_changes_no_balance() {
        let a = account(1);
        let mut balances = Balances::new([(a, cents(100))]);
        let debit = BankCommand { account_id: a, amount: amount(101), direction: Direction::Debit, description: None };
        assert_eq!(balances.apply(&Movement::Bank(debit)), Ok(Some(INSUFFICIENT_FUNDS)));
        assert_eq!(balances.changed(), (vec![], vec![]));
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
