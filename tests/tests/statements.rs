//! Every account's own book: each row records the balance after it of its accounts; a statement pages an
//! account's rows oldest first from one snapshot; `as_of` answers the balance at any time.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ledger_contract::{
    scopes, BankTransactionRequest, Direction, StatementQuery, TransactionKind, TransactionStatus, TransferRequest,
};
use money::timestamp::format_timestamp;
use money::Amount;
use rust_decimal::Decimal;
use system_tests::book::{check_adds_up, read_statement};
use system_tests::{dec, TestLedger};
use uuid::Uuid;

fn amount(text: &str) -> anyhow::Result<Amount> {
    Ok(Amount::parse(text)?)
}

async fn transfer(app: &TestLedger, src: Uuid, dst: Uuid, value: &str, direction: Direction) -> anyhow::Result<()> {
    app.api.transfer(&TransferRequest::new(src, dst, amount(value)?, direction), None).await?;
    Ok(())
}

/// A moment strictly between two requests: the clock after one answered, before the next is sent.
async fn moment() -> DateTime<Utc> {
    tokio::time::sleep(Duration::from_millis(3)).await;
    let now = Utc::now();
    tokio::time::sleep(Duration::from_millis(3)).await;
    now
}

#[tokio::test]
async fn a_statement_shows_each_transaction_with_its_effect_and_the_balance_after_it() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let (a, b) = (app.open_account().await?, app.open_account().await?);
    let before_all = moment().await;
    app.bank(a, "100.00", Direction::Credit).await?;
    let after_credit = moment().await;
    transfer(&app, a, b, "30.00", Direction::Debit).await?;
    transfer(&app, a, b, "80.00", Direction::Debit).await?; // fails: a has 70
    transfer(&app, a, b, "10.00", Direction::Credit).await?; // b pays a
    let after_transfers = moment().await;
    app.bank(a, "5.00", Direction::Debit).await?;

    let read = read_statement(&app.api, a, StatementQuery::default()).await?;
    check_adds_up(&read)?;
    let seen: Vec<(TransactionKind, TransactionStatus, Option<Uuid>, Decimal, Decimal)> =
        read.entries.iter().map(|e| (e.kind, e.status, e.counterparty_account_id, e.effect, e.balance_after)).collect();
    use TransactionKind::{Bank, Transfer};
    use TransactionStatus::{Fail, Success};
    assert_eq!(
        seen,
        vec![
            (Bank, Success, None, dec("100.00"), dec("100.00")),
            (Transfer, Success, Some(b), dec("-30.00"), dec("70.00")),
            (Transfer, Fail, Some(b), dec("0"), dec("70.00")),
            (Transfer, Success, Some(b), dec("10.00"), dec("80.00")),
            (Bank, Success, None, dec("-5.00"), dec("75.00")),
        ]
    );
    assert_eq!((read.opening, read.closing), (dec("0"), dec("75.00")));
    assert_eq!(read.entries[2].reason.as_deref(), Some("Insufficient funds"));

    // The other side of the same rows.
    let read_b = read_statement(&app.api, b, StatementQuery::default()).await?;
    check_adds_up(&read_b)?;
    let effects: Vec<(Decimal, Decimal)> = read_b.entries.iter().map(|e| (e.effect, e.balance_after)).collect();
    assert_eq!(effects, vec![(dec("30.00"), dec("30.00")), (dec("0"), dec("30.00")), (dec("-10.00"), dec("20.00"))]);

    // Pages of two give the same statement.
    let paged = read_statement(&app.api, a, StatementQuery { limit: Some(2), ..Default::default() }).await?;
    assert_eq!((paged.pages, &paged.entries), (3, &read.entries));

    // A window: opening and closing at its ends.
    let window = StatementQuery {
        from: Some(format_timestamp(after_credit)),
        to: Some(format_timestamp(after_transfers)),
        ..Default::default()
    };
    let middle = read_statement(&app.api, a, window).await?;
    check_adds_up(&middle)?;
    assert_eq!((middle.opening, middle.closing, middle.entries.len()), (dec("100.00"), dec("80.00"), 3));

    // The balance at any time.
    for (at, expected) in
        [(before_all, "0"), (after_credit, "100.00"), (after_transfers, "80.00"), (Utc::now(), "75.00")]
    {
        let account = app.api.account_as_of(a, &at.to_rfc3339()).await?;
        assert_eq!((account.balance, account.as_of.is_some()), (dec(expected), true), "as of {at}");
    }
    assert!(app.api.account(a).await?.as_of.is_none(), "without as_of, the balance now");
    app.stop().await
}

#[tokio::test]
async fn statement_parameters_are_checked_and_the_scope_is_needed() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let (a, b) = (app.funded_account("10.00").await?, app.funded_account("10.00").await?);
    transfer(&app, a, b, "1.00", Direction::Debit).await?;
    let path = |account: Uuid, query: &str| format!("/api/v1/accounts/{account}/statement{query}");
    let page = app.get(&path(a, "?limit=1")).await?;
    assert_eq!(page.status, 200, "{}", page.text);
    let cursor = page.str("next_cursor").to_owned();
    assert!(!cursor.is_empty());

    let future = (Utc::now() + chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    for (url, status, code) in [
        (path(Uuid::new_v4(), ""), 404, "not_found"),
        (path(a, "?limit=0"), 422, "invalid_limit"),
        (path(a, "?limit=1001"), 422, "invalid_limit"),
        (path(a, "?from=2024-01-02T00:00:00Z&to=2024-01-01T00:00:00Z"), 422, "invalid_window"),
        (path(a, "?from=yesterday"), 400, "malformed_request"),
        (path(a, "?cursor=00ff"), 400, "malformed_request"),
        (path(b, &format!("?cursor={cursor}")), 422, "cursor_mismatch"),
        (path(a, &format!("?cursor={cursor}&limit=5")), 422, "cursor_mismatch"),
        (path(a, "/export?format=xlsx"), 422, "invalid_format"),
        (format!("/api/v1/accounts/{a}?as_of={future}"), 422, "as_of_in_future"),
        (format!("/api/v1/accounts/{a}?as_of=soon"), 400, "malformed_request"),
    ] {
        let reply = app.get(&url).await?;
        assert_eq!((reply.status, reply.error_code()), (status, code), "{url}: {}", reply.text);
    }
    let next = app.get(&path(a, &format!("?cursor={cursor}&limit=1"))).await?;
    assert_eq!(next.status, 200, "the cursor with its own parameters repeated: {}", next.text);

    // A client that may move money but not read accounts reads no statement, balance or download.
    let (_, mover) = app.client_with("mover", &[scopes::TRANSFERS_WRITE]).await?;
    let refused = mover.statement(a, &StatementQuery::default()).await.err().and_then(|e| e.status());
    assert_eq!(refused, Some(403));
    let refused = mover.account_as_of(a, "2024-01-01T00:00:00Z").await.err().and_then(|e| e.status());
    assert_eq!(refused, Some(403));
    app.stop().await
}

/// A failed attempt that is its accounts' only row on its side is in both statements: the write that records it
/// widens the book bounds (migration 0015) of accounts whose balances it left as they were, and a statement reads
/// only between them. A side with no row at all is not read, and the payee's statement still shows the row.
#[tokio::test]
async fn a_failed_attempt_alone_on_its_side_is_in_both_accounts_statements() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let (payer, payee) = (app.funded_account("1.00").await?, app.open_account().await?);
    let refused =
        app.api.transfer(&TransferRequest::new(payer, payee, amount("5.00")?, Direction::Debit), None).await?;
    assert_eq!(refused.status, TransactionStatus::Fail);
    for (account, balance) in [(payer, dec("1.00")), (payee, dec("0.00"))] {
        let read = read_statement(&app.api, account, StatementQuery::default()).await?;
        let failed: Vec<_> = read.entries.iter().filter(|e| e.transaction_id == refused.transaction_id).collect();
        assert_eq!(failed.len(), 1, "{account}: {read:?}");
        assert_eq!((failed[0].effect, failed[0].balance_after), (dec("0"), balance));
        check_adds_up(&read)?;
    }
    let as_of = app.api.account_as_of(payee, &format_timestamp(Utc::now())).await?;
    assert_eq!(as_of.balance, dec("0.00"));
    system_tests::book::check_bounds(&app.pool).await?;
    app.stop().await
}

#[tokio::test]
async fn bounds_left_malformed_by_a_repair_widen_the_seek_and_lose_no_row() -> anyhow::Result<()> {
    // No constraint refuses such bounds since migration 0018; the reader must not take them for "no row here".
    let app = TestLedger::start().await?;
    let (a, b) = (app.funded_account("100.00").await?, app.funded_account("100.00").await?);
    transfer(&app, a, b, "10.00", Direction::Debit).await?;
    transfer(&app, b, a, "4.00", Direction::Debit).await?;
    let before = read_statement(&app.api, a, StatementQuery::default()).await?;
    assert_eq!(before.entries.len(), 3, "the funding and both transfers: {before:?}");
    for repair in [
        "UPDATE accounts SET src_last_at = NULL, dst_first_at = NULL WHERE id = $1",
        "UPDATE accounts SET src_first_at = now() + interval '3 days', src_last_at = now() - interval '3 days',
                             dst_first_at = now() + interval '1 day', dst_last_at = now() - interval '1 day'
         WHERE id = $1",
    ] {
        sqlx::query(repair).bind(a).execute(&app.pool).await?;
        let read = read_statement(&app.api, a, StatementQuery::default()).await?;
        assert_eq!(read.entries, before.entries, "{repair}");
        assert_eq!(read.closing, dec("94.00"));
        let as_of = app.api.account_as_of(a, &format_timestamp(Utc::now())).await?;
        assert_eq!(as_of.balance, dec("94.00"), "{repair}");
    }
    app.stop().await
}

/// Writes `rows` transfers of 0.01 from `payer` to `payee` straight into the ledger, each dated as it is inserted,
/// with synthetic balances after (0): rows that fill today's partition, for tests of the book's plans.
async fn fill_day(pool: &sqlx::PgPool, payer: Uuid, payee: Uuid, rows: i64) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO transactions (id, created_at, kind, src_account_id, dst_account_id, amount, direction, status,
                                   recorded_by, src_balance_after, dst_balance_after)
         SELECT gen_random_uuid(), clock_timestamp(), 'transfer', $1, $2, 0.01, 'debit', 'success', 'test', 0, 0
         FROM generate_series(1, $3)",
    )
    .bind(payer)
    .bind(payee)
    .bind(rows)
    .execute(pool)
    .await?;
    Ok(())
}

/// The seeks of a statement page and of `as_of` go through the book indexes, in their order, however the ledger's
/// rows are spread. The book pool plans each seek once, without its values. Where one account owns every row
/// ANALYZE saw in a day, such a plan expected any account to match every row, and walked the day's primary key
/// backwards, reading and dropping the big account's rows to find a small account's (40 000 of them here, for one
/// seek); told that accounts are many (migration 0016), it expected so few rows that it read them all and sorted
/// them, which for the big account is all of its rows in the window (the pool turns sorts off).
#[tokio::test]
async fn a_small_accounts_seeks_use_the_book_indexes_when_one_account_owns_the_day() -> anyhow::Result<()> {
    use accounts_service::db::statements::{LAST_BEFORE, PAGE};
    let app = TestLedger::start().await?;
    let (big, small, payee) = (app.open_account().await?, app.open_account().await?, app.open_account().await?);
    fill_day(&app.pool, big, payee, 40_000).await?;
    // The statistics see the big account only; the small one's rows come after them (too few to be analyzed again).
    sqlx::query("ANALYZE transactions").execute(&app.pool).await?;
    fill_day(&app.pool, small, payee, 20).await?;

    let mut conn = app.pool.acquire().await?;
    for (setting, value) in accounts_service::db::BOOK_PLANNING {
        sqlx::query("SELECT set_config($1, $2, false)").bind(setting).bind(value).execute(&mut *conn).await?;
    }
    sqlx::query(&format!("PREPARE last_before AS {LAST_BEFORE}")).execute(&mut *conn).await?;
    sqlx::query(&format!("PREPARE page AS {PAGE}")).execute(&mut *conn).await?;
    // Today's partition, where `fill_day` wrote: a window reaching into a neighbouring day (an hour either side of
    // now, near midnight UTC) has that empty, unanalyzed partition planned on its primary key, which reads nothing
    // there but is not what this test looks for.
    let (start, end) = (
        "date_trunc('day', now(), 'UTC')",
        "date_trunc('day', now(), 'UTC') + interval '1 day' - interval '1 microsecond'",
    );
    let (nil, max) = ("'00000000-0000-0000-0000-000000000000'", "'ffffffff-ffff-ffff-ffff-ffffffffffff'");
    // Both accounts only pay: their payee side is empty (spans of NULL, as `Place::span` binds them).
    let mut seeks = Vec::new();
    for account in [small, big] {
        seeks.push((1, format!("EXECUTE last_before('{account}', {end}, {max}, {start}, {end}, NULL, NULL)")));
        for limit in [1, 2, 101, 1001] {
            seeks.push((
                limit,
                format!("EXECUTE page('{account}', {start}, {nil}, {end}, {max}, {limit}, {start}, {end}, NULL, NULL)"),
            ));
        }
    }
    for (limit, seek) in seeks {
        let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) {seek}"))
            .fetch_all(&mut *conn)
            .await?;
        let plan = plan.join("\n");
        assert!(plan.contains("Index Cond: ((src_account_id = $1)"), "{seek} does not seek the book index:\n{plan}");
        assert!(!plan.contains("_pkey") && !plan.contains("Rows Removed by Filter"), "{seek}:\n{plan}");
        // The book indexes give `created_at` order; rows that share one (a batch's within a microsecond) are put
        // in `id` order by an incremental sort, never by a sort of all the account's rows. The index is read as
        // far as the page (and its ties: rows inserted in one statement share microseconds), no further.
        let node = |line: &str| line.trim_start().trim_start_matches("->").trim_start().to_string();
        assert!(!plan.lines().any(|line| node(line).starts_with("Sort (")), "{seek} sorts the account's rows:\n{plan}");
        for line in plan.lines().filter(|line| node(line).starts_with("Index Scan")) {
            let read = line.split("actual rows=").nth(1).and_then(|rest| rest.split(' ').next());
            let read: usize = read.ok_or_else(|| anyhow::anyhow!("no row count in {line}"))?.parse()?;
            assert!(read <= limit + 50, "{seek} reads {read} rows of the book for at most {limit}:\n{plan}");
        }
    }
    drop(conn);
    app.stop().await
}

/// Rows of one account that share a `created_at` (a batch's rows within one microsecond) come in `id` order, on
/// every page wherever a page ends among them, and `as_of` that instant counts them all: the book indexes key
/// rows by account and time only (migration 0017), and the seeks put ties in order themselves.
#[tokio::test]
async fn rows_that_share_a_timestamp_come_in_id_order_across_pages() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let a = app.open_account().await?;
    // Another account's rows fill the day, as on a real ledger, so the seeks go through the book indexes (on a
    // near-empty day the plan walks the primary key, `(created_at, id)`, which orders ties by itself). Every row
    // is dated as it is inserted, as the report's seal requires.
    let (payer, payee) = (app.open_account().await?, app.open_account().await?);
    fill_day(&app.pool, payer, payee, 40_000).await?;
    sqlx::query("ANALYZE transactions").execute(&app.pool).await?;
    let mut ids: Vec<Uuid> = (0..9).map(|_| Uuid::new_v4()).collect();
    ids.sort();
    // Written out of `id` order, at one instant, each with its balance after in `id` order (the book's order).
    let order = [4, 0, 8, 2, 6, 1, 7, 3, 5];
    let written: Vec<Uuid> = order.iter().map(|&n| ids[n]).collect();
    let balances: Vec<Decimal> = order.iter().map(|&n| Decimal::new(150, 2) * Decimal::from(n + 1)).collect();
    let mut tx = app.pool.begin().await?;
    let dates: Vec<DateTime<Utc>> = sqlx::query_scalar(
        "WITH instant AS (SELECT clock_timestamp() AS at)
         INSERT INTO transactions (id, created_at, kind, dst_account_id, amount, direction, status, recorded_by,
                                   dst_balance_after)
         SELECT r.id, instant.at, 'bank', $2, 1.50, 'credit', 'success', 'test', r.balance
         FROM instant, unnest($1::uuid[], $3::numeric[]) WITH ORDINALITY AS r (id, balance, i)
         ORDER BY r.i
         RETURNING created_at",
    )
    .bind(&written)
    .bind(a)
    .bind(&balances)
    .fetch_all(&mut *tx)
    .await?;
    let at = dates[0];
    assert!(dates.len() == 9 && dates.iter().all(|date| *date == at), "{dates:?}");
    sqlx::query("UPDATE accounts SET balance = 13.50 WHERE id = $1").bind(a).execute(&mut *tx).await?;
    sqlx::query("SELECT ledger_widen_book_bounds($1)").bind([a]).execute(&mut *tx).await?;
    tx.commit().await?;

    for limit in [1, 2, 4, 9, 10] {
        let read = read_statement(&app.api, a, StatementQuery { limit: Some(limit), ..Default::default() }).await?;
        check_adds_up(&read)?;
        let seen: Vec<Uuid> = read.entries.iter().map(|entry| entry.transaction_id).collect();
        assert_eq!(seen, ids, "pages of {limit}");
        assert_eq!(read.closing, dec("13.50"));
    }
    let balance_at = |t: DateTime<Utc>| {
        let api = &app.api;
        async move { anyhow::Ok(api.account_as_of(a, &t.to_rfc3339()).await?.balance) }
    };
    assert_eq!(balance_at(at).await?, dec("13.50"), "every row dated at the instant");
    assert_eq!(balance_at(at - chrono::Duration::microseconds(1)).await?, dec("0"), "none before it");
    app.stop().await
}

/// A later page never shows a row that committed after the first page was read: neither a transfer that
/// arrives while the pages are read, nor one that had locked the account and dated its row before page 1 but
/// committed after it.
#[tokio::test]
async fn pages_keep_the_first_pages_snapshot_while_money_keeps_moving() -> anyhow::Result<()> {
    let app = Arc::new(TestLedger::start().await?);
    let (a, b) = (app.funded_account("1000.00").await?, app.funded_account("1000.00").await?);
    for n in 0..30 {
        let direction = if n % 2 == 0 { Direction::Debit } else { Direction::Credit };
        transfer(&app, a, b, "1.25", direction).await?;
    }
    // A writer that dated its row of `a` before page 1 and commits after it.
    let mut late = app.pool.begin().await?;
    let (after,): (Decimal,) =
        sqlx::query_as("UPDATE accounts SET balance = balance + 7 WHERE id = $1 RETURNING balance")
            .bind(a)
            .fetch_one(&mut *late)
            .await?;
    sqlx::query(
        "INSERT INTO transactions (id, created_at, kind, dst_account_id, amount, direction, status, recorded_by,
                                   dst_balance_after)
         VALUES ($1, clock_timestamp(), 'bank', $2, 7, 'credit', 'success', 'test', $3)",
    )
    .bind(Uuid::now_v7())
    .bind(a)
    .bind(after)
    .execute(&mut *late)
    .await?;
    // As the service's own write would, it widens the account's book bounds (migration 0015) in its transaction.
    sqlx::query("SELECT ledger_widen_book_bounds($1)").bind([a]).execute(&mut *late).await?;

    let first = app.api.statement(a, &StatementQuery { limit: Some(7), ..Default::default() }).await?;
    late.commit().await?;
    // Writers on both accounts for the whole read.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (app, stop) = (Arc::clone(&app), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut moved = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                transfer(&app, b, a, "0.50", Direction::Debit).await?;
                moved += 1;
            }
            anyhow::Ok(moved)
        })
    };
    let mut entries = first.entries.clone();
    let mut next = first.next_cursor.clone();
    while let Some(cursor) = next {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let page = app.api.statement(a, &StatementQuery { cursor: Some(cursor), ..Default::default() }).await?;
        assert_eq!((page.opening_balance, page.closing_balance), (first.opening_balance, first.closing_balance));
        entries.extend(page.entries);
        next = page.next_cursor;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let moved = writer.await??;
    assert!(moved > 0, "money moved while the pages were read");
    assert_eq!(entries.len(), 31, "the credit and 30 transfers, nothing committed after page 1");
    let read =
        system_tests::book::Read { opening: first.opening_balance, closing: first.closing_balance, entries, pages: 5 };
    check_adds_up(&read)?;
    assert_eq!(read.closing, dec("1000.00"), "15 debits and 15 credits of 1.25");

    // A new statement sees everything, and still adds up.
    let now = read_statement(&app.api, a, StatementQuery { limit: Some(50), ..Default::default() }).await?;
    check_adds_up(&now)?;
    assert_eq!(now.entries.len(), 31 + 1 + moved);
    assert_eq!(now.closing, app.balance(a).await?);
    TestLedger::stop_shared(app).await
}

/// The download holds the same entries as the pages, in CSV (with a header) and NDJSON.
#[tokio::test]
async fn the_statement_download_has_the_pages_entries_in_csv_and_ndjson() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let (a, b) = (app.funded_account("50.00").await?, app.open_account().await?);
    for n in 0..25 {
        transfer(&app, a, b, &format!("{}.{:02}", n % 3, n + 1), Direction::Debit).await?;
    }
    let request = BankTransactionRequest::new(a, amount("1.00")?, Direction::Debit, Some("=1+1, \"fee\"".into()));
    app.api.bank_transaction(&request, None).await?;
    let read = read_statement(&app.api, a, StatementQuery { limit: Some(10), ..Default::default() }).await?;
    check_adds_up(&read)?;

    let ndjson = app.get(&format!("/api/v1/accounts/{a}/statement/export?format=ndjson")).await?;
    assert_eq!(ndjson.status, 200);
    assert_eq!(ndjson.headers["content-type"], "application/x-ndjson");
    let lines: Vec<ledger_contract::StatementEntry> =
        ndjson.text.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(lines, read.entries);

    let csv = app.get(&format!("/api/v1/accounts/{a}/statement/export")).await?;
    assert_eq!(csv.status, 200);
    assert!(csv.headers["content-disposition"].to_str()?.contains(&format!("statement-{a}.csv")));
    let mut lines = csv.text.lines();
    assert_eq!(lines.next(), Some(ledger_contract::STATEMENT_CSV_COLUMNS.join(",").as_str()));
    // Only the last field (the description) holds client text; the first ten never hold a comma.
    let rows: Vec<Vec<&str>> = lines.map(|line| line.splitn(11, ',').collect()).collect();
    assert_eq!(rows.len(), read.entries.len());
    for (row, entry) in rows.iter().zip(&read.entries) {
        assert_eq!(row[0], entry.transaction_id.to_string());
        assert_eq!(dec(row[7]), entry.effect);
        assert_eq!(dec(row[8]), entry.balance_after);
    }
    let last = rows.last().map(|row| row[10]).unwrap_or_default();
    assert_eq!(last, "\"'=1+1, \"\"fee\"\"\"", "client text a spreadsheet would run is quoted as text");
    app.stop().await
}
