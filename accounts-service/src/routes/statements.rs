//! `GET /api/v1/accounts/{id}/statement` and its download: one account's transactions in a window, oldest
//! first, with the balance after each, paged by a cursor that keeps the first page's snapshot.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use ledger_contract::{Statement, StatementEntry, StatementExportQuery, StatementQuery, STATEMENT_CSV_COLUMNS};
use money::timestamp::format_timestamp;
use rust_decimal::Decimal;
use service_kit::auth::Caller;
use service_kit::extract::{ApiPath, ApiQuery};
use service_kit::{ApiError, ApiResult, ErrorBody};
use uuid::Uuid;

use super::reports::{parse_optional_timestamp, push_csv_field, Format, CHUNK_BYTES, DEFAULT_LIMIT, MAX_LIMIT};
use crate::db::{ledger, statements};
use crate::domain::book::{Cursor, Key};
use crate::AppState;

/// The window a statement covers when `from` is not given: this many days up to `to`.
pub const DEFAULT_WINDOW_DAYS: i64 = 30;

/// Rows per page a download reads.
const EXPORT_PAGE: usize = 1000;

/// A statement's first page fixes its cursor: the window, the page size, and the account's newest row in the
/// window; also returns the balance after that row (the closing balance).
async fn first_cursor(
    state: &AppState,
    account_id: Uuid,
    from: Option<&str>,
    to: Option<&str>,
    limit: Option<i64>,
) -> ApiResult<(Cursor, Decimal)> {
    let to = parse_optional_timestamp("to", to)?.unwrap_or_else(Utc::now);
    let from = parse_optional_timestamp("from", from)?.unwrap_or(to - Duration::days(DEFAULT_WINDOW_DAYS));
    if from > to {
        return Err(ApiError::validation("invalid_window", "from must not be after to"));
    }
    let limit = limit.unwrap_or(DEFAULT_LIMIT);
    if !(1..=MAX_LIMIT).contains(&limit) {
        return Err(ApiError::validation("invalid_limit", format!("limit must be between 1 and {MAX_LIMIT}")));
    }
    // Exists, or 404 (a statement of no account is not an empty one).
    ledger::get_account(&state.report_pool, account_id).await?;
    let newest = statements::last_before(state.book(), account_id, Key::after(to)).await?;
    let (bound, closing) = newest.map_or((None, Decimal::ZERO), |(key, balance)| (Some(key), balance));
    Ok((Cursor { account_id, from, to, limit: limit as u16, bound, after: None }, closing))
}

/// A cursor given back, checked against the account and any parameter repeated with it.
fn given_cursor(
    text: &str,
    account_id: Uuid,
    from: Option<&str>,
    to: Option<&str>,
    limit: Option<i64>,
) -> ApiResult<Cursor> {
    let cursor = Cursor::decode(text).map_err(|error| ApiError::MalformedRequest(format!("cursor: {error}")))?;
    let mismatch = |what: &str| {
        ApiError::validation("cursor_mismatch", format!("{what} differs from the one this cursor was made with"))
    };
    if cursor.account_id != account_id {
        return Err(mismatch("the account"));
    }
    // Times are compared at the millisecond precision the API shows.
    let same = |a: DateTime<Utc>, b: DateTime<Utc>| a.timestamp_millis() == b.timestamp_millis();
    if parse_optional_timestamp("from", from)?.is_some_and(|from| !same(from, cursor.from)) {
        return Err(mismatch("from"));
    }
    if parse_optional_timestamp("to", to)?.is_some_and(|to| !same(to, cursor.to)) {
        return Err(mismatch("to"));
    }
    if limit.is_some_and(|limit| limit != i64::from(cursor.limit)) {
        return Err(mismatch("limit"));
    }
    Ok(cursor)
}

/// The balances at both ends of the statement, as of its first page: after the bound row (the closing, read again
/// unless the first page just read it) and after the newest row before `from` (the opening; the bound itself when
/// the window has no rows).
async fn ends(state: &AppState, cursor: &Cursor, closing: Option<Decimal>) -> ApiResult<(Decimal, Decimal)> {
    let Some(bound) = cursor.bound else { return Ok((Decimal::ZERO, Decimal::ZERO)) };
    let book = state.book();
    let balance = |found: Option<(Key, Decimal)>| found.map_or(Decimal::ZERO, |(_, balance)| balance);
    let closing = match closing {
        Some(closing) => closing,
        None => balance(statements::last_before(book, cursor.account_id, bound.successor()).await?),
    };
    let opening = if bound < Key::at(cursor.from) {
        closing
    } else {
        balance(statements::last_before(book, cursor.account_id, Key::at(cursor.from)).await?)
    };
    Ok((opening, closing))
}

/// The next `limit` entries of the statement, and the cursor to the rest (if any).
async fn entries(state: &AppState, cursor: &Cursor, limit: usize) -> ApiResult<(Vec<StatementEntry>, Option<Cursor>)> {
    let Some(bound) = cursor.bound else { return Ok((Vec::new(), None)) };
    let after = cursor.after.unwrap_or(Key::at(cursor.from));
    let (rows, next) = statements::page(state.book(), cursor.account_id, after, bound, limit).await?;
    let entries = rows.iter().map(|row| row.entry(cursor.account_id)).collect();
    Ok((entries, next.map(|after| Cursor { after: Some(after), ..*cursor })))
}

/// An account's transactions in a window, oldest first, each with its effect and the balance after it.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account_id}/statement", tag = "accounts",
    params(("account_id" = Uuid, Path, description = "The account's id"), StatementQuery),
    responses(
        (status = 200, description = "One page of the statement", body = Statement),
        (status = 400, description = "Malformed id, timestamp or cursor", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 409, description = "The window reaches a day archived before balances were recorded (`archived_without_balances`)", body = ErrorBody),
        (status = 422, description = "A window that ends before it starts, a limit out of range, or parameters that contradict the cursor", body = ErrorBody),
        (status = 503, description = "The archive or the report replica cannot serve the window now; retry", body = ErrorBody),
    )
)]
pub async fn statement(
    State(state): State<AppState>,
    ApiPath(account_id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<StatementQuery>,
) -> ApiResult<Json<Statement>> {
    let (from, to) = (query.from.as_deref(), query.to.as_deref());
    let (cursor, closing) = match query.cursor.as_deref() {
        Some(text) => (given_cursor(text, account_id, from, to, query.limit)?, None),
        None => first_cursor(&state, account_id, from, to, query.limit)
            .await
            .map(|(cursor, closing)| (cursor, Some(closing)))?,
    };
    let (opening_balance, closing_balance) = ends(&state, &cursor, closing).await?;
    let (entries, next) = entries(&state, &cursor, usize::from(cursor.limit)).await?;
    Ok(Json(Statement {
        account_id,
        from: cursor.from,
        to: cursor.to,
        opening_balance,
        closing_balance,
        entries,
        limit: i64::from(cursor.limit),
        next_cursor: next.map(|cursor| cursor.encode()),
    }))
}

/// Downloads an account's statement (every entry of the window, as of the request) as CSV or NDJSON, streamed.
#[utoipa::path(
    get, path = "/api/v1/accounts/{account_id}/statement/export", tag = "accounts",
    params(("account_id" = Uuid, Path, description = "The account's id"), StatementExportQuery),
    responses(
        (status = 200, description = "The entries, oldest first", content(
            (String = "text/csv"),
            (String = "application/x-ndjson"),
        )),
        (status = 400, description = "Malformed id or timestamp", body = ErrorBody),
        (status = 404, description = "No such account", body = ErrorBody),
        (status = 409, description = "The window reaches a day archived before balances were recorded", body = ErrorBody),
        (status = 422, description = "Unknown format, or a window that ends before it starts", body = ErrorBody),
        (status = 429, description = "The client already runs REPORT_CONCURRENCY_PER_CLIENT downloads; retry after `Retry-After` seconds", body = ErrorBody),
        (status = 503, description = "The archive or the report replica cannot serve the window now; retry", body = ErrorBody),
    )
)]
pub async fn export_statement(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(account_id): ApiPath<Uuid>,
    ApiQuery(query): ApiQuery<StatementExportQuery>,
) -> ApiResult<Response> {
    let format = Format::parse(query.format.as_deref())?;
    let slot = state.downloads.enter(&caller.name)?;
    let (cursor, _) = first_cursor(&state, account_id, query.from.as_deref(), query.to.as_deref(), None).await?;
    // The first page is read before the answer starts, so that a window that cannot be read is a clear error,
    // never a 200 with a broken body.
    let first = entries(&state, &cursor, EXPORT_PAGE).await?;
    let header = match format {
        Format::Csv => Some(Ok(Bytes::from(format!("{}\n", STATEMENT_CSV_COLUMNS.join(","))))),
        Format::Ndjson => None,
    };
    let pages = futures::stream::unfold(Some(first), move |page| {
        let state = state.clone();
        async move {
            let (entries, next) = page?;
            let mut buffer = String::with_capacity(CHUNK_BYTES);
            for entry in &entries {
                write_entry(&mut buffer, entry, format);
            }
            let following = match next {
                Some(cursor) => match self::entries(&state, &cursor, EXPORT_PAGE).await {
                    Ok(page) => Some(page),
                    Err(error) => {
                        tracing::error!(error = %error, "a statement download stopped");
                        return Some((Err(std::io::Error::other(error.to_string())), None));
                    }
                },
                None => None,
            };
            Some((Ok(Bytes::from(buffer)), following))
        }
    });
    let body = futures::stream::iter(header).chain(pages).map(move |chunk| {
        // The client's download slot lives as long as its body.
        let _slot = &slot;
        chunk
    });
    Ok(format.download(Body::from_stream(body), &format!("statement-{account_id}")))
}

fn write_entry(buffer: &mut String, entry: &StatementEntry, format: Format) {
    match format {
        // Serializing our own view cannot fail; an empty line would be the visible sign if it ever did.
        Format::Ndjson => buffer.push_str(&serde_json::to_string(entry).unwrap_or_default()),
        Format::Csv => {
            let text = [
                entry.transaction_id.to_string(),
                format_timestamp(entry.transaction_timestamp),
                entry.kind.to_string(),
                entry.direction.to_string(),
                entry.status.to_string(),
                entry.counterparty_account_id.map(|id| id.to_string()).unwrap_or_default(),
            ];
            for (i, field) in text.iter().enumerate() {
                if i > 0 {
                    buffer.push(',');
                }
                push_csv_field(buffer, field);
            }
            // Numbers the service wrote: a leading minus is a sign here, not a formula, and is written as is.
            for mut number in [entry.amount.value(), entry.effect, entry.balance_after] {
                number.rescale(2);
                buffer.push(',');
                buffer.push_str(&number.to_string());
            }
            for field in [&entry.reason, &entry.description] {
                buffer.push(',');
                push_csv_field(buffer, field.as_deref().unwrap_or_default());
            }
        }
    }
    buffer.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger_contract::{Direction, TransactionKind, TransactionStatus};
    use money::Amount;

    #[test]
    fn a_csv_entry_keeps_its_signs_and_quotes_client_text() -> anyhow::Result<()> {
        let entry = StatementEntry {
            transaction_id: Uuid::nil(),
            transaction_timestamp: DateTime::from_timestamp_micros(1_700_000_000_123_456).unwrap_or_default(),
            kind: TransactionKind::Bank,
            direction: Direction::Debit,
            status: TransactionStatus::Success,
            counterparty_account_id: None,
            amount: Amount::parse("12.50")?,
            effect: Decimal::new(-1250, 2),
            balance_after: Decimal::new(0, 2),
            reason: None,
            description: Some("=cmd, \"x\"".into()),
        };
        let mut buffer = String::new();
        write_entry(&mut buffer, &entry, Format::Csv);
        assert_eq!(
            buffer,
            "00000000-0000-0000-0000-000000000000,2023-11-14 22:13:20.123,bank,debit,success,,12.50,-12.50,0.00,,\
             \"'=cmd, \"\"x\"\"\"\n"
        );
        assert_eq!(buffer.trim_end().split(',').count(), STATEMENT_CSV_COLUMNS.len() + 1, "one comma is quoted");
        Ok(())
    }
}
