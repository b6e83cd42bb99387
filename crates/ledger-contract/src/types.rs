//! The JSON shapes of the accounts-service (the seed's, plus what the service adds).

use chrono::{DateTime, Utc};
use money::schema::{money as money_schema, money_input as money_input_schema};
use money::{Amount, AmountInput};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

/// A value from the database or the wire that names none of an enum's variants.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value:?} is not a known {what}")]
pub struct UnknownValue {
    pub what: &'static str,
    pub value: String,
}

/// Declares a wire enum: its snake_case names on the wire and in the database, `as_str`, and parsing.
macro_rules! wire_enum {
    ($(#[$meta:meta])* $name:ident ($what:literal) { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every variant.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The wire and database name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }

            /// The variant with this wire name.
            pub fn parse(text: &str) -> Result<Self, $crate::types::UnknownValue> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|variant| variant.as_str() == text)
                    .ok_or_else(|| $crate::types::UnknownValue { what: $what, value: text.chars().take(64).collect() })
            }
        }

        impl TryFrom<String> for $name {
            type Error = $crate::types::UnknownValue;

            fn try_from(text: String) -> Result<Self, $crate::types::UnknownValue> {
                Self::parse(&text)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

pub(crate) use wire_enum;

wire_enum! {
    /// Which way money moves relative to the request's accounts (the seed's meaning).
    Direction ("direction") {
        /// `src` pays `dst`; for a bank transaction, the bank takes from the account.
        Debit => "debit",
        /// `dst` pays `src`; for a bank transaction, the bank gives to the account.
        Credit => "credit",
    }
}

wire_enum! {
    /// What a transaction moved money between.
    TransactionKind ("transaction kind") {
        /// Between two accounts.
        Transfer => "transfer",
        /// Between the bank and one account.
        Bank => "bank",
        /// The release of a hold's money (voided, expired, or what a capture left): it moves nothing; what the
        /// account can spend grows by `amount`.
        HoldRelease => "hold_release",
    }
}

wire_enum! {
    /// Whether a transaction moved its money.
    TransactionStatus ("transaction status") {
        Success => "success",
        /// Refused for a recorded `reason` (insufficient funds); nothing moved.
        Fail => "fail",
    }
}

/// A `direction` as it arrived: any JSON string (another JSON type is a malformed request, 400); whether it
/// names a [`Direction`] is a rule the service checks (422), like an amount's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DirectionInput(String);

impl DirectionInput {
    /// The direction it names.
    pub fn parse(&self) -> Result<Direction, UnknownValue> {
        Direction::parse(&self.0)
    }
}

impl From<Direction> for DirectionInput {
    fn from(direction: Direction) -> Self {
        Self(direction.as_str().to_owned())
    }
}

/// The body of an account creation: an empty object (an account starts at 0; money arrives by transactions).
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccountRequest {}

/// A transfer between two accounts (the seed's body).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferRequest {
    pub src_account_id: Uuid,
    pub dst_account_id: Uuid,
    #[schema(schema_with = money_input_schema)]
    pub amount: AmountInput,
    /// `debit`: src pays dst; `credit`: dst pays src.
    #[schema(value_type = String, example = "debit", pattern = "^(debit|credit)$")]
    pub direction: DirectionInput,
}

impl TransferRequest {
    pub fn new(src_account_id: Uuid, dst_account_id: Uuid, amount: Amount, direction: Direction) -> Self {
        Self { src_account_id, dst_account_id, amount: amount.into(), direction: direction.into() }
    }
}

/// A transaction between the bank and one account.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BankTransactionRequest {
    pub dst_account_id: Uuid,
    #[schema(schema_with = money_input_schema)]
    pub amount: AmountInput,
    /// `credit`: the bank gives to the account; `debit`: the bank takes from it.
    #[schema(value_type = String, example = "credit", pattern = "^(debit|credit)$")]
    pub direction: DirectionInput,
    /// Why it happened (stored and returned as `description`), at most 500 characters.
    #[schema(example = "Advance payment week 3")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl BankTransactionRequest {
    pub fn new(dst_account_id: Uuid, amount: Amount, direction: Direction, reason: Option<String>) -> Self {
        Self { dst_account_id, amount: amount.into(), direction: direction.into(), reason }
    }
}

/// An account and its balance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Account {
    pub account_id: Uuid,
    #[serde(with = "money::decimal")]
    #[schema(schema_with = money_schema)]
    pub balance: Decimal,
    #[serde(with = "money::timestamp")]
    #[schema(value_type = String, example = "2023-07-11 12:01:27.053")]
    pub created_at: DateTime<Utc>,
    #[serde(with = "money::timestamp")]
    #[schema(value_type = String, example = "2023-07-11 12:01:27.053")]
    pub updated_at: DateTime<Utc>,
    /// Present when asked with `?as_of=`: `balance` is then the balance at that time (after every transaction
    /// dated then or before), not now.
    #[serde(default, with = "money::timestamp::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "2023-11-01 00:00:00.000")]
    pub as_of: Option<DateTime<Utc>>,
    /// What the account's pending holds reserve now (absent with `as_of`: holds are not part of the book).
    #[serde(default, with = "money::decimal::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, example = 25.0)]
    pub held_balance: Option<Decimal>,
    /// What the account can spend now: `balance - held_balance`, never below zero (absent with `as_of`).
    #[serde(default, with = "money::decimal::option", skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>, example = 75.0)]
    pub available_balance: Option<Decimal>,
}

/// The query of an account read.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AccountQuery {
    /// The balance at this time instead of now (not in the future). `YYYY-MM-DD HH:MM:SS.mmm` UTC or RFC 3339.
    #[param(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?$"
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
}

/// The query of an account's statement. With `cursor`, the other parameters may be left out; given, they must
/// be the ones the cursor was made with.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatementQuery {
    /// The window's start (default: 30 days before `to`). `YYYY-MM-DD HH:MM:SS.mmm` UTC or RFC 3339.
    #[param(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?$"
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// The window's end, included (default: now).
    #[param(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?$"
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Entries per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page: the next page of the same statement, as of its first page.
    #[param(max_length = 512, pattern = "^[0-9a-f]+$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

/// The query of a statement's download.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct StatementExportQuery {
    /// `csv` (default, with a header row) or `ndjson` (one entry per line).
    #[param(pattern = "^(csv|ndjson)$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// As for the statement.
    #[param(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?$"
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// As for the statement.
    #[param(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?$"
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

/// One transaction as the account's statement shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct StatementEntry {
    pub transaction_id: Uuid,
    #[serde(with = "money::timestamp")]
    #[schema(value_type = String, example = "2023-07-11 12:01:27.053")]
    pub transaction_timestamp: DateTime<Utc>,
    pub kind: TransactionKind,
    pub direction: Direction,
    pub status: TransactionStatus,
    /// The other account of a transfer; absent for a bank transaction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub counterparty_account_id: Option<Uuid>,
    #[schema(schema_with = money_schema)]
    pub amount: Amount,
    /// What it did to this account's balance: positive in, negative out, 0 when it failed.
    #[serde(with = "money::decimal")]
    #[schema(value_type = f64, example = -12.5)]
    pub effect: Decimal,
    /// This account's balance after it.
    #[serde(with = "money::decimal")]
    #[schema(schema_with = money_schema)]
    pub balance_after: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Insufficient funds")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// One page of an account's statement, oldest first.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Statement {
    pub account_id: Uuid,
    #[serde(with = "money::timestamp")]
    #[schema(value_type = String, example = "2023-11-01 00:00:00.000")]
    pub from: DateTime<Utc>,
    #[serde(with = "money::timestamp")]
    #[schema(value_type = String, example = "2023-12-01 00:00:00.000")]
    pub to: DateTime<Utc>,
    /// The balance before the window (after every transaction dated before `from`).
    #[serde(with = "money::decimal")]
    #[schema(schema_with = money_schema)]
    pub opening_balance: Decimal,
    /// The balance at the window's end as of the first page: after its last transaction.
    #[serde(with = "money::decimal")]
    #[schema(schema_with = money_schema)]
    pub closing_balance: Decimal,
    pub entries: Vec<StatementEntry>,
    pub limit: i64,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// The columns of a statement's CSV download, in order (its header row).
pub const STATEMENT_CSV_COLUMNS: [&str; 11] = [
    "transaction_id",
    "transaction_timestamp",
    "kind",
    "direction",
    "status",
    "counterparty_account_id",
    "amount",
    "effect",
    "balance_after",
    "reason",
    "description",
];

/// One ledger transaction, successful or failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Transaction {
    pub transaction_id: Uuid,
    #[serde(with = "money::timestamp")]
    #[schema(value_type = String, example = "2023-07-11 12:01:27.053")]
    pub transaction_timestamp: DateTime<Utc>,
    /// `transfer` between two accounts, or `bank` (the bank's side has no account).
    pub kind: TransactionKind,
    /// Absent for bank transactions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub src_account_id: Option<Uuid>,
    pub dst_account_id: Uuid,
    #[schema(schema_with = money_schema)]
    pub amount: Amount,
    pub direction: Direction,
    pub status: TransactionStatus,
    /// Why it failed; present only when `status` is `fail`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "Insufficient funds")]
    pub reason: Option<String>,
    /// A bank transaction's description (the request's `reason`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The client that recorded it (`anonymous` when the ledger ran with AUTH=off; absent for transactions
    /// recorded before clients existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(example = "advances-worker")]
    pub recorded_by: Option<String>,
}

/// The transactions recorded under one key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TransactionsByKey {
    pub transactions: Vec<Transaction>,
}

/// The most keys one `by_keys` lookup takes.
pub const MAX_KEYS_PER_LOOKUP: usize = 1000;

/// A lookup of many of the caller's idempotency keys at once, for reconciliation at scale.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ByKeysRequest {
    /// 1 to 1000 keys (duplicates count once), each 1 to 255 visible ASCII characters; the body may be up to
    /// 512 KiB.
    #[schema(min_items = 1, max_items = 1000)]
    pub idempotency_keys: Vec<String>,
}

/// The transactions the caller recorded under one key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct KeyTransactions {
    pub idempotency_key: String,
    pub transactions: Vec<Transaction>,
}

/// One entry per distinct key asked for, in the order asked; a key with no transaction has an empty list.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TransactionsByKeys {
    pub results: Vec<KeyTransactions>,
}

/// The query of a lookup by idempotency key.
#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ByKeyQuery {
    /// The `Idempotency-Key` the transaction was made with.
    #[param(min_length = 1, max_length = 255, pattern = r"^[!-~]+$")]
    pub idempotency_key: String,
}

/// The report's query parameters (the seed's, plus `snapshot`). Timestamps stay text until the service reads
/// them, so that a malformed one is its 400, not a rejection without a JSON body.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// Page number, from 1.
    #[param(minimum = 1)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<i64>,
    /// Rows per page, 1 to 1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// Earliest timestamp, at most 5 days back (default: now - 5 days). `YYYY-MM-DD HH:MM:SS.mmm` UTC or RFC 3339.
    #[param(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?$"
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<String>,
    /// Latest timestamp (default: now).
    #[param(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?$"
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_timestamp: Option<String>,
    /// The token of an earlier response: every page and the totals reflect exactly the transactions committed
    /// when that snapshot's page 1 was served.
    #[param(value_type = Option<String>, format = Uuid)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// One page of the report.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReportPage {
    pub transactions: Vec<Transaction>,
    pub page: i64,
    pub limit: i64,
    /// The number of transactions in the whole report (the seed's name).
    pub total_amount: i64,
    pub total_pages: i64,
    /// Pass as `snapshot` to read other pages of this same report.
    pub snapshot: String,
    #[schema(value_type = String, example = "2023-07-11 12:01:27.053")]
    #[serde(with = "money::timestamp")]
    pub start_timestamp: DateTime<Utc>,
    #[schema(value_type = String, example = "2023-07-11 14:01:27.053")]
    #[serde(with = "money::timestamp")]
    pub end_timestamp: DateTime<Utc>,
}

/// The download's query parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// `csv` (default, with a header row) or `ndjson` (one JSON object per line).
    #[param(pattern = "^(csv|ndjson)$")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// As for the report.
    #[param(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?$"
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_timestamp: Option<String>,
    /// As for the report.
    #[param(
        pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,9})?(Z|[+-][0-9]{2}:[0-9]{2})?$"
    )]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_timestamp: Option<String>,
    /// A report's snapshot token: download exactly that report's rows.
    #[param(value_type = Option<String>, format = Uuid)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// The columns of the CSV download, in order (its header row).
pub const CSV_COLUMNS: [&str; 11] = [
    "transaction_id",
    "transaction_timestamp",
    "kind",
    "src_account_id",
    "dst_account_id",
    "amount",
    "direction",
    "status",
    "reason",
    "description",
    "recorded_by",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_enums_use_the_seed_names_and_refuse_others() {
        assert_eq!(Direction::parse("debit"), Ok(Direction::Debit));
        assert_eq!(Direction::parse("credit"), Ok(Direction::Credit));
        assert!(Direction::parse("Debit").is_err());
        assert!(Direction::parse("").is_err());
        assert_eq!(serde_json::to_string(&TransactionStatus::Fail).ok().as_deref(), Some("\"fail\""));
        assert_eq!(TransactionKind::try_from("bank".to_owned()), Ok(TransactionKind::Bank));
    }

    #[test]
    fn a_transaction_round_trips_with_exact_amounts_and_seed_timestamps() {
        let json = r#"{"transaction_id":"0190f6f0-0000-7000-8000-000000000001","transaction_timestamp":"2023-07-11 12:01:27.053","kind":"bank","dst_account_id":"0190f6f0-0000-7000-8000-000000000002","amount":999999999999.99,"direction":"credit","status":"success"}"#;
        let transaction: Transaction = serde_json::from_str(json).expect("the seed's shape");
        assert_eq!(transaction.amount.to_string(), "999999999999.99");
        assert_eq!(transaction.src_account_id, None);
        assert_eq!(serde_json::to_string(&transaction).expect("serialize"), json);
    }

    #[test]
    fn a_request_built_from_types_is_what_the_seed_sends() {
        let a = Uuid::from_u128(1);
        let amount = Amount::parse("12.30").expect("valid");
        let json = serde_json::to_value(TransferRequest::new(a, a, amount, Direction::Debit)).expect("serialize");
        assert_eq!(json["amount"], serde_json::json!(12.3));
        assert_eq!(json["direction"], "debit");
        let bank = BankTransactionRequest::new(a, amount, Direction::Credit, None);
        assert!(serde_json::to_value(bank).expect("serialize").get("reason").is_none());
    }
}
