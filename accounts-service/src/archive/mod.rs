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

//!
//! The parts: [`format`] (the row, its columns and the Parquet file), [`store`] (the directory or bucket),
//! [`sql`] (the day tables), and this module, which runs the steps in order.

pub mod format;
pub mod sql;
pub mod store;

use anyhow::bail;
use chrono::NaiveDate;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use format::{hex, read_rows, to_batch, Manifest, Tally, Totals, BATCH_ROWS, COLUMNS, FORMAT};
pub use store::Archive;

/// A step after which a pass can be told to stop the process abruptly (`ARCHIVE_STOP_AFTER`), so that tests
/// can prove that a crash there loses nothing. Only builds with the `test-hooks` feature (the tests') obey it.
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

#[cfg(feature = "test-hooks")]
fn stop_if(stop_after: Option<Step>, step: Step) {
    if stop_after == Some(step) {
        tracing::error!(?step, "ARCHIVE_STOP_AFTER: stopping the process here");
        std::process::abort();
    }
}

#[cfg(not(feature = "test-hooks"))]
fn stop_if(stop_after: Option<Step>, _step: Step) {
    // Settings refuse ARCHIVE_STOP_AFTER in a build without the hook, so there is never a step to stop at.
    debug_assert!(stop_after.is_none(), "ARCHIVE_STOP_AFTER in a build without test hooks");
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

/// Archives, verifies and drops every day's partition that ended more than `hot_days` days ago. Returns the
/// days dropped by this pass (none when another instance is archiving).
pub async fn archive_due(
    pool: &PgPool,
    archive: &Archive,
    hot_days: u32,
    stop_after: Option<Step>,
) -> anyhow::Result<Vec<ArchivedDay>> {
    let mut conn = pool.acquire().await?;
    if !sql::lock_session(&mut conn).await? {
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
    let mut done = Vec::new();
    for (table, day) in sql::due_days(conn, hot_days).await? {
        let (object, rows, file_bytes) = match sql::verified(conn, day).await? {
            // Verified by an earlier pass: the object may have changed since, so it is checked again before
            // anything is dropped.
            Some((object, rows, file_sha256)) => {
                let bytes = archive.fetch(&object.as_str().into()).await?;
                let now_sha = hex(&Sha256::digest(&bytes));
                if now_sha != file_sha256 {
                    bail!("the archived object {object} no longer has the verified bytes ({now_sha} != {file_sha256})");
                }
                (object, rows, bytes.len() as i64)
            }
            // Verified just now, from the bytes read back.
            None => {
                let manifest = export_and_verify(conn, archive, &table, day, stop_after).await?;
                sql::record_verified(conn, &table, &manifest).await?;
                stop_if(stop_after, Step::Verified);
                (manifest.object, manifest.rows, manifest.file_bytes)
            }
        };
        // The table must still have exactly the rows verified.
        let (in_table, partition_bytes) = sql::count(conn, &table).await?;
        if in_table != rows {
            bail!("{table} holds {in_table} rows but {rows} were archived; not dropping it");
        }
        sql::detach(conn, &table).await?;
        stop_if(stop_after, Step::Detached);
        sql::drop_day(conn, &table, day).await?;
        tracing::info!(%day, rows, object, "archived and dropped a day of transactions");
        done.push(ArchivedDay { day, rows, file_bytes, partition_bytes, object });
    }
    Ok(done)
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
        Ok(totals) => archive.upload(&object, &local).await.map(|()| totals),
        Err(error) => Err(error),
    };
    let _ = std::fs::remove_file(&local);
    let totals = uploaded?;
    stop_if(stop_after, Step::Exported);

    let bytes = archive.fetch(&object).await?;
    let mut tally = Tally::default();
    read_rows(bytes.clone(), |row| tally.add(&row))?;
    let read_back = tally.finish();
    if read_back != totals {
        bail!("{object} read back differs from what was exported: {read_back:?} vs {totals:?}");
    }
    let Totals { rows, rows_sha256, min, max } = totals;
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
    archive.put(&Archive::manifest(day), serde_json::to_vec_pretty(&manifest)?).await?;
    Ok(manifest)
}

/// Streams the day's rows into a zstd Parquet file at `local`, in row groups of [`BATCH_ROWS`].
async fn write_parquet(conn: &mut PgConnection, table: &str, local: &std::path::Path) -> anyhow::Result<Totals> {
    let file = std::fs::File::create(local)?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
        .set_max_row_group_row_count(Some(BATCH_ROWS))
        .build();
    let mut writer = ArrowWriter::try_new(file, format::file_schema(), Some(properties))?;
    let mut tally = Tally::default();
    let mut batch = Vec::with_capacity(BATCH_ROWS);
    sql::each_row(conn, table, |row| {
        tally.add(&row);
        batch.push(row);
        if batch.len() == BATCH_ROWS {
            writer.write(&to_batch(&batch)?)?;
            batch.clear();
        }
        Ok(())
    })
    .await?;
    if !batch.is_empty() {
        writer.write(&to_batch(&batch)?)?;
    }
    writer.close()?;
    Ok(tally.finish())
}

/// The rows of `account` (either side) in an archived day's file, in `(created_at, id)` order. The whole file is
/// fetched and decoded: cold reads cost a day's file, and statements read only the days where the account has
/// rows (`archived_account_days`).
pub async fn account_rows(
    archive: &Archive,
    day: NaiveDate,
    account: Uuid,
) -> anyhow::Result<Vec<format::ArchivedRow>> {
    // A day file is decoded whole: a few at a time across all requests bound the memory and CPU cold reads take.
    static COLD_READS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
    let _permit = COLD_READS.acquire().await?;
    let bytes = archive.fetch(&Archive::object(day)).await?;
    let mut rows = Vec::new();
    // Decoding is CPU work: off the runtime's threads.
    tokio::task::spawn_blocking(move || {
        read_rows(bytes, |row| {
            if row.dst_account_id == account || row.src_account_id == Some(account) {
                rows.push(row);
            }
        })?;
        Ok(rows)
    })
    .await?
}
