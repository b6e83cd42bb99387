//! The outbox: events written by the database transaction of the change they describe, so that neither exists
//! without the other. A group commit writes its whole group's events in one statement.

use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

/// An event about to be written: its type and the object's view as the API shows it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: Uuid,
    pub kind: &'static str,
    /// The JSON of the object (`data`).
    pub data: String,
}

impl NewEvent {
    /// An event of `kind` carrying `object` as the API serializes it.
    pub fn of<T: Serialize>(kind: &'static str, object: &T) -> serde_json::Result<Self> {
        Ok(Self { id: Uuid::now_v7(), kind, data: serde_json::to_string(object)? })
    }
}

/// Writes `events`, in the order given, in the caller's transaction (the change's own). Each is stamped with
/// the transaction's id (`pg_current_xact_id()`, which gives the writer one if it has none yet) and the next
/// number of the events' sequence: its position.
pub async fn write(conn: &mut PgConnection, events: &[NewEvent]) -> sqlx::Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    let kinds: Vec<&str> = events.iter().map(|e| e.kind).collect();
    let data: Vec<&str> = events.iter().map(|e| e.data.as_str()).collect();
    sqlx::query(
        "INSERT INTO events (id, type, data)
         SELECT id, type, data::json FROM unnest($1::uuid[], $2::text[], $3::text[]) WITH ORDINALITY AS e (id, type, data, i)
         ORDER BY i",
    )
    .bind(&ids)
    .bind(&kinds)
    .bind(&data)
    .execute(conn)
    .await?;
    Ok(())
}
