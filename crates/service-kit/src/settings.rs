//! Settings from the environment: one reader and one duration parser for every binary.

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{bail, Context};

use crate::Secret;

/// Reads variables through a lookup function, so tests need not touch the process environment. An empty
/// variable counts as unset.
pub struct Env<F>(F);

impl<F: Fn(&str) -> Option<String>> Env<F> {
    /// Variables from `lookup` (tests pass their own).
    pub fn from_lookup(lookup: F) -> Self {
        Env(lookup)
    }

    /// The value, if set and not empty.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|value| !value.is_empty())
    }

    /// The value, or `default`.
    pub fn or(&self, name: &str, default: &str) -> String {
        self.get(name).unwrap_or_else(|| default.to_owned())
    }

    /// The value; unset is an error that says what the variable is for.
    pub fn required(&self, name: &str, what: &str) -> anyhow::Result<String> {
        self.get(name).with_context(|| format!("{name} ({what}) is not set"))
    }

    /// A secret value (a token, a URL with a password), if set: see [`Secret`].
    pub fn secret(&self, name: &str) -> Option<Secret> {
        self.get(name).map(Secret::new)
    }

    /// A secret value that must be set.
    pub fn required_secret(&self, name: &str, what: &str) -> anyhow::Result<Secret> {
        self.required(name, what).map(Secret::new)
    }

    /// A duration like `250ms`, `30s`, `5m`, `2h`, `8d`; zero is refused (a zero timeout or wait means "none" to
    /// PostgreSQL and "always" to a timer: never what an operator wants).
    pub fn duration(&self, name: &str, default: &str) -> anyhow::Result<Duration> {
        let value = parse_duration(&self.or(name, default))
            .with_context(|| format!("{name} is not a duration like 250ms, 30s, 5m, 2h or 8d"))?;
        if value.is_zero() {
            bail!("{name} must be more than 0");
        }
        Ok(value)
    }

    /// A number (or anything else parsed with `FromStr`).
    pub fn number<T: FromStr>(&self, name: &str, default: &str) -> anyhow::Result<T> {
        self.or(name, default).parse().map_err(|_| anyhow::anyhow!("{name} is not a number"))
    }

    /// A `host:port` socket address.
    pub fn addr(&self, name: &str, default: &str) -> anyhow::Result<SocketAddr> {
        self.or(name, default).parse().with_context(|| format!("{name} is not host:port"))
    }
}

/// Settings that are read from the environment; `from_env` reads the process's.
pub trait FromEnv: Sized {
    fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> anyhow::Result<Self>;

    fn from_env() -> anyhow::Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }
}

/// A lookup over fixed pairs, for [`FromEnv::from_lookup`] in tests: `vars(&[("DATABASE_URL", "postgres://x/y")])`.
pub fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let pairs: Vec<(String, String)> =
        pairs.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())).collect();
    move |name: &str| pairs.iter().find(|(key, _)| key == name).map(|(_, value)| value.clone())
}

/// The bytes of the file a setting names (a CA bundle, a certificate), read once at start; a setting that
/// names a missing file is an error, not a silent fallback to no TLS.
pub fn read_file(path: Option<String>, setting: &str) -> anyhow::Result<Option<Vec<u8>>> {
    path.map(|path| std::fs::read(&path).map_err(|error| anyhow::anyhow!("{setting}: cannot read {path}: {error}")))
        .transpose()
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
        assert_eq!(parse_duration("8d").ok(), Some(Duration::from_secs(8 * 86_400)));
        assert!(parse_duration("5 weeks").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("99999999999999999d").is_err());
    }

    #[test]
    fn an_empty_variable_counts_as_unset_and_zero_durations_are_refused() {
        let env = Env::from_lookup(vars(&[("EMPTY", ""), ("ZERO", "0s"), ("PORT", "nope")]));
        assert_eq!(env.or("EMPTY", "fallback"), "fallback");
        assert!(env.required("EMPTY", "a thing").is_err());
        assert!(env.duration("ZERO", "1s").is_err());
        assert_eq!(env.duration("UNSET", "1s").ok(), Some(Duration::from_secs(1)));
        assert!(env.number::<u32>("PORT", "1").is_err());
        assert!(env.addr("PORT", "127.0.0.1:1").is_err());
    }
}
