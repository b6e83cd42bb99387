//! The `accounts-service` binary as an operator runs it: settings from the environment, migrations at start,
//! a clean exit on SIGTERM.

use std::process::{Command, Stdio};
use std::time::Duration;

use system_tests::{binary_path, poll_until, wait_healthy, TestDatabase};

#[tokio::test]
async fn the_binary_migrates_serves_and_exits_cleanly_on_sigterm() -> anyhow::Result<()> {
    let database = TestDatabase::create().await?;
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.port()
    };
    let mut child = Command::new(binary_path("accounts-service")?)
        .env("DATABASE_URL", &database.url)
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("LOG_FORMAT", "json")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&client, &base, Duration::from_secs(30)).await?;
    let created = client.post(format!("{base}/api/v1/accounts")).json(&serde_json::json!({})).send().await?;
    assert_eq!(created.status(), 201, "the schema was migrated at start");

    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
    assert!(status.success());
    let exit = poll_until(Duration::from_secs(30), || {
        let exited = child.try_wait().map_err(anyhow::Error::from);
        async move { exited }
    })
    .await?;
    assert!(exit.success(), "SIGTERM is a clean shutdown, not a crash: {exit:?}");

    let mut logs = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().ok_or_else(|| anyhow::anyhow!("no stdout"))?, &mut logs)?;
    let lines: Vec<serde_json::Value> = logs.lines().filter_map(|line| serde_json::from_str(line).ok()).collect();
    assert!(!lines.is_empty(), "logs are JSON lines with LOG_FORMAT=json: {logs}");
    assert!(
        lines
            .iter()
            .any(|line| line.pointer("/span/request_id").and_then(|v| v.as_str()).is_some_and(|id| id.len() == 36)),
        "request logs carry a request id: {logs}"
    );
    database.drop_database().await
}
