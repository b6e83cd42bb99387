//! Webhooks: deliveries a Standard Webhooks receiver (the PyPI package) verifies, at least once under the same
//! `webhook-id` through refusals and a `kill -9`; endpoints that are each client's own; no request to the
//! service's own network; a dead endpoint disabled with an alert while the others carry on.

use std::collections::HashSet;
use std::time::Duration;

use ledger_contract::{events as types, scopes, Direction, TransferRequest};
use money::Amount;
use serde_json::{json, Value};
use system_tests::process::client_with_token;
use system_tests::receiver::{Log, WebhookReceiver};
use system_tests::{free_port, poll_until, Reply, TestLedger};
use uuid::Uuid;

/// Short retries and a quick worker, with local addresses allowed (the receiver is on 127.0.0.1).
const LOCAL: &[(&str, &str)] = &[
    ("WEBHOOK_ALLOW_INSECURE", "on"),
    ("WEBHOOK_INTERVAL", "50ms"),
    ("WEBHOOK_TIMEOUT", "1s"),
    ("WEBHOOK_RETRY_SCHEDULE", "100ms,200ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms,300ms"),
];

async fn create_webhook(app: &TestLedger, body: &Value) -> anyhow::Result<Reply> {
    app.post("/api/v1/webhooks", body, None).await
}

fn transfer(src: Uuid, dst: Uuid, amount: &str) -> anyhow::Result<TransferRequest> {
    Ok(TransferRequest::new(src, dst, Amount::parse(amount)?, Direction::Debit))
}

/// Waits until the receiver has verified deliveries of every event in `ids`.
async fn received_all(receiver: &WebhookReceiver, ids: &HashSet<String>, limit: Duration) -> anyhow::Result<Log> {
    poll_until(limit, || async {
        let log = receiver.log().await?;
        let got: HashSet<String> = log.received.iter().map(|r| r.webhook_id.clone()).collect();
        Ok(ids.is_subset(&got).then_some(log))
    })
    .await
}

/// The ids of the events of these types in the feed.
async fn event_ids(app: &TestLedger, kinds: &[&str]) -> anyhow::Result<HashSet<String>> {
    let ids: Vec<Uuid> =
        sqlx::query_scalar("SELECT id FROM events WHERE type = ANY($1)").bind(kinds).fetch_all(&app.pool).await?;
    Ok(ids.iter().map(Uuid::to_string).collect())
}

#[tokio::test]
async fn deliveries_verify_with_the_standard_webhooks_package_and_a_retry_keeps_its_webhook_id() -> anyhow::Result<()> {
    let app = TestLedger::start_with(LOCAL).await?;
    let receiver = WebhookReceiver::start().await?;
    let (a, b) = (app.funded_account("100").await?, app.open_account().await?);
    let kinds = [types::TRANSACTION_SUCCEEDED, types::TRANSACTION_FAILED];
    let made = create_webhook(&app, &json!({"url": receiver.url, "types": kinds, "description": "books"})).await?;
    assert_eq!(made.status, 201, "{}", made.text);
    let secret = made.json["secret"].as_str().unwrap_or_default().to_owned();
    assert!(secret.starts_with("whsec_"), "{}", made.text);
    let listed = app.get("/api/v1/webhooks").await?;
    assert_eq!(listed.json["webhooks"][0]["id"], made.json["id"]);
    assert!(listed.json["webhooks"][0].get("secret").is_none(), "the secret is shown once: {}", listed.text);

    // The receiver does not know the secret yet: it refuses (503), and the deliveries are retried.
    let mut transfers = Vec::new();
    for amount in ["1", "2", "500"] {
        transfers.push(app.api.transfer(&transfer(a, b, amount)?, None).await?.transaction_id.to_string());
    }
    poll_until(Duration::from_secs(20), || async { Ok((receiver.log().await?.refused.len() >= 3).then_some(())) })
        .await?;
    receiver.set_secret(&secret).await?;
    // The transfers' events (the credit's may be delivered too: it committed before the endpoint was made, but
    // if it was not yet visible to a reader then, the endpoint starts before it).
    let expected: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM events WHERE subject::text = ANY($1)")
        .bind(&transfers)
        .fetch_all(&app.pool)
        .await?;
    let expected: HashSet<String> = expected.iter().map(Uuid::to_string).collect();
    assert_eq!(expected.len(), 3);
    let log = received_all(&receiver, &expected, Duration::from_secs(30)).await?;
    assert_eq!(log.rejected, 0, "every signature verified");
    for delivery in &log.received {
        assert_eq!(delivery.event["id"].as_str(), Some(delivery.webhook_id.as_str()), "webhook-id is the event's id");
        assert!(kinds.contains(&delivery.event["type"].as_str().unwrap_or_default()), "{delivery:?}");
    }
    let refused: HashSet<&String> = log.refused.iter().collect();
    let delivered: HashSet<&String> = log.received.iter().map(|r| &r.webhook_id).collect();
    assert!(refused.is_subset(&delivered), "a retry carries the same webhook-id: {refused:?}");
    let failed: Vec<&Value> =
        log.received.iter().map(|r| &r.event).filter(|e| e["type"] == types::TRANSACTION_FAILED).collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["data"]["amount"], json!(500));

    // A replay from the start delivers them again, under the same ids.
    let replay = app
        .post(
            &format!("/api/v1/webhooks/{}/replay", made.json["id"].as_str().unwrap_or_default()),
            &json!({"after": "0".repeat(32)}),
            None,
        )
        .await?;
    assert_eq!(replay.status, 202, "{}", replay.text);
    let twice = |log: &Log| expected.iter().all(|id| log.received.iter().filter(|r| &r.webhook_id == id).count() >= 2);
    poll_until(Duration::from_secs(30), || async {
        let log = receiver.log().await?;
        Ok(twice(&log).then_some(()))
    })
    .await?;
    app.stop().await
}

/// The attack: a client registers URLs that reach the service's own network (the cloud metadata address, the
/// database's host, loopback by name or in disguise), or plain http.
#[tokio::test]
async fn webhook_urls_cannot_reach_loopback_link_local_or_private_addresses() -> anyhow::Result<()> {
    let app = TestLedger::start_with(&[("WEBHOOK_INTERVAL", "50ms")]).await?;
    for url in [
        "http://example.com/hook",
        "https://127.0.0.1/hook",
        "https://localhost:5432/",
        "https://169.254.169.254/latest/meta-data/",
        "https://10.0.0.8/hook",
        "https://192.168.1.1/hook",
        "https://[::1]/hook",
        "https://[::ffff:127.0.0.1]/hook",
        "https://0x7f000001/hook",
        "https://2130706433/hook",
        "https://user:pw@example.com/hook",
        "file:///etc/passwd",
    ] {
        let refused = create_webhook(&app, &json!({"url": url})).await?;
        assert_eq!((refused.status, refused.error_code()), (422, "invalid_webhook_url"), "{url}: {}", refused.text);
    }
    assert_eq!(app.get("/api/v1/webhooks").await?.json["webhooks"], json!([]));

    // A name that resolved to a public address when it was registered and to loopback now (DNS rebinding): the
    // delivery client refuses to connect.
    let port = free_port()?;
    sqlx::query(
        "INSERT INTO webhook_endpoints (id, client, url, secret, start_xid, start_seq)
         VALUES ($1, 'test', $2, 'whsec_AAAA', '0', 0)",
    )
    .bind(Uuid::now_v7())
    .bind(format!("https://localhost:{port}/hook"))
    .execute(&app.pool)
    .await?;
    app.open_account().await?;
    let error: String = poll_until(Duration::from_secs(20), || async {
        let error: Option<String> =
            sqlx::query_scalar("SELECT last_error FROM webhook_deliveries WHERE last_error IS NOT NULL LIMIT 1")
                .fetch_optional(&app.pool)
                .await?;
        Ok(error)
    })
    .await?;
    assert!(error.contains("loopback"), "{error}");
    app.stop().await
}

#[tokio::test]
async fn each_client_sees_and_manages_only_its_own_endpoints() -> anyhow::Result<()> {
    let app = TestLedger::start_with(&[("WEBHOOKS_PER_CLIENT", "2"), ("WEBHOOK_ALLOW_INSECURE", "on")]).await?;
    let (alice_token, _) = app.client_with("alice", &[scopes::WEBHOOKS_MANAGE]).await?;
    let (mallory_token, _) = app.client_with("mallory", &[scopes::WEBHOOKS_MANAGE]).await?;
    let (alice, mallory) = (client_with_token(Some(&alice_token))?, client_with_token(Some(&mallory_token))?);
    let hooks = app.url("/api/v1/webhooks");
    let made = Reply::read(alice.post(&hooks).json(&json!({"url": "http://127.0.0.1:9/a"})).send().await?).await?;
    assert_eq!(made.status, 201, "{}", made.text);
    let id = made.json["id"].as_str().unwrap_or_default().to_owned();

    let seen = Reply::read(mallory.get(&hooks).send().await?).await?;
    assert_eq!(seen.json["webhooks"], json!([]), "mallory sees none of alice's endpoints");
    let deleted = Reply::read(mallory.delete(format!("{hooks}/{id}")).send().await?).await?;
    assert_eq!(deleted.status, 404);
    let replayed =
        Reply::read(mallory.post(format!("{hooks}/{id}/replay")).json(&json!({"after": "0".repeat(32)})).send().await?)
            .await?;
    assert_eq!(replayed.status, 404);
    let still = Reply::read(alice.get(&hooks).send().await?).await?;
    assert_eq!(still.json["webhooks"][0]["id"], json!(id));

    let second = Reply::read(alice.post(&hooks).json(&json!({"url": "http://127.0.0.1:9/b"})).send().await?).await?;
    assert_eq!(second.status, 201);
    let third = Reply::read(alice.post(&hooks).json(&json!({"url": "http://127.0.0.1:9/c"})).send().await?).await?;
    assert_eq!((third.status, third.error_code()), (422, "too_many_webhooks"));
    let bad_types = Reply::read(
        mallory.post(&hooks).json(&json!({"url": "http://127.0.0.1:9/", "types": ["payment.paid"]})).send().await?,
    )
    .await?;
    assert_eq!(
        (bad_types.status, bad_types.error_code()),
        (422, "unknown_event_type"),
        "the ledger writes no payment events"
    );
    let own = Reply::read(alice.delete(format!("{hooks}/{id}")).send().await?).await?;
    assert_eq!(own.status, 204);
    app.stop().await
}

/// One endpoint is dead and another slow; a third keeps receiving. The dead one is disabled once it has failed
/// for longer than the schedule, and an alert (a row and an `alert.raised` event) says so.
#[tokio::test]
async fn a_dead_endpoint_is_disabled_with_an_alert_and_never_delays_the_others() -> anyhow::Result<()> {
    let settings = [
        ("WEBHOOK_ALLOW_INSECURE", "on"),
        ("WEBHOOK_INTERVAL", "50ms"),
        ("WEBHOOK_TIMEOUT", "500ms"),
        (
            "WEBHOOK_RETRY_SCHEDULE",
            "100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms,100ms",
        ),
    ];
    let app = TestLedger::start_with(&settings).await?;
    let (healthy, slow) = (WebhookReceiver::start().await?, WebhookReceiver::start().await?);
    slow.set_slow(Duration::from_secs(5)).await?;
    let dead_url = format!("http://127.0.0.1:{}/hook", free_port()?);
    let dead = create_webhook(&app, &json!({"url": dead_url})).await?;
    let slow_made = create_webhook(&app, &json!({"url": slow.url})).await?;
    let fine = create_webhook(&app, &json!({"url": healthy.url})).await?;
    for reply in [&dead, &slow_made, &fine] {
        assert_eq!(reply.status, 201, "{}", reply.text);
    }
    healthy.set_secret(fine.json["secret"].as_str().unwrap_or_default()).await?;
    slow.set_secret(slow_made.json["secret"].as_str().unwrap_or_default()).await?;

    let (a, b) = (app.funded_account("100").await?, app.open_account().await?);
    for _ in 0..5 {
        app.api.transfer(&transfer(a, b, "1")?, None).await?;
    }
    let wanted = event_ids(&app, &[types::TRANSACTION_SUCCEEDED, types::ACCOUNT_CREATED]).await?;
    received_all(&healthy, &wanted, Duration::from_secs(30)).await?;

    let dead_id = dead.json["id"].as_str().unwrap_or_default().to_owned();
    let disabled = poll_until(Duration::from_secs(30), || async {
        let list = app.get("/api/v1/webhooks").await?;
        let found = list.json["webhooks"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .find(|w| w["id"] == json!(dead_id));
        Ok(found.filter(|w| !w["disabled_at"].is_null()))
    })
    .await?;
    assert!(disabled["disabled_reason"].as_str().unwrap_or_default().contains("retry schedule"), "{disabled}");
    let alerts: Vec<String> =
        sqlx::query_scalar("SELECT message FROM alerts WHERE kind = 'webhook_disabled'").fetch_all(&app.pool).await?;
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert!(alerts[0].contains(&dead_id));
    // The alert's event reaches the healthy endpoint too.
    let log = poll_until(Duration::from_secs(30), || async {
        let log = healthy.log().await?;
        Ok(log.received.iter().any(|r| r.event["type"] == types::ALERT_RAISED).then_some(log))
    })
    .await?;
    let alert = log
        .received
        .iter()
        .find(|r| r.event["type"] == types::ALERT_RAISED)
        .map(|r| r.event.clone())
        .unwrap_or_default();
    assert_eq!(alert["data"]["webhook_id"], json!(dead_id));
    let metrics = app.get("/metrics").await?.text;
    assert!(metrics.contains(&format!("webhook_delivery_failures_total{{endpoint=\"{dead_id}\"}}")), "{metrics}");
    assert!(metrics.contains("webhook_deliveries_pending") && metrics.contains("webhook_oldest_undelivered_seconds"));
    app.stop().await
}

/// `kill -9` while deliveries are in flight: after the restart every event reaches the receiver, at least once.
#[tokio::test]
async fn deliveries_survive_a_kill_in_the_middle() -> anyhow::Result<()> {
    let app = TestLedger::start_with(LOCAL).await?;
    let receiver = WebhookReceiver::start().await?;
    let made = create_webhook(&app, &json!({"url": receiver.url, "types": [types::TRANSACTION_SUCCEEDED]})).await?;
    receiver.set_secret(made.json["secret"].as_str().unwrap_or_default()).await?;
    receiver.set_slow(Duration::from_millis(200)).await?;
    let (a, b) = (app.funded_account("100").await?, app.open_account().await?);
    for _ in 0..20 {
        app.api.transfer(&transfer(a, b, "1")?, None).await?;
    }
    poll_until(Duration::from_secs(20), || async { Ok((receiver.log().await?.received.len() >= 2).then_some(())) })
        .await?;
    app.restart(Duration::from_millis(200)).await?;
    receiver.set_slow(Duration::ZERO).await?;
    let expected = event_ids(&app, &[types::TRANSACTION_SUCCEEDED]).await?;
    assert_eq!(expected.len(), 21);
    let log = received_all(&receiver, &expected, Duration::from_secs(60)).await?;
    assert_eq!(log.rejected, 0);
    app.stop().await
}
