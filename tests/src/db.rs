//! A fresh database per test, on the server `make test` found.

use anyhow::Context;
use sqlx::{Connection, PgConnection};

/// The server URL the tests create their databases on (`make test` sets it from scripts/postgres.sh).
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// A database created for one test and dropped by [`TestDatabase::drop_database`].
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

const TEST_DB_PREFIX: &str = "systest_";

impl TestDatabase {
    /// Creates a uniquely named empty database. Leftovers of crashed runs older than an hour are dropped.
    pub async fn create() -> anyhow::Result<Self> {
        let server = server_url();
        let mut admin = PgConnection::connect(&server).await.with_context(|| format!("cannot reach {server}"))?;
        let now_s = chrono::Utc::now().timestamp();
        let stale: Vec<(String,)> = sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(format!("{TEST_DB_PREFIX}%"))
            .fetch_all(&mut admin)
            .await?;
        for (name,) in stale {
            let created_s = name.split('_').nth(1).and_then(|s| s.parse::<i64>().ok()).unwrap_or(now_s);
            if now_s - created_s > 3600 {
                let _ =
                    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut admin).await;
            }
        }
        let name = format!("{TEST_DB_PREFIX}{now_s}_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut admin).await?;
        Ok(Self { url: with_database(&server, &name), name })
    }

    /// Drops the database, closing any connection still open to it.
    pub async fn drop_database(&self) -> anyhow::Result<()> {
        let mut admin = PgConnection::connect(&server_url()).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)).execute(&mut admin).await?;
        Ok(())
    }
}

/// The accounts migrations, as the service embeds them.
pub const ACCOUNTS_MIGRATIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../migrations/accounts");

/// Applies the accounts migrations up to and including version `last`: the schema an older release left.
pub async fn migrate_accounts_up_to(pool: &sqlx::PgPool, last: i64) -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("accounts-migrations-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    for entry in std::fs::read_dir(ACCOUNTS_MIGRATIONS)? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let version: i64 = name.split('_').next().and_then(|v| v.parse().ok()).unwrap_or(i64::MAX);
        if version <= last {
            std::fs::copy(&path, dir.join(&name))?;
        }
    }
    let migrated = async { sqlx::migrate::Migrator::new(dir.as_path()).await?.run(pool).await }.await;
    std::fs::remove_dir_all(&dir)?;
    Ok(migrated?)
}

/// Gives rows written straight into `transactions` (synthetic histories) a consistent book: every account
/// starts at `opening` before its first row, and each row's balances-after follow its effects in `created_at, id`
/// order, as the service writes them; `accounts.balance` becomes the balance after each account's last row, and
/// each account's book bounds cover its rows (as the service widens them). For tests only: the service never
/// rewrites a row.
pub async fn fill_books(pool: &sqlx::PgPool, opening: rust_decimal::Decimal) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "WITH effects AS (
             SELECT created_at, id, src_account_id AS account_id, true AS is_src,
                    CASE WHEN status <> 'success' THEN 0 WHEN direction = 'debit' THEN -amount ELSE amount END AS effect
             FROM transactions WHERE src_account_id IS NOT NULL
             UNION ALL
             SELECT created_at, id, dst_account_id, false,
                    CASE WHEN status <> 'success' THEN 0
                         WHEN (kind = 'transfer') = (direction = 'debit') THEN amount ELSE -amount END
             FROM transactions),
         after AS (
             SELECT created_at, id, is_src,
                    $1 + sum(effect) OVER (PARTITION BY account_id ORDER BY created_at, id) AS balance
             FROM effects),
         rows AS (
             SELECT created_at, id, max(balance) FILTER (WHERE is_src) AS src,
                    max(balance) FILTER (WHERE NOT is_src) AS dst
             FROM after GROUP BY created_at, id)
         UPDATE transactions t SET src_balance_after = r.src, dst_balance_after = r.dst
         FROM rows r WHERE t.created_at = r.created_at AND t.id = r.id",
    )
    .bind(opening)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE accounts a SET balance = coalesce(
             (SELECT CASE WHEN t.src_account_id = a.id THEN t.src_balance_after ELSE t.dst_balance_after END
              FROM transactions t WHERE t.src_account_id = a.id OR t.dst_account_id = a.id
              ORDER BY t.created_at DESC, t.id DESC LIMIT 1), $1)",
    )
    .bind(opening)
    .execute(&mut *tx)
    .await?;
    sqlx::query("SELECT ledger_widen_book_bounds()").execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}
