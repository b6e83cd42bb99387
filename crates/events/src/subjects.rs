//! Events that store a reference instead of their data.
//!
//! An event's `data` is its object as the API shows it at the change. When the object never changes after it is
//! written (a ledger's transaction row), storing that view again in the event row only doubles what the change
//! writes: the event keeps the object's id and the time it was written (its partition), and the service renders
//! `data` from the row when the feed or a webhook delivery needs it: the same bytes, since the row is the same.
//! Objects that change later (a hold, an advance) keep their data in the event.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// The object an event is about: its id and when it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subject {
    pub id: Uuid,
    pub at: DateTime<Utc>,
}

/// A future that renders subjects, as [`Subjects::render`] returns it.
pub type Rendering<'a> = Pin<Box<dyn Future<Output = sqlx::Result<Vec<(Uuid, String)>>> + Send + 'a>>;

/// A service's renderer of the objects its events refer to.
pub trait Subjects: Send + Sync {
    /// The `data` of each subject found (its id and its JSON), in one read; a subject not found is left out.
    fn render<'a>(&'a self, pool: &'a PgPool, subjects: &'a [Subject]) -> Rendering<'a>;
}

/// The renderer of a service whose events all carry their data: it finds nothing.
pub struct Inline;

impl Subjects for Inline {
    fn render<'a>(&'a self, _pool: &'a PgPool, _subjects: &'a [Subject]) -> Rendering<'a> {
        Box::pin(async { Ok(Vec::new()) })
    }
}

/// Shared by the feed's routes and the webhook worker.
pub type SharedSubjects = Arc<dyn Subjects>;

/// The data of every one of `subjects`, by id; an error names the first one that was not found (its row left
/// PostgreSQL while its event was kept, which the services' settings rule out).
pub(crate) async fn render_all(
    renderer: &dyn Subjects,
    pool: &PgPool,
    subjects: &[Subject],
) -> sqlx::Result<HashMap<Uuid, String>> {
    if subjects.is_empty() {
        return Ok(HashMap::new());
    }
    let rendered: HashMap<Uuid, String> = renderer.render(pool, subjects).await?.into_iter().collect();
    if let Some(missing) = subjects.iter().find(|s| !rendered.contains_key(&s.id)) {
        return Err(sqlx::Error::Protocol(format!(
            "the object {} of an event (written {}) is not in the database: its data cannot be shown",
            missing.id, missing.at
        )));
    }
    Ok(rendered)
}
