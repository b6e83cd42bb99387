//! `GET /api/v1/transactions` (the paged report) and `GET /api/v1/transactions/export` (the download).

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use ledger_contract::{ExportQuery, ReportPage, ReportQuery, Transaction, CSV_COLUMNS};
use money::timestamp::parse_timestamp;
use service_kit::auth::Caller;
use service_kit::extract::ApiQuery;
use service_kit::{ApiError, ApiResult, ErrorBody};
use uuid::Uuid;

pub(crate) use crate::db::reports::CHUNK_BYTES;
use crate::db::reports::{self, Export, Shape, Snapshot};
use crate::domain::REPORT_WINDOW_DAYS;
use crate::AppState;

/// A start this much older than the 5 days is still accepted, so a client that computes "now - 5 days"
/// is not refused for the milliseconds its request spent in flight.
pub const WINDOW_GRACE_SECONDS: i64 = 60;
pub const DEFAULT_LIMIT: i64 = 100;
pub const MAX_LIMIT: i64 = 1000;

/// The window a request asks for, checked against the 5-day rule.
struct Window {
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

pub(crate) fn parse_optional_timestamp(name: &str, text: Option<&str>) -> ApiResult<Option<DateTime<Utc>>> {
    text.map(|text| parse_timestamp(text).map_err(|error| ApiError::MalformedRequest(format!("{name}: {error}"))))
        .transpose()
}

/// The timestamps a request names, parsed but not yet checked.
struct Requested {
    start: Option<DateTime<Utc>>,
    end: Option<DateTime<Utc>>,
}

fn requested_window(start: Option<&str>, end: Option<&str>) -> ApiResult<Requested> {
    Ok(Requested {
        start: parse_optional_timestamp("start_timestamp", start)?,
        end: parse_optional_timestamp("end_timestamp", end)?,
    })
}

fn new_window(requested: &Requested) -> ApiResult<Window> {
    let now = Utc::now();
    let earliest = now - Duration::days(REPORT_WINDOW_DAYS);
    let start = requested.start.unwrap_or(earliest);
    let end = requested.end.unwrap_or(now);
    if start < earliest - Duration::seconds(WINDOW_GRACE_SECONDS) {
        return Err(ApiError::validation(
            "window_too_old",
            format!("start_timestamp may be at most {REPORT_WINDOW_DAYS} days back"),
        ));
    }
    if start > end {
        return Err(ApiError::validation("invalid_window", "start_timestamp must not be after end_timestamp"));
    }
    Ok(Window { start, end })
}

/// A snapshot token and the request's other parameters must agree: a snapshot fixes its window and page size.
fn check_matches(snapshot: &Snapshot, limit: Option<i64>, requested: &Requested) -> ApiResult<()> {
    let mismatch = |what: &str| {
        ApiError::validation("snapshot_mismatch", format!("{what} differs from the one this snapshot was taken with"))
    };
    if limit.is_some_and(|limit| limit != i64::from(snapshot.page_limit)) {
        return Err(mismatch("limit"));
    }
    // Timestamps are compared at the millisecond precision the API shows.
    let same = |a: DateTime<Utc>, b: DateTime<Utc>| a.timestamp_millis() == b.timestamp_millis();
    if requested.start.is_some_and(|start| !same(start, snapshot.window_start)) {
        return Err(mismatch("start_timestamp"));
    }
    if requested.end.is_some_and(|end| !same(end, snapshot.window_end)) {
        return Err(mismatch("end_timestamp"));
    }
    Ok(())
}

async fn find_snapshot(state: &AppState, token: &str) -> ApiResult<Snapshot> {
    let id = Uuid::parse_str(token).map_err(|_| ApiError::MalformedRequest("snapshot is not a valid token".into()))?;
    // Saved on the primary; a standby may not have replayed it yet.
    Ok(reports::load_snapshot(state.snapshot_writer.as_ref().unwrap_or(&state.report_pool), id).await?)
}

/// Lists transactions newest first, paged, from one consistent snapshot.
#[utoipa::path(
    get, path = "/api/v1/transactions", tag = "reports",
    params(ReportQuery),
    responses(
        (status = 200, description = "One page of the report", body = ReportPage),
        (status = 400, description = "Malformed parameter or snapshot token", body = ErrorBody),
        (status = 404, description = "Unknown or expired snapshot", body = ErrorBody),
        (status = 422, description = "Out-of-range page or limit, a window over 5 days back, or parameters that contradict the snapshot", body = ErrorBody),
        (status = 429, description = "The client already takes REPORT_CONCURRENCY_PER_CLIENT snapshots at once; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn list_transactions(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ReportQuery>,
) -> ApiResult<Json<ReportPage>> {
    let page = query.page.unwrap_or(1);
    if page < 1 {
        return Err(ApiError::validation("invalid_page", "page must be 1 or more"));
    }
    if let Some(limit) = query.limit {
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::validation("invalid_limit", format!("limit must be between 1 and {MAX_LIMIT}")));
        }
    }
    let requested = requested_window(query.start_timestamp.as_deref(), query.end_timestamp.as_deref())?;
    let (snapshot, transactions) = match query.snapshot.as_deref() {
        Some(token) => {
            let snapshot = find_snapshot(&state, token).await?;
            check_matches(&snapshot, query.limit, &requested)?;
            let wait = state.settings.report_replica_wait;
            let rows = reports::page(&state.report_pool, &snapshot, page as u64, wait).await?;
            (snapshot, rows)
        }
        None => {
            let window = new_window(&requested)?;
            let limit = query.limit.unwrap_or(DEFAULT_LIMIT) as u32;
            // A new snapshot reads the whole window: the expensive request, so each client runs few at once.
            let _slot = state.snapshots.enter(&caller.name)?;
            let replica = state.replica();
            reports::create_snapshot(&state.report_pool, replica, window.start, window.end, limit, page as u64).await?
        }
    };
    Ok(Json(ReportPage {
        transactions,
        page,
        limit: i64::from(snapshot.page_limit),
        total_amount: snapshot.total_rows,
        total_pages: snapshot.total_pages(),
        snapshot: snapshot.id.to_string(),
        start_timestamp: snapshot.window_start,
        end_timestamp: snapshot.window_end,
    }))
}

/// A download's format.
#[derive(Clone, Copy)]
pub(crate) enum Format {
    Csv,
    Ndjson,
}

impl Format {
    /// `csv` (the default) or `ndjson`; anything else is a 422.
    pub(crate) fn parse(format: Option<&str>) -> ApiResult<Self> {
        match format.unwrap_or("csv") {
            "csv" => Ok(Self::Csv),
            "ndjson" => Ok(Self::Ndjson),
            other => {
                Err(ApiError::validation("invalid_format", format!("format must be csv or ndjson, not {other:?}")))
            }
        }
    }

    /// A streamed body as a download of this format, saved as `{name}.csv` or `{name}.ndjson`.
    pub(crate) fn download(self, body: Body, name: &str) -> Response {
        let (content_type, extension) = match self {
            Self::Csv => ("text/csv; charset=utf-8", "csv"),
            Self::Ndjson => ("application/x-ndjson", "ndjson"),
        };
        let disposition = format!("attachment; filename=\"{name}.{extension}\"");
        let mut response = body.into_response();
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        if let Ok(value) = HeaderValue::from_str(&disposition) {
            response.headers_mut().insert(CONTENT_DISPOSITION, value);
        }
        response
    }
}

/// Downloads the report's rows as CSV or NDJSON, streamed.
#[utoipa::path(
    get, path = "/api/v1/transactions/export", tag = "reports",
    params(ExportQuery),
    responses(
        (status = 200, description = "The rows, newest first", content(
            (String = "text/csv"),
            (String = "application/x-ndjson"),
        )),
        (status = 400, description = "Malformed parameter or snapshot token", body = ErrorBody),
        (status = 404, description = "Unknown or expired snapshot", body = ErrorBody),
        (status = 422, description = "Unknown format, a window over 5 days back, or parameters that contradict the snapshot", body = ErrorBody),
        (status = 429, description = "The client already runs REPORT_CONCURRENCY_PER_CLIENT downloads; retry after `Retry-After` seconds", body = ErrorBody),
    )
)]
pub async fn export_transactions(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> ApiResult<Response> {
    let format = Format::parse(query.format.as_deref())?;
    let requested = requested_window(query.start_timestamp.as_deref(), query.end_timestamp.as_deref())?;
    let (window, snapshot) = match query.snapshot.as_deref() {
        Some(token) => {
            let snapshot = find_snapshot(&state, token).await?;
            check_matches(&snapshot, None, &requested)?;
            (Window { start: snapshot.window_start, end: snapshot.window_end }, Some(snapshot))
        }
        None => (new_window(&requested)?, None),
    };
    let slot = state.downloads.enter(&caller.name)?;
    let stall = state.settings.export_stall_timeout;
    // The connection is taken here: a download that cannot start is a 503, never a 200 with a truncated body.
    let (pool, wait) = (&state.report_pool, state.settings.report_replica_wait);
    let shape = match format {
        Format::Csv => Shape::Csv,
        Format::Ndjson => Shape::Rows,
    };
    let rows = reports::export(pool, (window.start, window.end), snapshot.as_ref(), wait, stall, shape).await?;
    let header = match format {
        Format::Csv => Some(Ok(Bytes::from(format!("{}\n", CSV_COLUMNS.join(","))))),
        Format::Ndjson => None,
    };
    // The rows, then nothing once the end marker came; a stream that stops without it fails the response,
    // so a client sees a broken download, never a short one that looks complete.
    let rows =
        rows.chain(futures::stream::once(async { Err(sqlx::Error::Protocol("the download was cut short".into())) }));
    let rows = rows.take_while(|item| std::future::ready(!matches!(item, Ok(Export::End))));
    let body = futures::stream::iter(header).chain(rows.ready_chunks(256).map(move |batch| {
        // The client's download slot lives as long as its body.
        let _slot = &slot;
        // NDJSON lines are written here; CSV comes already written, in whole lines.
        let mut buffer = String::with_capacity(if shape == Shape::Rows { CHUNK_BYTES } else { 0 });
        let mut text = Vec::new();
        for item in batch {
            match item {
                Ok(Export::Row(row)) => write_row(&mut buffer, &row),
                Ok(Export::Csv(lines)) => text.push(lines),
                Ok(Export::End) => {}
                Err(error) => {
                    tracing::error!(error = %error, "export stopped");
                    return Err(std::io::Error::other(error));
                }
            }
        }
        Ok(match text.len() {
            0 => Bytes::from(buffer),
            1 => text.remove(0),
            _ => Bytes::from(text.concat()),
        })
    }));
    Ok(format.download(Body::from_stream(body), "transactions"))
}

/// One NDJSON line: the row as the report's JSON shows it. (CSV is written by PostgreSQL: `reports::export`.)
fn write_row(buffer: &mut String, row: &Transaction) {
    // Serializing our own view cannot fail; an empty line would be the visible sign if it ever did.
    buffer.push_str(&serde_json::to_string(row).unwrap_or_default());
    buffer.push('\n');
}

/// RFC 4180: a field with a comma, quote or line break is quoted, its quotes doubled. A field that a
/// spreadsheet would run as a formula (a leading `=`, `+`, `-`, `@`, tab or carriage return: CSV injection)
/// gets a leading `'`, which spreadsheets show as text. These are the rules of the report's download, which
/// PostgreSQL writes (`db::reports`), so both downloads quote alike.
pub(crate) fn push_csv_field(buffer: &mut String, field: &str) {
    let quoted = field.contains([',', '"', '\n', '\r']);
    if quoted {
        buffer.push('"');
    }
    if field.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        buffer.push('\'');
    }
    if quoted {
        buffer.push_str(&field.replace('"', "\"\""));
        buffer.push('"');
    } else {
        buffer.push_str(field);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_fields_with_separators_are_quoted() {
        let mut buffer = String::new();
        push_csv_field(&mut buffer, "plain");
        push_csv_field(&mut buffer, "a,b");
        push_csv_field(&mut buffer, "say \"hi\"\nbye");
        assert_eq!(buffer, "plain\"a,b\"\"say \"\"hi\"\"\nbye\"");
    }

    #[test]
    fn csv_cells_a_spreadsheet_would_run_are_text() {
        for (field, written) in [
            ("=HYPERLINK(\"http://x\")", "\"'=HYPERLINK(\"\"http://x\"\")\""),
            ("+1", "'+1"),
            ("-2+3", "'-2+3"),
            ("@SUM(A1)", "'@SUM(A1)"),
            ("\t=1", "'\t=1"),
            ("\r=1", "\"'\r=1\""),
            ("a=b", "a=b"),
        ] {
            let mut buffer = String::new();
            push_csv_field(&mut buffer, field);
            assert_eq!(buffer, written, "{field:?}");
        }
    }

    #[test]
    fn a_window_starting_over_five_days_back_is_refused() {
        let six_days_ago = Utc::now() - Duration::days(6);
        assert_eq!(
            new_window(&Requested { start: Some(six_days_ago), end: None }).err().map(|e| e.code()),
            Some("window_too_old")
        );
        let four_days_ago = Utc::now() - Duration::days(4);
        assert!(new_window(&Requested { start: Some(four_days_ago), end: None }).is_ok());
    }

    #[test]
    fn a_window_ending_before_it_starts_is_refused() {
        let start = Utc::now() - Duration::hours(1);
        let end = start - Duration::hours(1);
        assert_eq!(
            new_window(&Requested { start: Some(start), end: Some(end) }).err().map(|e| e.code()),
            Some("invalid_window")
        );
    }
}
