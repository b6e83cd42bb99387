//! Every account's own book, read: a statement's pages, and the balance before any point in time.
//!
//! Each row holds the balance after it of both its accounts (`movements`), and one account's rows commit in
//! `(created_at, id)` order, so:
//!
//! - the balance before a time is the balance after the account's newest row before it: one seek per side into
//!   the book indexes (`transactions_src_book`, `transactions_dst_book`), however many rows there are;
//! - a statement's snapshot is its newest row when the first page was read (the cursor's `bound`): a row that
//!   commits later is dated after it, so "no row after the bound" is "no row committed later";
//! - a page is a seek from the last row sent, bounded by the page size.
//!
//! Days in cold storage are read from their Parquet files, where `archived_account_days` says the account has
//! rows. Hot rows are read from the day after the newest archived day (the "floor"): a day is recorded as
//! verified before its partition is detached and dropped, so every row is in one place or the other. If an
//! archiving pass moves the floor while a read runs, the read runs again.

use chrono::{DateTime, NaiveDate, Utc};
use ledger_contract::{Direction, StatementEntry, TransactionKind, TransactionStatus};
use money::Amount;
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use super::{DbError, DbResult};
use crate::archive::{self, format::ArchivedRow, Archive};
use crate::domain::book::{effect, Key, Side};

/// The most archived day files one page reads; a page that reaches it comes back short, with a cursor.
pub const MAX_COLD_DAYS_PER_PAGE: usize = 7;

/// How many times a read runs again when an archiving pass moved the floor under it.
const FLOOR_ATTEMPTS: usize = 3;

/// Where an account's book is read from.
#[derive(Clone, Copy)]
pub struct Book<'a> {
    pub pool: &'a PgPool,
    /// Cold storage, for days already archived (`None` without `ARCHIVE_URL`).
    pub archive: Option<&'a Archive>,
}

/// One of the account's rows, with its balance after the row.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct BookRow {
    pub created_at: DateTime<Utc>,
    pub id: Uuid,
    #[sqlx(try_from = "String")]
    pub kind: TransactionKind,
    pub src_account_id: Option<Uuid>,
    pub dst_account_id: Uuid,
    #[sqlx(try_from = "Decimal")]
    pub amount: Amount,
    #[sqlx(try_from = "String")]
    pub direction: Direction,
    #[sqlx(try_from = "String")]
    pub status: TransactionStatus,
    pub reason: Option<String>,
    pub description: Option<String>,
    pub balance_after: Decimal,
}

impl BookRow {
    pub fn key(&self) -> Key {
        Key { created_at: self.created_at, id: self.id }
    }

    /// The row as `account`'s statement shows it.
    pub fn entry(&self, account: Uuid) -> StatementEntry {
        let side = if self.src_account_id == Some(account) { Side::Src } else { Side::Dst };
        let counterparty = match side {
            Side::Src => Some(self.dst_account_id),
            Side::Dst => self.src_account_id,
        };
        StatementEntry {
            transaction_id: self.id,
            transaction_timestamp: self.created_at,
            kind: self.kind,
            direction: self.direction,
            status: self.status,
            counterparty_account_id: counterparty,
            amount: self.amount,
            effect: effect(self.kind, self.direction, self.status, side, self.amount.value()),
            balance_after: self.balance_after,
            reason: self.reason.clone(),
            description: self.description.clone(),
        }
    }

    /// An archived row as `account`'s; `None` when its file has no balances (archived before they existed).
    fn from_archived(row: ArchivedRow, account: Uuid) -> DbResult<Option<Self>> {
        let balance = if row.src_account_id == Some(account) { row.src_balance_after } else { row.dst_balance_after };
        let Some(balance_after) = balance else { return Ok(None) };
        let bad = |error: &dyn std::fmt::Display| DbError::Inconsistent(format!("archived row {}: {error}", row.id));
        Ok(Some(Self {
            created_at: row.created_at,
            id: row.id,
            kind: TransactionKind::parse(&row.kind).map_err(|e| bad(&e))?,
            src_account_id: row.src_account_id,
            dst_account_id: row.dst_account_id,
            amount: Amount::try_from(row.amount).map_err(|e| bad(&e))?,
            direction: Direction::parse(&row.direction).map_err(|e| bad(&e))?,
            status: TransactionStatus::parse(&row.status).map_err(|e| bad(&e))?,
            reason: row.reason,
            description: row.description,
            balance_after,
        }))
    }
}

/// The seek for the account's newest hot row before a point, on both sides: `$1` the account, `($2, $3)` the
/// point, `$4`..`$5` and `$6`..`$7` the span of each side ([`Place::span`]). Public for the test that checks its
/// plan in the book pool seeks the book indexes (`tests/tests/statements.rs`).
pub const LAST_BEFORE: &str = "SELECT created_at, id, balance FROM (
         (SELECT created_at, id, src_balance_after AS balance FROM transactions
          WHERE src_account_id = $1 AND created_at >= $4 AND created_at <= $5 AND (created_at, id) < ($2, $3)
          ORDER BY created_at DESC FETCH FIRST 1 ROWS WITH TIES)
         UNION ALL
         (SELECT created_at, id, dst_balance_after FROM transactions
          WHERE dst_account_id = $1 AND created_at >= $6 AND created_at <= $7 AND (created_at, id) < ($2, $3)
          ORDER BY created_at DESC FETCH FIRST 1 ROWS WITH TIES)) AS sides
     ORDER BY created_at DESC, id DESC LIMIT 1";

/// The seek for a page of the account's hot rows: `$1` the account, after `($2, $3)` and up to `($4, $5)`, at
/// most `$6`, `$7`..`$8` and `$9`..`$10` the span of each side. Public as [`LAST_BEFORE`] is.
pub const PAGE: &str = "SELECT * FROM (
         (SELECT created_at, id, kind, src_account_id, dst_account_id, amount, direction, status, reason,
                 description, src_balance_after AS balance_after
          FROM transactions
          WHERE src_account_id = $1 AND created_at >= $7 AND created_at <= $8
            AND (created_at, id) > ($2, $3) AND (created_at, id) <= ($4, $5)
          ORDER BY created_at FETCH FIRST $6 ROWS WITH TIES)
         UNION ALL
         (SELECT created_at, id, kind, src_account_id, dst_account_id, amount, direction, status, reason,
                 description, dst_balance_after
          FROM transactions
          WHERE dst_account_id = $1 AND created_at >= $9 AND created_at <= $10
            AND (created_at, id) > ($2, $3) AND (created_at, id) <= ($4, $5)
          ORDER BY created_at FETCH FIRST $6 ROWS WITH TIES)) AS sides
     ORDER BY created_at, id LIMIT $6";

/// Where an account's rows can be, read in one snapshot: the archive's floor (the newest archived day) and the
/// account's book bounds on each side (migrations 0015, 0017: whole days that cover its rows there, `None` for an
/// account from before 0017 without a row there), and whether a given row (a statement's bound) is here.
struct Place {
    floor: Option<NaiveDate>,
    src: Option<(DateTime<Utc>, DateTime<Utc>)>,
    dst: Option<(DateTime<Utc>, DateTime<Utc>)>,
    present: bool,
}

impl Place {
    async fn read(pool: &PgPool, account: Uuid, row: Option<Key>) -> DbResult<Self> {
        #[derive(sqlx::FromRow)]
        struct Read {
            floor: Option<NaiveDate>,
            src_first_at: Option<DateTime<Utc>>,
            src_last_at: Option<DateTime<Utc>>,
            dst_first_at: Option<DateTime<Utc>>,
            dst_last_at: Option<DateTime<Utc>>,
            present: bool,
        }
        // The bound row's presence is asked only when there is one: a statement that names `transactions` costs
        // a lock on each of its partitions and their indexes on every run of a generic plan.
        let present = match row {
            Some(_) => "EXISTS (SELECT 1 FROM transactions WHERE created_at = $2 AND id = $3)",
            None => "true",
        };
        let sql = format!(
            "SELECT (SELECT max(day) FROM archived_days) AS floor,
                    a.src_first_at, a.src_last_at, a.dst_first_at, a.dst_last_at, {present} AS present
             FROM (SELECT) AS one LEFT JOIN accounts a ON a.id = $1"
        );
        let mut query = sqlx::query_as(&sql).bind(account);
        if let Some(row) = row {
            query = query.bind(row.created_at).bind(row.id);
        }
        let read: Read = query.fetch_one(pool).await?;
        Ok(Self {
            floor: read.floor,
            src: side_bounds(read.src_first_at, read.src_last_at),
            dst: side_bounds(read.dst_first_at, read.dst_last_at),
            present: read.present,
        })
    }

    /// The part of `from..=to` where the account can have rows on `side`, as the two ends a seek binds (both
    /// `NULL` when it has none there: PostgreSQL then prunes every partition before running the seek).
    fn span(
        &self,
        side: Side,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        let bounds = match side {
            Side::Src => self.src,
            Side::Dst => self.dst,
        };
        match bounds.map(|(first, last)| (first.max(from), last.min(to))) {
            Some((lower, upper)) if lower <= upper => (Some(lower), Some(upper)),
            _ => (None, None),
        }
    }
}

/// One side's bounds as stored: both NULL, no row there; a pair in order, the rows lie between. Anything else (one
/// end NULL, or the first after the last) the service never writes, and since migration 0018 no constraint refuses
/// it: it is read as "the rows can be anywhere", so a hand-made repair costs a wider seek, never a missing row.
fn side_bounds(first: Option<DateTime<Utc>>, last: Option<DateTime<Utc>>) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    match (first, last) {
        (None, None) => None,
        (Some(first), Some(last)) if first <= last => Some((first, last)),
        _ => Some((DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC)),
    }
}

/// The newest archived day (every row up to its end is in cold storage), if any.
async fn floor(pool: &PgPool) -> DbResult<Option<NaiveDate>> {
    let (day,): (Option<NaiveDate>,) = sqlx::query_as("SELECT max(day) FROM archived_days").fetch_one(pool).await?;
    Ok(day)
}

/// The first time hot rows are read from: the day after the floor.
fn hot_from(floor: Option<NaiveDate>) -> DateTime<Utc> {
    floor.and_then(|day| day.succ_opt()).map_or(DateTime::UNIX_EPOCH, |day| day.and_time(Default::default()).and_utc())
}

/// The account's newest row before `key`, and its balance after it: the account's balance at that point (none
/// when the account had no row before it, so its balance was 0).
pub async fn last_before(book: Book<'_>, account: Uuid, key: Key) -> DbResult<Option<(Key, Decimal)>> {
    for _ in 0..FLOOR_ATTEMPTS {
        // The bounds are read before the seek, in an earlier snapshot: a row the seek's snapshot sees beyond them
        // committed after they were read, so after every row they cover (one account's rows commit in time
        // order). Leaving such rows out answers as of the bounds' snapshot, a consistent point.
        let place = Place::read(book.pool, account, None).await?;
        let floor = place.floor;
        let hot = hot_from(floor);
        if key.created_at > hot {
            let (src, dst) = (place.span(Side::Src, hot, key.created_at), place.span(Side::Dst, hot, key.created_at));
            let found: Option<(DateTime<Utc>, Uuid, Decimal)> = sqlx::query_as(LAST_BEFORE)
                .bind(account)
                .bind(key.created_at)
                .bind(key.id)
                .bind(src.0)
                .bind(src.1)
                .bind(dst.0)
                .bind(dst.1)
                .fetch_optional(book.pool)
                .await?;
            // A hot row is newer than any cold one: the answer, whatever archiving did meanwhile.
            if let Some((created_at, id, balance)) = found {
                return Ok(Some((Key { created_at, id }, balance)));
            }
        }
        let cold = match floor {
            Some(floor) => cold_last_before(book, account, key, floor).await?,
            None => None,
        };
        if self::floor(book.pool).await? == floor {
            return Ok(cold);
        }
    }
    Err(DbError::Inconsistent("the archive's floor kept moving while a balance was read".into()))
}

/// [`last_before`] among the archived days up to `floor`.
async fn cold_last_before(
    book: Book<'_>,
    account: Uuid,
    key: Key,
    floor: NaiveDate,
) -> DbResult<Option<(Key, Decimal)>> {
    let mut before_day = floor.succ_opt().unwrap_or(floor);
    let found = loop {
        let day: Option<(NaiveDate, DateTime<Utc>, Uuid, Decimal)> = sqlx::query_as(
            "SELECT day, last_created_at, last_id, closing_balance FROM archived_account_days
             WHERE account_id = $1 AND day < $2 AND first_created_at <= $3
             ORDER BY day DESC LIMIT 1",
        )
        .bind(account)
        .bind(before_day)
        .bind(key.created_at)
        .fetch_optional(book.pool)
        .await?;
        let Some((day, last_created_at, last_id, closing)) = day else { break None };
        let last = Key { created_at: last_created_at, id: last_id };
        if last < key {
            break Some((day, (last, closing)));
        }
        // The day holds the point asked for: its own rows tell the balance there.
        let rows = cold_rows(book, day, account).await?;
        if let Some(row) = rows.into_iter().rev().find(|row| row.key() < key) {
            break Some((day, (row.key(), row.balance_after)));
        }
        before_day = day;
    };
    // A day archived before balances existed may hold a newer row of the account than the one found.
    match (newest_day_without_book(book, floor, None, key.created_at).await?, &found) {
        (Some(gap), Some((day, _))) if *day <= gap => Err(DbError::NoBook(gap)),
        (Some(gap), None) => Err(DbError::NoBook(gap)),
        _ => Ok(found.map(|(_, found)| found)),
    }
}

/// The newest day up to `floor` archived before balances were recorded (`has_book` false), among the days of
/// `since` (when given) to `through`.
async fn newest_day_without_book(
    book: Book<'_>,
    floor: NaiveDate,
    since: Option<DateTime<Utc>>,
    through: DateTime<Utc>,
) -> DbResult<Option<NaiveDate>> {
    let (day,): (Option<NaiveDate>,) = sqlx::query_as(
        "SELECT max(day) FROM archived_days
         WHERE NOT has_book AND day <= $1 AND ($2::timestamptz IS NULL OR day >= ($2 AT TIME ZONE 'UTC')::date)
           AND day <= ($3 AT TIME ZONE 'UTC')::date",
    )
    .bind(floor)
    .bind(since)
    .bind(through)
    .fetch_one(book.pool)
    .await?;
    Ok(day)
}

/// The account's rows of one archived day.
async fn cold_rows(book: Book<'_>, day: NaiveDate, account: Uuid) -> DbResult<Vec<BookRow>> {
    let archive = book.archive.ok_or_else(|| DbError::ArchiveUnavailable("ARCHIVE_URL is not set".into()))?;
    let rows = archive::account_rows(archive, day, account)
        .await
        .map_err(|error| DbError::ArchiveUnavailable(format!("{error:#}")))?;
    let mut book_rows = Vec::with_capacity(rows.len());
    for row in rows {
        book_rows.push(BookRow::from_archived(row, account)?.ok_or(DbError::NoBook(day))?);
    }
    Ok(book_rows)
}

/// One page: the account's rows after `after` and up to `bound` (both keys), oldest first, at most `limit`;
/// with the key to continue after when more may follow.
pub async fn page(
    book: Book<'_>,
    account: Uuid,
    after: Key,
    bound: Key,
    limit: usize,
) -> DbResult<(Vec<BookRow>, Option<Key>)> {
    for _ in 0..FLOOR_ATTEMPTS {
        // The bounds are read with the bound row's presence: when it is here, they cover it and every row before it.
        let place = Place::read(book.pool, account, Some(bound)).await?;
        let floor = place.floor;
        let hot = hot_from(floor);
        let mut rows = Vec::new();
        let mut cold_resume = None;
        if let (Some(floor), true) = (floor, after.created_at < hot) {
            cold_resume = cold_page(book, account, after, bound, limit, floor, &mut rows).await?;
        }
        if rows.len() <= limit && cold_resume.is_none() && bound.created_at >= hot {
            // On a standby behind the one that read the first page, rows up to the bound may not be here yet; the
            // bound itself tells, since one account's rows commit (and replay) in order.
            if !place.present {
                if self::floor(book.pool).await? != floor {
                    continue;
                }
                return Err(DbError::ReplicaBehind);
            }
            let lower = rows.last().map_or(after, BookRow::key).max(after).max(Key::at(hot));
            let span = |side| place.span(side, lower.created_at, bound.created_at);
            let (src, dst) = (span(Side::Src), span(Side::Dst));
            let hot_rows: Vec<BookRow> = sqlx::query_as(PAGE)
                .bind(account)
                .bind(lower.created_at)
                .bind(lower.id)
                .bind(bound.created_at)
                .bind(bound.id)
                .bind((limit + 1 - rows.len()) as i64)
                .bind(src.0)
                .bind(src.1)
                .bind(dst.0)
                .bind(dst.1)
                .fetch_all(book.pool)
                .await?;
            rows.extend(hot_rows);
        }
        if self::floor(book.pool).await? != floor {
            continue;
        }
        if rows.len() > limit {
            rows.truncate(limit);
            let next = rows.last().map(BookRow::key);
            return Ok((rows, next));
        }
        return Ok((rows, cold_resume));
    }
    Err(DbError::Inconsistent("the archive's floor kept moving while a statement was read".into()))
}

/// The archived part of a page: reads at most [`MAX_COLD_DAYS_PER_PAGE`] day files where the account has rows,
/// appending until `limit + 1` rows. Returns where to resume when it stopped at the file limit.
async fn cold_page(
    book: Book<'_>,
    account: Uuid,
    after: Key,
    bound: Key,
    limit: usize,
    floor: NaiveDate,
    rows: &mut Vec<BookRow>,
) -> DbResult<Option<Key>> {
    if let Some(day) = newest_day_without_book(book, floor, Some(after.created_at), bound.created_at).await? {
        return Err(DbError::NoBook(day));
    }
    let days: Vec<(NaiveDate, DateTime<Utc>, Uuid)> = sqlx::query_as(
        "SELECT day, last_created_at, last_id FROM archived_account_days
         WHERE account_id = $1 AND day <= $2 AND (last_created_at, last_id) > ($3, $4) AND first_created_at <= $5
         ORDER BY day LIMIT $6",
    )
    .bind(account)
    .bind(floor)
    .bind(after.created_at)
    .bind(after.id)
    .bind(bound.created_at)
    .bind((MAX_COLD_DAYS_PER_PAGE + 1) as i64)
    .fetch_all(book.pool)
    .await?;
    for (n, (day, last_created_at, last_id)) in days.iter().enumerate() {
        if n == MAX_COLD_DAYS_PER_PAGE {
            // More days to read than one page may: resume after the last day read.
            let (_, created_at, id) = days[n - 1];
            return Ok(Some(Key { created_at, id }.min(bound)));
        }
        let in_range =
            cold_rows(book, *day, account).await?.into_iter().filter(|row| row.key() > after && row.key() <= bound);
        rows.extend(in_range);
        let last = Key { created_at: *last_created_at, id: *last_id };
        if rows.len() > limit || last >= bound {
            break;
        }
    }
    Ok(None)
}
