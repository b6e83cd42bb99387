//! Every account's own book, as pure rules: what a row does to one of its accounts, where a row sits in an
//! account's time order, and the statement cursor that carries a first page's snapshot to the next pages.

use chrono::{DateTime, Utc};
use ledger_contract::{Direction, TransactionKind, TransactionStatus};
use rust_decimal::Decimal;
use uuid::Uuid;

/// A row's place in time order: `(created_at, id)`, the order an account's rows commit in (`db::movements`)
/// and the order its balances-after follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
}

impl Key {
    /// Before every row dated `at` or later.
    pub fn at(at: DateTime<Utc>) -> Self {
        Self { created_at: at, id: Uuid::nil() }
    }

    /// Before every row dated after `at`, and after every row dated `at` or earlier (times are microseconds).
    pub fn after(at: DateTime<Utc>) -> Self {
        Self::at(at + chrono::Duration::microseconds(1))
    }

    /// The first key after this one: a row's key is the newest before it.
    pub fn successor(self) -> Self {
        match self.id.as_u128().checked_add(1) {
            Some(next) => Self { created_at: self.created_at, id: Uuid::from_u128(next) },
            None => Self::after(self.created_at),
        }
    }
}

/// Which of a row's accounts an account is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Src,
    Dst,
}

/// What a row did to the balance of its account on `side`: signed, zero when it failed.
///
/// - a transfer `debit`: the source pays the destination; `credit`: the destination pays the source;
/// - a bank row (its account is the destination): `credit` adds, `debit` takes;
/// - a hold's release moves nothing (it frees held money, which the balance already counts).
pub fn effect(
    kind: TransactionKind,
    direction: Direction,
    status: TransactionStatus,
    side: Side,
    amount: Decimal,
) -> Decimal {
    if status != TransactionStatus::Success {
        return Decimal::ZERO;
    }
    let receives = match (kind, side) {
        (TransactionKind::Transfer, Side::Src) => direction == Direction::Credit,
        (TransactionKind::Transfer, Side::Dst) => direction == Direction::Debit,
        (TransactionKind::Bank, _) => direction == Direction::Credit,
        (TransactionKind::HoldRelease, _) => return Decimal::ZERO,
    };
    if receives {
        amount
    } else {
        -amount
    }
}

/// Where a statement's pages stand: the account and window asked for, the page size, the newest row of the
/// account in the window when the first page was read (`bound`: no later row appears on any page), and the last
/// row already sent (`after`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub account_id: Uuid,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub limit: u16,
    pub bound: Option<Key>,
    pub after: Option<Key>,
}

/// Why a cursor cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cursor is not one this service gave")]
pub struct BadCursor;

const CURSOR_VERSION: u8 = 1;

impl Cursor {
    /// The cursor as text: hex of its fields. Opaque to clients; it holds nothing they could not ask for, so a
    /// changed one can only show them another view of an account they may read.
    pub fn encode(&self) -> String {
        let mut bytes = vec![CURSOR_VERSION];
        bytes.extend_from_slice(self.account_id.as_bytes());
        bytes.extend_from_slice(&self.from.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(&self.to.timestamp_micros().to_be_bytes());
        bytes.extend_from_slice(&self.limit.to_be_bytes());
        for key in [self.bound, self.after] {
            match key {
                Some(key) => {
                    bytes.push(1);
                    bytes.extend_from_slice(&key.created_at.timestamp_micros().to_be_bytes());
                    bytes.extend_from_slice(key.id.as_bytes());
                }
                None => bytes.push(0),
            }
        }
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn decode(text: &str) -> Result<Self, BadCursor> {
        if !text.len().is_multiple_of(2) || text.len() > 512 || !text.is_ascii() {
            return Err(BadCursor);
        }
        let bytes: Vec<u8> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).map_err(|_| BadCursor))
            .collect::<Result<_, _>>()?;
        let mut reader = Reader(&bytes);
        if reader.take::<1>()? != [CURSOR_VERSION] {
            return Err(BadCursor);
        }
        let account_id = Uuid::from_bytes(reader.take::<16>()?);
        let from = reader.time()?;
        let to = reader.time()?;
        let limit = u16::from_be_bytes(reader.take::<2>()?);
        let bound = reader.key()?;
        let after = reader.key()?;
        if !reader.0.is_empty() {
            return Err(BadCursor);
        }
        Ok(Self { account_id, from, to, limit, bound, after })
    }
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Result<[u8; N], BadCursor> {
        let (head, rest) = self.0.split_at_checked(N).ok_or(BadCursor)?;
        self.0 = rest;
        head.try_into().map_err(|_| BadCursor)
    }

    fn time(&mut self) -> Result<DateTime<Utc>, BadCursor> {
        DateTime::from_timestamp_micros(i64::from_be_bytes(self.take::<8>()?)).ok_or(BadCursor)
    }

    fn key(&mut self) -> Result<Option<Key>, BadCursor> {
        match self.take::<1>()? {
            [0] => Ok(None),
            [1] => Ok(Some(Key { created_at: self.time()?, id: Uuid::from_bytes(self.take::<16>()?) })),
            _ => Err(BadCursor),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cents(value: i64) -> Decimal {
        Decimal::new(value, 2)
    }

    #[test]
    fn each_side_of_each_row_moves_as_the_seed_says() {
        use Direction::{Credit, Debit};
        use Side::{Dst, Src};
        use TransactionKind::{Bank, Transfer};
        let ok = TransactionStatus::Success;
        let amount = cents(1_250);
        assert_eq!(effect(Transfer, Debit, ok, Src, amount), -amount, "debit: src pays");
        assert_eq!(effect(Transfer, Debit, ok, Dst, amount), amount);
        assert_eq!(effect(Transfer, Credit, ok, Src, amount), amount, "credit: dst pays");
        assert_eq!(effect(Transfer, Credit, ok, Dst, amount), -amount);
        assert_eq!(effect(Bank, Credit, ok, Dst, amount), amount, "the bank gives");
        assert_eq!(effect(Bank, Debit, ok, Dst, amount), -amount, "the bank takes");
        assert_eq!(effect(Transfer, Debit, TransactionStatus::Fail, Src, amount), Decimal::ZERO);
        assert_eq!(
            effect(TransactionKind::HoldRelease, Credit, ok, Dst, amount),
            Decimal::ZERO,
            "a release moves nothing"
        );
    }

    #[test]
    fn keys_order_by_time_then_id_and_bound_a_time() {
        let t = DateTime::from_timestamp_micros(1_700_000_000_000_001).unwrap_or_default();
        let row = Key { created_at: t, id: Uuid::now_v7() };
        assert!(Key::at(t) < row && row < Key::after(t));
        assert!(Key::after(t) <= Key::at(t + chrono::Duration::microseconds(1)));
        assert!(row < row.successor() && row.successor() < Key::after(t));
        let last = Key { created_at: t, id: Uuid::max() };
        assert_eq!(last.successor(), Key::after(t));
    }

    #[test]
    fn a_cursor_refuses_what_it_did_not_write() {
        assert_eq!(Cursor::decode(""), Err(BadCursor));
        assert_eq!(Cursor::decode("zz"), Err(BadCursor));
        assert_eq!(Cursor::decode("02"), Err(BadCursor));
        assert_eq!(Cursor::decode(&"é".repeat(4)), Err(BadCursor));
        let cursor = Cursor {
            account_id: Uuid::now_v7(),
            from: Utc::now(),
            to: Utc::now(),
            limit: 10,
            bound: None,
            after: None,
        };
        let text = cursor.encode();
        assert_eq!(Cursor::decode(&format!("{text}00")), Err(BadCursor), "trailing bytes");
        assert_eq!(Cursor::decode(&text[..text.len() - 2]), Err(BadCursor), "cut short");
    }

    proptest! {
        #[test]
        fn a_cursor_reads_back_as_written(
            account in any::<u128>(),
            times in proptest::array::uniform4(0i64..4_000_000_000_000_000),
            limit in any::<u16>(),
            ids in proptest::array::uniform2(any::<u128>()),
            present in proptest::array::uniform2(any::<bool>()),
        ) {
            let time = |micros: i64| DateTime::from_timestamp_micros(micros).unwrap_or_default();
            let key = |n: usize| present[n].then(|| Key { created_at: time(times[2 + n]), id: Uuid::from_u128(ids[n]) });
            let cursor = Cursor {
                account_id: Uuid::from_u128(account),
                from: time(times[0]),
                to: time(times[1]),
                limit,
                bound: key(0),
                after: key(1),
            };
            prop_assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
        }
    }
}
