//! The ledger's event feed: every change's event, in an order no reader skips although transactions commit out
//! of order; cursors, filters and retention; long polls; scopes.

use std::time::Duration;

use ledger_contract::{events as types, scopes, Direction, TransferRequest};
use money::Amount;
use serde_json::json;
use system_tests::feed::{all_event_ids, FeedReader};
use system_tests::process::client_with_token;
use system_tests::{poll_until, Reply, TestLedger};
use uuid::Uuid;

fn transfer(src: Uuid, dst: Uuid, amount: &str) -> anyhow::Result<TransferRequest> {
    Ok(TransferRequest::new(src, dst, Amount::parse(amount)?, Direction::Debit))
}

/// The attack on an outbox: a transaction that wrote its event first commits last. A reader that went by what
/// had committed would pass that event's position and never see it.
#[tokio::test]
async fn a_reader_never_passes_an_event_whose_transaction_has_not_committed() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let (a, b) = (app.funded_account("100").await?, app.open_account().await?);
    let mut reader = FeedReader::new(&app.client, &app.base_url);
    reader.read_until(3, Duration::from_secs(30)).await?;
    assert_eq!(reader.drain().await?.len(), 0, "two accounts opened and a credit: {:?}", reader.seen);

    // A slow writer: its transaction writes an event, then stays open while later ones commit.
    let mut slow = app.pool.begin().await?;
    let slow_id = Uuid::now_v7();
    sqlx::query("INSERT INTO events (id, type, data) VALUES ($1, 'account.created', '{\"slow\": true}')")
        .bind(slow_id)
        .execute(&mut *slow)
        .await?;
    for _ in 0..5 {
        app.api.transfer(&transfer(a, b, "1")?, None).await?;
    }
    let during = reader.drain().await?;
    assert!(during.is_empty(), "events after the open transaction's were served while it was open: {during:?}");

    slow.commit().await?;
    // The reader's next page waits (long-polls) until the slow event is visible.
    let after = reader.page(100, 10).await?;
    assert_eq!(after.first().map(|e| e.id), Some(slow_id), "the slow event comes first: {after:?}");
    reader.drain().await?;
    let kinds: Vec<&str> = reader.seen[4..].iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, [types::TRANSACTION_SUCCEEDED; 5]);
    reader.check_order()?;
    assert_eq!(reader.ids(), all_event_ids(&app.pool).await?, "the reader saw every event, in the table's order");
    app.stop().await
}

/// Two instances commit groups concurrently, in any order, while a consumer long-polls: it reads every event
/// exactly once, in position order, and each transaction's event carries the transaction as the API shows it.
#[tokio::test]
async fn a_long_polling_reader_sees_every_event_of_two_busy_instances_once_and_in_order() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let second = app.add_instance().await?;
    let accounts: Vec<Uuid> = futures::future::try_join_all((0..6).map(|_| app.funded_account("1000"))).await?;
    let mut reader = FeedReader::new(&app.client, &app.base_url);
    let writers = (0..8).map(|w| {
        let base = if w % 2 == 0 { app.base_url.clone() } else { second.base_url.clone() };
        let api = ledger_contract::LedgerClient::new(&base, app.token.clone(), Duration::from_secs(60));
        let accounts = accounts.clone();
        async move {
            let api = api?;
            let mut ids = Vec::new();
            for i in 0..60 {
                let (src, dst) = (accounts[(w + i) % 6], accounts[(w + 2 * i + 1) % 6]);
                let dst = if dst == src { accounts[(w + i + 3) % 6] } else { dst };
                ids.push(api.transfer(&transfer(src, dst, "0.01")?, None).await?.transaction_id);
            }
            anyhow::Ok(ids)
        }
    });
    let writing = tokio::spawn(futures::future::try_join_all(writers));
    while !writing.is_finished() {
        reader.page(50, 1).await?;
    }
    let written: Vec<Uuid> = writing.await??.into_iter().flatten().collect();
    let total: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&app.pool).await?;
    reader.read_until(total as usize, Duration::from_secs(30)).await?;
    reader.check_order()?;
    assert_eq!(reader.ids(), all_event_ids(&app.pool).await?, "every event, once, in position order");
    let transactions: std::collections::HashMap<Uuid, serde_json::Value> = reader
        .seen
        .iter()
        .filter(|e| e.kind == types::TRANSACTION_SUCCEEDED)
        .map(|e| -> anyhow::Result<_> {
            let data: serde_json::Value = serde_json::from_str(e.data.get())?;
            Ok((data["transaction_id"].as_str().unwrap_or_default().parse()?, data))
        })
        .collect::<anyhow::Result<_>>()?;
    for id in &written {
        assert!(transactions.contains_key(id), "transaction {id} has no event");
    }
    assert_eq!(transactions.len(), written.len() + 6, "the credits and the transfers, nothing else");
    second.stop().await;
    app.stop().await
}

/// A transaction row never changes, so its event stores only the row's id and time, and `data` is rendered from
/// the row when read: byte for byte the request's own answer, for a success and a failure alike. A hold changes
/// after its event, so its event keeps its data.
#[tokio::test]
async fn a_transactions_event_refers_to_its_row_and_shows_the_answer_byte_for_byte() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let (a, b) = (app.funded_account("5").await?, app.open_account().await?);
    let moved = app.post("/api/v1/transaction", &serde_json::to_value(transfer(a, b, "1.50")?)?, None).await?;
    let refused = app.post("/api/v1/transaction", &serde_json::to_value(transfer(a, b, "9")?)?, None).await?;
    assert_eq!((moved.status, refused.status), (201, 201), "{} / {}", moved.text, refused.text);
    app.api.place_hold(&ledger_contract::HoldRequest::new(a, Amount::parse("1")?, None, "card"), None).await?;
    let mut reader = FeedReader::new(&app.client, &app.base_url);
    reader.read_until_kind(types::HOLD_PLACED, Duration::from_secs(30)).await?;

    for (answer, kind) in [(&moved, types::TRANSACTION_SUCCEEDED), (&refused, types::TRANSACTION_FAILED)] {
        let id: Uuid = answer.json["transaction_id"].as_str().unwrap_or_default().parse()?;
        let event = reader.seen.iter().find(|e| e.data.get().contains(&id.to_string()) && e.kind == kind);
        assert_eq!(event.map(|e| e.data.get()), Some(answer.text.as_str()), "the feed shows the answer's bytes");
        let stored: (bool, String) = sqlx::query_as("SELECT data IS NULL, type FROM events WHERE subject = $1")
            .bind(id)
            .fetch_one(&app.pool)
            .await?;
        assert_eq!(stored, (true, kind.to_owned()), "the event stores a reference to the row, not the view");
    }
    let with_data: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE type LIKE 'transaction.%' AND data IS NOT NULL")
            .fetch_one(&app.pool)
            .await?;
    assert_eq!(with_data, 0, "no transaction's event stores its view");
    let hold: (bool, Option<Uuid>) =
        sqlx::query_as("SELECT data IS NULL, subject FROM events WHERE type = 'hold.placed'")
            .fetch_one(&app.pool)
            .await?;
    assert_eq!(hold, (false, None), "a hold's event keeps its data");

    // A capture writes its rows (the transfer, the release of the rest) and ends the hold in one transaction:
    // the rows' events come first, in the rows' order, then the hold's, next to each other in the feed.
    let placed = reader.seen.iter().find(|e| e.kind == types::HOLD_PLACED).map(|e| e.data.get().to_owned());
    let hold_id = serde_json::from_str::<serde_json::Value>(&placed.unwrap_or_default())?["hold_id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let capture = json!({"amount": "0.25", "dst_account_id": b});
    let captured = app.post(&format!("/api/v1/holds/{hold_id}/capture"), &capture, None).await?;
    assert_eq!(captured.status, 200, "{}", captured.text);
    reader.read_until_kind(types::HOLD_CAPTURED, Duration::from_secs(30)).await?;
    let last: Vec<(&str, serde_json::Value)> = reader.seen[reader.seen.len() - 3..]
        .iter()
        .map(|e| Ok((e.kind.as_str(), serde_json::from_str(e.data.get())?)))
        .collect::<serde_json::Result<_>>()?;
    let kinds: Vec<(&str, &str)> =
        last.iter().map(|(kind, data)| (*kind, data["kind"].as_str().unwrap_or("-"))).collect();
    assert_eq!(
        kinds,
        [
            (types::TRANSACTION_SUCCEEDED, "transfer"),
            (types::TRANSACTION_SUCCEEDED, "hold_release"),
            (types::HOLD_CAPTURED, "-")
        ],
        "{last:?}"
    );
    let writers: i64 = sqlx::query_scalar(
        "SELECT count(DISTINCT xid) FROM events WHERE subject IN ($1, $2) OR data->>'hold_id' = $3 AND type = 'hold.captured'",
    )
    .bind(last[0].1["transaction_id"].as_str().unwrap_or_default().parse::<Uuid>()?)
    .bind(last[1].1["transaction_id"].as_str().unwrap_or_default().parse::<Uuid>()?)
    .bind(&hold_id)
    .fetch_one(&app.pool)
    .await?;
    assert_eq!(writers, 1, "the capture's three events are one transaction's");
    app.stop().await
}

#[tokio::test]
async fn cursors_limits_types_and_waits_are_checked_and_a_filter_skips_only_other_types() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let a = app.funded_account("5").await?;
    let b = app.open_account().await?;
    let failed = app.api.transfer(&transfer(a, b, "9")?, None).await?;
    app.api.transfer(&transfer(a, b, "1")?, None).await?;
    FeedReader::new(&app.client, &app.base_url).read_until(5, Duration::from_secs(30)).await?;

    for (query, status, code) in [
        ("limit=0", 422, "invalid_limit"),
        ("limit=1001", 422, "invalid_limit"),
        ("after=xyz", 422, "invalid_cursor"),
        (&format!("after={}", "F".repeat(32))[..], 422, "invalid_cursor"),
        ("types=transaction.exploded", 422, "unknown_event_type"),
        ("types=", 422, "unknown_event_type"),
        ("wait=31", 422, "invalid_wait"),
        ("wait=-1", 400, "malformed_request"),
        ("colour=blue", 400, "malformed_request"),
    ] {
        let reply = app.get(&format!("/api/v1/events?{query}")).await?;
        assert_eq!((reply.status, reply.error_code()), (status, code), "{query}: {}", reply.text);
    }

    let only_failed = app.get("/api/v1/events?types=transaction.failed").await?;
    assert_eq!(only_failed.status, 200, "{}", only_failed.text);
    let events = only_failed.json["events"].as_array().cloned().unwrap_or_default();
    assert_eq!(events.len(), 1, "{}", only_failed.text);
    assert_eq!(events[0]["data"]["transaction_id"], json!(failed.transaction_id.to_string()));
    let all = app.get("/api/v1/events").await?;
    let last = all.json["events"].as_array().and_then(|e| e.last()).map(|e| e["position"].clone());
    assert_eq!(Some(only_failed.json["next_cursor"].clone()), last, "the filter's cursor passed what it skipped");

    let two = app.get("/api/v1/events?limit=2").await?;
    assert_eq!(two.json["events"].as_array().map(Vec::len), Some(2));
    assert_eq!(two.json["next_cursor"], two.json["events"][1]["position"]);
    app.stop().await
}

/// With a short retention, events are deleted oldest first; a cursor from before them is refused with 410
/// (never served with a gap), while a consumer that kept up reads on.
#[tokio::test]
async fn a_cursor_older_than_the_retention_is_gone_and_one_that_kept_up_reads_on() -> anyhow::Result<()> {
    let app = TestLedger::start_with(&[("EVENT_RETENTION", "2s")]).await?;
    let a = app.funded_account("5").await?;
    let mut reader = FeedReader::new(&app.client, &app.base_url);
    reader.read_until(2, Duration::from_secs(30)).await?;
    poll_until(Duration::from_secs(30), || async {
        let reply = app.get("/api/v1/events").await?;
        Ok((reply.status == 410).then_some(reply))
    })
    .await
    .map(|reply| assert_eq!(reply.error_code(), "cursor_expired", "{}", reply.text))?;
    let b = app.open_account().await?;
    app.api.transfer(&transfer(a, b, "1")?, None).await?;
    reader.read_until(4, Duration::from_secs(30)).await?;
    let kinds: Vec<&str> = reader.seen[2..].iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, [types::ACCOUNT_CREATED, types::TRANSACTION_SUCCEEDED]);
    app.stop().await
}

#[tokio::test]
async fn a_long_poll_returns_as_soon_as_an_event_commits_and_empty_when_none_does() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    app.open_account().await?;
    let mut reader = FeedReader::new(&app.client, &app.base_url);
    reader.read_until(1, Duration::from_secs(30)).await?;
    let cursor = reader.cursor.clone();
    assert!(reader.page(10, 1).await?.is_empty(), "nothing happened within a second");
    assert_eq!(reader.cursor, cursor);

    let waiting = tokio::spawn(async move { reader.page(10, 25).await });
    // The request is waiting before the account is opened: it can only return the event by being woken.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let account = app.open_account().await?;
    let woke = waiting.await??;
    assert_eq!(woke.len(), 1, "{woke:?}");
    assert_eq!(woke[0].kind, types::ACCOUNT_CREATED);
    assert!(woke[0].data.get().contains(&account.to_string()));
    app.stop().await
}

#[tokio::test]
async fn the_feed_and_the_webhooks_need_their_own_scopes() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let (token, _) = app.client_with("shop", &[scopes::ACCOUNTS_READ, scopes::TRANSFERS_WRITE]).await?;
    let shop = client_with_token(Some(&token))?;
    let feed = Reply::read(shop.get(app.url("/api/v1/events")).send().await?).await?;
    assert_eq!((feed.status, feed.error_code()), (403, "forbidden"));
    assert!(feed.text.contains(scopes::EVENTS_READ), "{}", feed.text);
    let hook = json!({"url": "https://example.com/hook"});
    let made = Reply::read(shop.post(app.url("/api/v1/webhooks")).json(&hook).send().await?).await?;
    assert_eq!((made.status, made.error_code()), (403, "forbidden"));
    assert!(made.text.contains(scopes::WEBHOOKS_MANAGE), "{}", made.text);
    let anonymous = Reply::read(reqwest::Client::new().get(app.url("/api/v1/events")).send().await?).await?;
    assert_eq!(anonymous.status, 401);
    assert_eq!(events::EVENTS_READ, scopes::EVENTS_READ, "the contract and the routes name the same scope");
    assert_eq!(events::WEBHOOKS_MANAGE, scopes::WEBHOOKS_MANAGE);
    app.stop().await
}
