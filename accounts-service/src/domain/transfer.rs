//! The transfer rule, as pure code: who pays whom, whether the payer can, and how a group of requests is
//! applied in arrival order against running balances. One request alone and a group-committed batch are
//! decided by the same functions.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use ledger_contract::{Direction, HoldStatus};
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

/// A request to reserve money on one account without moving it.
#[derive(Debug, Clone)]
pub struct HoldCommand {
    pub account_id: Uuid,
    pub amount: Amount,
    /// Seconds from its recording until it expires.
    pub expires_in_secs: u64,
    /// What the money is reserved for.
    pub description: String,
}

/// A request to move what a hold reserves (at most its amount; the rest is released).
#[derive(Debug, Clone)]
pub struct CaptureCommand {
    pub hold_id: Uuid,
    /// The whole hold when `None`.
    pub amount: Option<Amount>,
    /// The account paid; `None`: the bank takes it (a bank debit).
    pub dst_account_id: Option<Uuid>,
}

/// Why a pending hold is released without a capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// A client voided it.
    Void,
    /// Its time ran out (the service's expiry task); a hold not yet due, or no longer pending, is left alone.
    Expire,
}

/// A request that moves or reserves money: what a committer applies, alone or in a batch.
#[derive(Debug, Clone)]
pub enum Movement {
    Transfer(TransferCommand),
    Bank(BankCommand),
    Hold(HoldCommand),
    Capture(CaptureCommand),
    Release { hold_id: Uuid, why: Release },
}

impl Movement {
    /// The accounts the request names, payer first (a capture's or release's own account is its hold's).
    pub fn accounts(&self) -> Vec<Uuid> {
        match self {
            Self::Transfer(t) => {
                let (payer, payee) = t.payer_and_payee();
                vec![payer, payee]
            }
            Self::Bank(b) => vec![b.account_id],
            Self::Hold(h) => vec![h.account_id],
            Self::Capture(c) => c.dst_account_id.into_iter().collect(),
            Self::Release { .. } => Vec::new(),
        }
    }

    /// The existing hold the request ends, if any.
    pub fn hold_id(&self) -> Option<Uuid> {
        match self {
            Self::Capture(c) => Some(c.hold_id),
            Self::Release { hold_id, .. } => Some(*hold_id),
            Self::Transfer(_) | Self::Bank(_) | Self::Hold(_) => None,
        }
    }

    /// What the request asks for, normalized, so that `12.3` and `"12.30"` are the same request.
    pub fn fingerprint(&self) -> Vec<u8> {
        const NONE: &str = "\u{0}none";
        let text = |value: Option<String>| value.unwrap_or_else(|| NONE.to_owned());
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
                b.description.as_deref().unwrap_or(NONE),
            ]),
            Self::Hold(h) => super::fingerprint(&[
                "hold",
                &h.account_id.to_string(),
                &h.amount.to_string(),
                &h.expires_in_secs.to_string(),
                &h.description,
            ]),
            Self::Capture(c) => super::fingerprint(&[
                "capture",
                &c.hold_id.to_string(),
                &text(c.amount.map(|a| a.to_string())),
                &text(c.dst_account_id.map(|d| d.to_string())),
            ]),
            Self::Release { hold_id, why } => {
                super::fingerprint(&[if *why == Release::Void { "void" } else { "expire" }, &hold_id.to_string()])
            }
        }
    }
}

/// A hold as read (and locked) from the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldState {
    pub id: Uuid,
    pub account_id: Uuid,
    pub amount: Amount,
    pub status: HoldStatus,
    /// Whether `expires_at` had passed when it was locked (by the database's clock).
    pub expired: bool,
    /// When it was locked, by the database's clock: when a capture, void or expiry of it is decided.
    pub locked_at: DateTime<Utc>,
    pub description: String,
}

/// Why a request was refused without recording anything (its key is released).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    AccountNotFound(Uuid),
    HoldNotFound(Uuid),
    /// The hold is no longer pending (`Expired` also for a pending hold past its `expires_at`).
    HoldNotPending(Uuid, HoldStatus),
    /// A capture asked for more than the hold reserves (the held amount).
    CaptureOverHold(Amount),
    /// A capture to the hold's own account.
    CaptureToOwnAccount,
}

/// What applying a request decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A transfer or bank transaction: `None` when the money moved, else why not (recorded as `fail`).
    Recorded(Option<&'static str>),
    /// A new hold: `None` when it reserves its amount, else why not (recorded as `fail`).
    Held(Option<&'static str>),
    /// A pending hold ended as `status`: `captured` moved to `to` (the bank when `None`), and `released` given
    /// back to what the account can spend.
    Ended { hold: HoldState, status: HoldStatus, captured: Option<Amount>, to: Option<Uuid>, released: Option<Amount> },
    /// Nothing to do: an expiry of a hold not due or no longer pending.
    Nothing,
}

/// An account's money: its balance, and what its pending holds reserve of it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Funds {
    pub balance: Decimal,
    pub held: Decimal,
}

impl Funds {
    /// What the account can spend: never below zero.
    pub fn available(self) -> Decimal {
        self.balance - self.held
    }
}

/// The money of the accounts and the holds a group of requests touches, as they stand after each request
/// applied so far, and which accounts changed.
#[derive(Debug, Default)]
pub struct Balances {
    values: HashMap<Uuid, Funds>,
    holds: HashMap<Uuid, HoldState>,
    changed: BTreeSet<Uuid>,
}

impl Balances {
    /// The accounts and holds read (and locked) from the database; one not among them does not exist.
    pub fn new(accounts: impl IntoIterator<Item = (Uuid, Funds)>, holds: impl IntoIterator<Item = HoldState>) -> Self {
        Self {
            values: accounts.into_iter().collect(),
            holds: holds.into_iter().map(|hold| (hold.id, hold)).collect(),
            changed: BTreeSet::new(),
        }
    }

    /// Applies one request, or refuses it (the first missing account payer first, a missing or ended hold, a
    /// capture over the hold). A refused request changes nothing.
    pub fn apply(&mut self, movement: &Movement) -> Result<Decision, Refusal> {
        let missing = movement.accounts().into_iter().find(|id| !self.values.contains_key(id));
        if let Some(id) = missing {
            return Err(Refusal::AccountNotFound(id));
        }
        match movement {
            Movement::Transfer(t) => {
                let (payer, payee) = t.payer_and_payee();
                if self.funds(payer).available() < t.amount.value() {
                    return Ok(Decision::Recorded(Some(INSUFFICIENT_FUNDS)));
                }
                self.change(payer, -t.amount.value(), Decimal::ZERO);
                self.change(payee, t.amount.value(), Decimal::ZERO);
                Ok(Decision::Recorded(None))
            }
            Movement::Bank(b) => {
                let amount = b.amount.value();
                match b.direction {
                    Direction::Credit => self.change(b.account_id, amount, Decimal::ZERO),
                    Direction::Debit if self.funds(b.account_id).available() >= amount => {
                        self.change(b.account_id, -amount, Decimal::ZERO)
                    }
                    Direction::Debit => return Ok(Decision::Recorded(Some(INSUFFICIENT_FUNDS))),
                }
                Ok(Decision::Recorded(None))
            }
            Movement::Hold(h) => {
                if self.funds(h.account_id).available() < h.amount.value() {
                    return Ok(Decision::Held(Some(INSUFFICIENT_FUNDS)));
                }
                self.change(h.account_id, Decimal::ZERO, h.amount.value());
                Ok(Decision::Held(None))
            }
            Movement::Capture(c) => {
                let hold = self.open(c.hold_id)?;
                if c.dst_account_id == Some(hold.account_id) {
                    return Err(Refusal::CaptureToOwnAccount);
                }
                let captured = c.amount.unwrap_or(hold.amount);
                if captured > hold.amount {
                    return Err(Refusal::CaptureOverHold(hold.amount));
                }
                self.change(hold.account_id, -captured.value(), -hold.amount.value());
                if let Some(to) = c.dst_account_id {
                    self.change(to, captured.value(), Decimal::ZERO);
                }
                let released = Amount::try_from(hold.amount.value() - captured.value()).ok();
                Ok(self.end(hold, HoldStatus::Captured, Some(captured), c.dst_account_id, released))
            }
            Movement::Release { hold_id, why: Release::Void } => {
                let hold = self.open(*hold_id)?;
                self.change(hold.account_id, Decimal::ZERO, -hold.amount.value());
                Ok(self.end(hold.clone(), HoldStatus::Voided, None, None, Some(hold.amount)))
            }
            Movement::Release { hold_id, why: Release::Expire } => match self.pending(*hold_id) {
                Err(Refusal::HoldNotPending(..)) => Ok(Decision::Nothing),
                Err(refusal) => Err(refusal),
                Ok(hold) if !hold.expired => Ok(Decision::Nothing),
                Ok(hold) => {
                    self.change(hold.account_id, Decimal::ZERO, -hold.amount.value());
                    Ok(self.end(hold.clone(), HoldStatus::Expired, None, None, Some(hold.amount)))
                }
            },
        }
    }

    /// The hold `id` if it is pending (past its time or not).
    fn pending(&self, id: Uuid) -> Result<HoldState, Refusal> {
        let hold = self.holds.get(&id).ok_or(Refusal::HoldNotFound(id))?;
        if hold.status != HoldStatus::Pending {
            return Err(Refusal::HoldNotPending(id, hold.status));
        }
        Ok(hold.clone())
    }

    /// The hold `id` if it can still be captured or voided: pending and not past its time. A pending hold past
    /// its time counts as expired (the expiry task releases it within seconds), so that a capture racing its
    /// expiry has one outcome, decided by the database's clock under the hold's lock.
    fn open(&self, id: Uuid) -> Result<HoldState, Refusal> {
        let hold = self.pending(id)?;
        if hold.expired {
            return Err(Refusal::HoldNotPending(id, HoldStatus::Expired));
        }
        Ok(hold)
    }

    fn end(
        &mut self,
        hold: HoldState,
        status: HoldStatus,
        captured: Option<Amount>,
        to: Option<Uuid>,
        released: Option<Amount>,
    ) -> Decision {
        if let Some(state) = self.holds.get_mut(&hold.id) {
            state.status = status;
        }
        Decision::Ended { hold, status, captured, to, released }
    }

    fn funds(&self, id: Uuid) -> Funds {
        self.values.get(&id).copied().unwrap_or_default()
    }

    fn change(&mut self, id: Uuid, balance: Decimal, held: Decimal) {
        let funds = self.values.entry(id).or_default();
        funds.balance += balance;
        funds.held += held;
        assert!(
            funds.held >= Decimal::ZERO && funds.available() >= Decimal::ZERO,
            "an applied request never leaves held or available money below zero"
        );
        self.changed.insert(id);
    }

    /// An account's balance after every request applied so far (`None` for an account not read).
    pub fn after(&self, id: Uuid) -> Option<Decimal> {
        self.values.get(&id).map(|funds| funds.balance)
    }

    /// The accounts whose money changed, in id order, with their balance and held amount now.
    pub fn changed(&self) -> (Vec<Uuid>, Vec<Decimal>, Vec<Decimal>) {
        let mut columns = (Vec::new(), Vec::new(), Vec::new());
        for id in &self.changed {
            let funds = self.values[id];
            columns.0.push(*id);
            columns.1.push(funds.balance);
            columns.2.push(funds.held);
        }
        columns
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

    fn account(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn funds(balance: i64) -> Funds {
        Funds { balance: cents(balance), held: Decimal::ZERO }
    }

    fn transfer(src: Uuid, dst: Uuid, value: i64, direction: Direction) -> Movement {
        Movement::Transfer(TransferCommand {
            src_account_id: src,
            dst_account_id: dst,
            amount: amount(value),
            direction,
        })
    }

    fn bank(account_id: Uuid, value: i64, direction: Direction) -> Movement {
        Movement::Bank(BankCommand { account_id, amount: amount(value), direction, description: None })
    }

    fn hold(account_id: Uuid, value: i64) -> Movement {
        Movement::Hold(HoldCommand { account_id, amount: amount(value), expires_in_secs: 60, description: "t".into() })
    }

    fn pending(id: u128, account_id: Uuid, value: i64) -> HoldState {
        HoldState {
            id: Uuid::from_u128(id),
            account_id,
            amount: amount(value),
            status: HoldStatus::Pending,
            expired: false,
            locked_at: DateTime::UNIX_EPOCH,
            description: "t".into(),
        }
    }

    fn capture(id: u128, value: Option<i64>, to: Option<Uuid>) -> Movement {
        Movement::Capture(CaptureCommand {
            hold_id: Uuid::from_u128(id),
            amount: value.map(amount),
            dst_account_id: to,
        })
    }

    fn release(id: u128, why: Release) -> Movement {
        Movement::Release { hold_id: Uuid::from_u128(id), why }
    }

    #[test]
    fn a_payer_with_exactly_the_amount_can_pay_down_to_zero_and_not_a_cent_more() {
        let (a, b) = (account(1), account(2));
        let mut balances = Balances::new([(a, funds(500)), (b, funds(0))], []);
        assert_eq!(
            balances.apply(&transfer(a, b, 501, Direction::Debit)),
            Ok(Decision::Recorded(Some(INSUFFICIENT_FUNDS)))
        );
        assert_eq!(balances.apply(&transfer(a, b, 500, Direction::Debit)), Ok(Decision::Recorded(None)));
        assert_eq!((balances.after(a), balances.after(b)), (Some(cents(0)), Some(cents(500))));
    }

    #[test]
    fn a_bank_debit_cannot_overdraw() {
        let a = account(1);
        let mut balances = Balances::new([(a, funds(100))], []);
        assert_eq!(balances.apply(&bank(a, 101, Direction::Debit)), Ok(Decision::Recorded(Some(INSUFFICIENT_FUNDS))));
        assert_eq!(balances.changed(), (vec![], vec![], vec![]), "a failed movement changes nothing");
        assert_eq!(balances.apply(&bank(a, 100, Direction::Debit)), Ok(Decision::Recorded(None)));
        assert_eq!(balances.apply(&bank(a, 100, Direction::Credit)), Ok(Decision::Recorded(None)));
        assert_eq!(balances.after(a), Some(cents(100)));
    }

    #[test]
    fn a_group_is_applied_in_arrival_order_against_running_balances() {
        let (a, b) = (account(1), account(2));
        let mut balances = Balances::new([(a, funds(500)), (b, funds(0))], []);
        assert_eq!(balances.apply(&transfer(a, b, 300, Direction::Debit)), Ok(Decision::Recorded(None)));
        assert_eq!((balances.after(a), balances.after(b)), (Some(cents(200)), Some(cents(300))));
        assert_eq!(
            balances.apply(&transfer(a, b, 300, Direction::Debit)),
            Ok(Decision::Recorded(Some(INSUFFICIENT_FUNDS)))
        );
        assert_eq!(balances.apply(&transfer(a, b, 300, Direction::Credit)), Ok(Decision::Recorded(None)), "b pays a");
        assert_eq!(balances.changed(), (vec![a, b], vec![cents(500), cents(0)], vec![cents(0), cents(0)]));
    }

    #[test]
    fn a_missing_account_is_reported_payer_first_and_moves_nothing() {
        let (a, missing, also_missing) = (account(1), account(2), account(3));
        let mut balances = Balances::new([(a, funds(500))], []);
        assert_eq!(
            balances.apply(&transfer(a, missing, 100, Direction::Credit)),
            Err(Refusal::AccountNotFound(missing)),
            "credit: dst pays"
        );
        assert_eq!(
            balances.apply(&transfer(missing, also_missing, 100, Direction::Debit)),
            Err(Refusal::AccountNotFound(missing))
        );
        assert_eq!(balances.changed(), (vec![], vec![], vec![]));
    }

    #[test]
    fn six_holds_of_1000_on_5000_reserve_five_and_refuse_the_sixth() {
        // Blnk #181: every hold checked against the balance alone accepted all six.
        let a = account(1);
        let mut balances = Balances::new([(a, funds(500_000))], []);
        let decisions: Vec<_> = (0..6).map(|_| balances.apply(&hold(a, 100_000))).collect();
        assert_eq!(decisions[..5], vec![Ok(Decision::Held(None)); 5][..]);
        assert_eq!(decisions[5], Ok(Decision::Held(Some(INSUFFICIENT_FUNDS))));
        assert_eq!(balances.changed(), (vec![a], vec![cents(500_000)], vec![cents(500_000)]));
        let b = account(2);
        let mut balances =
            Balances::new([(a, Funds { balance: cents(500_000), held: cents(500_000) }), (b, funds(0))], []);
        assert_eq!(
            balances.apply(&transfer(a, b, 1, Direction::Debit)),
            Ok(Decision::Recorded(Some(INSUFFICIENT_FUNDS))),
            "held money cannot be spent"
        );
        assert_eq!(balances.apply(&bank(a, 1, Direction::Debit)), Ok(Decision::Recorded(Some(INSUFFICIENT_FUNDS))));
    }

    #[test]
    fn a_capture_moves_at_most_the_hold_and_releases_the_rest() {
        let (a, b) = (account(1), account(2));
        let held = Funds { balance: cents(1_000), held: cents(400) };
        let mut balances = Balances::new([(a, held), (b, funds(0))], [pending(9, a, 400)]);
        assert_eq!(balances.apply(&capture(9, Some(401), Some(b))), Err(Refusal::CaptureOverHold(amount(400))));
        assert_eq!(balances.apply(&capture(9, None, Some(a))), Err(Refusal::CaptureToOwnAccount));
        assert_eq!(balances.apply(&capture(9, None, Some(account(7)))), Err(Refusal::AccountNotFound(account(7))));
        let decided = balances.apply(&capture(9, Some(150), Some(b)));
        assert_eq!(
            decided,
            Ok(Decision::Ended {
                hold: pending(9, a, 400),
                status: HoldStatus::Captured,
                captured: Some(amount(150)),
                to: Some(b),
                released: Some(amount(250)),
            })
        );
        assert_eq!(balances.changed(), (vec![a, b], vec![cents(850), cents(150)], vec![cents(0), cents(0)]));
        // Blnk #41 and a second capture: a hold ends once, even within one group.
        assert_eq!(
            balances.apply(&capture(9, None, Some(b))),
            Err(Refusal::HoldNotPending(Uuid::from_u128(9), HoldStatus::Captured))
        );
        assert_eq!(
            balances.apply(&release(9, Release::Void)),
            Err(Refusal::HoldNotPending(Uuid::from_u128(9), HoldStatus::Captured))
        );
        assert_eq!(balances.apply(&release(9, Release::Expire)), Ok(Decision::Nothing));
    }

    #[test]
    fn a_whole_capture_to_the_bank_releases_nothing() {
        let a = account(1);
        let mut balances = Balances::new([(a, Funds { balance: cents(400), held: cents(400) })], [pending(9, a, 400)]);
        let Ok(Decision::Ended { captured, to, released, .. }) = balances.apply(&capture(9, None, None)) else {
            panic!("captured")
        };
        assert_eq!((captured, to, released), (Some(amount(400)), None, None));
        assert_eq!(balances.changed(), (vec![a], vec![cents(0)], vec![cents(0)]));
    }

    #[test]
    fn a_void_releases_once_and_an_expiry_only_when_due() {
        let a = account(1);
        let start = Funds { balance: cents(400), held: cents(400) };
        let mut balances = Balances::new([(a, start)], [pending(9, a, 400)]);
        assert_eq!(balances.apply(&release(9, Release::Expire)), Ok(Decision::Nothing), "not yet due");
        assert!(matches!(
            balances.apply(&release(9, Release::Void)),
            Ok(Decision::Ended { status: HoldStatus::Voided, .. })
        ));
        assert_eq!(
            balances.apply(&release(9, Release::Void)),
            Err(Refusal::HoldNotPending(Uuid::from_u128(9), HoldStatus::Voided))
        );
        assert_eq!(balances.changed(), (vec![a], vec![cents(400)], vec![cents(0)]));

        let due = HoldState { expired: true, ..pending(9, a, 400) };
        let mut balances = Balances::new([(a, start)], [due]);
        let expired = Err(Refusal::HoldNotPending(Uuid::from_u128(9), HoldStatus::Expired));
        assert_eq!(balances.apply(&capture(9, None, None)), expired, "past its time a hold cannot be captured");
        assert_eq!(balances.apply(&release(9, Release::Void)), expired);
        assert!(matches!(
            balances.apply(&release(9, Release::Expire)),
            Ok(Decision::Ended { status: HoldStatus::Expired, .. })
        ));
        assert_eq!(balances.apply(&release(9, Release::Expire)), Ok(Decision::Nothing));
        assert_eq!(balances.apply(&capture(8, None, None)), Err(Refusal::HoldNotFound(Uuid::from_u128(8))));
    }

    #[test]
    fn a_failed_hold_cannot_be_captured() {
        // Blnk #182: a rejected hold could still be committed. A failed hold is never among the pending ones.
        let a = account(1);
        let failed = HoldState { status: HoldStatus::Fail, ..pending(9, a, 400) };
        let mut balances = Balances::new([(a, funds(10_000))], [failed]);
        assert_eq!(
            balances.apply(&capture(9, None, None)),
            Err(Refusal::HoldNotPending(Uuid::from_u128(9), HoldStatus::Fail))
        );
        assert_eq!(balances.changed(), (vec![], vec![], vec![]));
    }

    proptest! {
        /// Any sequence of transfers, bank transactions, holds, captures, voids and expiries over a few accounts
        /// keeps what each account can spend at zero or more, holds at most what was reserved, ends each hold
        /// once, and changes the total of the balances only by bank transactions and captures to the bank.
        #[test]
        fn no_sequence_of_requests_overdraws_or_moves_more_than_was_held(
            start in proptest::collection::vec(0i64..10_000, 2..5),
            steps in proptest::collection::vec((0u8..7, 0usize..5, 0usize..5, 1i64..5_000, 0usize..8, any::<bool>()), 0..200),
        ) {
            let ids: Vec<Uuid> = (0..start.len() as u128).map(account).collect();
            let mut balances = Balances::new(ids.iter().zip(&start).map(|(id, &v)| (*id, funds(v))), []);
            let mut total: Decimal = start.iter().map(|&v| cents(v)).sum();
            let mut holds: Vec<HoldState> = Vec::new();
            for (op, x, y, value, h, flag) in steps {
                let (x, y) = (ids[x % ids.len()], ids[y % ids.len()]);
                let target = (!holds.is_empty()).then(|| holds[h % holds.len()].id);
                let movement = match (op, target) {
                    (0, _) if x != y => transfer(x, y, value, Direction::Debit),
                    (1, _) => bank(x, value, if flag { Direction::Credit } else { Direction::Debit }),
                    (2, _) | (_, None) => hold(x, value),
                    (3, Some(id)) => Movement::Capture(CaptureCommand { hold_id: id, amount: flag.then(|| amount(value)), dst_account_id: Some(y) }),
                    (4, Some(id)) => Movement::Capture(CaptureCommand { hold_id: id, amount: None, dst_account_id: None }),
                    (5, Some(id)) => Movement::Release { hold_id: id, why: Release::Void },
                    (_, Some(id)) => Movement::Release { hold_id: id, why: Release::Expire },
                };
                if let Movement::Release { hold_id, why: Release::Expire } = &movement {
                    // The clock passes a hold's time: mark it as the database would when it is locked.
                    if let Some(state) = balances.holds.get_mut(hold_id) { state.expired = true; }
                }
                let before: Decimal = ids.iter().filter_map(|id| balances.after(*id)).sum();
                match balances.apply(&movement) {
                    Ok(Decision::Held(None)) => {
                        let Movement::Hold(command) = &movement else { unreachable!() };
                        let state = HoldState { id: Uuid::from_u128(1_000 + holds.len() as u128), account_id: command.account_id, amount: command.amount, status: HoldStatus::Pending, expired: false, locked_at: DateTime::UNIX_EPOCH, description: "t".into() };
                        balances.holds.insert(state.id, state.clone());
                        holds.push(state);
                    }
                    Ok(Decision::Ended { hold, status, captured, to, released }) => {
                        prop_assert_eq!(hold.status, HoldStatus::Pending, "only a pending hold ends");
                        let moved = captured.map_or(Decimal::ZERO, Amount::value);
                        prop_assert_eq!(moved + released.map_or(Decimal::ZERO, Amount::value), hold.amount.value(), "captured + released = held");
                        if status == HoldStatus::Captured && to.is_none() { total -= moved; }
                    }
                    Ok(Decision::Recorded(None)) => if let Movement::Bank(b) = &movement {
                        total += if b.direction == Direction::Credit { b.amount.value() } else { -b.amount.value() };
                    },
                    Ok(_) | Err(_) => prop_assert_eq!(before, ids.iter().filter_map(|id| balances.after(*id)).sum::<Decimal>()),
                }
                for id in &ids {
                    let f = balances.funds(*id);
                    prop_assert!(f.held >= Decimal::ZERO && f.available() >= Decimal::ZERO);
                    let pending: Decimal = balances.holds.values().filter(|s| s.account_id == *id && s.status == HoldStatus::Pending).map(|s| s.amount.value()).sum();
                    prop_assert_eq!(f.held, pending, "held is the sum of the account's pending holds");
                }
                prop_assert_eq!(ids.iter().filter_map(|id| balances.after(*id)).sum::<Decimal>(), total);
            }
        }
    }
}
