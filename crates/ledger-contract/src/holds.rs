//! Holds (two-phase transfers): money reserved on an account, then captured, voided or expired.

use chrono::{DateTime, Utc};
use money::schema::{money as money_schema, money_input as money_input_schema};
use money::{Amount, AmountInput};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// How long a hold lasts when its request does not say: 7 days, in seconds.
pub const DEFAULT_HOLD_EXPIRY_SECS: u64 = 7 * 86_400;
/// The longest a hold may last: 30 days, in seconds.
pub const MAX_HOLD_EXPIRY_SECS: u64 = 30 * 86_400;

crate::types::wire_enum! {
    /// Where a hold stands. Only a `pending` hold reserves money, and only a `pending` hold can end.
    HoldStatus ("hold status") {
        /// Reserving its amount until it is captured, voided or expires.
        Pending => "pending",
        /// Moved (in whole or part) by a capture; the rest was released.
        Captured => "captured",
        /// Released by a void.
        Voided => "voided",
        /// Released at `expires_at` by the service.
        Expired => "expired",
        /// Refused when asked (`reason`: the account could not cover it); it never reserved anything.
        Fail => "fail",
    }
}

/// A request to reserve money on an account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldRequest {
    pub account_id: Uuid,
    #[schema(schema_with = money_input_schema)]
    pub amount: AmountInput,
    /// Seconds until the hold expires by itself: 1 to 2 592 000 (30 days); 604 800 (7 days) when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 2_592_000, example = 86_400)]
    pub expires_in: Option<u64>,
    /// What the money is reserved for (stored and returned as `description`), 1 to 500 characters.
    #[schema(example = "Card authorisation 4411")]
    pub reason: String,
}

impl HoldRequest {
    pub fn new(account_id: Uuid, amount: Amount, expires_in: Option<u64>, reason: &str) -> Self {
        Self { account_id, amount: amount.into(), expires_in, reason: reason.to_owned() }
    }
}

/// A capture: moves at most the held amount, to another account or (without `dst_account_id`) to the bank; the
/// rest of the hold is released.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureRequest {
    /// How much to move, at most the held amount; the whole hold when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = money_input_schema)]
    pub amount: Option<AmountInput>,
    /// The account paid; absent, the bank takes the money (a bank debit, which needs the scope `bank:write`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dst_account_id: Option<Uuid>,
}

impl CaptureRequest {
    pub fn new(amount: Option<Amount>, dst_account_id: Option<Uuid>) -> Self {
        Self { amount: amount.map(Into::into), dst_account_id }
    }
}

/// The body of a void: an empty object (an empty body counts as one).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidRequest {}

/// A hold as it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Hold {
    pub hold_id: Uuid,
    pub account_id: Uuid,
    #[schema(schema_with = money_schema)]
    pub amount: Amount,
    pub status: HoldStatus,
    /// Why it failed; present only when `status` is `fail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Insufficient funds")]
    pub reason: Option<String>,
    /// What the money is reserved for (the request's `reason`).
    pub description: String,
    #[serde(with = "money::timestamp")]
    #[schema(value_type = String, example = "2023-07-11 12:01:27.053")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "money::timestamp")]
    #[schema(value_type = String, example = "2023-07-18 12:01:27.053")]
    pub expires_at: DateTime<Utc>,
    /// When it was captured, voided or expired.
    #[serde(default, with = "money::timestamp::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "2023-07-12 09:30:00.000")]
    pub settled_at: Option<DateTime<Utc>>,
    /// What the capture moved (`captured`).
    #[serde(default, with = "money::decimal::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, example = 20.0)]
    pub captured_amount: Option<Decimal>,
    /// What was given back to the account's available balance (`captured`, `voided`, `expired`).
    #[serde(default, with = "money::decimal::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, example = 5.0)]
    pub released_amount: Option<Decimal>,
    /// The capture's transaction: a `transfer` to `dst_account_id` or a `bank` debit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_transaction_id: Option<Uuid>,
    /// The `hold_release` transaction of what was released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_transaction_id: Option<Uuid>,
    /// The client that placed it.
    #[schema(example = "card-gateway")]
    pub recorded_by: String,
}
