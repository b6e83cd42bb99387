//! A value that must never be printed: a bearer token, a password, a database URL with its password in it.

use std::fmt;

/// A secret string. `Debug` prints `Secret([redacted])` and there is no `Display`, so a settings struct that
/// holds one can be logged or shown in an error whole; the value is read only through [`Secret::expose`],
/// where it is used.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the one place that needs it (a connection, a header).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new("postgres://app:hunter2@db/accounts");
        let shown = format!("{secret:?} {:?} {:#?}", Some(&secret), vec![secret.clone()]);
        assert!(!shown.contains("hunter2") && shown.contains("[redacted]"), "{shown}");
        assert_eq!(secret.expose(), "postgres://app:hunter2@db/accounts");
    }
}
