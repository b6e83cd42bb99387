//! Idempotency keys: claimed inside the database transaction that does the work.

use std::time::Duration;

use service_kit::IdempotencyKey;
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use super::{DbError, DbResult};

/// A fingerprint of what a request asks for (route and normalized fields), to tell a replay from misuse.
pub fn fingerprint(parts: &[&str]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part.as_bytes());
    }
    hasher.finalize().to_vec()
}

/// A response kept for replay: the status and body the caller answered with, stored as they are.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub status_code: u16,
    pub body: String,
}

impl StoredResponse {
    /// The response stored with a committed key; any status but an HTTP one means the row is not what the
    /// service wrote.
    pub fn committed(status_code: i16, body: String) -> DbResult<Self> {
        let status = u16::try_from(status_code).ok().filter(|code| (100..600).contains(code));
        let status_code =
            status.ok_or_else(|| DbError::Inconsistent(format!("stored status {status_code} for a committed key")))?;
        Ok(Self { status_code, body })
    }
}

/// What claiming a key found.
pub enum Claim {
    /// The key is new and now held by this database transaction.
    Fresh,
    /// The key was used before with the same request: here is its response.
    Replay(StoredResponse),
}

/// Claims `client`'s `key` for this database transaction. A concurrent request of the same client holding the
/// same key makes this wait (at most `wait`) for it to commit or roll back. Keys of other clients never meet.
pub async fn claim(
    conn: &mut PgConnection,
    client: &str,
    key: &IdempotencyKey,
    request_hash: &[u8],
    wait: Duration,
) -> DbResult<Claim> {
    sqlx::query(&format!("SET LOCAL lock_timeout = {}", wait.as_millis())).execute(&mut *conn).await?;
    // The key's advisory lock first, as a batch takes it (without waiting): whoever holds it works on the key.
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || ' ' || $2, 0))")
        .bind(client)
        .bind(key.as_str())
        .execute(&mut *conn)
        .await
        .map_err(|error| match super::sqlstate(&error).as_deref() {
            Some("55P03") => DbError::KeyInFlight,
            _ => error.into(),
        })?;
    let inserted = sqlx::query(
        "INSERT INTO idempotency_keys (client, key, request_hash, status_code, response_body)
         VALUES ($1, $2, $3, 0, '')
         ON CONFLICT (client, key) DO NOTHING",
    )
    .bind(client)
    .bind(key.as_str())
    .bind(request_hash)
    .execute(&mut *conn)
    .await
    .map_err(|error| match super::sqlstate(&error).as_deref() {
        Some("55P03") => DbError::KeyInFlight,
        _ => error.into(),
    })?
    .rows_affected();
    // Lock waits on accounts are bounded by the statement timeout instead.
    sqlx::query("SET LOCAL lock_timeout = 0").execute(&mut *conn).await?;
    if inserted == 1 {
        return Ok(Claim::Fresh);
    }
    #[derive(sqlx::FromRow)]
    struct Stored {
        request_hash: Vec<u8>,
        status_code: i16,
        response_body: String,
    }
    let stored: Stored = sqlx::query_as(
        "SELECT request_hash, status_code, response_body FROM idempotency_keys WHERE client = $1 AND key = $2",
    )
    .bind(client)
    .bind(key.as_str())
    .fetch_one(&mut *conn)
    .await?;
    if stored.request_hash != request_hash {
        return Err(DbError::KeyReused);
    }
    Ok(Claim::Replay(StoredResponse::committed(stored.status_code, stored.response_body)?))
}

/// Records the response of a claimed key; commits with the work.
pub async fn store(
    conn: &mut PgConnection,
    client: &str,
    key: &IdempotencyKey,
    response: &StoredResponse,
) -> DbResult<()> {
    sqlx::query("UPDATE idempotency_keys SET status_code = $3, response_body = $4 WHERE client = $1 AND key = $2")
        .bind(client)
        .bind(key.as_str())
        .bind(response.status_code as i16)
        .bind(&response.body)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_do_not_collide_by_concatenation() {
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
        assert_eq!(fingerprint(&["a", "b"]), fingerprint(&["a", "b"]));
    }
}
