//! The JSON shapes of responses, shared by the routes, the idempotency store and the report export.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::money::serialize_decimal;
use crate::domain::time::serialize_timestamp;

/// An account and its balance.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct AccountView {
    #[sqlx(rename = "id")]
    pub account_id: Uuid,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(schema_with = money_schema)]
    pub balance: Decimal,
    #[serde(serialize_with = "serialize_timestamp")]
    #[schema(value_type = String, example = "2023-07-11 12:01:27.053")]
    pub created_at: DateTime<Utc>,
    #[serde(serialize_with = "serialize_timestamp")]
    #[schema(value_type = String, example = "2023-07-11 12:01:27.053")]
    pub updated_at: DateTime<Utc>,
}

/// One ledger transaction, successful or failed.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, ToSchema)]
pub struct TransactionView {
    #[sqlx(rename = "id")]
    pub transaction_id: Uuid,
    #[sqlx(rename = "created_at")]
    #[serde(serialize_with = "serialize_timestamp")]
    #[schema(value_type = String, example = "2023-07-11 12:01:27.053")]
    pub transaction_timestamp: DateTime<Utc>,
    /// `transfer` between two accounts, or `bank` (the bank's side has no account).
    #[schema(example = "transfer")]
    pub kind: String,
    /// Absent for bank transactions.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_account_id: Option<Uuid>,
    pub dst_account_id: Uuid,
    #[serde(serialize_with = "serialize_decimal")]
    #[schema(schema_with = money_schema)]
    pub amount: Decimal,
    /// `debit` or `credit`.
    #[schema(example = "debit")]
    pub direction: String,
    /// `success` or `fail`.
    #[schema(example = "success")]
    pub status: String,
    /// Why it failed; present only when `status` is `fail`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "Insufficient funds")]
    pub reason: Option<String>,
    /// A bank transaction's description (the request's `reason`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Money in a response: a JSON number holding the exact decimal value.
pub fn money_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::Number)
        .description(Some("Exact decimal amount, at most 2 decimal places"))
        .examples([serde_json::json!(12.3)])
        .build()
        .into()
}

/// Money in a request: a JSON number or a string holding one, parsed exactly.
pub fn money_input_schema() -> Schema {
    OneOfBuilder::new()
        .item(RefOr::T(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .exclusive_minimum(Some(0.0))
                .maximum(Some(1_000_000_000_000.0))
                .build()
                .into(),
        ))
        .item(RefOr::T(
            ObjectBuilder::new().schema_type(Type::String).pattern(Some(r"^\+?[0-9]+(\.[0-9]{1,2})?$")).build().into(),
        ))
        .description(Some("Greater than 0, at most 2 decimal places, at most 1000000000000.00"))
        .examples([serde_json::json!(12.3)])
        .build()
        .into()
}
