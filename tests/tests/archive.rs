//! Cold storage: days past `HOT_RETENTION_DAYS` leave PostgreSQL for Parquet files that a standard tool
//! (DuckDB, from PyPI) reads back row for row; a run stopped after any step resumes and loses nothing; a file
//! changed after it was verified stops the drop. The same holds in an S3 bucket (moto's S3 server, from PyPI).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use system_tests::process::free_port;
use system_tests::{binary_path, poll_until, TestDatabase};
use uuid::Uuid;

/// Days ago of the old (archived) days and of a recent one that must stay.
const OLD_DAYS: [i32; 3] = [102, 101, 100];
const RECENT_DAY: i32 = 3;

/// The bucket, and the prefix inside it, of the S3 archive.
const BUCKET: &str = "ledger-archive";
const PREFIX: &str = "bank/ledger";

/// An S3-compatible server of our own (moto, installed by `scripts/deps.sh`) on a free port, stopped on drop.
struct S3Server {
    child: Child,
    endpoint: String,
}

impl S3Server {
    async fn start() -> anyhow::Result<Self> {
        let port = free_port()?;
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let server = Self { child, endpoint: format!("http://127.0.0.1:{port}") };
        let client = reqwest::Client::new();
        // Creating the bucket is also the readiness check: it succeeds once the server answers.
        let url = format!("{}/{BUCKET}", server.endpoint);
        poll_until(Duration::from_secs(60), || {
            let request = client.put(&url).send();
            async move { Ok(request.await.ok().filter(|r| r.status().is_success()).map(|_| ())) }
        })
        .await?;
        Ok(server)
    }

    /// The environment that points the service (object_store) and boto3 at this server.
    fn env(&self) -> [(&'static str, String); 5] {
        [
            ("AWS_ENDPOINT", self.endpoint.clone()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "ledger-test".into()),
            ("AWS_SECRET_ACCESS_KEY", "ledger-test-secret".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// Runs a Python snippet with boto3's client as `s3` (moto brings boto3).
    fn python(&self, script: &str, args: &[&str]) -> anyhow::Result<Vec<u8>> {
        let prelude = "import boto3, os, sys\n\
                       s3 = boto3.client('s3', endpoint_url=os.environ['AWS_ENDPOINT'])\n";
        let output =
            Command::new("python3").arg("-c").arg(format!("{prelude}{script}")).args(args).envs(self.env()).output()?;
        anyhow::ensure!(output.status.success(), "boto3: {}", String::from_utf8_lossy(&output.stderr));
        Ok(output.stdout)
    }

    /// Every key in the bucket.
    fn keys(&self) -> anyhow::Result<Vec<String>> {
        let script = "print('\\n'.join(o['Key'] for o in s3.list_objects_v2(Bucket=sys.argv[1]).get('Contents', [])))";
        let out = self.python(script, &[BUCKET])?;
        Ok(String::from_utf8(out)?.lines().map(str::to_owned).collect())
    }

    fn get(&self, key: &str) -> anyhow::Result<Vec<u8>> {
        self.python(
            "sys.stdout.buffer.write(s3.get_object(Bucket=sys.argv[1], Key=sys.argv[2])['Body'].read())",
            &[BUCKET, key],
        )
    }

    fn put(&self, key: &str, file: &Path) -> anyhow::Result<()> {
        let path = file.to_str().unwrap_or_default();
        self.python("s3.upload_file(sys.argv[3], sys.argv[1], sys.argv[2])", &[BUCKET, key, path]).map(drop)
    }

    /// Copies everything under the archive's prefix into `dir`, keeping the layout below the prefix.
    fn download(&self, dir: &Path) -> anyhow::Result<()> {
        for key in self.keys()? {
            let Some(relative) = key.strip_prefix(&format!("{PREFIX}/")) else { continue };
            let target = dir.join(relative);
            std::fs::create_dir_all(target.parent().unwrap_or(dir))?;
            std::fs::write(target, self.get(&key)?)?;
        }
        Ok(())
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where the archive goes: a directory, or the S3 server's bucket (with a prefix).
enum Store {
    Dir(PathBuf),
    S3(S3Server),
}

struct Fixture {
    database: TestDatabase,
    pool: PgPool,
    store: Store,
    /// The directory archive itself, or where an S3 archive is downloaded to be read.
    archive: PathBuf,
}

impl Fixture {
    /// A migrated ledger with rows on three days about 100 days ago and on one recent day.
    async fn new() -> anyhow::Result<Self> {
        Self::with_days(&OLD_DAYS, (1_000, 700)).await
    }

    /// A migrated ledger with rows on each of `old_days` (days ago) and on one recent day, the `n`th day having
    /// `rows.0 + n * rows.1` rows, archived to a directory.
    async fn with_days(old_days: &[i32], rows: (i32, i32)) -> anyhow::Result<Self> {
        let (database, pool) = Self::ledger_of(old_days, rows).await?;
        let archive = std::env::temp_dir().join(format!("ledger-archive-{}", database.name));
        Ok(Self { database, pool, store: Store::Dir(archive.clone()), archive })
    }

    /// The same ledger, archived to a bucket of a fresh S3 server.
    async fn with_s3() -> anyhow::Result<Self> {
        let (database, pool) = Self::ledger().await?;
        let archive = std::env::temp_dir().join(format!("ledger-archive-s3-{}", database.name));
        Ok(Self { database, pool, store: Store::S3(S3Server::start().await?), archive })
    }

    async fn ledger() -> anyhow::Result<(TestDatabase, PgPool)> {
        Self::ledger_of(&OLD_DAYS, (1_000, 700)).await
    }

    async fn ledger_of(old_days: &[i32], (rows, more_rows): (i32, i32)) -> anyhow::Result<(TestDatabase, PgPool)> {
        let database = TestDatabase::create().await?;
        let pool = PgPool::connect(&database.url).await?;
        accounts_service::db::MIGRATOR.run(&pool).await?;
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        sqlx::query("INSERT INTO accounts (id, balance) VALUES ($1, 0), ($2, 0)")
            .bind(a)
            .bind(b)
            .execute(&pool)
            .await?;
        for (n, days_ago) in old_days.iter().chain([&RECENT_DAY]).enumerate() {
            sqlx::query("SELECT ledger_create_partition((now() AT TIME ZONE 'UTC')::date - $1)")
                .bind(days_ago)
                .execute(&pool)
                .await?;
            // Rows as varied as the schema allows: transfers and bank rows, failures, descriptions that need
            // quoting, keys and none; written before any seal (the frontier starts at the epoch).
            sqlx::query(
                "INSERT INTO transactions
                     (id, created_at, kind, src_account_id, dst_account_id, amount, direction, status, reason,
                      description, idempotency_key, recorded_by, src_balance_after, dst_balance_after)
                 SELECT gen_random_uuid(),
                        date_trunc('day', now(), 'UTC') - make_interval(days => $1) + g * interval '7 seconds',
                        CASE WHEN g % 3 = 0 THEN 'bank' ELSE 'transfer' END,
                        CASE WHEN g % 3 = 0 THEN NULL ELSE $2::uuid END, $3,
                        (g % 100000) / 100.0 + 0.01, CASE WHEN g % 2 = 0 THEN 'debit' ELSE 'credit' END,
                        CASE WHEN g % 13 = 0 THEN 'fail' ELSE 'success' END,
                        CASE WHEN g % 13 = 0 THEN 'Insufficient funds' END,
                        CASE WHEN g % 3 = 0 THEN 'paid, \"in full\" — ' || g END,
                        CASE WHEN g % 5 = 0 THEN 'key-' || g END,
                        'client-' || (g % 4), CASE WHEN g % 3 = 0 THEN NULL ELSE 0 END, 0
                 FROM generate_series(1, $4) AS g",
            )
            .bind(days_ago)
            .bind(a)
            .bind(b)
            .bind(rows + more_rows * n as i32)
            .execute(&pool)
            .await?;
        }
        // Both accounts start with a bank credit, so that no balance goes below zero on the way.
        sqlx::query(
            "INSERT INTO transactions (id, created_at, kind, dst_account_id, amount, direction, status, recorded_by,
                                       dst_balance_after)
             SELECT gen_random_uuid(), date_trunc('day', now(), 'UTC') - make_interval(days => $1), 'bank', account,
                    1000000000, 'credit', 'success', 'opening', 0
             FROM unnest($2::uuid[]) AS account",
        )
        .bind(old_days[0])
        .bind([a, b])
        .execute(&pool)
        .await?;
        system_tests::db::fill_books(&pool, rust_decimal::Decimal::ZERO).await?;
        Ok((database, pool))
    }

    /// An account that pays in the fixture's rows, and the service on the fixture's database, reading its archive
    /// but never archiving by itself (everything stays hot for 100 years).
    async fn reader(&self) -> anyhow::Result<(Uuid, system_tests::TestLedger)> {
        let (account,): (Uuid,) =
            sqlx::query_as("SELECT src_account_id FROM transactions WHERE src_account_id IS NOT NULL LIMIT 1")
                .fetch_one(&self.pool)
                .await?;
        let archive_dir = self.archive.to_string_lossy().into_owned();
        let copy = TestDatabase { name: self.database.name.clone(), url: self.database.url.clone() };
        let settings = [("ARCHIVE_URL", archive_dir.as_str()), ("HOT_RETENTION_DAYS", "36500")];
        Ok((account, system_tests::TestLedger::start_on(copy, &settings).await?))
    }

    /// Runs `accounts-service archive` once; returns its exit status and output.
    fn archive_once(&self, stop_after: Option<&str>) -> anyhow::Result<(std::process::ExitStatus, String, String)> {
        let mut command = Command::new(binary_path("accounts-service")?);
        command
            .arg("archive")
            .env("DATABASE_URL", &self.database.url)
            .env("HOT_RETENTION_DAYS", "90")
            .env("RUST_LOG", "info");
        match &self.store {
            Store::Dir(dir) => command.env("ARCHIVE_URL", dir),
            Store::S3(server) => command.env("ARCHIVE_URL", format!("s3://{BUCKET}/{PREFIX}")).envs(server.env()),
        };
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
                                     reason, description, idempotency_key, created_xid::text::bigint, recorded_by,
                                     src_balance_after::text, dst_balance_after::text)
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
           reason, description, idempotency_key, created_xid, recorded_by, src_balance_after::VARCHAR,
           dst_balance_after::VARCHAR
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
    assert_eq!(expected.len(), 2 + 1_000 + 1_700 + 2_400);
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

    let (status, _, stderr) = f.archive_once(Some("verified"))?;
    assert!(!status.success());
    assert_eq!(f.table_state(oldest).await?, (true, true), "verified, not yet detached");
    assert!(stderr.contains("stopping the process here"), "{stderr}");
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

/// The same guarantees in an S3 bucket, under a prefix: a run killed after verification, the verified object
/// replaced behind the archiver's back (refused, nothing dropped), then restored and resumed. The bucket then holds
/// each day's file and manifest under the prefix and nothing else, and DuckDB reads back every row.
#[tokio::test]
async fn an_s3_archive_refuses_a_replaced_object_then_resumes_and_reads_back_row_for_row() -> anyhow::Result<()> {
    let f = Fixture::with_s3().await?;
    let Store::S3(s3) = &f.store else { anyhow::bail!("the fixture archives to S3") };
    let expected = f.rows_of(&OLD_DAYS).await?;
    let oldest = OLD_DAYS[0];

    let (status, _, _) = f.archive_once(Some("verified"))?;
    assert!(!status.success());
    assert_eq!(f.table_state(oldest).await?, (true, true), "verified, not yet detached");
    let keys = s3.keys()?;
    assert_eq!(keys.len(), 2, "the oldest day's file and manifest: {keys:?}");
    let object = keys.iter().find(|key| key.ends_with(".parquet")).cloned();
    let object = object.ok_or_else(|| anyhow::anyhow!("no Parquet object in {keys:?}"))?;

    let original = std::env::temp_dir().join(format!("{}-original.parquet", f.database.name));
    std::fs::write(&original, s3.get(&object)?)?;
    let forged = std::env::temp_dir().join(format!("{}-forged.parquet", f.database.name));
    std::fs::write(&forged, b"not the verified bytes")?;
    s3.put(&object, &forged)?;
    let (status, _, stderr) = f.archive_once(None)?;
    assert!(!status.success(), "a replaced object stops the run");
    assert!(stderr.contains("no longer has the verified bytes"), "{stderr}");
    assert_eq!(f.table_state(oldest).await?, (true, true), "nothing is dropped");

    s3.put(&object, &original)?;
    let (status, stdout, stderr) = f.archive_once(None)?;
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    for days_ago in OLD_DAYS {
        assert_eq!(f.table_state(days_ago).await?, (false, false));
    }
    let keys = s3.keys()?;
    assert_eq!(keys.len(), 6, "{keys:?}");
    assert!(keys.iter().all(|key| key.starts_with(&format!("{PREFIX}/transactions/day="))), "{keys:?}");
    s3.download(&f.archive)?;
    assert_eq!(read_with_duckdb(&f.archive)?, expected, "every row once, none lost");
    for file in [original, forged] {
        std::fs::remove_file(file)?;
    }
    f.stop().await
}

/// A `DETACH … CONCURRENTLY` interrupted between its two transactions (cancelled while it waits for an older
/// snapshot, which is where a crash leaves it too) leaves the day pending detach; the next run finalizes the
/// detach, then drops the day, and nothing is lost.
#[tokio::test]
async fn a_detach_interrupted_midway_is_finalized_by_the_next_run() -> anyhow::Result<()> {
    let f = Fixture::new().await?;
    let expected = f.rows_of(&OLD_DAYS).await?;
    let oldest = OLD_DAYS[0];
    let (status, _, _) = f.archive_once(Some("verified"))?;
    assert!(!status.success());

    // An older snapshot, which the detach's second transaction waits for.
    let mut reader = f.pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *reader).await?;
    sqlx::query("SELECT count(*) FROM transactions").execute(&mut *reader).await?;
    let mut detacher = f.pool.acquire().await?;
    let (pid,): (i32,) = sqlx::query_as("SELECT pg_backend_pid()").fetch_one(&mut *detacher).await?;
    let table = Fixture::table(oldest);
    let detaching = tokio::spawn(async move {
        sqlx::query(&format!("ALTER TABLE transactions DETACH PARTITION {table} CONCURRENTLY"))
            .execute(&mut *detacher)
            .await
    });
    let pending = || async {
        let state: Option<(bool,)> =
            sqlx::query_as("SELECT inhdetachpending FROM pg_inherits WHERE inhrelid = to_regclass($1)")
                .bind(Fixture::table(oldest))
                .fetch_optional(&f.pool)
                .await?;
        anyhow::Ok(state.map(|(pending,)| pending))
    };
    poll_until(Duration::from_secs(30), || async { Ok(pending().await?.filter(|p| *p)) }).await?;
    sqlx::query("SELECT pg_cancel_backend($1)").bind(pid).execute(&f.pool).await?;
    assert!(detaching.await?.is_err(), "the detach was cancelled midway");
    reader.rollback().await?;
    assert_eq!(pending().await?, Some(true), "the day is left pending detach");

    let (status, stdout, stderr) = f.archive_once(None)?;
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    for days_ago in OLD_DAYS {
        assert_eq!(f.table_state(days_ago).await?, (false, false));
    }
    assert_eq!(read_with_duckdb(&f.archive)?, expected, "every row once, none lost");
    f.stop().await
}

/// Statements and balances read the same from cold storage as they did hot: a statement over the archived days
/// and the recent one, page by page, and the balance at moments inside and between archived days. A window that
/// reaches a day archived before balances existed says so (409) instead of guessing.
#[tokio::test]
async fn statements_and_balances_read_the_same_after_their_days_leave_for_cold_storage() -> anyhow::Result<()> {
    use ledger_contract::StatementQuery;
    use system_tests::book::{check_adds_up, read_statement};
    let f = Fixture::new().await?;
    let (a, app) = f.reader().await?;
    let day_start = |days_ago: i64| (chrono::Utc::now() - chrono::Duration::days(days_ago)).date_naive();
    let at = |days_ago: i64, hours: u32| -> String {
        let time = chrono::NaiveTime::from_hms_opt(hours, 0, 0).unwrap_or_default();
        day_start(days_ago).and_time(time).and_utc().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    };
    let windows = [
        StatementQuery { from: Some(at(103, 0)), limit: Some(500), ..Default::default() },
        StatementQuery { from: Some(at(101, 1)), to: Some(at(100, 2)), limit: Some(333), ..Default::default() },
        StatementQuery { from: Some(at(100, 1)), to: Some(at(2, 0)), limit: Some(1000), ..Default::default() },
    ];
    let moments = [at(105, 0), at(102, 0), at(102, 1), at(101, 3), at(100, 23), at(50, 0), at(3, 1)];
    let read_all = || async {
        let mut statements = Vec::new();
        for window in &windows {
            let read = read_statement(&app.api, a, window.clone()).await?;
            check_adds_up(&read)?;
            statements.push(read);
        }
        let mut balances = Vec::new();
        for moment in &moments {
            balances.push(app.api.account_as_of(a, moment).await?.balance);
        }
        anyhow::Ok((statements, balances))
    };
    let (hot, hot_balances) = read_all().await?;
    assert!(hot[0].entries.len() > 3_000 && hot[0].pages > 6, "a long statement: {}", hot[0].entries.len());
    assert_eq!(hot_balances[0], rust_decimal::Decimal::ZERO, "before the account's first row");
    assert_eq!(hot_balances[1], rust_decimal::Decimal::from(1_000_000_000), "the opening credit at midnight");

    let (status, _, stderr) = f.archive_once(None)?;
    assert!(status.success(), "{stderr}");
    assert_eq!(f.table_state(OLD_DAYS[0]).await?, (false, false), "the old days are gone from PostgreSQL");
    let (cold, cold_balances) = read_all().await?;
    assert_eq!(cold, hot, "the same entries, balances and pages");
    assert_eq!(cold_balances, hot_balances);

    // A day archived before balances were recorded: statements and balances over it refuse to guess.
    let oldest = day_start(i64::from(OLD_DAYS[0]));
    sqlx::query("DELETE FROM archived_account_days WHERE day = $1").bind(oldest).execute(&f.pool).await?;
    sqlx::query("UPDATE archived_days SET has_book = false WHERE day = $1").bind(oldest).execute(&f.pool).await?;
    let refused = app.get(&format!("/api/v1/accounts/{a}/statement?from={}", at(103, 0))).await?;
    assert_eq!((refused.status, refused.error_code()), (409, "archived_without_balances"), "{}", refused.text);
    let refused = app.get(&format!("/api/v1/accounts/{a}?as_of={}", at(102, 1))).await?;
    assert_eq!((refused.status, refused.error_code()), (409, "archived_without_balances"), "{}", refused.text);
    let later = app.api.account_as_of(a, &at(100, 23)).await?.balance;
    assert_eq!(later, hot_balances[4], "a balance after the newer days needs none of the old one");
    app.stop().await?;
    f.stop().await
}

/// A statement over more archived days than one page reads (`MAX_COLD_DAYS_PER_PAGE`) comes back in short pages,
/// each with a cursor that resumes after the last day it read, and gives the same rows and balances as hot.
#[tokio::test]
async fn a_statement_over_more_cold_days_than_a_page_reads_resumes_where_it_stopped() -> anyhow::Result<()> {
    use accounts_service::db::statements::MAX_COLD_DAYS_PER_PAGE;
    use ledger_contract::StatementQuery;
    use system_tests::book::{check_adds_up, read_statement};
    let days: Vec<i32> = (101..=110).rev().collect();
    assert!(days.len() > MAX_COLD_DAYS_PER_PAGE);
    let f = Fixture::with_days(&days, (30, 0)).await?;
    let (a, app) = f.reader().await?;
    let from = (chrono::Utc::now() - chrono::Duration::days(111)).to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let window = StatementQuery { from: Some(from), limit: Some(1_000), ..Default::default() };
    let hot = read_statement(&app.api, a, window.clone()).await?;
    check_adds_up(&hot)?;
    assert_eq!(hot.pages, 1, "{} rows fit one hot page", hot.entries.len());

    let (status, _, stderr) = f.archive_once(None)?;
    assert!(status.success(), "{stderr}");
    assert_eq!(f.table_state(days[0]).await?, (false, false), "the old days are gone from PostgreSQL");
    let first = app.api.statement(a, &window).await?;
    let days_on_first: std::collections::BTreeSet<_> =
        first.entries.iter().map(|e| e.transaction_timestamp.date_naive()).collect();
    assert_eq!(days_on_first.len(), MAX_COLD_DAYS_PER_PAGE, "page 1 reads 7 day files and stops short");
    assert!(first.entries.len() < 1_000 && first.next_cursor.is_some());
    let cold = read_statement(&app.api, a, window).await?;
    check_adds_up(&cold)?;
    assert_eq!((cold.pages, &cold.entries, cold.opening, cold.closing), (2, &hot.entries, hot.opening, hot.closing));
    app.stop().await?;
    f.stop().await
}
