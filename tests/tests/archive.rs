//! Cold storage: days past `HOT_RETENTION_DAYS` leave PostgreSQL for Parquet files that a standard tool
//! (DuckDB, from PyPI) reads back row for row; a run stopped after any step resumes and loses nothing; a file
//! changed after it was verified stops the drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;
use sqlx::PgPool;
use system_tests::{binary_path, TestDatabase};
use uuid::Uuid;

/// Days ago of the old (archived) days and of a recent one that must stay.
const OLD_DAYS: [i32; 3] = [102, 101, 100];
const RECENT_DAY: i32 = 3;

struct Fixture {
    database: TestDatabase,
    pool: PgPool,
    archive: PathBuf,
}

impl Fixture {
    /// A migrated ledger with rows on three days about 100 days ago and on one recent day.
    async fn new() -> anyhow::Result<Self> {
        let database = TestDatabase::create().await?;
        let pool = PgPool::connect(&database.url).await?;
        accounts_service::db::MIGRATOR.run(&pool).await?;
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        sqlx::query("INSERT INTO accounts (id, balance) VALUES ($1, 0), ($2, 0)")
            .bind(a)
            .bind(b)
            .execute(&pool)
            .await?;
        for (n, days_ago) in OLD_DAYS.iter().chain([&RECENT_DAY]).enumerate() {
            sqlx::query("SELECT ledger_create_partition((now() AT TIME ZONE 'UTC')::date - $1)")
                .bind(days_ago)
                .execute(&pool)
                .await?;
            // Rows as varied as the schema allows: transfers and bank rows, failures, descriptions that need
            // quoting, keys and none; written before any seal (the frontier starts at the epoch).
            sqlx::query(
                "INSERT INTO transactions
                     (id, created_at, kind, src_account_id, dst_account_id, amount, direction, status, reason,
                      description, idempotency_key, recorded_by)
                 SELECT gen_random_uuid(),
                        date_trunc('day', now(), 'UTC') - make_interval(days => $1) + g * interval '7 seconds',
                        CASE WHEN g % 3 = 0 THEN 'bank' ELSE 'transfer' END,
                        CASE WHEN g % 3 = 0 THEN NULL ELSE $2::uuid END, $3,
                        (g % 100000) / 100.0 + 0.01, CASE WHEN g % 2 = 0 THEN 'debit' ELSE 'credit' END,
                        CASE WHEN g % 13 = 0 THEN 'fail' ELSE 'success' END,
                        CASE WHEN g % 13 = 0 THEN 'Insufficient funds' END,
                        CASE WHEN g % 3 = 0 THEN 'paid, \"in full\" — ' || g END,
                        CASE WHEN g % 5 = 0 THEN 'key-' || g END,
                        'client-' || (g % 4)
                 FROM generate_series(1, $4) AS g",
            )
            .bind(days_ago)
            .bind(a)
            .bind(b)
            .bind(1_000 + 700 * n as i32)
            .execute(&pool)
            .await?;
        }
        let archive = std::env::temp_dir().join(format!("ledger-archive-{}", database.name));
        Ok(Self { database, pool, archive })
    }

    /// Runs `accounts-service archive` once; returns its exit status and output.
    fn archive_once(&self, stop_after: Option<&str>) -> anyhow::Result<(std::process::ExitStatus, String, String)> {
        let mut command = Command::new(binary_path("accounts-service")?);
        command
            .arg("archive")
            .env("DATABASE_URL", &self.database.url)
            .env("ARCHIVE_URL", &self.archive)
            .env("HOT_RETENTION_DAYS", "90")
            .env("RUST_LOG", "info");
        if let Some(step) = stop_after {
            command.env("ARCHIVE_STOP_AFTER", step);
        }
        let output = command.output()?;
        Ok((output.status, String::from_utf8(output.stdout)?, String::from_utf8(output.stderr)?))
    }

    fn table(days_ago: i32) -> String {
        let day = chrono::Utc::now().date_naive() - chrono::Duration::days(i64::from(days_ago));
        format!("transactions_{}", day.format("%Y%m%d"))
    }

    /// Whether the day's table exists, and whether it is still a partition of `transactions`.
    async fn table_state(&self, days_ago: i32) -> anyhow::Result<(bool, bool)> {
        let (exists, attached): (bool, bool) = sqlx::query_as(
            "SELECT to_regclass($1) IS NOT NULL,
                    EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass($1))",
        )
        .bind(Self::table(days_ago))
        .fetch_one(&self.pool)
        .await?;
        Ok((exists, attached))
    }

    /// The rows of the given days, every column, in a form both PostgreSQL and DuckDB can print.
    async fn rows_of(&self, days_ago: &[i32]) -> anyhow::Result<Vec<Value>> {
        let rows: Vec<(Value,)> = sqlx::query_as(
            "SELECT json_build_array(id::text, (extract(epoch FROM created_at) * 1000000)::bigint, kind,
                                     src_account_id::text, dst_account_id::text, amount::text, direction, status,
                                     reason, description, idempotency_key, created_xid::text::bigint, recorded_by)
             FROM transactions
             WHERE (created_at AT TIME ZONE 'UTC')::date = ANY(SELECT (now() AT TIME ZONE 'UTC')::date - d
                                                              FROM unnest($1::int[]) AS d)
             ORDER BY created_at, id",
        )
        .bind(days_ago)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(row,)| row).collect())
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.pool.close().await;
        let _ = std::fs::remove_dir_all(&self.archive);
        self.database.drop_database().await
    }
}

/// Every row of every archived day, read by DuckDB straight from the Parquet files.
fn read_with_duckdb(archive: &Path) -> anyhow::Result<Vec<Value>> {
    let script = r#"
import duckdb, json, sys
rows = duckdb.sql(f"""
    SELECT id, epoch_us(created_at), kind, src_account_id, dst_account_id, amount::VARCHAR, direction, status,
           reason, description, idempotency_key, created_xid, recorded_by
    FROM read_parquet('{sys.argv[1]}/transactions/*/*.parquet') ORDER BY created_at, id""").fetchall()
print(json.dumps([list(row) for row in rows]))
"#;
    let output = Command::new("python3").arg("-c").arg(script).arg(archive).output()?;
    anyhow::ensure!(output.status.success(), "duckdb: {}", String::from_utf8_lossy(&output.stderr));
    Ok(serde_json::from_slice(&output.stdout)?)
}

/// Old days are exported, verified, recorded, and dropped with their report marks; the recent day stays; DuckDB
/// reads back exactly the rows that left, and each manifest describes its file.
#[tokio::test]
async fn days_past_retention_leave_for_parquet_that_duckdb_reads_back_row_for_row() -> anyhow::Result<()> {
    let f = Fixture::new().await?;
    let expected = f.rows_of(&OLD_DAYS).await?;
    let recent = f.rows_of(&[RECENT_DAY]).await?;
    assert_eq!(expected.len(), 1_000 + 1_700 + 2_400);
    // The seal numbers the old days too, so their marks must go with them.
    accounts_service::db::seal::seal(&f.pool, std::time::Duration::from_secs(5)).await?;

    let (status, stdout, stderr) = f.archive_once(None)?;
    assert!(status.success(), "{stderr}");
    let archived: Vec<Value> = stdout.lines().map(serde_json::from_str).collect::<Result<_, _>>()?;
    assert_eq!(archived.len(), 3, "{stdout}");
    for days_ago in OLD_DAYS {
        assert_eq!(f.table_state(days_ago).await?, (false, false), "{} is dropped", Fixture::table(days_ago));
    }
    assert_eq!(f.table_state(RECENT_DAY).await?, (true, true));
    assert_eq!(f.rows_of(&[RECENT_DAY]).await?, recent, "the recent day is untouched");
    assert_eq!(read_with_duckdb(&f.archive)?, expected, "every archived row, every column");

    let (recorded, dropped, marks_left): (i64, i64, i64) = sqlx::query_as(
        "SELECT count(*), count(dropped_at),
                (SELECT count(*) FROM report_marks WHERE created_at < now() - interval '99 days')
         FROM archived_days",
    )
    .fetch_one(&f.pool)
    .await?;
    assert_eq!((recorded, dropped, marks_left), (3, 3, 0));
    for day in &archived {
        let object = f.archive.join(day["object"].as_str().unwrap_or_default());
        let manifest: Value = serde_json::from_slice(&std::fs::read(object.with_file_name("manifest.json"))?)?;
        let bytes = std::fs::read(&object)?;
        use sha2::Digest;
        let sha: String = sha2::Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(manifest["file_sha256"], Value::String(sha));
        assert_eq!(manifest["rows"], day["rows"]);
        assert_eq!(manifest["file_bytes"].as_u64(), Some(bytes.len() as u64));
        assert!(manifest["min_created_at"].as_str().is_some() && manifest["rows_sha256"].as_str().is_some());
    }
    // Nothing left to do: a second run archives nothing and fails nothing.
    let (status, stdout, _) = f.archive_once(None)?;
    assert!(status.success() && stdout.is_empty(), "{stdout}");
    f.stop().await
}

/// The process is killed right after each step in turn (exported, verified, detached); each next run resumes
/// where the last stopped. A file changed after it was verified is found before the drop, and its day stays.
#[tokio::test]
async fn an_archive_run_killed_after_any_step_resumes_and_loses_nothing() -> anyhow::Result<()> {
    let f = Fixture::new().await?;
    let expected = f.rows_of(&OLD_DAYS).await?;
    let oldest = OLD_DAYS[0];

    let (status, _, _) = f.archive_once(Some("exported"))?;
    assert!(!status.success());
    assert_eq!(f.table_state(oldest).await?, (true, true), "exported but not verified: still attached");
    let (recorded,): (i64,) = sqlx::query_as("SELECT count(*) FROM archived_days").fetch_one(&f.pool).await?;
    assert_eq!(recorded, 0);

    let (status, _, _) = f.archive_once(Some("verified"))?;
    assert!(!status.success());
    assert_eq!(f.table_state(oldest).await?, (true, true), "verified, not yet detached");
    let (recorded,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM archived_days WHERE dropped_at IS NULL").fetch_one(&f.pool).await?;
    assert_eq!(recorded, 1);

    // The verified file is changed behind the archiver's back: it must not drop the day.
    let object = std::fs::read_dir(f.archive.join("transactions"))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .min()
        .map(|dir| {
            let day =
                dir.file_name().and_then(|n| n.to_str()).unwrap_or_default().trim_start_matches("day=").to_owned();
            dir.join(format!("transactions-{day}.parquet"))
        })
        .ok_or_else(|| anyhow::anyhow!("no archived day"))?;
    let original = std::fs::read(&object)?;
    std::fs::write(&object, b"not the verified bytes")?;
    let (status, _, stderr) = f.archive_once(None)?;
    assert!(!status.success(), "a changed file stops the run");
    assert!(stderr.contains("no longer has the verified bytes"), "{stderr}");
    assert_eq!(f.table_state(oldest).await?, (true, true), "nothing is dropped");
    std::fs::write(&object, &original)?;

    let (status, _, _) = f.archive_once(Some("detached"))?;
    assert!(!status.success());
    assert_eq!(f.table_state(oldest).await?, (true, false), "detached, not yet dropped");

    let (status, stdout, stderr) = f.archive_once(None)?;
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "the detached day and the two others: {stdout}");
    for days_ago in OLD_DAYS {
        assert_eq!(f.table_state(days_ago).await?, (false, false));
    }
    assert_eq!(read_with_duckdb(&f.archive)?, expected, "every row once, none lost");
    f.stop().await
}
