//! The advances API's requests and responses, as the API serializes them and its clients read them.

use advances_model::{AdvanceStatus, AlertKind, PaymentKind, PaymentStatus};
use chrono::{DateTime, Utc};
use money::schema::{money as money_schema, money_input as money_input_schema};
use money::AmountInput;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// A request for an advance.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAdvanceRequest {
    pub account_id: Uuid,
    #[schema(schema_with = money_input_schema)]
    pub amount: AmountInput,
    /// Optional: the client's own id for the advance. The same id never starts a second advance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advance_id: Option<Uuid>,
    /// Optional: the product whose terms the advance gets (default: the API's `DEFAULT_PRODUCT`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "standard", min_length = 1, max_length = 64)]
    pub product: Option<String>,
    /// Optional: when the first payment falls due (RFC 3339), at least `FIRST_DUE_MIN_LEAD` (1 day) and at most
    /// two of the product's intervals ahead; the others follow at the interval. Default: one interval after the
    /// grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime, example = "2026-12-20T09:00:00Z")]
    pub first_due_at: Option<DateTime<Utc>>,
}

/// An operator's command; the note is kept in the advance's status reason (cancel) or its pause reason (pause).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandRequest {
    /// Why (at most 500 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A reschedule, for a customer in hardship: what is scheduled, re-spread over new equal payments.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RescheduleRequest {
    /// How many new payments (1 to 520), at the product's interval, the remainder on the last.
    #[schema(minimum = 1, maximum = 520)]
    pub payments: u32,
    /// When the first new payment falls due (RFC 3339): at least `FIRST_DUE_MIN_LEAD` and at most 365 days ahead.
    /// Default: one interval from now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime, example = "2027-01-04T09:00:00Z")]
    pub first_due_at: Option<DateTime<Utc>>,
    /// Why (at most 500 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A prepayment: an amount collected now, in one debit.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PrepayRequest {
    /// At most what is scheduled.
    #[schema(schema_with = money_input_schema)]
    pub amount: AmountInput,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A write-off: collection stops and what is scheduled is recorded as lost.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteOffRequest {
    /// Why (required, 1 to 500 characters): it stays in the advance's `status_reason`.
    #[schema(min_length = 1, max_length = 500)]
    pub reason: String,
}

/// What `pay_off` would collect at a time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct PayoffQuote {
    pub advance_id: Uuid,
    #[serde(with = "money::timestamp")]
    #[schema(value_type = String, example = "2026-12-20 09:00:00.000")]
    pub at: DateTime<Utc>,
    /// The scheduled payments due after `at` (all of them while the advance is paused), assuming those due
    /// before are collected when due.
    #[serde(with = "money::decimal")]
    #[schema(schema_with = money_schema)]
    pub amount: Decimal,
}

/// The quote's parameter.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct QuoteQuery {
    /// When (RFC 3339; default now): not in the past, at most 365 days ahead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub at: Option<DateTime<Utc>>,
}

/// Where an advance stands, as the API shows it: the model's status, or `workflow_not_running` when the
/// database says it is open but its workflow does not run. On the wire, the status's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdvanceState {
    Status(AdvanceStatus),
    WorkflowNotRunning,
}

impl AdvanceState {
    pub const ACTIVE: Self = Self::Status(AdvanceStatus::Active);
    pub const COMPLETED: Self = Self::Status(AdvanceStatus::Completed);
    pub const CANCELLED: Self = Self::Status(AdvanceStatus::Cancelled);
    pub const GRANTING: Self = Self::Status(AdvanceStatus::Granting);
    const NOT_RUNNING: &'static str = "workflow_not_running";

    /// The model's status, unless the workflow is not running.
    pub fn status(self) -> Option<AdvanceStatus> {
        match self {
            Self::Status(status) => Some(status),
            Self::WorkflowNotRunning => None,
        }
    }
}

impl From<AdvanceStatus> for AdvanceState {
    fn from(status: AdvanceStatus) -> Self {
        Self::Status(status)
    }
}

impl Serialize for AdvanceState {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.status().map_or(Self::NOT_RUNNING, AdvanceStatus::as_str))
    }
}

impl<'de> Deserialize<'de> for AdvanceState {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        match AdvanceStatus::parse(&text) {
            Some(status) => Ok(Self::Status(status)),
            None if text == Self::NOT_RUNNING => Ok(Self::WorkflowNotRunning),
            None => Err(serde::de::Error::custom(format!("unknown advance status {text:?}"))),
        }
    }
}

/// One payment of an advance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
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
    /// `scheduled`, `processing`, `paid`, `failed`, `superseded` (merged by a pay-off, re-spread by a reschedule
    /// or covered by a prepayment) or `cancelled`.
    #[schema(value_type = String, example = "scheduled")]
    pub status: PaymentStatus,
    /// The ledger transaction that collected it (`paid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transaction_id: Option<Uuid>,
    /// Why it failed (`failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_reason: Option<String>,
    /// The payment its amount went to (`failed`, `superseded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_to: Option<u32>,
    /// `regular`, or `prepayment` (collected ahead of the schedule; it reduced the last scheduled payments).
    #[schema(value_type = String, example = "regular")]
    pub kind: PaymentKind,
}

/// An advance and its schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AdvanceView {
    pub advance_id: Uuid,
    pub account_id: Uuid,
    #[serde(with = "money::decimal")]
    #[schema(schema_with = money_schema)]
    pub amount: Decimal,
    /// The product whose terms it got (absent for advances from before products).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// `granting`, `active`, `completed`, `failed` (grant refused), `defaulted`, `cancelled` or `written_off`; or
    /// `workflow_not_running` when the advance is open but its workflow is not running (terminated, timed out,
    /// missing): nothing collects it until an operator acts, and `status_reason` says what Temporal says.
    #[schema(
        value_type = String,
        example = "active",
        pattern = "^(granting|active|completed|failed|defaulted|cancelled|written_off|workflow_not_running)$"
    )]
    pub status: AdvanceState,
    /// Why it failed, defaulted or was cancelled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    /// What an operator wrote off (`written_off`).
    #[serde(with = "money::decimal")]
    #[schema(schema_with = money_schema)]
    pub written_off_amount: Decimal,
    /// Time between payments, in milliseconds, fixed when the advance started.
    pub payment_interval_ms: u64,
    /// Set while an operator has paused collection: since when, and why.
    #[serde(default, with = "money::timestamp::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "2023-07-12 09:30:00.000")]
    pub paused_since: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pause_reason: Option<String>,
    pub payments: Vec<PaymentView>,
}

/// A page of advances, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdvanceList {
    pub advances: Vec<AdvanceView>,
}

/// An alert raised for operators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AlertView {
    pub alert_id: i64,
    pub advance_id: Option<Uuid>,
    /// `defaulted`, `formula_mismatch`, `ledger_mismatch`, `ledger_refused`, `workflow_not_running` or
    /// `webhook_disabled`.
    #[schema(value_type = String, example = "formula_mismatch")]
    pub kind: AlertKind,
    pub message: String,
    #[serde(with = "money::timestamp")]
    #[schema(value_type = String, example = "2023-07-11 12:01:27.053")]
    pub created_at: DateTime<Utc>,
}

/// Alerts, newest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AlertList {
    pub alerts: Vec<AlertView>,
}

/// A product: the terms its advances get and the amounts it lends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProductView {
    pub name: String,
    /// Regular payments of each advance.
    pub payments: u32,
    /// Time between payments, in milliseconds.
    pub interval_ms: u64,
    #[serde(with = "money::decimal")]
    #[schema(schema_with = money_schema)]
    pub min_amount: Decimal,
    #[serde(with = "money::decimal")]
    #[schema(schema_with = money_schema)]
    pub max_amount: Decimal,
    /// Extra payments that may fail in a row before an advance defaults.
    pub max_failed_extra_payments: u32,
    #[serde(with = "money::timestamp")]
    #[schema(value_type = String, example = "2026-12-06 12:01:27.053")]
    pub created_at: DateTime<Utc>,
}

/// The products that take new advances, by name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProductList {
    pub products: Vec<ProductView>,
}

/// The book's figures, for one product or in total.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BookView {
    /// The product (absent in the total, and null for advances from before products).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
    /// Advances accepted and not closed (granting or active, paused included).
    pub open_advances: i64,
    /// What open advances still owe: their amounts less what they paid.
    #[serde(with = "money::decimal")]
    #[schema(schema_with = money_schema)]
    pub outstanding: Decimal,
    /// Collected, by every advance ever.
    #[serde(with = "money::decimal")]
    #[schema(schema_with = money_schema)]
    pub paid: Decimal,
    /// What defaulted advances owed when they defaulted.
    #[serde(with = "money::decimal")]
    #[schema(schema_with = money_schema)]
    pub defaulted: Decimal,
    /// What operators wrote off.
    #[serde(with = "money::decimal")]
    #[schema(schema_with = money_schema)]
    pub written_off: Decimal,
}

/// The exposure caps in force (null: no cap).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct CapsView {
    #[serde(with = "money::decimal::option")]
    #[schema(value_type = Option<f64>)]
    pub max_outstanding_per_account: Option<Decimal>,
    pub max_open_advances_per_account: Option<u32>,
    #[serde(with = "money::decimal::option")]
    #[schema(value_type = Option<f64>)]
    pub max_outstanding_total: Option<Decimal>,
}

/// The lender's book: in total, by product, and the caps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ExposureView {
    pub total: BookView,
    pub by_product: Vec<BookView>,
    pub caps: CapsView,
}

/// The filters of the advances list.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_id: Option<Uuid>,
    /// `granting`, `active`, `completed`, `failed`, `defaulted`, `cancelled` or `written_off`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(pattern = "^(granting|active|completed|failed|defaulted|cancelled|written_off)$")]
    pub status: Option<String>,
    /// At most this many, newest first (1 to 1000, default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

/// The alerts' list parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AlertQuery {
    /// At most this many, newest first (1 to 1000, default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_advance_state_is_its_status_name_on_the_wire() {
        let wire = |state: AdvanceState| serde_json::to_string(&state).ok();
        assert_eq!(wire(AdvanceState::ACTIVE).as_deref(), Some("\"active\""));
        assert_eq!(wire(AdvanceState::WorkflowNotRunning).as_deref(), Some("\"workflow_not_running\""));
        let read = |text: &str| serde_json::from_str::<AdvanceState>(text).ok();
        assert_eq!(read("\"defaulted\""), Some(AdvanceState::Status(AdvanceStatus::Defaulted)));
        assert_eq!(read("\"workflow_not_running\""), Some(AdvanceState::WorkflowNotRunning));
        assert_eq!(read("\"happy\""), None);
    }
}
