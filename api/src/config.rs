//! The `advances-api`'s settings, read once from the environment at start.

use std::net::SocketAddr;
use std::time::Duration;

use advances_model::MAX_PAYMENTS;
use advances_workflows::temporal::TemporalSettings;
use anyhow::bail;
use service_kit::auth::AuthMode;
use service_kit::serve::ServerLimits;

/// A response the client does not read for this long is cut (the API's answers are small).
const STALLED_RESPONSE: Duration = Duration::from_secs(30);
use service_kit::settings::{read_file, Env, FromEnv};
use service_kit::Secret;

/// Everything the API can be told from outside. See README.md for the variables.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub database_url: Secret,
    pub listen_addr: SocketAddr,
    pub temporal: TemporalSettings,
    /// The ledger's base URL (`ACCOUNTS_URL`), a secret because it may carry credentials.
    pub accounts_url: Secret,
    pub accounts_api_token: Option<Secret>,
    /// PEM CA certificates to trust for an `https://` `ACCOUNTS_URL` (`ACCOUNTS_CA_FILE`), read at start.
    pub accounts_ca: Option<Vec<u8>>,
    /// `AUTH`: on (default) or off (local experiments only).
    pub auth: AuthMode,
    /// How long a checked token is remembered: a revocation takes effect within this.
    pub auth_cache_ttl: Duration,
    pub request_timeout: Duration,
    /// The HTTP server's limits: shutdown grace, header timeout, open connections, stalled responses.
    pub server: ServerLimits,
    /// Regular payments of a new advance (`ADVANCE_PAYMENTS`, default 12).
    pub advance_payments: u32,
    /// Time between payments of a new advance (`ADVANCE_PAYMENT_INTERVAL`, default 7d).
    pub payment_interval: Duration,
    /// Extra payments that may fail in a row before an advance defaults (default 12).
    pub max_failed_extra_payments: u32,
    /// How long `POST /advances` waits for the grant before answering with the advance still `granting`.
    pub grant_wait: Duration,
}

impl FromEnv for ApiSettings {
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self> {
        let env = Env::from_lookup(lookup);
        let settings = Self {
            database_url: env.required_secret("DATABASE_URL", "the advances database")?,
            listen_addr: env.addr("LISTEN_ADDR", "127.0.0.1:8082")?,
            temporal: TemporalSettings::read(|name| env.get(name))?,
            accounts_url: Secret::new(env.or("ACCOUNTS_URL", "http://127.0.0.1:8081")),
            accounts_api_token: env.secret("ACCOUNTS_API_TOKEN"),
            accounts_ca: read_file(env.get("ACCOUNTS_CA_FILE"), "ACCOUNTS_CA_FILE")?,
            auth: AuthMode::parse(&env.or("AUTH", "on"))?,
            auth_cache_ttl: env.duration("AUTH_CACHE_TTL", "5s")?,
            request_timeout: env.duration("REQUEST_TIMEOUT", "30s")?,
            server: ServerLimits::read(&env, STALLED_RESPONSE)?,
            advance_payments: env.number("ADVANCE_PAYMENTS", "12")?,
            payment_interval: env.duration("ADVANCE_PAYMENT_INTERVAL", "7d")?,
            max_failed_extra_payments: env.number("ADVANCE_MAX_FAILED_EXTRA_PAYMENTS", "12")?,
            grant_wait: env.duration("GRANT_WAIT", "5s")?,
        };
        if !(1..=MAX_PAYMENTS).contains(&settings.advance_payments) {
            bail!("ADVANCE_PAYMENTS must be between 1 and {MAX_PAYMENTS}");
        }
        if !(1..=MAX_PAYMENTS).contains(&settings.max_failed_extra_payments) {
            bail!("ADVANCE_MAX_FAILED_EXTRA_PAYMENTS must be between 1 and {MAX_PAYMENTS}");
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
    use service_kit::settings::vars;

    /// The required database plus `name = value`.
    fn with(name: &str, value: &str) -> impl Fn(&str) -> Option<String> {
        vars(&[("DATABASE_URL", "postgres://x/advances"), (name, value)])
    }

    #[test]
    fn debug_output_never_shows_a_password_or_token() {
        let shown = format!(
            "{:?}",
            ApiSettings::from_lookup(vars(&[
                ("DATABASE_URL", "postgres://a:pw-secret@db/x"),
                ("ACCOUNTS_API_TOKEN", "t-secret")
            ]))
        );
        assert!(!shown.contains("pw-secret") && !shown.contains("t-secret") && shown.contains("[redacted]"), "{shown}");
    }

    #[test]
    fn defaults_follow_the_readme() -> anyhow::Result<()> {
        let api = ApiSettings::from_lookup(with("NOTHING", ""))?;
        assert_eq!(api.listen_addr.to_string(), "127.0.0.1:8082");
        assert_eq!((api.advance_payments, api.max_failed_extra_payments), (12, 12));
        assert_eq!(api.payment_interval, Duration::from_secs(7 * 24 * 3600));
        assert_eq!(api.temporal.address, "localhost:7233");
        assert_eq!(api.temporal.task_queue, "advances");
        assert_eq!(api.auth, AuthMode::On);
        Ok(())
    }

    #[test]
    fn bad_values_are_refused_at_start() {
        assert!(ApiSettings::from_lookup(with("ADVANCE_PAYMENTS", "0")).is_err());
        assert!(ApiSettings::from_lookup(with("ADVANCE_PAYMENTS", "521")).is_err());
        assert!(ApiSettings::from_lookup(with("ADVANCE_PAYMENT_INTERVAL", "0s")).is_err());
        assert!(ApiSettings::from_lookup(with("ADVANCE_PAYMENT_INTERVAL", "a week")).is_err());
        assert!(ApiSettings::from_lookup(with("ADVANCE_PAYMENT_INTERVAL", "366d")).is_err());
        assert!(ApiSettings::from_lookup(|_| None).is_err(), "DATABASE_URL is required");
    }
}
