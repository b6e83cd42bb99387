//! The `advances-worker`'s settings, read once from the environment at start.

use std::net::SocketAddr;
use std::time::Duration;

use advances_workflows::temporal::TemporalSettings;
use service_kit::serve::ServerLimits;
use service_kit::settings::{read_file, Env, FromEnv};
use service_kit::Secret;

/// Everything the worker can be told from outside. See README.md for the variables.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub database_url: Secret,
    pub temporal: TemporalSettings,
    /// The ledger's base URL (`ACCOUNTS_URL`), a secret because it may carry credentials.
    pub accounts_url: Secret,
    pub accounts_api_token: Option<Secret>,
    /// PEM CA certificates to trust for an `https://` `ACCOUNTS_URL` (`ACCOUNTS_CA_FILE`), read at start.
    pub accounts_ca: Option<Vec<u8>>,
    /// How often a newly created `advances-reconcile` Schedule runs ReconcileWorkflow.
    pub reconcile_interval: Duration,
    pub reconcile_schedule_id: String,
    /// Where the worker serves `/health` and `/metrics`.
    pub metrics_addr: SocketAddr,
    /// One call to the accounts-service gives up after this (Temporal then retries it with the same key).
    pub accounts_timeout: Duration,
    /// The limits of the `/health` and `/metrics` server (`HTTP_HEADER_TIMEOUT`, `HTTP_MAX_CONNECTIONS`).
    pub ops_server: ServerLimits,
    /// How many advances' workflows the worker keeps in memory between their tasks (`MAX_CACHED_WORKFLOWS`).
    /// One that is not cached is replayed from its history at its next task (a timer firing a week later).
    pub max_cached_workflows: usize,
}

/// The most `MAX_CACHED_WORKFLOWS` may be: far beyond what fits in a worker's memory (see README).
pub const MAX_CACHED_WORKFLOWS_LIMIT: usize = 1_000_000;

impl FromEnv for WorkerSettings {
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let env = Env::from_lookup(lookup);
        Ok(Self {
            database_url: env.required_secret("DATABASE_URL", "the advances database")?,
            temporal: TemporalSettings::read(|name| env.get(name))?,
            accounts_url: Secret::new(env.or("ACCOUNTS_URL", "http://127.0.0.1:8081")),
            accounts_api_token: env.secret("ACCOUNTS_API_TOKEN"),
            accounts_ca: read_file(env.get("ACCOUNTS_CA_FILE"), "ACCOUNTS_CA_FILE")?,
            reconcile_interval: env.duration("RECONCILE_INTERVAL", "1h")?,
            reconcile_schedule_id: env.or("RECONCILE_SCHEDULE_ID", advances_workflows::RECONCILE_SCHEDULE_ID),
            metrics_addr: env.addr("METRICS_ADDR", "127.0.0.1:8083")?,
            accounts_timeout: env.duration("ACCOUNTS_TIMEOUT", "5s")?,
            ops_server: ServerLimits::read(&env, Duration::from_secs(30))?,
            max_cached_workflows: cache_size(env.number("MAX_CACHED_WORKFLOWS", "1000")?)?,
        })
    }
}

fn cache_size(size: usize) -> anyhow::Result<usize> {
    anyhow::ensure!(
        size <= MAX_CACHED_WORKFLOWS_LIMIT,
        "MAX_CACHED_WORKFLOWS must be at most {MAX_CACHED_WORKFLOWS_LIMIT}, not {size}"
    );
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;
    use service_kit::settings::vars;

    /// The required database plus `name = value`.
    fn with(name: &str, value: &str) -> impl Fn(&str) -> Option<String> {
        vars(&[("DATABASE_URL", "postgres://x/advances"), (name, value)])
    }

    #[test]
    fn debug_output_never_shows_a_password_or_token() {
        let shown = format!(
            "{:?}",
            WorkerSettings::from_lookup(vars(&[
                ("DATABASE_URL", "postgres://a:pw-secret@db/x"),
                ("ACCOUNTS_URL", "https://w:t-secret@ledger")
            ]))
        );
        assert!(!shown.contains("pw-secret") && !shown.contains("t-secret") && shown.contains("[redacted]"), "{shown}");
    }

    #[test]
    fn defaults_follow_the_readme() -> anyhow::Result<()> {
        let worker = WorkerSettings::from_lookup(with("NOTHING", ""))?;
        assert_eq!(worker.reconcile_interval, Duration::from_secs(3600));
        assert_eq!(worker.reconcile_schedule_id, "advances-reconcile");
        assert_eq!(worker.accounts_url.expose(), "http://127.0.0.1:8081");
        assert_eq!(worker.metrics_addr.to_string(), "127.0.0.1:8083");
        assert_eq!(worker.max_cached_workflows, 1000);
        assert_eq!(
            (worker.temporal.address.as_str(), worker.temporal.task_queue.as_str()),
            ("localhost:7233", "advances")
        );
        Ok(())
    }

    #[test]
    fn bad_values_are_refused_at_start() {
        assert!(WorkerSettings::from_lookup(with("RECONCILE_INTERVAL", "soon")).is_err());
        assert!(WorkerSettings::from_lookup(with("ACCOUNTS_TIMEOUT", "0s")).is_err());
        assert!(WorkerSettings::from_lookup(|_| None).is_err(), "DATABASE_URL is required");
        assert!(WorkerSettings::from_lookup(with("MAX_CACHED_WORKFLOWS", "-1")).is_err());
        assert!(WorkerSettings::from_lookup(with("MAX_CACHED_WORKFLOWS", "1000001")).is_err());
    }
}
