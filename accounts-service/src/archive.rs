//! Cold storage: a day's partition older than `HOT_RETENTION_DAYS` leaves PostgreSQL for a compressed Parquet
//! file in `ARCHIVE_URL` (a directory, or an S3-compatible bucket), with a manifest beside it.
//!
//! One day at a time, oldest first, and each step only after the one before it is durable:
//!
//! 1. **Export.** The partition's rows, in `(created_at, id)` order, are written to a Parquet file (zstd) and
//!    uploaded. A SHA-256 over the rows (each as a JSON array and a newline) is computed on the way.
//! 2. **Verify.** The uploaded object is downloaded and decoded again; its rows must give the same count,
//!    checksum and time range. Then the manifest is written, and `archived_days` records the day as verified.
//! 3. **Detach** the partition (`DETACH PARTITION … CONCURRENTLY`, which does not stop inserts).
//! 4. **Drop** it, with its report marks, after checking once more that the object's bytes are the ones
//!    verified and that the table holds exactly the rows the manifest counts.
//!
//! A crash anywhere loses nothing: a day not yet recorded as verified is exported again from its partition
//! (which is still there); a verified day is checked again and continues at the detach or the drop (a detach
//! left pending is finalized). Nothing is dropped that was not verified in the archive. One instance archives
//! at a time (a session advisory lock).

use std::io::Read;
use std::sync::Arc;

use anyhow::{bail, Context};
use arrow_array::builder::{Decimal128Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder};
use arrow_array::{Array, ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use rust_decimal::Decimal;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

/// The manifest's `format`: bump it when the file's columns change.
pub const FORMAT: &str = "ledger-transactions-archive/1";
/// Rows per Parquet row group and per batch read from PostgreSQL.
const BATCH_ROWS: usize = 65_536;
/// Upload part size.
const PART_BYTES: usize = 8 * 1024 * 1024;

/// Where archived days go.
#[derive(Clone)]
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    /// Shown in logs and manifests (the URL, without credentials: those come from the environment).
    pub url: String,
}

impl std::fmt::Debug for Archive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Archive").field("url", &self.url).finish()
    }
}

impl Archive {
    /// Opens `ARCHIVE_URL`: `s3://bucket/prefix` (credentials, region and an S3-compatible endpoint from the
    /// usual `AWS_*` variables), or a directory (`file:///path` or an absolute path), created if missing.
    pub fn open(url: &str) -> anyhow::Result<Self> {
        let store: Arc<dyn ObjectStore> = if url.starts_with("s3://") {
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_url(url)
                .build()
                .with_context(|| format!("ARCHIVE_URL {url}"))?;
            let prefix = url.trim_start_matches("s3://").split_once('/').map(|(_, p)| p.trim_matches('/'));
            match prefix {
                Some(prefix) if !prefix.is_empty() => {
                    Arc::new(object_store::prefix::PrefixStore::new(s3, ObjectPath::from(prefix)))
                }
                _ => Arc::new(s3),
            }
        } else {
            let dir = url.strip_prefix("file://").unwrap_or(url);
            if !dir.starts_with('/') {
                bail!("ARCHIVE_URL must be s3://bucket/prefix, file:///path or an absolute path, not {url:?}");
            }
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create the archive directory {dir}"))?;
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir)?)
        };
        Ok(Self { store, url: url.to_owned() })
    }

    fn object(day: NaiveDate) -> ObjectPath {
        ObjectPath::from(format!("transactions/day={day}/transactions-{day}.parquet"))
    }

    fn manifest(day: NaiveDate) -> ObjectPath {
        ObjectPath::from(format!("transactions/day={day}/manifest.json"))
    }
}

/// A step after which [`archive_due`] can be told to stop the process abruptly (`ARCHIVE_STOP_AFTER`), so that
/// tests can prove that a crash there loses nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Exported,
    Verified,
    Detached,
}

impl std::str::FromStr for Step {
    type Err = anyhow::Error;
    fn from_str(text: &str) -> anyhow::Result<Self> {
        match text {
            "exported" => Ok(Self::Exported),
            "verified" => Ok(Self::Verified),
            "detached" => Ok(Self::Detached),
            other => bail!("ARCHIVE_STOP_AFTER must be exported, verified or detached, not {other:?}"),
        }
    }
}

/// A `transactions` row as archived: every column.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ArchivedRow {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub kind: String,
    pub src_account_id: Option<Uuid>,
    pub dst_account_id: Uuid,
    pub amount: Decimal,
    pub direction: String,
    pub status: String,
    pub reason: Option<String>,
    pub description: Option<String>,
    pub idempotency_key: Option<String>,
    pub created_xid: i64,
    pub recorded_by: Option<String>,
}

/// What a day's file holds, as the manifest and `archived_days` record it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Manifest {
    pub format: &'static str,
    pub day: NaiveDate,
    pub object: String,
    pub rows: i64,
    /// SHA-256 of the rows in `(created_at, id)` order, each a JSON array of its columns (in the file's column
    /// order; times as microseconds since the epoch, amounts as decimal text) followed by a newline.
    pub rows_sha256: String,
    pub file_sha256: String,
    pub file_bytes: i64,
    pub min_created_at: Option<DateTime<Utc>>,
    pub max_created_at: Option<DateTime<Utc>>,
    pub columns: Vec<&'static str>,
}

const COLUMNS: [&str; 13] = [
    "id",
    "created_at",
    "kind",
    "src_account_id",
    "dst_account_id",
    "amount",
    "direction",
    "status",
    "reason",
    "description",
    "idempotency_key",
    "created_xid",
    "recorded_by",
];

fn schema() -> SchemaRef {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("id", false),
        Field::new("created_at", DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())), false),
        text("kind", false),
        text("src_account_id", true),
        text("dst_account_id", false),
        Field::new("amount", DataType::Decimal128(15, 2), false),
        text("direction", false),
        text("status", false),
        text("reason", true),
        text("description", true),
        text("idempotency_key", true),
        Field::new("created_xid", DataType::Int64, false),
        text("recorded_by", true),
    ]))
}

/// Counts, checksums and time range of rows seen in order.
#[derive(Default)]
struct Tally {
    rows: i64,
    sha: Sha256,
    min: Option<DateTime<Utc>>,
    max: Option<DateTime<Utc>>,
}

impl Tally {
    fn add(&mut self, row: &ArchivedRow) {
        let line = serde_json::json!([
            row.id,
            row.created_at.timestamp_micros(),
            row.kind,
            row.src_account_id,
            row.dst_account_id,
            row.amount.to_string(),
            row.direction,
            row.status,
            row.reason,
            row.description,
            row.idempotency_key,
            row.created_xid,
            row.recorded_by,
        ]);
        self.sha.update(line.to_string().as_bytes());
        self.sha.update(b"\n");
        self.rows += 1;
        self.min = Some(self.min.map_or(row.created_at, |min| min.min(row.created_at)));
        self.max = Some(self.max.map_or(row.created_at, |max| max.max(row.created_at)));
    }

    fn finish(self) -> (i64, String, Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
        (self.rows, hex(&self.sha.finalize()), self.min, self.max)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn to_batch(rows: &[ArchivedRow]) -> anyhow::Result<RecordBatch> {
    let texts = |f: &dyn Fn(&ArchivedRow) -> Option<String>| -> ArrayRef {
        let mut builder = StringBuilder::new();
        for row in rows {
            builder.append_option(f(row));
        }
        Arc::new(builder.finish())
    };
    let mut times = TimestampMicrosecondBuilder::with_capacity(rows.len()).with_timezone("UTC");
    let mut amounts = Decimal128Builder::with_capacity(rows.len()).with_precision_and_scale(15, 2)?;
    let mut xids = Int64Builder::with_capacity(rows.len());
    for row in rows {
        times.append_value(row.created_at.timestamp_micros());
        let mut amount = row.amount;
        amount.rescale(2);
        amounts.append_value(amount.mantissa());
        xids.append_value(row.created_xid);
    }
    let columns: Vec<ArrayRef> = vec![
        texts(&|r| Some(r.id.to_string())),
        Arc::new(times.finish()),
        texts(&|r| Some(r.kind.clone())),
        texts(&|r| r.src_account_id.map(|id| id.to_string())),
        texts(&|r| Some(r.dst_account_id.to_string())),
        Arc::new(amounts.finish()),
        texts(&|r| Some(r.direction.clone())),
        texts(&|r| Some(r.status.clone())),
        texts(&|r| r.reason.clone()),
        texts(&|r| r.description.clone()),
        texts(&|r| r.idempotency_key.clone()),
        Arc::new(xids.finish()),
        texts(&|r| r.recorded_by.clone()),
    ];
    Ok(RecordBatch::try_new(schema(), columns)?)
}

fn column<'a, T: 'static>(batch: &'a RecordBatch, name: &str) -> anyhow::Result<&'a T> {
    batch
        .column_by_name(name)
        .and_then(|column| column.as_any().downcast_ref::<T>())
        .with_context(|| format!("the archive has no column {name} of the expected type"))
}

/// Decodes a Parquet file written by [`to_batch`] back into rows, calling `each` for every row in order.
pub fn read_rows(file: Bytes, mut each: impl FnMut(ArchivedRow)) -> anyhow::Result<()> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.with_batch_size(BATCH_ROWS).build()?;
    for batch in reader {
        let batch = batch?;
        let text = |name: &str| column::<StringArray>(&batch, name);
        let (id, kind, src, dst) = (text("id")?, text("kind")?, text("src_account_id")?, text("dst_account_id")?);
        let (direction, status, reason) = (text("direction")?, text("status")?, text("reason")?);
        let (description, key, recorded_by) = (text("description")?, text("idempotency_key")?, text("recorded_by")?);
        let times = column::<TimestampMicrosecondArray>(&batch, "created_at")?;
        let amounts = column::<Decimal128Array>(&batch, "amount")?;
        let xids = column::<Int64Array>(&batch, "created_xid")?;
        let optional = |array: &StringArray, i: usize| (!array.is_null(i)).then(|| array.value(i).to_owned());
        for i in 0..batch.num_rows() {
            each(ArchivedRow {
                id: id.value(i).parse()?,
                created_at: DateTime::from_timestamp_micros(times.value(i)).context("a time out of range")?,
                kind: kind.value(i).to_owned(),
                src_account_id: optional(src, i).map(|s| s.parse()).transpose()?,
                dst_account_id: dst.value(i).parse()?,
                amount: Decimal::from_i128_with_scale(amounts.value(i), 2),
                direction: direction.value(i).to_owned(),
                status: status.value(i).to_owned(),
                reason: optional(reason, i),
                description: optional(description, i),
                idempotency_key: optional(key, i),
                created_xid: xids.value(i),
                recorded_by: optional(recorded_by, i),
            });
        }
    }
    Ok(())
}

/// What one pass did for one day.
#[derive(Debug, Clone, Serialize)]
pub struct ArchivedDay {
    pub day: NaiveDate,
    pub rows: i64,
    pub file_bytes: i64,
    /// The partition's size in PostgreSQL (table, indexes and TOAST) before it was dropped.
    pub partition_bytes: i64,
    pub object: String,
}

/// The lock key only one archiving session holds.
const LOCK: &str = "ledger-archive";

/// Archives, verifies and drops every day's partition that ended more than `hot_days` days ago. Returns the
/// days dropped by this pass (none when another instance is archiving).
pub async fn archive_due(
    pool: &PgPool,
    archive: &Archive,
    hot_days: u32,
    stop_after: Option<Step>,
) -> anyhow::Result<Vec<ArchivedDay>> {
    let mut conn = pool.acquire().await?;
    sqlx::query("SET statement_timeout = 0").execute(&mut *conn).await?;
    let (locked,): (bool,) =
        sqlx::query_as("SELECT pg_try_advisory_lock(hashtextextended($1, 0))").bind(LOCK).fetch_one(&mut *conn).await?;
    if !locked {
        tracing::info!("another instance is archiving");
        return Ok(Vec::new());
    }
    let result = archive_days(&mut conn, archive, hot_days, stop_after).await;
    // The session's lock and its statement timeout go with the connection: closed, not returned to the pool.
    let _ = conn.close().await;
    result
}

async fn archive_days(
    conn: &mut PgConnection,
    archive: &Archive,
    hot_days: u32,
    stop_after: Option<Step>,
) -> anyhow::Result<Vec<ArchivedDay>> {
    // Every day table, attached, pending a detach, or detached, whose day ended `hot_days` ago.
    let due: Vec<(String, NaiveDate)> = sqlx::query_as(
        "SELECT c.relname::text, to_date(substr(c.relname, 14), 'YYYYMMDD')
         FROM pg_class c
         WHERE c.relname ~ '^transactions_[0-9]{8}$' AND c.relkind = 'r'
           AND c.relnamespace = current_schema()::regnamespace
           AND to_date(substr(c.relname, 14), 'YYYYMMDD') < (now() AT TIME ZONE 'UTC')::date - $1
         ORDER BY 2",
    )
    .bind(hot_days as i32)
    .fetch_all(&mut *conn)
    .await?;
    let mut done = Vec::new();
    for (table, day) in due {
        let verified: Option<(String, i64, String)> =
            sqlx::query_as("SELECT object, row_count, file_sha256 FROM archived_days WHERE day = $1")
                .bind(day)
                .fetch_optional(&mut *conn)
                .await?;
        let (object, rows, file_bytes) = match verified {
            // Verified by an earlier pass: the object may have changed since, so it is checked again before
            // anything is dropped.
            Some((object, rows, file_sha256)) => {
                let bytes = archive.store.get(&ObjectPath::from(object.as_str())).await?.bytes().await?;
                let now_sha = hex(&Sha256::digest(&bytes));
                if now_sha != file_sha256 {
                    bail!("the archived object {object} no longer has the verified bytes ({now_sha} != {file_sha256})");
                }
                (object, rows, bytes.len() as i64)
            }
            // Verified just now, from the bytes read back.
            None => {
                let manifest = export_and_verify(conn, archive, &table, day, stop_after).await?;
                record_verified(conn, &manifest).await?;
                stop_if(stop_after, Step::Verified);
                (manifest.object, manifest.rows, manifest.file_bytes)
            }
        };
        // The table must still have exactly the rows verified.
        let (in_table, partition_bytes): (i64, i64) =
            sqlx::query_as(&format!("SELECT count(*), pg_total_relation_size('{table}') FROM {table}"))
                .fetch_one(&mut *conn)
                .await?;
        if in_table != rows {
            bail!("{table} holds {in_table} rows but {rows} were archived; not dropping it");
        }
        detach(conn, &table).await?;
        stop_if(stop_after, Step::Detached);
        drop_day(conn, &table, day).await?;
        tracing::info!(%day, rows, object, "archived and dropped a day of transactions");
        done.push(ArchivedDay { day, rows, file_bytes, partition_bytes, object });
    }
    Ok(done)
}

fn stop_if(stop_after: Option<Step>, step: Step) {
    if stop_after == Some(step) {
        tracing::error!(?step, "ARCHIVE_STOP_AFTER: stopping the process here");
        std::process::abort();
    }
}

/// Writes the day's rows to a local temporary file, uploads it, and verifies the upload.
async fn export_and_verify(
    conn: &mut PgConnection,
    archive: &Archive,
    table: &str,
    day: NaiveDate,
    stop_after: Option<Step>,
) -> anyhow::Result<Manifest> {
    let object = Archive::object(day);
    let local = std::env::temp_dir().join(format!("ledger-archive-{day}-{}.parquet", Uuid::new_v4().simple()));
    let exported = write_parquet(conn, table, &local).await;
    let uploaded = match exported {
        Ok(tally) => upload(archive, &object, &local).await.map(|()| tally),
        Err(error) => Err(error),
    };
    let _ = std::fs::remove_file(&local);
    let (rows, rows_sha256, min, max) = uploaded?;
    stop_if(stop_after, Step::Exported);

    let bytes = archive.store.get(&object).await?.bytes().await?;
    let mut tally = Tally::default();
    read_rows(bytes.clone(), |row| tally.add(&row))?;
    let read_back = tally.finish();
    if read_back != (rows, rows_sha256.clone(), min, max) {
        bail!("{object} read back differs from what was exported: {read_back:?} vs {rows} rows, {rows_sha256}");
    }
    let manifest = Manifest {
        format: FORMAT,
        day,
        object: object.to_string(),
        rows,
        rows_sha256,
        file_sha256: hex(&Sha256::digest(&bytes)),
        file_bytes: bytes.len() as i64,
        min_created_at: min,
        max_created_at: max,
        columns: COLUMNS.to_vec(),
    };
    let json = serde_json::to_vec_pretty(&manifest)?;
    archive.store.put(&Archive::manifest(day), PutPayload::from(json)).await?;
    Ok(manifest)
}

async fn write_parquet(
    conn: &mut PgConnection,
    table: &str,
    local: &std::path::Path,
) -> anyhow::Result<(i64, String, Option<DateTime<Utc>>, Option<DateTime<Utc>>)> {
    let file = std::fs::File::create(local)?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_max_row_group_row_count(Some(BATCH_ROWS))
        .build();
    let mut writer = ArrowWriter::try_new(file, schema(), Some(properties))?;
    let mut tally = Tally::default();
    let sql = format!(
        "SELECT id, created_at, kind, src_account_id, dst_account_id, amount, direction, status, reason,
                description, idempotency_key, created_xid::text::bigint AS created_xid, recorded_by
         FROM {table} ORDER BY created_at, id"
    );
    let mut rows = sqlx::query_as::<_, ArchivedRow>(&sql).fetch(&mut *conn);
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    while let Some(row) = rows.try_next().await? {
        tally.add(&row);
        batch.push(row);
        if batch.len() == BATCH_ROWS {
            writer.write(&to_batch(&batch)?)?;
            batch.clear();
        }
    }
    if !batch.is_empty() {
        writer.write(&to_batch(&batch)?)?;
    }
    writer.close()?;
    Ok(tally.finish())
}

async fn upload(archive: &Archive, object: &ObjectPath, local: &std::path::Path) -> anyhow::Result<()> {
    let upload = archive.store.put_multipart(object).await?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
    let mut file = std::fs::File::open(local)?;
    let mut buffer = vec![0u8; PART_BYTES];
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        writer.wait_for_capacity(4).await?;
        writer.write(&buffer[..n]);
    }
    writer.finish().await?;
    Ok(())
}

async fn record_verified(conn: &mut PgConnection, manifest: &Manifest) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO archived_days
             (day, object, row_count, rows_sha256, file_sha256, file_bytes, min_created_at, max_created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(manifest.day)
    .bind(&manifest.object)
    .bind(manifest.rows)
    .bind(&manifest.rows_sha256)
    .bind(&manifest.file_sha256)
    .bind(manifest.file_bytes)
    .bind(manifest.min_created_at)
    .bind(manifest.max_created_at)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Detaches the day's partition without stopping inserts; finishes a detach a crash left pending; does
/// nothing for a table already detached.
async fn detach(conn: &mut PgConnection, table: &str) -> anyhow::Result<()> {
    let state: Option<(bool,)> = sqlx::query_as(
        "SELECT i.inhdetachpending FROM pg_inherits i
         WHERE i.inhrelid = $1::regclass AND i.inhparent = 'transactions'::regclass",
    )
    .bind(table)
    .fetch_optional(&mut *conn)
    .await?;
    match state {
        None => {}
        Some((true,)) => {
            sqlx::query(&format!("ALTER TABLE transactions DETACH PARTITION {table} FINALIZE"))
                .execute(&mut *conn)
                .await?;
        }
        Some((false,)) => {
            sqlx::query(&format!("ALTER TABLE transactions DETACH PARTITION {table} CONCURRENTLY"))
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Drops a detached day table and its report marks, and records the drop, in one transaction.
async fn drop_day(conn: &mut PgConnection, table: &str, day: NaiveDate) -> anyhow::Result<()> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query(
        "DELETE FROM report_marks
         WHERE created_at >= $1::date::timestamp AT TIME ZONE 'UTC'
           AND created_at < ($1::date + 1)::timestamp AT TIME ZONE 'UTC'",
    )
    .bind(day)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!("DROP TABLE {table}")).execute(&mut *tx).await?;
    sqlx::query("UPDATE archived_days SET dropped_at = clock_timestamp() WHERE day = $1")
        .bind(day)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
