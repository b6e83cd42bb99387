//! PostgreSQL access: the pool, migrations, and the SQL of each concern.

pub mod holds;
pub mod idempotency;
pub mod ledger;
pub mod movements;
pub mod partitions;
pub mod reports;
pub mod seal;
pub mod statements;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use uuid::Uuid;

pub use service_kit::sqlstate::{is_retryable, of as sqlstate, LOCK_NOT_AVAILABLE};

use crate::config::Settings;
use service_kit::Secret;

/// Why a database operation did not do what was asked. The HTTP layer decides what each means to a client.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("account {0} does not exist")]
    AccountNotFound(Uuid),
    #[error("hold {0} does not exist")]
    HoldNotFound(Uuid),
    #[error("hold {0} is {1}, not pending")]
    HoldNotPending(Uuid, ledger_contract::HoldStatus),
    #[error("the capture asks for more than the hold's {0}")]
    CaptureOverHold(money::Amount),
    #[error("a hold cannot be captured to its own account")]
    CaptureToOwnAccount,
    #[error("a request with this Idempotency-Key is still being processed")]
    KeyInFlight,
    #[error("this Idempotency-Key was already used with a different request")]
    KeyReused,
    #[error("unknown or expired report snapshot")]
    SnapshotNotFound,
    /// The commit of a batch failed: it may or may not have happened (retry with the same key to know).
    #[error("the database did not confirm the commit: {0}")]
    CommitUnknown(String),
    /// The report replica did not replay up to a report snapshot (a new one, or a token's) in time.
    #[error("the report replica is too far behind the primary")]
    ReplicaBehind,
    /// A statement or a balance needs a day archived before balances-after were recorded (`archived_days.has_book`).
    #[error("the transactions of {0} were archived before balances were recorded with them")]
    NoBook(chrono::NaiveDate),
    /// An archived day's file could not be read (or there is no archive).
    #[error("the archive cannot be read: {0}")]
    ArchiveUnavailable(String),
    /// Something the schema's constraints should have made impossible.
    #[error("inconsistent data: {0}")]
    Inconsistent(String),
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
}

impl DbError {
    /// True when PostgreSQL asks for the whole database transaction to be run again.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Sqlx(error) if is_retryable(error))
    }
}

impl From<crate::domain::transfer::Refusal> for DbError {
    fn from(refusal: crate::domain::transfer::Refusal) -> Self {
        use crate::domain::transfer::Refusal;
        match refusal {
            Refusal::AccountNotFound(id) => Self::AccountNotFound(id),
            Refusal::HoldNotFound(id) => Self::HoldNotFound(id),
            Refusal::HoldNotPending(id, status) => Self::HoldNotPending(id, status),
            Refusal::CaptureOverHold(held) => Self::CaptureOverHold(held),
            Refusal::CaptureToOwnAccount => Self::CaptureToOwnAccount,
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good, or has run [`MAX_ATTEMPTS`] times.
pub async fn with_retries<T, E: std::fmt::Display, F: std::future::Future<Output = Result<T, E>>>(
    mut attempt: impl FnMut() -> F,
    retryable: impl Fn(&E) -> bool,
) -> Result<T, E> {
    let mut n = 1;
    loop {
        match attempt().await {
            Err(error) if again(&mut n, &error, retryable(&error)) => {}
            result => return result,
        }
    }
}

/// Whether a database transaction that failed with `error` on its attempt number `n` runs again: PostgreSQL asked
/// for it (`retryable`) and fewer than [`MAX_ATTEMPTS`] have run. Counts and logs the retry. The rule of
/// [`with_retries`], for a loop that cannot be a closure (its attempts borrow one connection).
pub fn again(n: &mut u32, error: &impl std::fmt::Display, retryable: bool) -> bool {
    if !retryable || *n >= MAX_ATTEMPTS {
        return false;
    }
    tracing::info!(attempt = *n, %error, "retrying the database transaction");
    *n += 1;
    true
}

/// Shorthand for the results of this module.
pub type DbResult<T> = Result<T, DbError>;

/// The migrations of the `accounts` database, embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/accounts");

/// The `application_name` of the pool that moves money.
pub const APPLICATION: &str = "accounts-service";
/// The `application_name` of the reports' and downloads' own pool.
pub const REPORTS_APPLICATION: &str = "accounts-service-reports";
/// The `application_name` of the pool that reads every account's book (statements and `as_of`).
pub const BOOK_APPLICATION: &str = "accounts-service-book";
/// The `application_name` of the event feed's and the webhooks' connections.
pub const EVENTS_APPLICATION: &str = "accounts-service-events";

/// Opens the pool that moves money: bounded, with a per-statement timeout, so no query holds a connection
/// forever. Its statements are short, so it never compiles one (`jit = off`): a key lookup over the day
/// partitions, planned for a thousand keys, looked costly enough to PostgreSQL to be compiled, and took 6.5 s
/// instead of 0.1 s (BENCHMARKS.md, "Keys for free", second step).
pub async fn connect(settings: &Settings) -> anyhow::Result<PgPool> {
    open_pool(&settings.database_url, settings, settings.db_pool_size, APPLICATION, &[("jit", "off")]).await
}

/// Opens the reports' and downloads' own pool (`DB_REPORT_POOL_SIZE`): however many of them run, they never
/// take a connection a transfer needs. On the hot standby when `REPORT_DATABASE_URL` is set.
pub async fn connect_reports(settings: &Settings) -> anyhow::Result<PgPool> {
    open_pool(report_url(settings), settings, settings.db_report_pool_size, REPORTS_APPLICATION, &[]).await
}

/// How the book pool plans (see [`connect_book`]).
pub const BOOK_PLANNING: [(&str, &str); 2] = [("plan_cache_mode", "force_generic_plan"), ("enable_sort", "off")];

/// Opens the pool that reads every account's book (`DB_BOOK_POOL_SIZE`, where the reports read): statements and
/// balances never wait behind reports and downloads, nor they behind statements. Its queries seek one account's
/// rows in the day partitions of a window, with the window's times as parameters, and it plans them so
/// ([`BOOK_PLANNING`]):
///
/// - once per connection, partitions pruned when they run (`plan_cache_mode = force_generic_plan`): planned anew
///   for each request (PostgreSQL keeps doing so when the custom plans look cheap, as for an account with few
///   rows), a seek over every day of a window costs several milliseconds, more than running it;
/// - in the book indexes' order, not sorted (`enable_sort = off`, which leaves a sort only where no index gives the
///   order): a plan made without the account expects few rows of it (migration 0016), and would otherwise read
///   all of them in the window and sort them, which for an account with a million rows reads a million. Every
///   query of this pool has an index in its order.
pub async fn connect_book(settings: &Settings) -> anyhow::Result<PgPool> {
    open_pool(report_url(settings), settings, settings.db_book_pool_size, BOOK_APPLICATION, &BOOK_PLANNING).await
}

/// Opens the event feed's and the webhooks' own pool (`DB_EVENTS_POOL_SIZE`), on the primary: the feed's rule
/// reads the primary's snapshots, and deliveries are written there. However many consumers read, they never take
/// a connection a transfer needs.
pub async fn connect_events(settings: &Settings) -> anyhow::Result<PgPool> {
    open_pool(&settings.database_url, settings, settings.db_events_pool_size, EVENTS_APPLICATION, &[]).await
}

/// Where reports and the book read: the hot standby (`REPORT_DATABASE_URL`) when there is one, else the primary.
fn report_url(settings: &Settings) -> &Secret {
    settings.report_database_url.as_ref().unwrap_or(&settings.database_url)
}

/// With reports on a standby, the primary's connections that save their snapshots (a standby takes no
/// writes): two, apart from the transfers' pool.
pub async fn connect_snapshot_writer(settings: &Settings) -> anyhow::Result<Option<PgPool>> {
    if settings.report_database_url.is_none() {
        return Ok(None);
    }
    Ok(Some(open_pool(&settings.database_url, settings, 2, REPORTS_APPLICATION, &[]).await?))
}

/// A pool of `size` connections to `url`, with the statement timeout and the pool's own server `settings`.
async fn open_pool(
    url: &Secret,
    settings: &Settings,
    size: u32,
    application: &str,
    server_settings: &[(&str, &str)],
) -> anyhow::Result<PgPool> {
    let statement_timeout_ms = settings.db_statement_timeout.as_millis().to_string();
    let options = PgConnectOptions::from_str(url.expose())?
        .application_name(application)
        .options([("statement_timeout", statement_timeout_ms.as_str())])
        .options(server_settings.iter().copied());
    let pool = PgPoolOptions::new()
        .max_connections(size)
        .min_connections(1.min(size))
        .acquire_timeout(settings.db_acquire_timeout)
        .idle_timeout(Some(Duration::from_secs(300)))
        .connect_with(options)
        .await?;
    Ok(pool)
}

/// How many times a database transaction is attempted when PostgreSQL asks for a retry.
pub const MAX_ATTEMPTS: u32 = 3;

/// Deletes idempotency keys and report snapshots older than their time to live. Returns rows deleted.
///
/// A key's claim leaves its use behind (`idempotency_key_uses`), so that lookups still find the rows written
/// under it (see `ledger::transactions_by_keys`); a use goes once no row dated after it can be hot: a day
/// before the oldest partition of `transactions`.
pub async fn purge_expired(pool: &PgPool, key_ttl: Duration, snapshot_ttl: Duration) -> sqlx::Result<(u64, u64)> {
    let (keys,): (i64,) = sqlx::query_as(
        "WITH gone AS (
             DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => $1)
             RETURNING client, key, created_at),
         used AS (
             INSERT INTO idempotency_key_uses (client, key, claimed_at) SELECT client, key, created_at FROM gone
             ON CONFLICT DO NOTHING)
         SELECT count(*) FROM gone",
    )
    .bind(key_ttl.as_secs_f64())
    .fetch_one(pool)
    .await?;
    sqlx::query(
        "DELETE FROM idempotency_key_uses
         WHERE claimed_at < (SELECT min(to_date(substr(c.relname, 14), 'YYYYMMDD'))::timestamp AT TIME ZONE 'UTC'
                             FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                             WHERE i.inhparent = 'transactions'::regclass
                               AND c.relname ~ '^transactions_[0-9]{8}$') - interval '1 day'",
    )
    .execute(pool)
    .await?;
    let keys = keys as u64;
    let snapshots = sqlx::query("DELETE FROM report_snapshots WHERE created_at < now() - make_interval(secs => $1)")
        .bind(snapshot_ttl.as_secs_f64())
        .execute(pool)
        .await?
        .rows_affected();
    Ok((keys, snapshots))
}
