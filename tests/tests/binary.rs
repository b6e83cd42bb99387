//! The `accounts-service` binary as an operator runs it: settings from the environment, migrations at start,
//! JSON logs with request ids, a clean exit on SIGTERM.

use std::time::Duration;

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
