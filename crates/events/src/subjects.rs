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
use serde_json::value::RawValue;
use sqlx::PgPool;
use uuid::Uuid;

use crate::outbox::Body;

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

/// What an event row stores of its object (`data`, `subject`, `subject_at`): its data, or the object it refers to.
pub(crate) fn stored(data: Option<String>, subject: Option<Uuid>, at: Option<DateTime<Utc>>) -> sqlx::Result<Body> {
    match (data, subject, at) {
        (Some(data), None, None) => Ok(Body::Data(data)),
        (None, Some(id), Some(at)) => Ok(Body::Subject(Subject { id, at })),
        _ => Err(sqlx::Error::Protocol("an event row has neither data nor a subject (events_body)".into())),
    }
}

/// The data of each body, in order: stored, or rendered by `renderer` (all the subjects in one read). A subject
/// not found is an error that names it: its row left PostgreSQL while its event was kept, which the services'
/// settings rule out.
pub(crate) async fn data_of(
    renderer: &dyn Subjects,
    pool: &PgPool,
    bodies: Vec<Body>,
) -> sqlx::Result<Vec<Box<RawValue>>> {
    let wanted: Vec<Subject> = bodies
        .iter()
        .filter_map(|body| match body {
            Body::Subject(subject) => Some(*subject),
            Body::Data(_) => None,
        })
        .collect();
    let rendered: HashMap<Uuid, String> =
        if wanted.is_empty() { HashMap::new() } else { renderer.render(pool, &wanted).await?.into_iter().collect() };
    bodies
        .into_iter()
        .map(|body| {
            let text = match body {
                Body::Data(data) => data,
                Body::Subject(subject) => rendered.get(&subject.id).cloned().ok_or_else(|| {
                    sqlx::Error::Protocol(format!(
                        "the object {} of an event (written {}) is not in the database: its data cannot be shown",
                        subject.id, subject.at
                    ))
                })?,
            };
            RawValue::from_string(text).map_err(|error| sqlx::Error::Decode(error.into()))
        })
        .collect()
}
