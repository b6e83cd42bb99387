//! Settings, read once from the environment at start.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{bail, Context};

/// Everything the service can be told from outside. See README.md for the variables.
#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    pub listen_addr: SocketAddr,
    pub db_pool_size: u32,
    pub db_acquire_timeout: Duration,
    pub db_statement_timeout: Duration,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
    pub api_token: Option<String>,
    /// How long an Idempotency-Key is remembered; at least 7 days.
    pub idempotency_key_ttl: Duration,
    /// How long a report snapshot token stays usable.
    pub report_snapshot_ttl: Duration,
    /// How long a concurrent duplicate waits for the first request with its key before a 409.
    pub idempotency_wait: Duration,
}

const DAY: Duration = Duration::from_secs(24 * 3600);

impl Settings {
    /// Reads the settings from the process environment.
    pub fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the settings through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let var =
            |name: &str, default: &str| lookup(name).filter(|v| !v.is_empty()).unwrap_or_else(|| default.to_owned());
        let duration = |name: &str, default: &str| -> anyhow::Result<Duration> {
            parse_duration(&var(name, default)).with_context(|| format!("{name} is not a duration like 30s, 5m, 8d"))
        };
        let settings = Self {
            database_url: lookup("DATABASE_URL").filter(|v| !v.is_empty()).context("DATABASE_URL is not set")?,
            listen_addr: var("LISTEN_ADDR", "127.0.0.1:8081").parse().context("LISTEN_ADDR is not host:port")?,
            db_pool_size: var("DB_POOL_SIZE", "16").parse().context("DB_POOL_SIZE is not a number")?,
            db_acquire_timeout: duration("DB_ACQUIRE_TIMEOUT", "5s")?,
            db_statement_timeout: duration("DB_STATEMENT_TIMEOUT", "30s")?,
            request_timeout: duration("REQUEST_TIMEOUT", "30s")?,
            shutdown_grace: duration("SHUTDOWN_GRACE", "20s")?,
            api_token: lookup("API_TOKEN").filter(|v| !v.is_empty()),
            idempotency_key_ttl: duration("IDEMPOTENCY_KEY_TTL", "8d")?,
            report_snapshot_ttl: duration("REPORT_SNAPSHOT_TTL", "1h")?,
            idempotency_wait: duration("IDEMPOTENCY_WAIT", "10s")?,
        };
        if !(1..=1000).contains(&settings.db_pool_size) {
            bail!("DB_POOL_SIZE must be between 1 and 1000");
        }
        if settings.idempotency_key_ttl < 7 * DAY {
            bail!("IDEMPOTENCY_KEY_TTL must be at least 7d: clients may retry for a week");
        }
        Ok(settings)
    }
}

/// Parses `250ms`, `30s`, `5m`, `2h`, `8d`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().with_context(|| format!("{text:?} has no number"))?;
    let unit_ms: u64 = match unit {
        "ms" => 1,
        "" | "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => bail!("{text:?} has an unknown unit (use ms, s, m, h or d)"),
    };
    number.checked_mul(unit_ms).map(Duration::from_millis).context("duration overflows")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_the_usual_units() {
        assert_eq!(parse_duration("250ms").ok(), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("30").ok(), Some(Duration::from_secs(30)));
        assert_eq!(parse_duration("5m").ok(), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("8d").ok(), Some(8 * DAY));
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn defaults_apply_when_only_the_database_is_given() {
        let settings = Settings::from_lookup(|name| (name == "DATABASE_URL").then(|| "postgres://x/y".to_owned()))
            .expect("defaults are valid");
        assert_eq!(settings.listen_addr.to_string(), "127.0.0.1:8081");
        assert_eq!(settings.api_token, None);
        assert!(settings.idempotency_key_ttl >= 7 * DAY);
    }

    #[test]
    fn a_key_ttl_under_seven_days_is_refused() {
        let result = Settings::from_lookup(|name| match name {
            "DATABASE_URL" => Some("postgres://x/y".to_owned()),
            "IDEMPOTENCY_KEY_TTL" => Some("6d".to_owned()),
            _ => None,
        });
        assert!(result.is_err());
    }
}
