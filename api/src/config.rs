//! Settings of the two binaries, read once from the environment at start.

use std::net::SocketAddr;
use std::time::Duration;

use accounts_service::config::parse_duration;
use anyhow::{bail, Context};

/// Where Temporal is and which queue the advances use.
#[derive(Debug, Clone)]
pub struct TemporalSettings {
    /// `host:port` of the frontend (`TEMPORAL_ADDRESS`, default `localhost:7233`).
    pub address: String,
    pub namespace: String,
    /// `TEMPORAL_TASK_QUEUE`, default `advances` (tests use one queue each).
    pub task_queue: String,
}

/// The `advances-worker` binary's settings.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub database_url: String,
    pub temporal: TemporalSettings,
    pub accounts_url: String,
    pub accounts_api_token: Option<String>,
    /// How often the `advances-reconcile` Schedule runs ReconcileWorkflow.
    pub reconcile_interval: Duration,
    pub reconcile_schedule_id: String,
    /// Where the worker serves `/health` and `/metrics`.
    pub metrics_addr: SocketAddr,
    /// One call to the accounts-service gives up after this (Temporal then retries it with the same key).
    pub accounts_timeout: Duration,
}

/// The `advances-api` binary's settings.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub database_url: String,
    pub listen_addr: SocketAddr,
    pub temporal: TemporalSettings,
    pub accounts_url: String,
    pub accounts_api_token: Option<String>,
    pub api_token: Option<String>,
    pub request_timeout: Duration,
    /// Regular payments of a new advance (`ADVANCE_PAYMENTS`, default 12).
    pub advance_payments: u32,
    /// Time between payments of a new advance (`ADVANCE_PAYMENT_INTERVAL`, default 7d).
    pub payment_interval: Duration,
    /// Extra payments that may fail in a row before an advance defaults (default 12).
    pub max_failed_extra_payments: u32,
    /// How long `POST /advances` waits for the grant before answering with the advance still `granting`.
    pub grant_wait: Duration,
}

/// Reads variables through a lookup function, so tests need not touch the process environment.
struct Vars<F>(F);

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|value| !value.is_empty())
    }

    fn or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_owned())
    }

    fn duration(&self, name: &str, default: &str) -> anyhow::Result<Duration> {
        let value = parse_duration(&self.or(name, default))
            .with_context(|| format!("{name} is not a duration like 1s, 5m, 7d"))?;
        if value.is_zero() {
            bail!("{name} must be more than 0");
        }
        Ok(value)
    }

    fn number<T: std::str::FromStr>(&self, name: &str, default: &str) -> anyhow::Result<T> {
        self.or(name, default).parse().map_err(|_| anyhow::anyhow!("{name} is not a number"))
    }

    fn temporal(&self) -> TemporalSettings {
        TemporalSettings {
            address: self.or("TEMPORAL_ADDRESS", "localhost:7233"),
            namespace: self.or("TEMPORAL_NAMESPACE", "default"),
            task_queue: self.or("TEMPORAL_TASK_QUEUE", advances_workflows::TASK_QUEUE),
        }
    }

    fn database_url(&self) -> anyhow::Result<String> {
        self.get("DATABASE_URL").context("DATABASE_URL (the advances database) is not set")
    }
}

/// Settings read through a lookup function (tests pass their own); `from_env` reads the process environment.
pub trait FromEnv: Sized {
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self>;

    fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

impl FromEnv for WorkerSettings {
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let vars = Vars(lookup);
        let settings = Self {
            database_url: vars.database_url()?,
            temporal: vars.temporal(),
            accounts_url: vars.or("ACCOUNTS_URL", "http://127.0.0.1:8081"),
            accounts_api_token: vars.get("ACCOUNTS_API_TOKEN"),
            reconcile_interval: vars.duration("RECONCILE_INTERVAL", "1h")?,
            reconcile_schedule_id: vars.or("RECONCILE_SCHEDULE_ID", advances_workflows::RECONCILE_SCHEDULE_ID),
            metrics_addr: vars.or("METRICS_ADDR", "127.0.0.1:8083").parse().context("METRICS_ADDR is not host:port")?,
            accounts_timeout: vars.duration("ACCOUNTS_TIMEOUT", "5s")?,
        };
        Ok(settings)
    }
}

impl FromEnv for ApiSettings {
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let vars = Vars(lookup);
        let settings = Self {
            database_url: vars.database_url()?,
            listen_addr: vars.or("LISTEN_ADDR", "127.0.0.1:8082").parse().context("LISTEN_ADDR is not host:port")?,
            temporal: vars.temporal(),
            accounts_url: vars.or("ACCOUNTS_URL", "http://127.0.0.1:8081"),
            accounts_api_token: vars.get("ACCOUNTS_API_TOKEN"),
            api_token: vars.get("API_TOKEN"),
            request_timeout: vars.duration("REQUEST_TIMEOUT", "30s")?,
            advance_payments: vars.number("ADVANCE_PAYMENTS", "12")?,
            payment_interval: vars.duration("ADVANCE_PAYMENT_INTERVAL", "7d")?,
            max_failed_extra_payments: vars.number("ADVANCE_MAX_FAILED_EXTRA_PAYMENTS", "12")?,
            grant_wait: vars.duration("GRANT_WAIT", "5s")?,
        };
        let max = advances_workflows::schedule::MAX_PAYMENTS;
        if !(1..=max).contains(&settings.advance_payments) {
            bail!("ADVANCE_PAYMENTS must be between 1 and {max}");
        }
        if !(1..=max).contains(&settings.max_failed_extra_payments) {
            bail!("ADVANCE_MAX_FAILED_EXTRA_PAYMENTS must be between 1 and {max}");
        }
        if settings.payment_interval > Duration::from_secs(365 * 24 * 3600) {
            bail!("ADVANCE_PAYMENT_INTERVAL must be at most 365d");
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn only_database(name: &str) -> Option<String> {
        (name == "DATABASE_URL").then(|| "postgres://x/advances".to_owned())
    }

    #[test]
    fn defaults_follow_the_issue() -> anyhow::Result<()> {
        let api = ApiSettings::from_lookup(only_database)?;
        assert_eq!(api.listen_addr.to_string(), "127.0.0.1:8082");
        assert_eq!((api.advance_payments, api.max_failed_extra_payments), (12, 12));
        assert_eq!(api.payment_interval, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(api.temporal.address, "localhost:7233");
        assert_eq!(api.temporal.task_queue, "advances");
        let worker = WorkerSettings::from_lookup(only_database)?;
        assert_eq!(worker.reconcile_interval, Duration::from_secs(3600));
        assert_eq!(worker.reconcile_schedule_id, "advances-reconcile");
        assert_eq!(worker.accounts_url, "http://127.0.0.1:8081");
        Ok(())
    }

    #[test]
    fn bad_values_are_refused_at_start() {
        let with = |name: &'static str, value: &'static str| {
            move |key: &str| if key == name { Some(value.to_owned()) } else { only_database(key) }
        };
        assert!(ApiSettings::from_lookup(with("ADVANCE_PAYMENTS", "0")).is_err());
        assert!(ApiSettings::from_lookup(with("ADVANCE_PAYMENT_INTERVAL", "0s")).is_err());
        assert!(ApiSettings::from_lookup(with("ADVANCE_PAYMENT_INTERVAL", "a week")).is_err());
        assert!(WorkerSettings::from_lookup(with("RECONCILE_INTERVAL", "soon")).is_err());
        assert!(ApiSettings::from_lookup(|_| None).is_err(), "DATABASE_URL is required");
    }
}
