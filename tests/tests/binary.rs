//! The `accounts-service` binary as an operator runs it: settings from the environment, migrations at start,
//! JSON logs with request ids, a clean exit on SIGTERM.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use system_tests::TestLedger;

#[tokio::test]
async fn the_binary_migrates_serves_and_exits_cleanly_on_sigterm() -> anyhow::Result<()> {
    let ledger = TestLedger::start_with(&[("LOG_FORMAT", "json")]).await?;
    let created = ledger.post("/api/v1/accounts", &serde_json::json!({}), None).await?;
    assert_eq!(created.status, 201, "the schema was migrated at start");

    let exit = ledger.terminate(Duration::from_secs(30)).await?;
    assert!(exit.success(), "SIGTERM is a clean shutdown, not a crash: {exit:?}");

    let logs = ledger.log_text();
    let lines: Vec<serde_json::Value> = logs.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    assert!(!lines.is_empty(), "logs are JSON lines with LOG_FORMAT=json: {logs}");
    assert!(
        lines
            .iter()
            .any(|line| line.pointer("/span/request_id").and_then(|v| v.as_str()).is_some_and(|id| id.len() == 36)),
        "request logs carry a request id: {logs}"
    );
    ledger.stop().await
}

/// Runs `binary` with `args` and a full environment (a database, a port to listen on), and returns its exit
/// status, stdout and stderr. Fails if it is still running after 20 s: it would then be serving.
fn run_command_line(binary: &str, args: &[&str], database_url: &str, port: u16) -> anyhow::Result<Output> {
    let mut child = Command::new(system_tests::binary_path(binary)?)
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("METRICS_ADDR", format!("127.0.0.1:{port}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            child.kill()?;
            anyhow::bail!("{binary} {args:?} was still running after 20 s: it started instead of refusing");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(child.wait_with_output()?)
}

#[tokio::test]
async fn help_version_and_mistakes_never_start_a_server_or_touch_the_database() -> anyhow::Result<()> {
    // A database that does not exist: any attempt to connect would fail with a different message and code.
    let database_url = "postgres://postgres@127.0.0.1:5432/no_such_database_for_the_command_line_test";
    for binary in ["accounts-service", "advances-api", "advances-worker"] {
        let port = system_tests::free_port()?;
        for args in [&["--help"][..], &["help"], &["serve", "--help"], &["--version"]] {
            let out = run_command_line(binary, args, database_url, port)?;
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert_eq!(
                out.status.code(),
                Some(0),
                "{binary} {args:?}: {stdout} {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let expected = if args == ["--version"] { binary } else { "Usage:" };
            assert!(stdout.contains(expected), "{binary} {args:?} prints {expected:?}: {stdout}");
        }
        for args in [&["archve"][..], &["--bogus"], &["serve", "extra"], &["client", "add", "--name"]] {
            let out = run_command_line(binary, args, database_url, port)?;
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{binary} {args:?} is a usage error: {stderr}");
            assert!(stderr.starts_with("error:") && stderr.contains("--help"), "{binary} {args:?}: {stderr}");
        }
        // The port was never taken.
        std::net::TcpListener::bind(("127.0.0.1", port))?;
    }
    Ok(())
}

#[tokio::test]
async fn the_database_password_never_reaches_the_log() -> anyhow::Result<()> {
    // Trust authentication ignores the password, so the service runs with one in its URL.
    let database = system_tests::db::TestDatabase::create().await?;
    let (scheme, rest) = database.url.split_once("://").unwrap_or_default();
    let (user, host) = rest.split_once('@').unwrap_or_default();
    let user = user.split(':').next().unwrap_or_default();
    anyhow::ensure!(!user.is_empty(), "the test database URL names a user to put a password on: {}", database.url);
    let url = format!("{scheme}://{user}:hunter2-not-logged@{host}");
    let ledger = TestLedger::start_on(database, &[("DATABASE_URL", &url), ("RUST_LOG", "debug")]).await?;
    ledger.post("/api/v1/accounts", &serde_json::json!({}), None).await?;
    ledger.get("/api/v1/accounts/not-a-uuid").await?;
    let logs = ledger.log_text();
    assert!(logs.contains("accounts-service listening"), "the log was written: {logs}");
    assert!(!logs.contains("hunter2-not-logged"), "the password is in the log:\n{logs}");
    ledger.stop().await
}
