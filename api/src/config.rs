//! The `advances-api`'s settings, read once from the environment at start.

use std::net::SocketAddr;
use std::time::Duration;

use advances_model::valid_product_name;
use advances_store::Caps;
use advances_workflows::temporal::TemporalSettings;
use anyhow::{bail, Context};
use money::Amount;
use rust_decimal::Decimal;
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
    /// The product of a request that names none (`DEFAULT_PRODUCT`, default `standard`).
    pub default_product: String,
    /// How soon after a request a first due time it chooses may be (`FIRST_DUE_MIN_LEAD`, default 1d).
    pub first_due_min_lead: Duration,
    /// The exposure caps (`MAX_OUTSTANDING_PER_ACCOUNT`, `MAX_OPEN_ADVANCES_PER_ACCOUNT`,
    /// `MAX_OUTSTANDING_TOTAL`; each unset by default: no cap).
    pub caps: Caps,
    /// How long `POST /advances` waits for the grant before answering with the advance still `granting`.
    pub grant_wait: Duration,
    /// The event feed and webhooks (`EVENT_RETENTION`, `WEBHOOK_*`): the `events` crate's settings.
    pub events: events::EventSettings,
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
            grant_wait: env.duration("GRANT_WAIT", "5s")?,
            events: events::EventSettings::read(&env)?,
            default_product: env.or("DEFAULT_PRODUCT", "standard"),
            first_due_min_lead: env.duration("FIRST_DUE_MIN_LEAD", "1d")?,
            caps: Caps {
                outstanding_per_account: cap_amount(&env, "MAX_OUTSTANDING_PER_ACCOUNT")?,
                open_per_account: match env.get("MAX_OPEN_ADVANCES_PER_ACCOUNT").filter(|t| !t.trim().is_empty()) {
                    None => None,
                    Some(text) => match text.trim().parse::<u32>() {
                        Ok(cap) if cap > 0 => Some(cap),
                        _ => bail!("MAX_OPEN_ADVANCES_PER_ACCOUNT must be a whole number of at least 1"),
                    },
                },
                outstanding_total: cap_amount(&env, "MAX_OUTSTANDING_TOTAL")?,
            },
        };
        if !valid_product_name(&settings.default_product) {
            bail!("DEFAULT_PRODUCT {:?} is not a product name", settings.default_product);
        }
        // The terms moved to products: a setting that silently stopped working would lend on other terms than
        // its operator believes.
        for gone in ["ADVANCE_PAYMENTS", "ADVANCE_PAYMENT_INTERVAL", "ADVANCE_MAX_FAILED_EXTRA_PAYMENTS"] {
            if env.get(gone).is_some() {
                bail!("{gone} is no longer read: an advance's terms come from its product (`advances-api product add`, see README.md); unset it");
            }
        }
        Ok(settings)
    }
}

/// An optional cap on an amount: unset (or empty) is no cap; otherwise a valid amount.
fn cap_amount(env: &Env<impl Fn(&str) -> Option<String>>, name: &str) -> anyhow::Result<Option<Decimal>> {
    env.get(name)
        .filter(|text| !text.trim().is_empty())
        .map(|text| Amount::parse(text.trim()).map(Amount::value).with_context(|| format!("{name} is not an amount")))
        .transpose()
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
        assert_eq!(api.default_product, "standard");
        assert_eq!(api.first_due_min_lead, Duration::from_secs(24 * 3600));
        assert_eq!(api.caps, Caps::default(), "no cap unless one is set");
        assert_eq!(api.temporal.address, "localhost:7233");
        assert_eq!(api.temporal.task_queue, "advances");
        assert_eq!(api.auth, AuthMode::On);
        Ok(())
    }

    #[test]
    fn caps_are_read_when_set() -> anyhow::Result<()> {
        let api = ApiSettings::from_lookup(vars(&[
            ("DATABASE_URL", "postgres://x/advances"),
            ("MAX_OUTSTANDING_PER_ACCOUNT", "1000.50"),
            ("MAX_OPEN_ADVANCES_PER_ACCOUNT", "3"),
            ("MAX_OUTSTANDING_TOTAL", "1000000"),
        ]))?;
        let expected = Caps {
            outstanding_per_account: Some(Decimal::new(100050, 2)),
            open_per_account: Some(3),
            outstanding_total: Some(Decimal::from(1_000_000)),
        };
        assert_eq!(api.caps, expected);
        Ok(())
    }

    #[test]
    fn bad_values_are_refused_at_start() {
        for (name, value) in [
            ("ADVANCE_PAYMENTS", "12"),
            ("ADVANCE_PAYMENT_INTERVAL", "7d"),
            ("MAX_OUTSTANDING_PER_ACCOUNT", "-5"),
            ("MAX_OUTSTANDING_PER_ACCOUNT", "1.001"),
            ("MAX_OUTSTANDING_TOTAL", "lots"),
            ("MAX_OPEN_ADVANCES_PER_ACCOUNT", "0"),
            ("MAX_OPEN_ADVANCES_PER_ACCOUNT", "-1"),
            ("DEFAULT_PRODUCT", "Standard"),
            ("FIRST_DUE_MIN_LEAD", "0s"),
        ] {
            assert!(ApiSettings::from_lookup(with(name, value)).is_err(), "{name}={value}");
        }
        assert!(ApiSettings::from_lookup(|_| None).is_err(), "DATABASE_URL is required");
    }
}
