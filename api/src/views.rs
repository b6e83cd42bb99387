//! The JSON shapes of the advances API.

use advances_model::AlertKind;
use advances_model::{Advance, Payment, PaymentStatus};
use advances_store::AlertRow;
use chrono::{DateTime, Utc};
use money::schema::{money as money_schema, money_input as money_input_schema};
use money::AmountInput;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// A request for an advance.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAdvanceRequest {
    pub account_id: Uuid,
    #[schema(schema_with = money_input_schema)]
    pub amount: AmountInput,
    /// Optional: the client's own id for the advance. The same id never starts a second advance.
    pub advance_id: Option<Uuid>,
}

/// An operator's command; the note is kept in the advance's status reason (cancel) or its pause reason (pause).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// Why (at most 500 characters).
    pub reason: Option<String>,
}

/// One payment of an advance.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentView {
    pub payment_id: Uuid,
    /// 1 to 12 for the regular payments; above for extra payments that carry failed amounts.
    pub number: u32,
    #[serde(with = "money::decimal")]
    #[schema(schema_with = money_schema)]
    pub amount: Decimal,
    /// When it is collected; null until the grant is made.
    #[serde(with = "money::timestamp::option")]
    #[schema(value_type = Option<String>, example = "2023-07-18 12:01:27.053")]
    pub due_at: Option<DateTime<Utc>>,
    /// `scheduled`, `processing`, `paid`, `failed`, `superseded` (merged by a pay-off) or `cancelled`.
    #[schema(value_type = String, example = "scheduled")]
    pub status: PaymentStatus,
    /// The ledger transaction that collected it (`paid`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<Uuid>,
    /// Why it failed (`failed`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The payment its amount went to (`failed`, `superseded`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<u32>,
}

/// An advance and its schedule.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdvanceView {
    pub advance_id: Uuid,
    pub account_id: Uuid,
    #[serde(with = "money::decimal")]
    #[schema(schema_with = money_schema)]
    pub amount: Decimal,
    /// `granting`, `active`, `completed`, `failed` (grant refused), `defaulted` or `cancelled`; or
    /// `workflow_not_running` when the advance is open but its workflow is not running (terminated, timed out,
    /// missing): nothing collects it until an operator acts, and `status_reason` says what Temporal says.
    #[schema(
        value_type = String,
        example = "active",
        pattern = "^(granting|active|completed|failed|defaulted|cancelled|workflow_not_running)$"
    )]
    pub status: &'static str,
    /// Why it failed, defaulted or was cancelled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_reason: Option<String>,
    #[serde(with = "money::timestamp::option")]
    #[schema(value_type = Option<String>, example = "2023-07-11 12:01:27.053")]
    pub granted_at: Option<DateTime<Utc>>,
    pub grant_transaction_id: Option<Uuid>,
    #[serde(with = "money::decimal")]
    #[schema(schema_with = money_schema)]
    pub paid_amount: Decimal,
    /// Scheduled and processing payments: what is still to be collected.
    #[serde(with = "money::decimal")]
    #[schema(schema_with = money_schema)]
    pub outstanding_amount: Decimal,
    /// Time between payments, in milliseconds, fixed when the advance started.
    pub payment_interval_ms: u64,
    /// Set while an operator has paused collection: since when, and why.
    #[serde(with = "money::timestamp::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "2023-07-12 09:30:00.000")]
    pub paused_since: Option<DateTime<Utc>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<String>,
    pub payments: Vec<PaymentView>,
}

/// The `status` of an open advance whose workflow is not running.
pub const WORKFLOW_NOT_RUNNING: &str = "workflow_not_running";

impl AdvanceView {
    /// The view of an open advance whose workflow is not running; `temporal_says` is its execution status.
    pub fn not_running(advance: &Advance, temporal_says: &str) -> Self {
        let mut view = Self::from(advance);
        view.status = WORKFLOW_NOT_RUNNING;
        view.status_reason = Some(format!(
            "the database says {}, but the advance's workflow is not running (Temporal says {temporal_says}): \
             nothing collects it until an operator acts",
            advance.status.as_str()
        ));
        view
    }
}

impl From<&Payment> for PaymentView {
    fn from(payment: &Payment) -> Self {
        Self {
            payment_id: payment.payment_id,
            number: payment.number,
            amount: payment.amount,
            due_at: payment.due_at,
            status: payment.status,
            transaction_id: payment.transaction_id,
            failure_reason: payment.failure_reason.clone(),
            moved_to: payment.moved_to,
        }
    }
}

impl From<&Advance> for AdvanceView {
    fn from(advance: &Advance) -> Self {
        Self {
            advance_id: advance.terms.advance_id,
            account_id: advance.terms.account_id,
            amount: advance.terms.amount,
            status: advance.status.as_str(),
            status_reason: advance.status_reason.clone(),
            granted_at: advance.granted_at,
            grant_transaction_id: advance.grant_transaction_id,
            paid_amount: advance.paid_amount(),
            outstanding_amount: advance.outstanding_amount(),
            payment_interval_ms: advance.terms.interval_ms,
            paused_since: advance.paused.as_ref().map(|pause| pause.since),
            pause_reason: advance.paused.as_ref().map(|pause| pause.reason.clone()),
            payments: advance.payments.iter().map(PaymentView::from).collect(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AdvanceList {
    pub advances: Vec<AdvanceView>,
}

/// An alert raised for operators.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertView {
    pub alert_id: i64,
    pub advance_id: Option<Uuid>,
    /// `defaulted`, `formula_mismatch`, `ledger_mismatch`, `ledger_refused` or `workflow_not_running`.
    #[schema(value_type = String, example = "formula_mismatch")]
    pub kind: AlertKind,
    pub message: String,
    #[serde(with = "money::timestamp")]
    #[schema(value_type = String, example = "2023-07-11 12:01:27.053")]
    pub created_at: DateTime<Utc>,
}

impl From<AlertRow> for AlertView {
    fn from(row: AlertRow) -> Self {
        Self {
            alert_id: row.id,
            advance_id: row.advance_id,
            kind: row.kind,
            message: row.message,
            created_at: row.created_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertList {
    pub alerts: Vec<AlertView>,
}
