//! The outbox: events written by the database transaction of the change they describe, so that neither exists
//! without the other. A group commit writes its whole group's events in one statement.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::subjects::Subject;

/// An event about to be written: its type and the object's view as the API shows it, or a reference to it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: Uuid,
    pub kind: &'static str,
    pub body: Body,
}

/// What an event row stores of its object.
#[derive(Debug, Clone)]
pub enum Body {
    /// The JSON of the object (`data`), for objects that change after the event.
    Data(String),
    /// The object's id and time, for an object that never changes: `data` is rendered from its row when read
    /// ([`crate::subjects`]). The ledger's transaction events are written so by the statement that inserts their
    /// rows (`accounts-service`, `db::movements::write_rows`), not through [`write`].
    Subject(Subject),
}

impl NewEvent {
    /// An event of `kind` carrying `object` as the API serializes it.
    pub fn of<T: Serialize>(kind: &'static str, object: &T) -> serde_json::Result<Self> {
        Ok(Self { id: Uuid::now_v7(), kind, body: Body::Data(serde_json::to_string(object)?) })
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
    let mut data: Vec<Option<&str>> = Vec::with_capacity(events.len());
    let mut subjects: Vec<Option<Uuid>> = Vec::with_capacity(events.len());
    let mut times: Vec<Option<DateTime<Utc>>> = Vec::with_capacity(events.len());
    for event in events {
        let (text, subject) = match &event.body {
            Body::Data(text) => (Some(text.as_str()), None),
            Body::Subject(subject) => (None, Some(subject)),
        };
        data.push(text);
        subjects.push(subject.map(|s| s.id));
        times.push(subject.map(|s| s.at));
    }
    sqlx::query(
        "INSERT INTO events (id, type, data, subject, subject_at)
         SELECT id, type, data::json, subject, subject_at
         FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::timestamptz[])
              WITH ORDINALITY AS e (id, type, data, subject, subject_at, i)
         ORDER BY i",
    )
    .bind(&ids)
    .bind(&kinds)
    .bind(&data)
    .bind(&subjects)
    .bind(&times)
    .execute(conn)
    .await?;
    Ok(())
}
