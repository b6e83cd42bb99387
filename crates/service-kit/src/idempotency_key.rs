//! The `Idempotency-Key` header both services accept: 1 to 255 visible ASCII characters.

use crate::error::ApiError;

/// The longest key accepted, in characters.
pub const MAX_KEY_CHARS: usize = 255;

/// A validated `Idempotency-Key` header value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IdempotencyKey(String);

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidKey {
    #[error("Idempotency-Key must be 1 to {MAX_KEY_CHARS} characters")]
    Length,
    #[error("Idempotency-Key may hold only visible ASCII characters")]
    Characters,
}

impl IdempotencyKey {
    /// Accepts 1 to 255 visible ASCII characters.
    pub fn parse(text: &str) -> Result<Self, InvalidKey> {
        if text.is_empty() || text.chars().count() > MAX_KEY_CHARS {
            return Err(InvalidKey::Length);
        }
        if !text.chars().all(|c| c.is_ascii_graphic()) {
            return Err(InvalidKey::Characters);
        }
        Ok(Self(text.to_owned()))
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<InvalidKey> for ApiError {
    fn from(error: InvalidKey) -> Self {
        ApiError::validation("invalid_idempotency_key", error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_of_255_characters_is_accepted_and_256_is_not() {
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert_eq!(IdempotencyKey::parse(&"k".repeat(256)), Err(InvalidKey::Length));
    }

    #[test]
    fn an_empty_or_invisible_key_is_rejected() {
        assert_eq!(IdempotencyKey::parse(""), Err(InvalidKey::Length));
        assert_eq!(IdempotencyKey::parse("has space"), Err(InvalidKey::Characters));
        assert_eq!(IdempotencyKey::parse("tab\t"), Err(InvalidKey::Characters));
        assert_eq!(IdempotencyKey::parse("payment-0f1e").map(|key| key.as_str().to_owned()), Ok("payment-0f1e".into()));
    }
}
