//! Reading an account's book through the API, and checking that it adds up.

use ledger_contract::{LedgerClient, StatementEntry, StatementQuery, TransactionKind, TransactionStatus};
use rust_decimal::Decimal;
use uuid::Uuid;

/// A whole statement, read page by page.
#[derive(Debug, Clone, PartialEq)]
pub struct Read {
    pub opening: Decimal,
    pub closing: Decimal,
    pub entries: Vec<StatementEntry>,
    pub pages: usize,
}

/// Reads every page of `account`'s statement for `query`, following `next_cursor` (the cursor alone); every page
/// must show the same opening and closing balances.
pub async fn read_statement(api: &LedgerClient, account: Uuid, query: StatementQuery) -> anyhow::Result<Read> {
    let first = api.statement(account, &query).await?;
    let mut read =
        Read { opening: first.opening_balance, closing: first.closing_balance, entries: first.entries, pages: 1 };
    let mut next = first.next_cursor;
    while let Some(cursor) = next {
        anyhow::ensure!(read.pages < 100_000, "a statement that never ends");
        let page = api.statement(account, &StatementQuery { cursor: Some(cursor), ..Default::default() }).await?;
        anyhow::ensure!(
            (page.opening_balance, page.closing_balance) == (read.opening, read.closing),
            "page {} shows other balances than page 1",
            read.pages + 1
        );
        read.entries.extend(page.entries);
        read.pages += 1;
        next = page.next_cursor;
    }
    Ok(read)
}

/// The statement adds up: from the opening balance, each entry's effect gives its balance after (0 for a failed
/// one), never below zero, in time order, to the closing balance.
pub fn check_adds_up(read: &Read) -> anyhow::Result<()> {
    let mut balance = read.opening;
    for (n, entry) in read.entries.iter().enumerate() {
        if entry.status == TransactionStatus::Fail {
            anyhow::ensure!(entry.effect.is_zero(), "entry {n}: a failed transaction moved {}", entry.effect);
        } else if entry.kind == TransactionKind::HoldRelease {
            anyhow::ensure!(entry.effect.is_zero(), "entry {n}: a hold's release moved {}", entry.effect);
        } else {
            anyhow::ensure!(
                entry.effect.abs() == entry.amount.value(),
                "entry {n}: effect {} of {}",
                entry.effect,
                entry.amount
            );
        }
        balance += entry.effect;
        anyhow::ensure!(
            balance == entry.balance_after,
            "entry {n}: {balance} expected, {} recorded",
            entry.balance_after
        );
        anyhow::ensure!(balance >= Decimal::ZERO, "entry {n}: below zero");
    }
    let in_order = read.entries.windows(2).all(|pair| {
        (pair[0].transaction_timestamp, pair[0].transaction_id)
            < (pair[1].transaction_timestamp, pair[1].transaction_id)
    });
    anyhow::ensure!(in_order, "entries are not oldest first");
    anyhow::ensure!(balance == read.closing, "the entries end at {balance}, the closing balance is {}", read.closing);
    Ok(())
}

/// Every account's book bounds (migrations 0015, 0017) cover its rows on each side, by days and no wider than the
/// rule allows: from its creation day (or, for an account older than migration 0017, the start of the day its
/// first row's transaction began, that day or the one before) to the end of the day after its last row's or its
/// creation's. For a ledger whose rows the service wrote, none archived.
pub async fn check_bounds(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    let wrong: Vec<(Uuid,)> = sqlx::query_as(
        "SELECT a.id FROM accounts a,
             LATERAL (SELECT min(created_at), max(created_at) FROM transactions WHERE src_account_id = a.id)
                 AS src (first_at, last_at),
             LATERAL (SELECT min(created_at), max(created_at) FROM transactions WHERE dst_account_id = a.id)
                 AS dst (first_at, last_at),
             LATERAL (VALUES (a.src_first_at, a.src_last_at, src.first_at, src.last_at),
                             (a.dst_first_at, a.dst_last_at, dst.first_at, dst.last_at))
                 AS side (bound_first, bound_last, row_first, row_last),
             LATERAL (SELECT date_trunc('day', a.created_at, 'UTC') AS day) AS created
         WHERE (side.bound_first IS NULL) <> (side.bound_last IS NULL)
            OR side.row_first IS NOT NULL AND (side.bound_first IS NULL
                                               OR side.bound_first > side.row_first
                                               OR side.bound_last < side.row_last)
            OR side.bound_first < least(created.day, date_trunc('day', side.row_first, 'UTC') - interval '1 day')
            OR side.bound_last > greatest(created.day, date_trunc('day', side.row_last, 'UTC')) + interval '2 days'
         GROUP BY a.id",
    )
    .fetch_all(pool)
    .await?;
    anyhow::ensure!(wrong.is_empty(), "accounts whose book bounds miss their rows: {wrong:?}");
    Ok(())
}
