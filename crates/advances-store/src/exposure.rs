//! The lender's book: the exposure caps a new advance is checked against, atomically, and the book's totals.
//!
//! Every new advance of an account takes that account's lock (a transaction-scoped advisory lock), and, when
//! the whole book is capped, the book's lock, in that order; it reads the exposure under them and inserts its
//! row before they are released at commit. So two requests, on one instance or two, never both see room that
//! only one of them fits in. Only new advances add to the exposure; every other change (a payment collected, a
//! close) lowers it, so those need no lock.

use rust_decimal::Decimal;
use sqlx::PgConnection;
use uuid::Uuid;

/// The exposure caps (each optional: unset, no cap).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Caps {
    /// `MAX_OUTSTANDING_PER_ACCOUNT`: the most one account may owe on its open advances.
    pub outstanding_per_account: Option<Decimal>,
    /// `MAX_OPEN_ADVANCES_PER_ACCOUNT`: the most open advances one account may have.
    pub open_per_account: Option<u32>,
    /// `MAX_OUTSTANDING_TOTAL`: the most the whole book may be owed.
    pub outstanding_total: Option<Decimal>,
}

/// Which cap a request would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cap {
    OutstandingPerAccount,
    OpenPerAccount,
    OutstandingTotal,
}

impl Cap {
    /// The setting that sets it.
    pub fn setting(self) -> &'static str {
        match self {
            Self::OutstandingPerAccount => "MAX_OUTSTANDING_PER_ACCOUNT",
            Self::OpenPerAccount => "MAX_OPEN_ADVANCES_PER_ACCOUNT",
            Self::OutstandingTotal => "MAX_OUTSTANDING_TOTAL",
        }
    }
}

/// A request refused by a cap: the cap, its value, the exposure it found, and what the request would add.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapExceeded {
    pub cap: Cap,
    pub limit: Decimal,
    pub current: Decimal,
    pub adding: Decimal,
}

impl std::fmt::Display for CapExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { limit, current, adding, .. } = self;
        let setting = self.cap.setting();
        match self.cap {
            Cap::OpenPerAccount => {
                write!(f, "{setting} is {limit}; the account has {current} open advances, and this would be one more")
            }
            Cap::OutstandingPerAccount => write!(
                f,
                "{setting} is {limit:.2}; the account owes {current:.2} on its open advances, and this advance would add {adding:.2}"
            ),
            Cap::OutstandingTotal => write!(
                f,
                "{setting} is {limit:.2}; the whole book is owed {current:.2}, and this advance would add {adding:.2}"
            ),
        }
    }
}

impl std::error::Error for CapExceeded {}

/// The advisory lock classes (the first key of the two-key form) of the advances database.
const ACCOUNT_LOCK: i32 = 0x4144_5601;
const BOOK_LOCK: i32 = 0x4144_5602;

impl Caps {
    /// Checks a new advance of `amount` for `account_id` against the caps, inside the transaction that will
    /// insert it, holding the locks until it ends.
    pub(crate) async fn check(
        &self,
        tx: &mut PgConnection,
        account_id: Uuid,
        amount: Decimal,
    ) -> sqlx::Result<Result<(), CapExceeded>> {
        let exceeded = |cap, limit, current, adding| Err(CapExceeded { cap, limit, current, adding });
        if self.outstanding_per_account.is_some() || self.open_per_account.is_some() {
            sqlx::query("SELECT pg_advisory_xact_lock($1, hashtext($2::text))")
                .bind(ACCOUNT_LOCK)
                .bind(account_id)
                .execute(&mut *tx)
                .await?;
            // The literal statuses let the planner use the partial index of open advances by account.
            let (open, outstanding): (i64, Decimal) = sqlx::query_as(
                "SELECT count(*), coalesce(sum(outstanding), 0) FROM advances
                 WHERE account_id = $1 AND status IN ('granting', 'active')",
            )
            .bind(account_id)
            .fetch_one(&mut *tx)
            .await?;
            if let Some(limit) = self.open_per_account {
                if open >= i64::from(limit) {
                    return Ok(exceeded(Cap::OpenPerAccount, limit.into(), open.into(), Decimal::ONE));
                }
            }
            if let Some(limit) = self.outstanding_per_account {
                if outstanding + amount > limit {
                    return Ok(exceeded(Cap::OutstandingPerAccount, limit, outstanding, amount));
                }
            }
        }
        if let Some(limit) = self.outstanding_total {
            sqlx::query("SELECT pg_advisory_xact_lock($1, 0)").bind(BOOK_LOCK).execute(&mut *tx).await?;
            let (outstanding,): (Decimal,) =
                sqlx::query_as("SELECT coalesce(sum(outstanding), 0)::numeric(22,2) FROM exposure_book")
                    .fetch_one(&mut *tx)
                    .await?;
            if outstanding + amount > limit {
                return Ok(exceeded(Cap::OutstandingTotal, limit, outstanding, amount));
            }
        }
        Ok(Ok(()))
    }
}

/// The book's figures, for one product or all.
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct BookLine {
    /// The product; `None` for advances from before products (and for the total).
    pub product: Option<String>,
    pub open_advances: i64,
    pub outstanding: Decimal,
    pub paid: Decimal,
    pub defaulted: Decimal,
    pub written_off: Decimal,
}

/// The book by product (by name; advances from before products last) and its total.
pub async fn book(pool: &sqlx::PgPool) -> sqlx::Result<(Vec<BookLine>, BookLine)> {
    let lines: Vec<BookLine> = sqlx::query_as(
        "SELECT nullif(product, '') AS product, open_advances, outstanding, paid, defaulted, written_off
         FROM exposure_book
         ORDER BY product = '', product",
    )
    .fetch_all(pool)
    .await?;
    let mut total = BookLine::default();
    for line in &lines {
        total.open_advances += line.open_advances;
        total.outstanding += line.outstanding;
        total.paid += line.paid;
        total.defaulted += line.defaulted;
        total.written_off += line.written_off;
    }
    Ok((lines, total))
}
