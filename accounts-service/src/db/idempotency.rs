//! Idempotency keys: claimed inside the database transaction that does the work.

use std::time::Duration;

use axum::http::StatusCode;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::error::{ApiError, ApiResult};

/// The longest key accepted, in characters.
pub const MAX_KEY_CHARS: usize = 255;

/// A validated `Idempotency-Key` header value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    /// Accepts 1 to 255 visible ASCII characters.
    pub fn parse(text: &str) -> ApiResult<Self> {
        if text.is_empty() || text.chars().count() > MAX_KEY_CHARS {
            return Err(ApiError::validation(
                "invalid_idempotency_key",
                format!("Idempotency-Key must be 1 to {MAX_KEY_CHARS} characters"),
            ));
        }
        if !text.chars().all(|c| c.is_ascii_graphic()) {
            return Err(ApiError::validation(
                "invalid_idempotency_key",
                "Idempotency-Key may hold only visible ASCII characters",
            ));
        }
        Ok(Self(text.to_owned()))
    }

    /// The key's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A fingerprint of what a request asks for (route and normalized fields), to tell a replay from misuse.
pub fn fingerprint(parts: &[&str]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().to_vec()
}

/// A response kept for replay.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub status: StatusCode,
    pub body: String,
}

/// What claiming a key found.
pub enum Claim {
    /// The key is new and now held by this database transaction.
    Fresh,
    /// The key was used before with the same request: here is its response.
    Replay(StoredResponse),
}

/// Claims `key` for this database transaction. A concurrent request holding the same key makes this wait
/// (at most `wait`) for it to commit or roll back.
pub async fn claim(
    conn: &mut PgConnection,
    key: &IdempotencyKey,
    request_hash: &[u8],
    wait: Duration,
) -> ApiResult<Claim> {
    sqlx::query(&format!("SET LOCAL lock_timeout = {}", wait.as_millis())).execute(&mut *conn).await?;
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (key, request_hash, status_code, response_body) VALUES ($1, $2, 0, '')
         ON CONFLICT (key) DO NOTHING",
    )
    .bind(key.as_str())
    .bind(request_hash)
    .execute(&mut *conn)
    .await
    .map_err(|error| match super::sqlstate(&error).as_deref() {
        Some("55P03") => ApiError::IdempotencyInFlight,
        _ => error.into(),
    })?
    .rows_affected();
    // Lock waits on accounts are bounded by the statement timeout instead.
    sqlx::query("SET LOCAL lock_timeout = 0").execute(&mut *conn).await?;
    if inserted == 1 {
        return Ok(Claim::Fresh);
    }
    let (stored_hash, status_code, body): (Vec<u8>, i16, String) =
        sqlx::query_as("SELECT request_hash, status_code, response_body FROM idempotency_keys WHERE key = $1")
            .bind(key.as_str())
            .fetch_one(&mut *conn)
            .await?;
    if stored_hash != request_hash {
        return Err(ApiError::IdempotencyKeyReused);
    }
    let status = u16::try_from(status_code)
        .ok()
        .and_then(|code| StatusCode::from_u16(code).ok())
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("stored status {status_code} for a committed key")))?;
    Ok(Claim::Replay(StoredResponse { status, body }))
}

/// Records the response of a claimed key; commits with the work.
pub async fn store(conn: &mut PgConnection, key: &IdempotencyKey, response: &StoredResponse) -> ApiResult<()> {
    sqlx::query("UPDATE idempotency_keys SET status_code = $2, response_body = $3 WHERE key = $1")
        .bind(key.as_str())
        .bind(response.status.as_u16() as i16)
        .bind(&response.body)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_of_255_characters_is_accepted_and_256_is_not() {
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(256)).is_err());
    }

    #[test]
    fn an_empty_or_invisible_key_is_rejected() {
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse("tab\t").is_err());
        assert!(IdempotencyKey::parse("payment-0f1e").is_ok());
    }

    #[test]
    fn fingerprints_do_not_collide_by_concatenation() {
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        assert_eq!(fingerprint(&["a", "b"]), fingerprint(&["a", "b"]));
    }
}
