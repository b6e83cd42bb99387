//! The schemas hold the invariants on their own: rows the services never write, written behind their backs, are
//! refused by a constraint (a bug in the code is caught by the database, and the other way round).

use rust_decimal::Decimal;
use sqlx::PgPool;
use system_tests::TestDatabase;
use uuid::Uuid;

async fn migrated(migrator: &sqlx::migrate::Migrator) -> anyhow::Result<(TestDatabase, PgPool)> {
    let database = TestDatabase::create().await?;
    let pool = PgPool::connect(&database.url).await?;
    migrator.run(&pool).await?;
    Ok((database, pool))
}

/// The constraint a statement broke, if it broke one.
async fn refused_by(pool: &PgPool, sql: &str) -> Option<String> {
    match sqlx::query(sql).execute(pool).await {
        Err(sqlx::Error::Database(error)) => error.constraint().map(str::to_owned),
        _ => None,
    }
}

#[tokio::test]
async fn the_advances_schema_refuses_unknown_alerts_and_inconsistent_payments() -> anyhow::Result<()> {
    let (database, pool) = migrated(&advances_store::MIGRATOR).await?;
    let refused = refused_by(&pool, "INSERT INTO alerts (kind, message) VALUES ('made_up', 'x')").await;
    assert_eq!(refused.as_deref(), Some("alerts_kind_known"));
    assert_eq!(refused_by(&pool, "INSERT INTO alerts (kind, message) VALUES ('defaulted', 'x')").await, None);

    let advance = Uuid::new_v4();
    sqlx::query("INSERT INTO advances (id, account_id, amount, status, state) VALUES ($1, $2, 20, 'active', '{}')")
        .bind(advance)
        .bind(Uuid::new_v4())
        .execute(&pool)
        .await?;
    let payment = |number: i32, status: &str, reason: &str, moved_to: &str| {
        format!(
            "INSERT INTO payments (id, advance_id, number, amount, status, failure_reason, moved_to)
             VALUES ('{}', '{advance}', {number}, 10, '{status}', {reason}, {moved_to})",
            Uuid::new_v4()
        )
    };
    for (sql, constraint) in [
        (payment(1, "failed", "NULL", "2"), "payments_reason_iff_failed"),
        (payment(1, "scheduled", "'no money'", "NULL"), "payments_reason_iff_failed"),
        (payment(1, "superseded", "NULL", "NULL"), "payments_superseded_moved"),
        (payment(1, "paid", "NULL", "2"), "payments_moved_only_when_failed_or_superseded"),
        (payment(2, "failed", "'no money'", "2"), "payments_moved_to_another"),
    ] {
        assert_eq!(refused_by(&pool, &sql).await.as_deref(), Some(constraint), "{sql}");
    }
    assert_eq!(refused_by(&pool, &payment(1, "failed", "'no money'", "2")).await, None);
    assert_eq!(refused_by(&pool, &payment(2, "superseded", "NULL", "3")).await, None);
    pool.close().await;
    database.drop_database().await
}

#[tokio::test]
async fn a_key_claim_is_null_until_answered_and_never_the_old_sentinel() -> anyhow::Result<()> {
    let (database, pool) = migrated(&accounts_service::db::MIGRATOR).await?;
    let claim = |status: &str, body: &str| {
        format!(
            "INSERT INTO idempotency_keys (client, key, request_hash, status_code, response_body)
             VALUES ('c', '{}', '', {status}, {body})",
            Uuid::new_v4()
        )
    };
    assert_eq!(refused_by(&pool, &claim("0", "''")).await.as_deref(), Some("idempotency_keys_status_http"));
    assert_eq!(refused_by(&pool, &claim("201", "NULL")).await.as_deref(), Some("idempotency_keys_response_whole"));
    assert_eq!(refused_by(&pool, &claim("NULL", "NULL")).await, None, "a claim without its answer yet");
    assert_eq!(refused_by(&pool, &claim("201", "'{}'")).await, None);
    let by_row = |status: &str, body: &str| {
        format!(
            "INSERT INTO idempotency_keys (client, key, request_hash, status_code, response_body, answered_by_row)
             VALUES ('c', '{}', '', {status}, {body}, true)",
            Uuid::new_v4()
        )
    };
    assert_eq!(refused_by(&pool, &by_row("201", "NULL")).await, None, "answered by its transaction row");
    let whole = Some("idempotency_keys_response_whole");
    assert_eq!(refused_by(&pool, &by_row("201", "'{}'")).await.as_deref(), whole, "a row's answer is never stored");
    assert_eq!(refused_by(&pool, &by_row("NULL", "NULL")).await.as_deref(), whole, "its status is known at the claim");
    pool.close().await;
    database.drop_database().await
}

#[tokio::test]
async fn products_and_the_book_refuse_impossible_rows_and_the_book_follows_every_advance() -> anyhow::Result<()> {
    let database = TestDatabase::create().await?;
    let pool = PgPool::connect(&database.url).await?;
    // An advances database from before products, with one active advance half paid and one defaulted.
    let before = sqlx::migrate::Migrator {
        migrations: advances_store::MIGRATOR.migrations.iter().filter(|m| m.version < 6).cloned().collect(),
        ..sqlx::migrate::Migrator::DEFAULT
    };
    before.run(&pool).await?;
    let (active, defaulted) = (Uuid::new_v4(), Uuid::new_v4());
    for (id, status, paid) in [(active, "active", "10"), (defaulted, "defaulted", "5")] {
        sqlx::query("INSERT INTO advances (id, account_id, amount, status, state) VALUES ($1, $2, 20, $3, '{}')")
            .bind(id)
            .bind(Uuid::new_v4())
            .bind(status)
            .execute(&pool)
            .await?;
        sqlx::query(&format!(
            "INSERT INTO payments (id, advance_id, number, amount, status, transaction_id)
             VALUES ('{}', '{id}', 1, {paid}, 'paid', '{}')",
            Uuid::new_v4(),
            Uuid::new_v4()
        ))
        .execute(&pool)
        .await?;
    }
    advances_store::MIGRATOR.run(&pool).await?;
    let book = |pool: PgPool| async move {
        sqlx::query_as::<_, (i64, String, String, String)>(
            "SELECT open_advances, outstanding::text, paid::text, defaulted::text FROM exposure_book WHERE product = ''",
        )
        .fetch_one(&pool)
        .await
    };
    assert_eq!(book(pool.clone()).await?, (1, "10.00".into(), "15.00".into(), "15.00".into()), "the upgrade's book");

    for (sql, constraint) in [
        ("INSERT INTO products VALUES ('Big', 12, 1000, 10, 500, 12)", "products_name"),
        ("INSERT INTO products VALUES ('tiny', 12, 1000, 0.11, 500, 12)", "products_min_amount"),
        ("INSERT INTO products VALUES ('upside', 12, 1000, 600, 500, 12)", "products_max_amount"),
        ("INSERT INTO products VALUES ('never', 12, 0, 10, 500, 12)", "products_interval"),
        (&*format!("UPDATE advances SET status = 'completed' WHERE id = '{active}'"), "advances_outstanding_only_open"),
        (&*format!("UPDATE advances SET paid = 15 WHERE id = '{active}'"), "advances_exposure_within_amount"),
        (&*format!("UPDATE advances SET defaulted = 1 WHERE id = '{active}'"), "advances_defaulted_only_defaulted"),
        (&*format!("UPDATE advances SET written_off = 1, outstanding = 9 WHERE id = '{active}'"), "advances_written_off_only_written_off"),
        (&*format!("UPDATE payments SET kind = 'bonus' WHERE advance_id = '{active}'"), "payments_kind_known"),
        (&*format!("INSERT INTO advances (id, account_id, amount, status, state, product) VALUES ('{}', '{}', 5, 'active', '{{}}', 'gold')", Uuid::new_v4(), Uuid::new_v4()), "advances_product_fkey"),
    ] {
        assert_eq!(refused_by(&pool, sql).await.as_deref(), Some(constraint), "{sql}");
    }
    // Every change of a row moves the book with it, in the same transaction.
    sqlx::query(&format!(
        "UPDATE advances SET status = 'written_off', outstanding = 0, paid = 12, written_off = 8 WHERE id = '{active}'"
    ))
    .execute(&pool)
    .await?;
    assert_eq!(book(pool.clone()).await?, (0, "0.00".into(), "17.00".into(), "15.00".into()));
    let (written_off,): (String,) =
        sqlx::query_as("SELECT written_off::text FROM exposure_book WHERE product = ''").fetch_one(&pool).await?;
    assert_eq!(written_off, "8.00");
    sqlx::query(&format!("UPDATE advances SET status = 'completed', paid = 20, written_off = 0 WHERE id = '{active}'"))
        .execute(&pool)
        .await?;
    assert_eq!(book(pool.clone()).await?, (0, "0.00".into(), "25.00".into(), "15.00".into()));
    sqlx::query(&format!("DELETE FROM payments WHERE advance_id = '{defaulted}'")).execute(&pool).await?;
    sqlx::query(&format!("DELETE FROM advances WHERE id = '{defaulted}'")).execute(&pool).await?;
    assert_eq!(book(pool.clone()).await?, (0, "0.00".into(), "20.00".into(), "0.00".into()));
    pool.close().await;
    database.drop_database().await
}

/// The ledger from before every account's book: a random history of transfers and bank rows (some failed) over
/// three accounts. The migration gives every row the balances after it, computed backwards from today's
/// balances, exactly as replaying the history forwards does; afterwards a row without them is refused.
#[tokio::test]
async fn the_upgrade_gives_every_existing_row_the_balances_after_it() -> anyhow::Result<()> {
    let database = TestDatabase::create().await?;
    let pool = PgPool::connect(&database.url).await?;
    system_tests::db::migrate_accounts_up_to(&pool, 8).await?;
    sqlx::query("SELECT ledger_create_partition((now() AT TIME ZONE 'UTC')::date - 1)").execute(&pool).await?;
    let accounts: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    sqlx::query("INSERT INTO accounts (id) SELECT unnest($1::uuid[])").bind(&accounts).execute(&pool).await?;
    let mut balances = [Decimal::ZERO; 3];
    let mut expected: Vec<(Uuid, Option<Decimal>, Decimal)> = Vec::new();
    let mut lcg = system_tests::Lcg(20_261_206);
    for n in 0..400 {
        let (x, y) = (lcg.next(3) as usize, lcg.next(3) as usize);
        let amount = Decimal::new(1 + lcg.next(5_000) as i64, 2);
        let debit = lcg.next(2) == 0;
        let id = Uuid::now_v7();
        let (kind, src, ok) = if x == y || n < 6 {
            // A bank row: a credit always, a debit if it is covered.
            let ok = !debit || balances[x] >= amount;
            if ok {
                balances[x] += if debit { -amount } else { amount };
            }
            ("bank", None, ok)
        } else {
            // debit: x pays y; credit: y pays x.
            let (payer, payee) = if debit { (x, y) } else { (y, x) };
            let ok = balances[payer] >= amount;
            if ok {
                balances[payer] -= amount;
                balances[payee] += amount;
            }
            ("transfer", Some(x), ok)
        };
        let dst = if kind == "bank" { x } else { y };
        expected.push((id, src.map(|s| balances[s]), balances[dst]));
        sqlx::query(
            "INSERT INTO transactions (id, created_at, kind, src_account_id, dst_account_id, amount, direction,
                                       status, reason, recorded_by)
             VALUES ($1, now() - interval '1 hour' + $2 * interval '1 second', $3, $4, $5, $6, $7, $8, $9, 'history')",
        )
        .bind(id)
        .bind(n)
        .bind(kind)
        .bind(src.map(|s| accounts[s]))
        .bind(accounts[dst])
        .bind(amount)
        .bind(if debit { "debit" } else { "credit" })
        .bind(if ok { "success" } else { "fail" })
        .bind((!ok).then_some("Insufficient funds"))
        .execute(&pool)
        .await?;
    }
    for (account, balance) in accounts.iter().zip(balances) {
        sqlx::query("UPDATE accounts SET balance = $2 WHERE id = $1")
            .bind(account)
            .bind(balance)
            .execute(&pool)
            .await?;
    }
    accounts_service::db::MIGRATOR.run(&pool).await?;

    let recorded: Vec<(Uuid, Option<Decimal>, Decimal)> =
        sqlx::query_as("SELECT id, src_balance_after, dst_balance_after FROM transactions ORDER BY created_at, id")
            .fetch_all(&pool)
            .await?;
    assert_eq!(recorded, expected, "every row, both sides");
    assert!(expected.iter().any(|(_, src, _)| src.is_some()), "transfers among them");

    let row = |src: &str, src_after: &str, dst_after: &str| {
        format!(
            "INSERT INTO transactions (id, created_at, kind, src_account_id, dst_account_id, amount, direction, status,
                                       recorded_by, src_balance_after, dst_balance_after)
             VALUES ('{}', clock_timestamp(), CASE WHEN {src} IS NULL THEN 'bank' ELSE 'transfer' END, {src}, '{}',
                     1, 'credit', 'success', 'x', {src_after}, {dst_after})",
            Uuid::now_v7(),
            accounts[1]
        )
    };
    let a0 = format!("'{}'::uuid", accounts[0]);
    for (sql, constraint) in [
        (row("NULL", "NULL", "NULL"), "transactions_dst_balance_after"),
        (row("NULL", "NULL", "-0.01"), "transactions_dst_balance_after"),
        (row("NULL", "5", "5"), "transactions_src_balance_after"),
        (row(&a0, "NULL", "5"), "transactions_src_balance_after"),
        (row(&a0, "-1", "5"), "transactions_src_balance_after"),
    ] {
        assert_eq!(refused_by(&pool, &sql).await.as_deref(), Some(constraint), "{sql}");
    }
    assert_eq!(refused_by(&pool, &row("NULL", "NULL", "5")).await, None);
    assert_eq!(refused_by(&pool, &row(&a0, "0", "5")).await, None);
    pool.close().await;
    database.drop_database().await
}
