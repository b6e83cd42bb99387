//! Settings, read once from the environment at start.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::bail;
use service_kit::auth::AuthMode;
use service_kit::serve::ServerLimits;
use service_kit::settings::{Env, FromEnv};
use service_kit::Secret;

use crate::domain::REPORT_WINDOW_DAYS;

/// Everything the service can be told from outside. See README.md for the variables.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: Secret,
    /// A hot standby of `database_url` that reports and downloads read from (`REPORT_DATABASE_URL`); unset, they
    /// read the primary through their own pool.
    pub report_database_url: Option<Secret>,
    /// How long a report read on the standby waits for it to replay up to its snapshot before answering 503
    /// (`REPORT_REPLICA_WAIT`).
    pub report_replica_wait: Duration,
    pub listen_addr: SocketAddr,
    pub db_pool_size: u32,
    /// Connections of the reports' and downloads' own pool, so they can never take the transfers' connections.
    pub db_report_pool_size: u32,
    /// Connections of the pool that reads every account's book: statements and `as_of` (`DB_BOOK_POOL_SIZE`).
    pub db_book_pool_size: u32,
    /// Connections of the event feed's and the webhooks' pool, on the primary (`DB_EVENTS_POOL_SIZE`).
    pub db_events_pool_size: u32,
    pub db_acquire_timeout: Duration,
    pub db_statement_timeout: Duration,
    pub request_timeout: Duration,
    /// The HTTP server's limits: shutdown grace, header timeout, open connections, stalled responses.
    pub server: ServerLimits,
    /// A download that makes no progress for this long is cut and its database connection returned.
    pub export_stall_timeout: Duration,
    /// Report snapshots (page 1 without a token) and downloads one client may run at once; beyond it, 429.
    pub report_concurrency_per_client: usize,
    /// `AUTH`: on (default) or off (local experiments only).
    pub auth: AuthMode,
    /// How long a checked token is remembered: a revocation takes effect within this.
    pub auth_cache_ttl: Duration,
    /// How long an Idempotency-Key is remembered; at least 7 days.
    pub idempotency_key_ttl: Duration,
    /// How long a report snapshot token stays usable.
    pub report_snapshot_ttl: Duration,
    /// How long a concurrent duplicate waits for the first request with its key before a 409.
    pub idempotency_wait: Duration,
    /// Committer tasks applying transfers and bank transactions in batches (`BATCH_COMMITTERS`; 0 applies each
    /// request in a database transaction of its own, as before group commit).
    pub batch_committers: usize,
    /// The most requests in one batch (`BATCH_MAX`).
    pub batch_max: usize,
    /// How often the report seal moves forward (`REPORT_SEAL_INTERVAL`): a new report counts at most about
    /// this much recent traffic row by row.
    pub report_seal_interval: Duration,
    /// How often pending holds past their `expires_at` are released (`HOLD_EXPIRY_INTERVAL`): a hold is
    /// released at most about this late (it can no longer be captured from `expires_at` on).
    pub hold_expiry_interval: Duration,
    /// Where days older than `hot_retention_days` go (`ARCHIVE_URL`: a directory or `s3://bucket/prefix`);
    /// unset, every day stays in PostgreSQL.
    pub archive_url: Option<String>,
    /// Whole UTC days kept in PostgreSQL after the day ends (`HOT_RETENTION_DAYS`).
    pub hot_retention_days: u32,
    /// A test hook: the archive pass aborts the process right after this step (`ARCHIVE_STOP_AFTER`). Only a
    /// build with the `test-hooks` feature (the tests') accepts it.
    pub archive_stop_after: Option<crate::archive::Step>,
    /// The event feed and webhooks (`EVENT_RETENTION`, `WEBHOOK_*`): the `events` crate's settings.
    pub events: events::EventSettings,
}

/// The shortest time keys are kept: clients may retry for a week.
pub const MIN_KEY_TTL: Duration = Duration::from_secs(7 * 24 * 3600);

const DAY_SECONDS: u64 = 24 * 3600;

impl Settings {
    /// The fewest `HOT_RETENTION_DAYS` allowed: a row stays hot while its key may be replayed or looked up
    /// (`IDEMPOTENCY_KEY_TTL`, in whole days), while reports may show it and while its event is kept
    /// (`EVENT_RETENTION`: the event's data is rendered from the row), plus one day for the partition it shares
    /// with younger rows.
    pub fn least_hot_days(&self) -> u32 {
        whole_days(self.idempotency_key_ttl)
            .max(whole_days(self.events.retention))
            .max(REPORT_WINDOW_DAYS as u32)
            .saturating_add(1)
    }
}

/// A duration in days, a part of a day counting as a whole one.
fn whole_days(duration: Duration) -> u32 {
    u32::try_from(duration.as_secs().div_ceil(DAY_SECONDS)).unwrap_or(u32::MAX)
}

impl FromEnv for Settings {
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let env = Env::from_lookup(lookup);
        let export_stall_timeout = env.duration("EXPORT_STALL_TIMEOUT", "30s")?;
        let settings = Self {
            database_url: env.required_secret("DATABASE_URL", "the accounts database")?,
            report_database_url: env.secret("REPORT_DATABASE_URL"),
            report_replica_wait: env.duration("REPORT_REPLICA_WAIT", "10s")?,
            listen_addr: env.addr("LISTEN_ADDR", "127.0.0.1:8081")?,
            db_pool_size: env.number("DB_POOL_SIZE", "16")?,
            db_report_pool_size: env.number("DB_REPORT_POOL_SIZE", "4")?,
            db_book_pool_size: env.number("DB_BOOK_POOL_SIZE", "4")?,
            db_events_pool_size: env.number("DB_EVENTS_POOL_SIZE", "4")?,
            db_acquire_timeout: env.duration("DB_ACQUIRE_TIMEOUT", "5s")?,
            db_statement_timeout: env.duration("DB_STATEMENT_TIMEOUT", "30s")?,
            request_timeout: env.duration("REQUEST_TIMEOUT", "30s")?,
            server: ServerLimits::read(&env, export_stall_timeout)?,
            export_stall_timeout,
            report_concurrency_per_client: env.number("REPORT_CONCURRENCY_PER_CLIENT", "2")?,
            auth: AuthMode::parse(&env.or("AUTH", "on"))?,
            auth_cache_ttl: env.duration("AUTH_CACHE_TTL", "5s")?,
            idempotency_key_ttl: env.duration("IDEMPOTENCY_KEY_TTL", "8d")?,
            report_snapshot_ttl: env.duration("REPORT_SNAPSHOT_TTL", "1h")?,
            idempotency_wait: env.duration("IDEMPOTENCY_WAIT", "10s")?,
            batch_committers: env.number("BATCH_COMMITTERS", "2")?,
            batch_max: env.number("BATCH_MAX", "128")?,
            report_seal_interval: env.duration("REPORT_SEAL_INTERVAL", "1s")?,
            hold_expiry_interval: env.duration("HOLD_EXPIRY_INTERVAL", "1s")?,
            archive_url: env.get("ARCHIVE_URL"),
            hot_retention_days: env.number("HOT_RETENTION_DAYS", "90")?,
            archive_stop_after: env.get("ARCHIVE_STOP_AFTER").map(|step| step.parse()).transpose()?,
            events: events::EventSettings::read(&env)?,
        };
        if !(1..=1000).contains(&settings.db_pool_size) {
            bail!("DB_POOL_SIZE must be between 1 and 1000");
        }
        if !(1..=1000).contains(&settings.db_book_pool_size) {
            bail!("DB_BOOK_POOL_SIZE must be between 1 and 1000");
        }
        if !(1..=1000).contains(&settings.db_events_pool_size) {
            bail!("DB_EVENTS_POOL_SIZE must be between 1 and 1000");
        }
        if !(1..=1000).contains(&settings.db_report_pool_size) {
            bail!("DB_REPORT_POOL_SIZE must be between 1 and 1000");
        }
        if !(1..=1000).contains(&settings.report_concurrency_per_client) {
            bail!("REPORT_CONCURRENCY_PER_CLIENT must be between 1 and 1000");
        }
        if settings.batch_committers >= settings.db_pool_size as usize {
            bail!("BATCH_COMMITTERS must be below DB_POOL_SIZE: account creation and lookups need connections too");
        }
        if !(1..=10_000).contains(&settings.batch_max) {
            bail!("BATCH_MAX must be between 1 and 10000");
        }
        if !(Duration::from_millis(100)..=Duration::from_secs(60)).contains(&settings.report_replica_wait) {
            bail!("REPORT_REPLICA_WAIT must be between 100ms and 60s");
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&settings.report_seal_interval) {
            bail!("REPORT_SEAL_INTERVAL must be between 10ms and 60s");
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&settings.hold_expiry_interval) {
            bail!("HOLD_EXPIRY_INTERVAL must be between 10ms and 60s");
        }
        if settings.idempotency_key_ttl < MIN_KEY_TTL {
            bail!("IDEMPOTENCY_KEY_TTL must be at least 7d: clients may retry for a week");
        }
        if settings.archive_stop_after.is_some() && !cfg!(feature = "test-hooks") {
            bail!("ARCHIVE_STOP_AFTER is a test hook, and this build has none (it aborts the process mid-archive)");
        }
        let least = settings.least_hot_days();
        if settings.hot_retention_days < least || settings.hot_retention_days > 36_500 {
            bail!(
                "HOT_RETENTION_DAYS must be between {least} and 36500: a transaction must stay in PostgreSQL as \
                 long as its Idempotency-Key ({}d), its event (EVENT_RETENTION, {}d) and the report window \
                 ({REPORT_WINDOW_DAYS}d), plus the day it is in",
                whole_days(settings.idempotency_key_ttl),
                whole_days(settings.events.retention)
            );
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_kit::settings::vars;

    /// The required database plus `name = value`.
    fn with(name: &str, value: &str) -> impl Fn(&str) -> Option<String> {
        vars(&[("DATABASE_URL", "postgres://x/y"), (name, value)])
    }

    #[test]
    fn debug_output_never_shows_a_password_or_token() {
        let shown = format!(
            "{:?}",
            Settings::from_lookup(vars(&[
                ("DATABASE_URL", "postgres://a:pw-secret@db/x"),
                ("REPORT_DATABASE_URL", "postgres://r:t-secret@replica/accounts")
            ]))
        );
        assert!(!shown.contains("pw-secret") && !shown.contains("t-secret") && shown.contains("[redacted]"), "{shown}");
    }

    #[test]
    fn defaults_apply_when_only_the_database_is_given() {
        let settings = Settings::from_lookup(with("NOTHING", "")).expect("defaults are valid");
        assert_eq!(settings.listen_addr.to_string(), "127.0.0.1:8081");
        assert_eq!(settings.auth, AuthMode::On);
        assert_eq!(settings.idempotency_key_ttl, Duration::from_secs(8 * 24 * 3600));
        assert_eq!((settings.db_pool_size, settings.db_report_pool_size), (16, 4));
        assert_eq!((settings.batch_committers, settings.batch_max), (2, 128));
        assert_eq!(settings.report_concurrency_per_client, 2);
        assert_eq!(settings.server.header_timeout, Duration::from_secs(10));
        assert_eq!(
            (settings.export_stall_timeout, settings.server.write_stall),
            (Duration::from_secs(30), Duration::from_secs(30))
        );
    }

    #[test]
    fn a_key_ttl_of_seven_days_is_accepted_and_under_seven_days_is_refused() {
        assert_eq!(
            Settings::from_lookup(with("IDEMPOTENCY_KEY_TTL", "7d")).ok().map(|s| s.idempotency_key_ttl),
            Some(MIN_KEY_TTL)
        );
        let refused = Settings::from_lookup(with("IDEMPOTENCY_KEY_TTL", "6d")).err().map(|e| e.to_string());
        assert!(refused.is_some_and(|message| message.contains("IDEMPOTENCY_KEY_TTL")));
    }

    #[test]
    fn hot_retention_covers_the_keys_the_events_and_the_report_window() {
        let defaults = Settings::from_lookup(with("NOTHING", "")).expect("defaults are valid");
        assert_eq!((defaults.hot_retention_days, defaults.archive_url.as_deref()), (90, None));
        assert_eq!(defaults.least_hot_days(), 31, "30 days of events, plus the day itself");
        let short_events =
            |days: &str| vars(&[("DATABASE_URL", "x"), ("EVENT_RETENTION", "7d"), ("HOT_RETENTION_DAYS", days)]);
        assert!(Settings::from_lookup(short_events("9")).is_ok(), "8 days of keys, plus the day itself");
        let refused = Settings::from_lookup(short_events("8")).err().map(|e| e.to_string());
        assert!(refused.is_some_and(|message| message.contains("Idempotency-Key")));
        let refused = Settings::from_lookup(with("HOT_RETENTION_DAYS", "30")).err().map(|e| e.to_string());
        assert!(
            refused.is_some_and(|message| message.contains("EVENT_RETENTION, 30d")),
            "events kept 30 days need 31 hot days"
        );
        let longer_keys = vars(&[
            ("DATABASE_URL", "x"),
            ("IDEMPOTENCY_KEY_TTL", "30d"),
            ("EVENT_RETENTION", "7d"),
            ("HOT_RETENTION_DAYS", "30"),
        ]);
        assert!(Settings::from_lookup(longer_keys).is_err(), "keys kept 30 days need 31 hot days");
        assert!(Settings::from_lookup(with("ARCHIVE_STOP_AFTER", "halfway")).is_err());
    }

    #[test]
    fn bad_values_are_refused_at_start() {
        assert!(Settings::from_lookup(with("DB_POOL_SIZE", "0")).is_err());
        assert!(Settings::from_lookup(with("DB_POOL_SIZE", "1001")).is_err());
        assert!(Settings::from_lookup(with("IDEMPOTENCY_WAIT", "0s")).is_err());
        assert!(Settings::from_lookup(with("BATCH_COMMITTERS", "16")).is_err(), "as many as the pool's connections");
        assert!(Settings::from_lookup(with("BATCH_MAX", "0")).is_err());
        assert!(Settings::from_lookup(with("BATCH_COMMITTERS", "0")).is_ok(), "0 turns batching off");
        assert!(Settings::from_lookup(with("LISTEN_ADDR", "here")).is_err());
        assert!(Settings::from_lookup(with("AUTH", "no")).is_err());
        assert!(Settings::from_lookup(|_| None).is_err(), "DATABASE_URL is required");
    }
}
