//! The `advances` database: the mirror of each advance's state, its payments, and alerts.
//!
//! The worker's activities write it (one writer per advance: its workflow); the API reads it for lists, for
//! closed advances and while a workflow does not answer. Both use this one crate.
//!
//! - [`products`]: the products operators define;
//! - [`exposure`]: the caps every new advance is checked against, and the lender's book.

pub mod exposure;
pub mod products;

use advances_contract::events::{self as types, PaymentEvent};
use advances_contract::{AdvanceView, AlertView};
use advances_model::{Advance, AdvanceStatus, AdvanceTerms, Mirror, Payment, PaymentStatus};
use advances_model::{Alert, AlertKind, Happened};
use chrono::{DateTime, Utc};
use events::NewEvent;
use rust_decimal::Decimal;
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

pub use exposure::{Cap, CapExceeded, Caps};

/// The advances database's migrations.
pub static MIGRATOR: Migrator = sqlx::migrate!("../../migrations/advances");

/// Connects with a bounded pool and applies the migrations.
pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let pool = PgPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(std::time::Duration::from_secs(10))
        .connect(url)
        .await?;
    MIGRATOR.run(&pool).await?;
    Ok(pool)
}

/// An alert as listed to operators.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct AlertRow {
    pub id: i64,
    pub advance_id: Option<Uuid>,
    #[sqlx(try_from = "String")]
    pub kind: AlertKind,
    pub message: String,
    pub created_at: DateTime<Utc>,
}

/// A payment row as reconciliation reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PaymentRow {
    pub id: Uuid,
    pub number: i32,
    pub amount: Decimal,
    #[sqlx(try_from = "String")]
    pub status: PaymentStatus,
    pub transaction_id: Option<Uuid>,
}

/// An open advance as reconciliation reads it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OpenAdvance {
    #[sqlx(rename = "id")]
    pub advance_id: Uuid,
    pub account_id: Uuid,
    pub amount: Decimal,
    #[sqlx(try_from = "String")]
    pub status: AdvanceStatus,
    /// When the row was written (just before its workflow was started).
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// Whether reconciliation has already found the grant in the ledger (it is not looked up again).
    #[sqlx(default)]
    pub grant_checked: bool,
}

/// An open advance with what reconciliation checks of it: the sum the seed's formula adds up, and its
/// settled (paid and failed) payments, whose keys the ledger must agree with.
#[derive(Debug, Clone)]
pub struct AdvanceToCheck {
    pub open: OpenAdvance,
    /// paid + scheduled + processing.
    pub owed: Decimal,
    /// Paid and failed payments, by number.
    pub settled: Vec<PaymentRow>,
}

#[derive(sqlx::FromRow)]
struct OpenWithOwed {
    #[sqlx(flatten)]
    open: OpenAdvance,
    owed: Decimal,
}

#[derive(sqlx::FromRow)]
struct SettledPayment {
    advance_id: Uuid,
    #[sqlx(flatten)]
    payment: PaymentRow,
}

/// What a registration of a new advance found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// The advance is new.
    Created,
    /// An advance with this id already exists, with these terms.
    Exists(Box<AdvanceTerms>),
    /// It would exceed an exposure cap: nothing was written.
    Refused(CapExceeded),
}

/// The advances database, through a bounded pool.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Records a new advance before its workflow starts, so an id (and so a key) is used once, for good,
    /// even after Temporal has forgotten the workflow. Returns the existing terms if the id is taken, and a
    /// refusal, writing nothing, if the advance would exceed one of `caps` (checked atomically, see
    /// [`exposure`]).
    pub async fn register(&self, advance: &Advance, caps: &Caps) -> sqlx::Result<Registered> {
        let mut tx = self.pool.begin().await?;
        let terms = &advance.terms;
        if let Some(existing) = existing_terms(&mut tx, terms.advance_id).await? {
            return Ok(Registered::Exists(Box::new(existing)));
        }
        if let Err(exceeded) = caps.check(&mut tx, terms.account_id, terms.amount).await? {
            return Ok(Registered::Refused(exceeded));
        }
        let inserted = write_advance(&mut tx, advance, "ON CONFLICT (id) DO NOTHING").await?;
        if inserted == 0 {
            // Registered by a concurrent request with the same id since the first look.
            let existing = existing_terms(&mut tx, terms.advance_id).await?.ok_or(sqlx::Error::RowNotFound)?;
            return Ok(Registered::Exists(Box::new(existing)));
        }
        write_payments(&mut tx, advance.terms.advance_id, &advance.payments).await?;
        tx.commit().await?;
        Ok(Registered::Created)
    }

    /// Removes a registration whose workflow could not be started, so that a retry without a key does not
    /// leave an advance that nothing runs. A workflow that did start records itself again.
    pub async fn forget_unstarted(&self, advance_id: Uuid) -> sqlx::Result<()> {
        let mut tx = self.pool.begin().await?;
        let removed = sqlx::query("DELETE FROM advances WHERE id = $1 AND revision = 0 AND status = $2")
            .bind(advance_id)
            .bind(AdvanceStatus::Granting.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if removed == 1 {
            sqlx::query("DELETE FROM payments WHERE advance_id = $1").bind(advance_id).execute(&mut *tx).await?;
        }
        tx.commit().await
    }

    /// Mirrors a state of the workflow. Older revisions than the stored one are ignored (a retried activity
    /// may arrive late); the same revision rewrites the same state.
    pub async fn record(&self, advance: &Advance) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let before = stored_for_update(&mut tx, advance.terms.advance_id).await?;
        let on_conflict = "ON CONFLICT (id) DO UPDATE
                SET status = EXCLUDED.status, revision = EXCLUDED.revision, state = EXCLUDED.state, updated_at = now(),
                    outstanding = EXCLUDED.outstanding, paid = EXCLUDED.paid, defaulted = EXCLUDED.defaulted,
                    written_off = EXCLUDED.written_off
                WHERE advances.revision <= EXCLUDED.revision";
        let updated = write_advance(&mut tx, advance, on_conflict).await?;
        if updated == 0 {
            return Ok(false);
        }
        write_payments(&mut tx, advance.terms.advance_id, &advance.payments).await?;
        write_events(&mut tx, before.as_ref(), advance).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Mirrors what a workflow sends: its whole state, or a change applied to the stored state (under a row
    /// lock, so two writers of one advance never interleave). A change older than the stored revision is a
    /// late retry and is ignored; one that does not follow the stored revision is an error (and the activity
    /// retries), never a guess. Returns whether anything was written.
    pub async fn mirror(&self, mirror: &Mirror) -> anyhow::Result<bool> {
        let change = match mirror {
            Mirror::Whole { advance } => return Ok(self.record(advance).await?),
            Mirror::Change { change } => change,
        };
        let mut tx = self.pool.begin().await?;
        let Some(before) = stored_for_update(&mut tx, change.advance_id).await? else {
            anyhow::bail!("advance {} has no mirror to apply revision {} to", change.advance_id, change.revision);
        };
        if before.revision >= change.revision {
            return Ok(false);
        }
        let mut advance = before.clone();
        advance.apply(change.clone())?;
        let on_conflict = "ON CONFLICT (id) DO UPDATE
                SET status = EXCLUDED.status, revision = EXCLUDED.revision, state = EXCLUDED.state, updated_at = now(),
                    outstanding = EXCLUDED.outstanding, paid = EXCLUDED.paid, defaulted = EXCLUDED.defaulted,
                    written_off = EXCLUDED.written_off";
        write_advance(&mut tx, &advance, on_conflict).await?;
        write_payments(&mut tx, change.advance_id, &change.payments).await?;
        write_events(&mut tx, Some(&before), &advance).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// The terms of the advance with this id, if one is registered.
    pub async fn terms(&self, advance_id: Uuid) -> sqlx::Result<Option<AdvanceTerms>> {
        existing_terms(&mut *self.pool.acquire().await?, advance_id).await
    }

    /// One advance's mirrored state.
    pub async fn get(&self, advance_id: Uuid) -> sqlx::Result<Option<Advance>> {
        let row: Option<(Json<Advance>,)> = sqlx::query_as("SELECT state FROM advances WHERE id = $1")
            .bind(advance_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|(Json(advance),)| advance))
    }

    /// Advances newest first, optionally of one account and/or in one status.
    pub async fn list(
        &self,
        account_id: Option<Uuid>,
        status: Option<AdvanceStatus>,
        limit: i64,
    ) -> sqlx::Result<Vec<Advance>> {
        let rows: Vec<(Json<Advance>,)> = sqlx::query_as(
            "SELECT state FROM advances
             WHERE ($1::uuid IS NULL OR account_id = $1) AND ($2::text IS NULL OR status = $2)
             ORDER BY created_at DESC, id DESC LIMIT $3",
        )
        .bind(account_id)
        .bind(status.map(AdvanceStatus::as_str))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(Json(advance),)| advance).collect())
    }

    /// Up to `limit` open advances (granting or active) with ids from `first` on, by id.
    pub async fn open_advances(&self, first: Uuid, limit: i64) -> sqlx::Result<Vec<OpenAdvance>> {
        // The literal statuses let the planner use the partial index of open advances.
        sqlx::query_as(
            "SELECT id, account_id, amount, status, created_at FROM advances
             WHERE status IN ('granting', 'active') AND id >= $1 ORDER BY id LIMIT $2",
        )
        .bind(first)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Up to `limit` open advances with ids in `[first, last]`, by id, with what reconciliation checks of each:
    /// two indexed queries per page, however many payments the advances have.
    pub async fn open_page(&self, first: Uuid, last: Uuid, limit: i64) -> sqlx::Result<Vec<AdvanceToCheck>> {
        let owed: Vec<&str> = [PaymentStatus::Scheduled, PaymentStatus::Processing, PaymentStatus::Paid]
            .iter()
            .map(|status| status.as_str())
            .collect();
        let advances: Vec<OpenWithOwed> = sqlx::query_as(
            "SELECT a.id, a.account_id, a.amount, a.status, a.created_at, a.grant_checked_at IS NOT NULL AS grant_checked,
                    (SELECT coalesce(sum(p.amount), 0) FROM payments p
                      WHERE p.advance_id = a.id AND p.status = ANY($4)) AS owed
             FROM advances a
             WHERE a.status IN ('granting', 'active') AND a.id >= $1 AND a.id <= $2
             ORDER BY a.id LIMIT $3",
        )
        .bind(first)
        .bind(last)
        .bind(limit)
        .bind(owed)
        .fetch_all(&self.pool)
        .await?;
        let ids: Vec<Uuid> = advances.iter().map(|row| row.open.advance_id).collect();
        let settled: Vec<SettledPayment> = sqlx::query_as(
            "SELECT advance_id, id, number, amount, status, transaction_id FROM payments
             WHERE advance_id = ANY($1) AND status IN ('paid', 'failed') AND ledger_checked_at IS NULL
             ORDER BY advance_id, number",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let mut by_advance: std::collections::HashMap<Uuid, Vec<PaymentRow>> = std::collections::HashMap::new();
        for row in settled {
            by_advance.entry(row.advance_id).or_default().push(row.payment);
        }
        Ok(advances
            .into_iter()
            .map(|row| AdvanceToCheck {
                settled: by_advance.remove(&row.open.advance_id).unwrap_or_default(),
                owed: row.owed,
                open: row.open,
            })
            .collect())
    }

    /// Written-off advances that still have a payment scheduled (a write-off leaves nothing to collect), with
    /// the first such payment's number: up to `limit`, by id. Reads the written-off advances, not the others.
    pub async fn written_off_with_scheduled(&self, limit: i64) -> sqlx::Result<Vec<(Uuid, i32)>> {
        sqlx::query_as(
            "SELECT p.advance_id, min(p.number) FROM advances a JOIN payments p ON p.advance_id = a.id
             WHERE a.status = 'written_off' AND p.status = 'scheduled'
             GROUP BY p.advance_id ORDER BY p.advance_id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }

    /// Remembers that the ledger agreed with these payments (as they were read: a payment changed since is
    /// left to check again) and with these advances' grants.
    pub async fn mark_checked(&self, payments: &[PaymentRow], grants: &[Uuid]) -> sqlx::Result<()> {
        if !payments.is_empty() {
            let ids: Vec<Uuid> = payments.iter().map(|p| p.id).collect();
            let amounts: Vec<Decimal> = payments.iter().map(|p| p.amount).collect();
            let statuses: Vec<&str> = payments.iter().map(|p| p.status.as_str()).collect();
            let transactions: Vec<Option<Uuid>> = payments.iter().map(|p| p.transaction_id).collect();
            sqlx::query(
                "UPDATE payments p SET ledger_checked_at = now()
                 FROM unnest($1::uuid[], $2::numeric[], $3::text[], $4::uuid[]) AS c (id, amount, status, transaction_id)
                 WHERE p.id = c.id AND p.amount = c.amount AND p.status = c.status
                   AND p.transaction_id IS NOT DISTINCT FROM c.transaction_id",
            )
            .bind(&ids)
            .bind(&amounts)
            .bind(&statuses)
            .bind(&transactions)
            .execute(&self.pool)
            .await?;
        }
        if !grants.is_empty() {
            sqlx::query("UPDATE advances SET grant_checked_at = now() WHERE id = ANY($1) AND grant_checked_at IS NULL")
                .bind(grants)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// The payment rows of one advance, by number.
    pub async fn payments(&self, advance_id: Uuid) -> sqlx::Result<Vec<PaymentRow>> {
        sqlx::query_as(
            "SELECT id, number, amount, status, transaction_id FROM payments WHERE advance_id = $1 ORDER BY number",
        )
        .bind(advance_id)
        .fetch_all(&self.pool)
        .await
    }

    /// Stores an alert unless the same one (advance, kind and message) is already stored: a mismatch that
    /// persists is one alert, not one per reconciliation run. Returns whether it is new.
    /// A new alert is also an `alert.raised` event, written in the same transaction.
    pub async fn insert_alert(&self, alert: &Alert) -> sqlx::Result<bool> {
        let mut tx = self.pool.begin().await?;
        let inserted: Option<AlertRow> = sqlx::query_as(
            "INSERT INTO alerts (advance_id, kind, message)
             SELECT $1, $2, $3
             WHERE NOT EXISTS (
                 SELECT 1 FROM alerts WHERE advance_id IS NOT DISTINCT FROM $1 AND kind = $2 AND message = $3)
             RETURNING id, advance_id, kind, message, created_at",
        )
        .bind(alert.advance_id)
        .bind(alert.kind.as_str())
        .bind(&alert.message)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = inserted else { return Ok(false) };
        let view = AlertView {
            alert_id: row.id,
            advance_id: row.advance_id,
            kind: row.kind,
            message: row.message,
            created_at: row.created_at,
        };
        events::outbox::write(&mut tx, &[event_of(types::ALERT_RAISED, &view)?]).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Alerts newest first.
    pub async fn alerts(&self, limit: i64) -> sqlx::Result<Vec<AlertRow>> {
        sqlx::query_as(
            "SELECT id, advance_id, kind, message, created_at FROM alerts ORDER BY created_at DESC, id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
    }
}

/// The stored state of an advance, locked until the transaction ends (its one writer at a time).
async fn stored_for_update(tx: &mut sqlx::PgConnection, advance_id: Uuid) -> sqlx::Result<Option<Advance>> {
    let row: Option<(Json<Advance>,)> = sqlx::query_as("SELECT state FROM advances WHERE id = $1 FOR UPDATE")
        .bind(advance_id)
        .fetch_optional(&mut *tx)
        .await?;
    Ok(row.map(|(Json(advance),)| advance))
}

/// The events of what happened between the stored state and the new one, in the transaction that stores it.
async fn write_events(tx: &mut sqlx::PgConnection, before: Option<&Advance>, after: &Advance) -> sqlx::Result<()> {
    let mut news = Vec::new();
    for happened in advances_model::happened(before, after) {
        let kind = types::type_of(happened);
        let event = match happened {
            Happened::PaymentPaid(number) | Happened::PaymentFailed(number) => {
                let payment = PaymentEvent::of(after, number).ok_or_else(|| {
                    sqlx::Error::Protocol(format!("payment {number} of {} is not in its state", after.terms.advance_id))
                })?;
                event_of(kind, &payment)?
            }
            _ => event_of(kind, &AdvanceView::from(after))?,
        };
        news.push(event);
    }
    events::outbox::write(tx, &news).await
}

fn event_of<T: serde::Serialize>(kind: &'static str, object: &T) -> sqlx::Result<NewEvent> {
    NewEvent::of(kind, object).map_err(|error| sqlx::Error::Encode(error.into()))
}

async fn existing_terms(tx: &mut sqlx::PgConnection, advance_id: Uuid) -> sqlx::Result<Option<AdvanceTerms>> {
    let row: Option<(Json<Advance>,)> =
        sqlx::query_as("SELECT state FROM advances WHERE id = $1").bind(advance_id).fetch_optional(&mut *tx).await?;
    Ok(row.map(|(Json(advance),)| advance.terms))
}

/// Inserts an advance's row; `on_conflict` says what an existing row with its id becomes. Returns the rows
/// written (0 when the conflict clause left the existing row alone).
async fn write_advance(tx: &mut sqlx::PgConnection, advance: &Advance, on_conflict: &str) -> sqlx::Result<u64> {
    let sql = format!(
        "INSERT INTO advances (id, account_id, amount, status, revision, state, product, outstanding, paid, defaulted,
                               written_off)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) {on_conflict}"
    );
    let exposure = advance.exposure();
    let result = sqlx::query(&sql)
        .bind(advance.terms.advance_id)
        .bind(advance.terms.account_id)
        .bind(advance.terms.amount)
        .bind(advance.status.as_str())
        .bind(advance.revision as i64)
        .bind(Json(advance))
        .bind(advance.terms.product.as_deref())
        .bind(exposure.outstanding)
        .bind(exposure.paid)
        .bind(exposure.defaulted)
        .bind(exposure.written_off)
        .execute(&mut *tx)
        .await?;
    Ok(result.rows_affected())
}

/// Writes `payments` of one advance in one statement (new ones inserted, known ones updated).
async fn write_payments(tx: &mut sqlx::PgConnection, advance_id: Uuid, payments: &[Payment]) -> sqlx::Result<()> {
    if payments.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = payments.iter().map(|p| p.payment_id).collect();
    let numbers: Vec<i32> = payments.iter().map(|p| p.number as i32).collect();
    let amounts: Vec<Decimal> = payments.iter().map(|p| p.amount).collect();
    let due: Vec<Option<DateTime<Utc>>> = payments.iter().map(|p| p.due_at).collect();
    let statuses: Vec<&str> = payments.iter().map(|p| p.status.as_str()).collect();
    let transactions: Vec<Option<Uuid>> = payments.iter().map(|p| p.transaction_id).collect();
    let reasons: Vec<Option<String>> = payments.iter().map(|p| p.failure_reason.clone()).collect();
    let moved: Vec<Option<i32>> = payments.iter().map(|p| p.moved_to.map(|number| number as i32)).collect();
    let kinds: Vec<&str> = payments.iter().map(|p| p.kind.as_str()).collect();
    sqlx::query(
        "INSERT INTO payments (id, advance_id, number, amount, due_at, status, transaction_id, failure_reason, moved_to,
                               kind)
         SELECT id, $2, number, amount, due_at, status, transaction_id, failure_reason, moved_to, kind
         FROM unnest($1::uuid[], $3::int[], $4::numeric[], $5::timestamptz[], $6::text[], $7::uuid[], $8::text[],
                     $9::int[], $10::text[])
              AS p (id, number, amount, due_at, status, transaction_id, failure_reason, moved_to, kind)
         ON CONFLICT (id) DO UPDATE SET amount = EXCLUDED.amount, due_at = EXCLUDED.due_at,
            status = EXCLUDED.status, transaction_id = EXCLUDED.transaction_id,
            failure_reason = EXCLUDED.failure_reason, moved_to = EXCLUDED.moved_to",
    )
    .bind(ids)
    .bind(advance_id)
    .bind(numbers)
    .bind(amounts)
    .bind(due)
    .bind(statuses)
    .bind(transactions)
    .bind(reasons)
    .bind(moved)
    .bind(kinds)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
