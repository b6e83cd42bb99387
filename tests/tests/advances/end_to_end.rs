//! The whole system as an operator runs it, through the advances-api.

use std::collections::HashSet;

use advances_contract::{AdvanceState, AdvanceView, Command, ListQuery};
use advances_model::{AlertKind, PaymentStatus};
use advances_workflows::AdvanceWorkflow;
use ledger_contract::{scopes, Direction, TransactionStatus};
use rust_decimal::Decimal;
use serde_json::json;
use system_tests::process::{add_client, client_with_token};
use system_tests::{dec, poll_until, Reply, Stack};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use uuid::Uuid;

use super::{temporal_client, LONG};

/// Whether the advance still collects (the view's state is open, as the model's status says).
fn is_open(advance: &AdvanceView) -> bool {
    advance.status.status().is_some_and(|status| status.is_open())
}

#[tokio::test]
async fn an_advance_is_granted_then_collected_in_twelve_debits_that_restore_the_balance() -> anyhow::Result<()> {
    let stack = Stack::start(&[("ADVANCE_PAYMENT_INTERVAL", "300ms")]).await?;
    let account = stack.account("50").await?;
    let created = stack.create_advance(account, "100.00", Some("adv-1")).await?.advance;
    assert_eq!((created.status, created.amount), (AdvanceState::ACTIVE, dec("100")));
    let listed = &created.payments;
    assert_eq!(listed.len(), 12, "all 12 payments are listed at once");
    assert!(listed.iter().all(|p| p.due_at.is_some()));
    assert_eq!(listed.iter().map(|p| p.amount).sum::<Decimal>(), dec("100"));
    assert_eq!(listed[11].amount, dec("8.37"), "the remainder is on the last");

    let advance_id = created.advance_id;
    let done = stack.wait_for_advance(advance_id, LONG, |a| a.status == AdvanceState::COMPLETED).await?;
    assert_eq!((done.paid_amount, done.outstanding_amount), (dec("100"), dec("0")));
    let debits = stack.debits(account).await?;
    assert_eq!(debits.len(), 12, "{debits:?}");
    assert!(debits.iter().all(|d| d.status == TransactionStatus::Success));
    assert_eq!(debits.iter().map(|d| d.amount).sum::<Decimal>(), dec("100"));
    let keys: HashSet<String> = done.payments.iter().map(|p| format!("payment-{}", p.payment_id)).collect();
    let debit_keys: HashSet<String> = debits.iter().map(|d| d.idempotency_key.clone()).collect();
    assert_eq!(debit_keys, keys, "one debit per payment, by its key");
    assert_eq!(stack.balance(account).await?, dec("50"), "the balance is back where it started");

    // The POST started the workflow together with the update that answered it when the grant was made
    // (update-with-start: one call, no polling).
    let temporal = temporal_client(&stack).await?;
    let handle = temporal.get_workflow_handle::<AdvanceWorkflow>(format!("advance-{advance_id}"));
    let events = handle.fetch_history(Default::default()).into_events().await?;
    let updates: Vec<String> = events
        .iter()
        .filter_map(|event| match &event.attributes {
            Some(Attributes::WorkflowExecutionUpdateAcceptedEventAttributes(accepted)) => {
                Some(accepted.accepted_request.as_ref()?.input.as_ref()?.name.clone())
            }
            _ => None,
        })
        .collect();
    assert_eq!(updates, ["await_grant"], "one update, accepted with the start");
    super::workflows::check_replay(&handle, "v2-advance-started-with-update.json").await?;

    // Lists read the database's mirror, which the workflow's last activity writes just after the live state
    // (what GET answers) says completed: poll for it.
    let query = ListQuery { account_id: Some(account), status: Some("completed".into()), limit: None };
    let listed = poll_until(LONG, || async {
        let advances = stack.api.advances(&query).await?;
        Ok((!advances.is_empty()).then_some(advances))
    })
    .await?;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(stack.api.alerts(None).await?.len(), 0);

    // Operators find it in Temporal (Web UI) by its search attributes.
    let query = format!("AdvanceAccountId = '{account}' AND AdvanceStatus = 'completed'");
    let count = temporal_client(&stack).await?.count_workflows(query, Default::default()).await?;
    assert_eq!(count.count(), 1);
    stack.stop().await
}

#[tokio::test]
async fn an_account_emptied_after_the_grant_fails_twelve_payments_then_one_extra_debit_collects_all(
) -> anyhow::Result<()> {
    let stack = Stack::start(&[("ADVANCE_PAYMENT_INTERVAL", "700ms")]).await?;
    let account = stack.account("0").await?;
    let created = stack.create_advance(account, "120", None).await?.advance;
    assert_eq!(created.status, AdvanceState::ACTIVE, "{created:?}");
    stack.ledger.bank(account, "120", Direction::Debit).await?; // spent at once
    let advance_id = created.advance_id;
    let seen = stack
        .wait_for_advance(advance_id, LONG, |a| a.payments.get(11).is_some_and(|p| p.status == PaymentStatus::Failed))
        .await?;
    let all = &seen.payments;
    assert!(all.len() >= 13, "an extra payment after the last: {seen:?}");
    assert!(all[..12]
        .iter()
        .all(|p| p.status == PaymentStatus::Failed && p.failure_reason.as_deref() == Some("Insufficient funds")));
    // The extra payment carries the whole amount. It falls due 700 ms after the 12th failed; on a loaded machine
    // this poll may see it already under way (or, rarely, failed into a second extra payment).
    assert_eq!(all[12].amount, dec("120"));
    assert_eq!(seen.outstanding_amount, dec("120"));
    stack.ledger.bank(account, "120", Direction::Credit).await?;
    let done = stack.wait_for_advance(advance_id, LONG, |a| a.status == AdvanceState::COMPLETED).await?;
    let debits = stack.debits(account).await?;
    let (last, failed) = debits.split_last().ok_or_else(|| anyhow::anyhow!("no debits"))?;
    assert!(failed.iter().all(|d| d.status == TransactionStatus::Fail), "{debits:?}");
    assert_eq!((last.status, last.amount), (TransactionStatus::Success, dec("120")), "one debit collects it all");
    let collected_by = done.payments.last().map(|p| format!("payment-{}", p.payment_id));
    assert_eq!(Some(last.idempotency_key.clone()), collected_by);
    assert_eq!(debits.len(), done.payments.len(), "one debit per payment, each attempted once: {debits:?}");
    assert_eq!(stack.balance(account).await?, dec("0"));
    stack.stop().await
}

#[tokio::test]
async fn a_worker_killed_mid_advance_and_restarted_collects_exactly_twelve_debits() -> anyhow::Result<()> {
    let mut stack = Stack::start(&[("ADVANCE_PAYMENT_INTERVAL", "400ms"), ("GRANT_WAIT", "1s")]).await?;
    let account = stack.account("0").await?;
    let created = stack.create_advance(account, "60", None).await?.advance;
    let advance_id = created.advance_id;
    let paid = |advance: &AdvanceView| advance.payments.iter().filter(|p| p.status == PaymentStatus::Paid).count();
    // Three payments recorded in the database (the copy the API answers from while the worker is down), not
    // only in the workflow, whose mirror may be a step behind when the worker dies.
    poll_until(LONG, || async {
        let (recorded,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM payments WHERE advance_id = $1 AND status = 'paid'")
                .bind(advance_id)
                .fetch_one(&stack.advances)
                .await?;
        Ok((recorded >= 3).then_some(()))
    })
    .await?;
    stack.kill_worker()?;
    // Payments fall due while no worker runs; the GET still answers, from the database, with one overdue.
    let overdue = |advance: &AdvanceView| {
        let now = chrono::Utc::now();
        advance.payments.iter().any(|p| {
            p.status == PaymentStatus::Scheduled && p.due_at.is_some_and(|due| due + chrono::Duration::seconds(1) < now)
        })
    };
    let while_down = stack.wait_for_advance(advance_id, LONG, overdue).await?;
    assert_eq!(while_down.status, AdvanceState::ACTIVE, "{while_down:?}");
    assert!((3..12).contains(&paid(&while_down)), "collection stopped with the worker: {while_down:?}");
    // An advance asked for while no worker runs is started, and answered `granting` after GRANT_WAIT.
    let other_account = stack.account("0").await?;
    let waiting = stack.create_advance(other_account, "12", None).await?.advance;
    assert_eq!(waiting.status, AdvanceState::GRANTING, "{waiting:?}");
    stack.start_worker().await?;
    stack.wait_for_advance(waiting.advance_id, LONG, |a| a.status == AdvanceState::COMPLETED).await?;
    assert_eq!(stack.grants(other_account).await?, 1);
    let done = stack.wait_for_advance(advance_id, LONG, |a| a.status == AdvanceState::COMPLETED).await?;
    let debits = stack.debits(account).await?;
    assert_eq!(debits.len(), 12, "exactly 12 debits, none twice: {debits:?}");
    assert_eq!(debits.iter().map(|d| &d.idempotency_key).collect::<HashSet<_>>().len(), 12);
    assert!(debits.iter().all(|d| d.status == TransactionStatus::Success));
    assert_eq!(done.paid_amount, dec("60"));
    assert_eq!(stack.grants(account).await?, 1);
    assert_eq!(stack.balance(account).await?, dec("0"));
    stack.stop().await
}

#[tokio::test]
async fn the_same_key_never_grants_twice_and_bad_requests_start_nothing() -> anyhow::Result<()> {
    let stack = Stack::start(&[("ADVANCE_PAYMENT_INTERVAL", "1h")]).await?;
    let account = stack.account("0").await?;
    let body = json!({"account_id": account, "amount": 90});
    let attempts = (0..6).map(|_| stack.create_advance(account, "90", Some("same-key")));
    let replies = futures::future::try_join_all(attempts).await?;
    let ids: HashSet<Uuid> = replies.iter().map(|r| r.advance.advance_id).collect();
    assert_eq!(ids.len(), 1, "one advance for one key: {replies:?}");
    assert_eq!(replies.iter().filter(|r| r.replayed).count(), 5, "the others are replays");
    assert_eq!(stack.grants(account).await?, 1);
    assert_eq!(stack.balance(account).await?, dec("90"));
    let advance_id = replies[0].advance.advance_id;
    let count = temporal_client(&stack)
        .await?
        .count_workflows(format!("WorkflowId = 'advance-{advance_id}'"), Default::default())
        .await?;
    assert_eq!(count.count(), 1, "one workflow");

    let other = stack
        .post(&stack.api_url, "/api/v1/advances", &json!({"account_id": account, "amount": 91}), Some("same-key"))
        .await?;
    assert_eq!((other.status, other.error_code()), (422, "idempotency_key_reused"));
    let by_id = json!({"account_id": account, "amount": 90, "advance_id": advance_id});
    let again = stack.post(&stack.api_url, "/api/v1/advances", &by_id, None).await?;
    assert_eq!(
        (again.status, again.str("advance_id")),
        (201, advance_id.to_string().as_str()),
        "the same advance id is the same advance"
    );
    assert_eq!(stack.grants(account).await?, 1);

    let unknown = json!({"account_id": uuid::Uuid::new_v4(), "amount": 10});
    assert_eq!(stack.post(&stack.api_url, "/api/v1/advances", &unknown, None).await?.status, 404);
    for (bad, code) in [
        (json!({"account_id": account, "amount": 0}), "invalid_amount"),
        (json!({"account_id": account, "amount": "10.001"}), "invalid_amount"),
        (json!({"account_id": account, "amount": "0.11"}), "invalid_amount"),
        (json!({"account_id": account, "amount": -5}), "invalid_amount"),
    ] {
        let reply = stack.post(&stack.api_url, "/api/v1/advances", &bad, None).await?;
        assert_eq!((reply.status, reply.error_code()), (422, code), "{bad}: {}", reply.text);
    }
    for malformed in [json!({"account_id": "nope", "amount": 10}), json!({"amount": 10}), json!([1])] {
        let reply = stack.post(&stack.api_url, "/api/v1/advances", &malformed, None).await?;
        assert_eq!((reply.status, reply.error_code()), (400, "malformed_request"), "{malformed}: {}", reply.text);
    }
    let (rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM advances").fetch_one(&stack.advances).await?;
    assert_eq!(rows, 1, "refused requests record nothing");
    assert_eq!(stack.get(&stack.api_url, &format!("/api/v1/advances/{}", uuid::Uuid::new_v4())).await?.status, 404);
    assert_eq!(stack.get(&stack.api_url, "/api/v1/advances/not-a-uuid").await?.status, 400);
    let bad_status = stack.get(&stack.api_url, "/api/v1/advances?status=happy").await?;
    assert_eq!((bad_status.status, bad_status.error_code()), (422, "invalid_status"));

    // Another client's same key is another advance; and a client that may create advances may not operate
    // them (cancel, pay off) nor read alerts.
    let shop_scopes = ["advances:read", "advances:write"];
    let shop_token = add_client("advances-api", &stack.advances_db.url, "shop", &shop_scopes).await?;
    let shop = client_with_token(Some(&shop_token))?;
    let api = |path: &str| format!("{}{path}", stack.api_url);
    let theirs =
        Reply::read(shop.post(api("/api/v1/advances")).header("idempotency-key", "same-key").json(&body).send().await?)
            .await?;
    assert_eq!(theirs.status, 201, "{}", theirs.text);
    assert!(theirs.headers.get("idempotent-replayed").is_none());
    assert_ne!(theirs.str("advance_id"), advance_id.to_string(), "not a replay of another client's advance");
    assert_eq!(stack.grants(account).await?, 2);
    for command in ["cancel", "pay_off", "pause", "resume"] {
        let path = format!("/api/v1/advances/{advance_id}/{command}");
        let refused = Reply::read(shop.post(api(&path)).json(&json!({})).send().await?).await?;
        assert_eq!((refused.status, refused.error_code()), (403, "forbidden"), "{path}");
        assert!(refused.text.contains("advances:operate"), "{}", refused.text);
    }
    let alerts = Reply::read(shop.get(api("/api/v1/alerts")).send().await?).await?;
    assert_eq!((alerts.status, alerts.error_code()), (403, "forbidden"));
    let anonymous = Reply::read(reqwest::Client::new().get(api("/api/v1/advances")).send().await?).await?;
    assert_eq!((anonymous.status, anonymous.error_code()), (401, "unauthorized"));
    assert_eq!(stack.api.advance(advance_id).await?.status, AdvanceState::ACTIVE, "nothing was cancelled");

    let spec = stack.get(&stack.api_url, "/api/v1/openapi.json").await?;
    let paths = spec.json["paths"].as_object().cloned().unwrap_or_default();
    for path in [
        "/api/v1/advances",
        "/api/v1/advances/{advance_id}",
        "/api/v1/advances/{advance_id}/cancel",
        "/api/v1/advances/{advance_id}/pay_off",
        "/api/v1/advances/{advance_id}/pause",
        "/api/v1/advances/{advance_id}/resume",
        "/api/v1/alerts",
        "/health",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
    assert_eq!(stack.get(&stack.api_url, "/docs/").await?.status, 200);
    let metrics = stack.client.get(format!("{}/metrics", stack.api_url)).send().await?.text().await?;
    assert!(metrics.contains("http_requests_total"), "{metrics}");
    stack.stop().await
}

#[tokio::test]
async fn operators_cancel_or_pay_off_and_the_reconcile_schedule_alerts_on_an_injected_mismatch() -> anyhow::Result<()> {
    let stack = Stack::start(&[("ADVANCE_PAYMENT_INTERVAL", "1h"), ("RECONCILE_INTERVAL", "1s")]).await?;
    let account = stack.account("0").await?;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let created = stack.create_advance(account, "120", None).await?.advance;
        assert_eq!(created.status, AdvanceState::ACTIVE, "{created:?}");
        ids.push(created.advance_id);
    }
    let path = |id: Uuid, command: &str| format!("/api/v1/advances/{id}/{command}");

    stack.api.command(ids[0], Command::PayOff, None).await?;
    stack.wait_for_advance(ids[0], LONG, |a| a.status == AdvanceState::COMPLETED).await?;
    let cancelled = stack.api.command(ids[1], Command::Cancel, Some("customer asked")).await?;
    assert_eq!(
        (cancelled.status, cancelled.status_reason.as_deref()),
        (AdvanceState::CANCELLED, Some("customer asked"))
    );
    stack.wait_for_advance(ids[1], LONG, |a| a.status == AdvanceState::CANCELLED).await?;
    let twice = stack.post(&stack.api_url, &path(ids[1], "cancel"), &json!({}), None).await?;
    assert_eq!((twice.status, twice.error_code()), (409, "advance_not_active"));
    let closed = stack.post(&stack.api_url, &path(ids[0], "pay_off"), &json!({}), None).await?;
    assert_eq!(closed.status, 409);
    let unknown = stack.post(&stack.api_url, &path(Uuid::new_v4(), "cancel"), &json!({}), None).await?;
    assert_eq!(unknown.status, 404);
    assert_eq!(stack.debits(account).await?.len(), 1, "the pay-off is one debit");

    // Pause and resume the third: while paused nothing else goes, and resuming moves the schedule later.
    let before = stack.api.advance(ids[2]).await?;
    let paused = stack.api.command(ids[2], Command::Pause, Some("fraud check")).await?;
    assert_eq!((paused.pause_reason.as_deref(), paused.status), (Some("fraud check"), AdvanceState::ACTIVE));
    assert!(paused.paused_since.is_some(), "{paused:?}");
    for (command, code) in [("pause", "advance_not_active"), ("pay_off", "advance_not_active")] {
        let refused = stack.post(&stack.api_url, &path(ids[2], command), &json!({}), None).await?;
        assert_eq!((refused.status, refused.error_code()), (409, code), "{command} while paused: {}", refused.text);
        assert!(refused.text.contains("paused"), "{}", refused.text);
    }
    let resumed = stack.api.command(ids[2], Command::Resume, None).await?;
    assert!(resumed.paused_since.is_none(), "{resumed:?}");
    let due = |view: &AdvanceView| view.payments[0].due_at;
    assert!(due(&resumed) > due(&before), "{:?} after {:?}", due(&resumed), due(&before));
    let again = stack.post(&stack.api_url, &path(ids[2], "resume"), &json!({}), None).await?;
    assert_eq!((again.status, again.error_code()), (409, "advance_not_active"));

    // Tamper with the third advance's mirror: its payments no longer add up to the advance.
    sqlx::query("UPDATE payments SET amount = amount - 5 WHERE advance_id = $1 AND number = 7")
        .bind(ids[2])
        .execute(&stack.advances)
        .await?;
    let alert = poll_until(LONG, || async {
        let alerts = stack.api.alerts(None).await?;
        Ok(alerts.into_iter().find(|a| a.kind == AlertKind::FormulaMismatch))
    })
    .await?;
    assert_eq!(alert.advance_id, Some(ids[2]));
    assert!(alert.message.contains("115") && alert.message.contains("120"), "{alert:?}");
    // The counter is incremented just after the row is written: poll for it rather than race it.
    let counted = r#"advances_alerts_total{kind="formula_mismatch"} 1"#;
    poll_until(LONG, || async {
        let metrics = stack.client.get(format!("{}/metrics", stack.worker_metrics_url)).send().await?.text().await?;
        Ok(metrics.contains(counted).then_some(()))
    })
    .await?;
    let log = stack.worker_log();
    assert!(
        log.lines().any(|line| {
            line.contains("ERROR") && line.contains(&ids[2].to_string()) && line.contains("formula_mismatch")
        }),
        "an ERROR line names the advance"
    );
    stack.stop().await
}

/// The review's attack: payment ids are public, so a client claims every payment's key first. Keys belong to
/// their client now, so the worker's debits are untouched: all twelve are collected.
#[tokio::test]
async fn a_client_squatting_every_payment_key_cannot_stop_an_advance_from_being_collected() -> anyhow::Result<()> {
    let stack = Stack::start(&[("ADVANCE_PAYMENT_INTERVAL", "1s")]).await?;
    let account = stack.account("50").await?;
    let created = stack.create_advance(account, "120", None).await?.advance;
    let shop = [scopes::ACCOUNTS_READ, scopes::ACCOUNTS_WRITE, scopes::TRANSFERS_WRITE];
    let (_, mallory) = stack.ledger.client_with("mallory", &shop).await?;
    for payment in &created.payments {
        let key = format!("payment-{}", payment.payment_id);
        mallory.create_account(Some(&key)).await?;
        assert!(mallory.transactions_by_key(&key).await?.is_empty(), "the worker's rows are not Mallory's to see");
    }
    let done = stack.wait_for_advance(created.advance_id, LONG, |a| !is_open(a)).await?;
    assert_eq!(done.status, AdvanceState::COMPLETED, "{done:?}");
    assert!(done.payments.iter().all(|p| p.status == PaymentStatus::Paid), "{done:?}");
    let debits = stack.debits(account).await?;
    assert_eq!(debits.len(), 12, "{debits:?}");
    assert!(debits.iter().all(|d| d.status == TransactionStatus::Success));
    assert_eq!(stack.balance(account).await?, dec("50"));
    let alerts = stack.api.alerts(None).await?;
    assert!(alerts.is_empty(), "{alerts:?}");
    stack.stop().await
}

/// A refusal only an operator can fix (here the worker's credential revoked) is not the client's failure: the
/// payment waits, an alert names the cause, and once fixed the same debit goes through.
#[tokio::test]
async fn a_ledger_refusal_raises_an_alert_and_waits_for_an_operator_instead_of_failing_the_payment(
) -> anyhow::Result<()> {
    let stack = Stack::start(&[("ADVANCE_PAYMENT_INTERVAL", "500ms")]).await?;
    let account = stack.account("50").await?;
    let created = stack.create_advance(account, "120", None).await?.advance;
    assert_eq!(created.status, AdvanceState::ACTIVE, "{created:?}");
    let set_revoked = |revoked: bool| {
        sqlx::query("UPDATE api_clients SET revoked_at = CASE WHEN $1 THEN now() END WHERE name = 'advances-worker'")
            .bind(revoked)
            .execute(&stack.ledger.pool)
    };
    set_revoked(true).await?;
    let alert = poll_until(LONG, || async { Ok(stack.api.alerts(None).await?.into_iter().next()) }).await?;
    assert_eq!(alert.kind, AlertKind::LedgerRefused, "{alert:?}");
    assert!(alert.message.contains("401") && alert.message.contains("payment-"), "{alert:?}");
    let waiting = stack.api.advance(created.advance_id).await?;
    assert_eq!(waiting.status, AdvanceState::ACTIVE);
    assert!(waiting.payments.iter().all(|p| p.status != PaymentStatus::Failed), "{waiting:?}");
    assert!(waiting.payments.iter().any(|p| p.status == PaymentStatus::Processing));

    set_revoked(false).await?;
    let done = stack.wait_for_advance(created.advance_id, LONG, |a| !is_open(a)).await?;
    assert_eq!(done.status, AdvanceState::COMPLETED, "{done:?}");
    let debits = stack.debits(account).await?;
    assert_eq!((debits.len(), debits.iter().all(|d| d.status == TransactionStatus::Success)), (12, true));
    assert_eq!(stack.balance(account).await?, dec("50"));
    stack.stop().await
}

/// Every step of an advance is an event of the advances-api's feed, written with the mirrored state: the
/// grant, each payment paid or failed (with where its amount went), and the end; each once, in order.
#[tokio::test]
async fn every_step_of_an_advance_is_one_event_in_the_advances_feed() -> anyhow::Result<()> {
    use advances_contract::events as types;
    use system_tests::feed::{all_event_ids, FeedReader};

    let stack = Stack::start(&[("ADVANCE_PAYMENT_INTERVAL", "1s")]).await?;
    let account = stack.account("0").await?;
    let created = stack.create_advance(account, "120.00", None).await?.advance;
    // Spend the grant at once: the first payment fails and moves on.
    stack.ledger.bank(account, "115", Direction::Debit).await?;
    let mut reader = FeedReader::new(&stack.client, &stack.api_url);
    let failed = reader.read_until_kind(types::PAYMENT_FAILED, LONG).await?;
    stack.ledger.bank(account, "500", Direction::Credit).await?;
    let failed: serde_json::Value = serde_json::from_str(failed.data.get())?;
    assert_eq!(failed["advance_id"], json!(created.advance_id.to_string()));
    assert_eq!(failed["payment"]["status"], json!("failed"));
    assert_eq!(failed["moved_to_payment"]["number"], failed["payment"]["moved_to"], "{failed}");

    let done = stack.wait_for_advance(created.advance_id, LONG, |a| a.status == AdvanceState::COMPLETED).await?;
    reader.read_until_kind(types::ADVANCE_COMPLETED, LONG).await?;
    reader.drain().await?;
    reader.check_order()?;
    let kinds: Vec<&str> = reader.seen.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds.first(), Some(&types::ADVANCE_GRANTED), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&types::ADVANCE_COMPLETED), "{kinds:?}");
    let paid = done.payments.iter().filter(|p| p.status == PaymentStatus::Paid).count();
    let failures = done.payments.iter().filter(|p| p.status == PaymentStatus::Failed).count();
    assert_eq!(kinds.iter().filter(|k| **k == types::PAYMENT_PAID).count(), paid, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == types::PAYMENT_FAILED).count(), failures, "{kinds:?}");
    assert_eq!(reader.ids(), all_event_ids(&stack.advances).await?, "each event once, nothing else");
    let completed: serde_json::Value = serde_json::from_str(reader.seen.last().map(|e| e.data.get()).unwrap_or("{}"))?;
    assert_eq!(completed["status"], json!("completed"));
    assert_eq!(completed["paid_amount"], json!(120));
    stack.stop().await
}
