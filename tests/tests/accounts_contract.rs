//! Every point of the accounts-service contract, against a real PostgreSQL, one database per test.

use rust_decimal::Decimal;
use serde_json::{json, Value};
use system_tests::{dec, decimal_of, TestLedger};

#[tokio::test]
async fn an_account_opens_at_zero_and_can_be_read() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let created = app.post("/api/v1/accounts", &json!({}), None).await?;
    assert_eq!(created.status, 201, "{}", created.text);
    assert!(created.text.contains(r#""balance":0"#), "balance is the JSON number 0: {}", created.text);
    let id = created.str("account_id").to_owned();
    assert!(uuid::Uuid::parse_str(&id).is_ok());
    assert_eq!(created.str("created_at").len(), "2023-07-11 12:01:27.053".len());

    let read = app.get(&format!("/api/v1/accounts/{id}")).await?;
    assert_eq!(read.status, 200);
    assert_eq!(read.str("account_id"), id);
    assert_eq!(read.decimal("balance"), Decimal::ZERO);

    let unknown = app.get(&format!("/api/v1/accounts/{}", uuid::Uuid::new_v4())).await?;
    assert_eq!((unknown.status, unknown.error_code()), (404, "not_found"));
    let malformed = app.get("/api/v1/accounts/not-a-uuid").await?;
    assert_eq!((malformed.status, malformed.error_code()), (400, "malformed_request"));
    app.stop().await
}

#[tokio::test]
async fn a_debit_moves_money_from_src_to_dst_and_a_credit_the_other_way() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let a = app.funded_account("100.00").await?;
    let b = app.funded_account("50.00").await?;

    let debit = json!({"src_account_id": a, "dst_account_id": b, "amount": 12.3, "direction": "debit"});
    let reply = app.post("/api/v1/transaction", &debit, None).await?;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.str("status"), "success");
    assert!(reply.json.get("reason").is_none(), "a success has no reason key: {}", reply.text);
    for field in ["transaction_id", "transaction_timestamp", "src_account_id", "dst_account_id", "amount", "direction"]
    {
        assert!(reply.json.get(field).is_some(), "missing {field}: {}", reply.text);
    }
    assert_eq!(reply.decimal("amount"), dec("12.3"));
    assert_eq!((app.balance(a).await?, app.balance(b).await?), (dec("87.7"), dec("62.3")));

    let credit = json!({"src_account_id": a, "dst_account_id": b, "amount": "2.30", "direction": "credit"});
    let reply = app.post("/api/v1/transaction", &credit, None).await?;
    assert_eq!((reply.status, reply.str("status")), (201, "success"));
    assert_eq!((app.balance(a).await?, app.balance(b).await?), (dec("90"), dec("60")));
    app.stop().await
}

#[tokio::test]
async fn insufficient_funds_is_recorded_as_a_failed_transaction_that_moves_nothing() -> anyhow::Result<()> {
    insufficient_funds(&[]).await
}

#[tokio::test]
async fn without_committers_insufficient_funds_is_recorded_as_a_failed_transaction_that_moves_nothing(
) -> anyhow::Result<()> {
    insufficient_funds(&[("BATCH_COMMITTERS", "0")]).await
}

async fn insufficient_funds(settings: &[(&str, &str)]) -> anyhow::Result<()> {
    let app = TestLedger::start_with(settings).await?;
    let a = app.funded_account("10.00").await?;
    let b = app.open_account().await?;
    let body = json!({"src_account_id": a, "dst_account_id": b, "amount": "10.01", "direction": "debit"});
    let reply = app.post("/api/v1/transaction", &body, None).await?;
    assert_eq!(reply.status, 201, "{}", reply.text);
    assert_eq!(reply.str("status"), "fail");
    assert_eq!(reply.str("reason"), "Insufficient funds");
    assert_eq!((app.balance(a).await?, app.balance(b).await?), (dec("10"), dec("0")));

    let report = app.get("/api/v1/transactions").await?;
    let rows = report.json["transactions"].as_array().cloned().unwrap_or_default();
    let failed = rows.iter().find(|row| row["transaction_id"] == reply.json["transaction_id"]);
    assert_eq!(failed.map(|row| row["status"].clone()), Some(json!("fail")), "the failure is in the report");

    // Exactly the whole balance can be paid, down to zero.
    let all = json!({"src_account_id": a, "dst_account_id": b, "amount": "10", "direction": "debit"});
    let reply = app.post("/api/v1/transaction", &all, None).await?;
    assert_eq!(reply.str("status"), "success");
    assert_eq!((app.balance(a).await?, app.balance(b).await?), (dec("0"), dec("10")));
    app.stop().await
}

#[tokio::test]
async fn every_bad_input_is_refused_with_a_json_error_and_records_nothing() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let a = app.funded_account("100").await?;
    let b = app.funded_account("100").await?;
    let rows_before = app.transaction_count().await?;
    let transfer = |amount: Value, direction: &str| json!({"src_account_id": a, "dst_account_id": b, "amount": amount, "direction": direction});
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        ("zero", transfer(json!(0), "debit"), 422, "invalid_amount"),
        ("negative", transfer(json!(-5), "debit"), 422, "invalid_amount"),
        ("negative string", transfer(json!("-0.01"), "debit"), 422, "invalid_amount"),
        ("NaN", transfer(json!("NaN"), "debit"), 422, "invalid_amount"),
        ("surrounding spaces", transfer(json!(" 5 "), "debit"), 422, "invalid_amount"),
        ("a leading plus", transfer(json!("+5"), "debit"), 422, "invalid_amount"),
        ("three decimals", transfer(json!(1.005), "debit"), 422, "invalid_amount"),
        ("over the maximum", transfer(json!("1000000000000.01"), "debit"), 422, "invalid_amount"),
        ("unknown direction", transfer(json!(1), "sideways"), 422, "invalid_direction"),
        (
            "same account",
            json!({"src_account_id": a, "dst_account_id": a, "amount": 1, "direction": "debit"}),
            422,
            "same_account",
        ),
        (
            "unknown src",
            json!({"src_account_id": uuid::Uuid::new_v4(), "dst_account_id": b, "amount": 1, "direction": "debit"}),
            404,
            "not_found",
        ),
        (
            "unknown dst",
            json!({"src_account_id": a, "dst_account_id": uuid::Uuid::new_v4(), "amount": 1, "direction": "credit"}),
            404,
            "not_found",
        ),
        ("amount of wrong type", transfer(json!(true), "debit"), 400, "malformed_request"),
        (
            "direction of wrong type",
            json!({"src_account_id": a, "dst_account_id": b, "amount": 1, "direction": 1}),
            400,
            "malformed_request",
        ),
        (
            "malformed id",
            json!({"src_account_id": "42", "dst_account_id": b, "amount": 1, "direction": "debit"}),
            400,
            "malformed_request",
        ),
        ("missing field", json!({"src_account_id": a, "amount": 1, "direction": "debit"}), 400, "malformed_request"),
        (
            "unknown field",
            json!({"src_account_id": a, "dst_account_id": b, "amount": 1, "direction": "debit", "fee": 1}),
            400,
            "malformed_request",
        ),
        ("array body", json!([1, 2]), 400, "malformed_request"),
    ];
    for (name, body, status, code) in &cases {
        let reply = app.post("/api/v1/transaction", body, None).await?;
        assert_eq!((reply.status, reply.error_code()), (*status, *code), "{name}: {}", reply.text);
        assert!(reply.json.pointer("/error/message").and_then(Value::as_str).is_some_and(|m| !m.is_empty()));
    }

    // Raw bodies that serde_json's Value cannot even express.
    let raw_cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "1e400",
            format!(r#"{{"src_account_id":"{a}","dst_account_id":"{b}","amount":1e400,"direction":"debit"}}"#),
            422,
            "invalid_amount",
        ),
        (
            "bare NaN",
            format!(r#"{{"src_account_id":"{a}","dst_account_id":"{b}","amount":NaN,"direction":"debit"}}"#),
            400,
            "malformed_request",
        ),
        ("malformed JSON", r#"{"src_account_id": "#.to_owned(), 400, "malformed_request"),
        ("not JSON", "amount=5".to_owned(), 400, "malformed_request"),
        (
            "over 64 KiB",
            format!(
                r#"{{"src_account_id":"{a}","dst_account_id":"{b}","amount":1,"direction":"debit","pad":"{}"}}"#,
                "x".repeat(70_000)
            ),
            413,
            "payload_too_large",
        ),
    ];
    for (name, body, status, code) in raw_cases {
        let response = app
            .client
            .post(app.url("/api/v1/transaction"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let reply = system_tests::Reply::read(response).await?;
        assert_eq!((reply.status, reply.error_code()), (status, code), "{name}: {}", reply.text);
    }

    let bank_cases: Vec<(&str, Value, u16, &str)> = vec![
        ("zero", json!({"dst_account_id": a, "amount": "0.00", "direction": "debit"}), 422, "invalid_amount"),
        ("unknown direction", json!({"dst_account_id": a, "amount": 1, "direction": "up"}), 422, "invalid_direction"),
        (
            "unknown account",
            json!({"dst_account_id": uuid::Uuid::new_v4(), "amount": 1, "direction": "credit"}),
            404,
            "not_found",
        ),
        (
            "long reason",
            json!({"dst_account_id": a, "amount": 1, "direction": "credit", "reason": "r".repeat(501)}),
            422,
            "invalid_reason",
        ),
        (
            "reason of wrong type",
            json!({"dst_account_id": a, "amount": 1, "direction": "credit", "reason": 5}),
            400,
            "malformed_request",
        ),
    ];
    for (name, body, status, code) in &bank_cases {
        let reply = app.post("/api/v1/bank_transactions", body, None).await?;
        assert_eq!((reply.status, reply.error_code()), (*status, *code), "bank {name}: {}", reply.text);
    }

    assert_eq!(app.transaction_count().await?, rows_before, "a refused request records nothing");
    assert_eq!((app.balance(a).await?, app.balance(b).await?), (dec("100"), dec("100")), "and moves nothing");
    app.stop().await
}

#[tokio::test]
async fn amounts_are_exact_in_and_out() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let a = app.funded_account("999999999999.99").await?;
    let b = app.open_account().await?;
    let body = json!({"src_account_id": a, "dst_account_id": b, "amount": "999999999999.98", "direction": "debit"});
    let reply = app.post("/api/v1/transaction", &body, None).await?;
    assert!(reply.text.contains(r#""amount":999999999999.98"#), "{}", reply.text);
    assert_eq!(app.balance(a).await?, dec("0.01"));
    let read = app.get(&format!("/api/v1/accounts/{b}")).await?;
    assert!(read.text.contains(r#""balance":999999999999.98"#), "{}", read.text);
    // 0.1 + 0.2 done in cents stays exact.
    let c = app.open_account().await?;
    for amount in ["0.1", "0.2"] {
        let credit = json!({"dst_account_id": c, "amount": amount, "direction": "credit"});
        app.post("/api/v1/bank_transactions", &credit, None).await?;
    }
    assert_eq!(app.balance(c).await?, dec("0.3"));
    app.stop().await
}

#[tokio::test]
async fn a_bank_credit_gives_and_a_bank_debit_takes_unless_funds_are_short() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let a = app.open_account().await?;
    let credit = json!({"dst_account_id": a, "amount": 40, "direction": "credit", "reason": "Advance grant"});
    let reply = app.post("/api/v1/bank_transactions", &credit, None).await?;
    assert_eq!((reply.status, reply.str("status")), (201, "success"), "{}", reply.text);
    assert_eq!(reply.str("description"), "Advance grant");
    assert!(reply.json.get("reason").is_none(), "reason keeps the seed's meaning: {}", reply.text);
    assert!(reply.json.get("src_account_id").is_none(), "the bank has no account: {}", reply.text);
    assert_eq!(reply.str("dst_account_id"), a.to_string());

    let debit =
        json!({"dst_account_id": a, "amount": "15.5", "direction": "debit", "reason": "Advance payment week 1"});
    let reply = app.post("/api/v1/bank_transactions", &debit, None).await?;
    assert_eq!(reply.str("status"), "success");
    assert_eq!(app.balance(a).await?, dec("24.5"));

    let too_much =
        json!({"dst_account_id": a, "amount": "24.51", "direction": "debit", "reason": "Advance payment week 2"});
    let reply = app.post("/api/v1/bank_transactions", &too_much, None).await?;
    assert_eq!((reply.status, reply.str("status"), reply.str("reason")), (201, "fail", "Insufficient funds"));
    assert_eq!(reply.str("description"), "Advance payment week 2");
    assert_eq!(app.balance(a).await?, dec("24.5"));
    assert_eq!(app.transaction_count().await?, 3);
    app.stop().await
}

#[tokio::test]
async fn the_same_key_and_body_replays_the_first_response_without_moving_money_again() -> anyhow::Result<()> {
    keys_replay(&[]).await
}

#[tokio::test]
async fn without_committers_the_same_key_and_body_replays_the_first_response_without_moving_money_again(
) -> anyhow::Result<()> {
    keys_replay(&[("BATCH_COMMITTERS", "0")]).await
}

async fn keys_replay(settings: &[(&str, &str)]) -> anyhow::Result<()> {
    let app = TestLedger::start_with(settings).await?;
    let a = app.funded_account("100").await?;
    let b = app.open_account().await?;
    let body = json!({"src_account_id": a, "dst_account_id": b, "amount": 30, "direction": "debit"});
    let first = app.post("/api/v1/transaction", &body, Some("pay-1")).await?;
    assert_eq!(first.status, 201);
    assert!(first.headers.get("idempotent-replayed").is_none());
    // The same request, spelled differently (string amount), is the same request.
    let same = json!({"src_account_id": a, "dst_account_id": b, "amount": "30.00", "direction": "debit"});
    let again = app.post("/api/v1/transaction", &same, Some("pay-1")).await?;
    assert_eq!(again.status, first.status);
    assert_eq!(again.text, first.text, "the replay is byte for byte the first response");
    assert_eq!(again.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    assert_eq!(app.balance(a).await?, dec("70"));

    let different = json!({"src_account_id": a, "dst_account_id": b, "amount": 31, "direction": "debit"});
    let misuse = app.post("/api/v1/transaction", &different, Some("pay-1")).await?;
    assert_eq!((misuse.status, misuse.error_code()), (422, "idempotency_key_reused"));
    let other_route = json!({"dst_account_id": a, "amount": 30, "direction": "debit"});
    let misuse = app.post("/api/v1/bank_transactions", &other_route, Some("pay-1")).await?;
    assert_eq!((misuse.status, misuse.error_code()), (422, "idempotency_key_reused"));
    assert_eq!(app.balance(a).await?, dec("70"));
    assert_eq!(app.transaction_count().await?, 2, "the funding and one transfer");

    // A recorded failure is replayed as the failure, even after funds arrive.
    let big = json!({"src_account_id": b, "dst_account_id": a, "amount": 500, "direction": "debit"});
    let failed = app.post("/api/v1/transaction", &big, Some("pay-2")).await?;
    assert_eq!(failed.str("status"), "fail");
    app.post("/api/v1/bank_transactions", &json!({"dst_account_id": b, "amount": 1000, "direction": "credit"}), None)
        .await?;
    let replay = app.post("/api/v1/transaction", &big, Some("pay-2")).await?;
    assert_eq!(replay.text, failed.text);

    // A reconciler can find what each key recorded: exactly one row, replays included.
    let found = app.get("/api/v1/transactions/by_key?idempotency_key=pay-1").await?;
    let rows = found.json["transactions"].as_array().cloned().unwrap_or_default();
    assert_eq!((found.status, rows.len()), (200, 1), "{}", found.text);
    assert_eq!(rows[0]["transaction_id"], first.json["transaction_id"]);
    let found = app.get("/api/v1/transactions/by_key?idempotency_key=pay-2").await?;
    assert_eq!(found.json["transactions"][0]["status"], "fail");
    let none = app.get("/api/v1/transactions/by_key?idempotency_key=never-used").await?;
    assert_eq!((none.status, none.json["transactions"].as_array().map(Vec::len)), (200, Some(0)));
    let bad = app.get("/api/v1/transactions/by_key").await?;
    assert_eq!(bad.status, 400, "{}", bad.text);

    // Account creation honours keys too.
    let first = app.post("/api/v1/accounts", &json!({}), Some("open-1")).await?;
    let again = app.post("/api/v1/accounts", &json!({}), Some("open-1")).await?;
    assert_eq!(first.str("account_id"), again.str("account_id"));

    let too_long = app.post("/api/v1/transaction", &body, Some(&"k".repeat(256))).await?;
    assert_eq!((too_long.status, too_long.error_code()), (422, "invalid_idempotency_key"));
    let longest = app.post("/api/v1/accounts", &json!({}), Some(&"k".repeat(255))).await?;
    assert_eq!(longest.status, 201);

    // A refused request does not burn its key: fixed, it goes through.
    let bad = json!({"src_account_id": a, "dst_account_id": uuid::Uuid::new_v4(), "amount": 1, "direction": "debit"});
    assert_eq!(app.post("/api/v1/transaction", &bad, Some("pay-3")).await?.status, 404);
    let good = json!({"src_account_id": a, "dst_account_id": b, "amount": 1, "direction": "debit"});
    assert_eq!(app.post("/api/v1/transaction", &good, Some("pay-3")).await?.str("status"), "success");
    app.stop().await
}

#[tokio::test]
async fn keys_are_kept_for_their_time_to_live_and_then_purged() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let a = app.funded_account("10").await?;
    let body = json!({"dst_account_id": a, "amount": 1, "direction": "debit"});
    app.post("/api/v1/bank_transactions", &body, Some("six-days")).await?;
    app.post("/api/v1/bank_transactions", &body, Some("nine-days")).await?;
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '6 days 23 hours' WHERE key = 'six-days'")
        .execute(&app.pool)
        .await?;
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '9 days' WHERE key = 'nine-days'")
        .execute(&app.pool)
        .await?;
    let day = std::time::Duration::from_secs(86_400);
    let (keys, _) = accounts_service::db::purge_expired(&app.pool, 8 * day, day).await?;
    assert_eq!(keys, 1);
    let replay = app.post("/api/v1/bank_transactions", &body, Some("six-days")).await?;
    assert_eq!(replay.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    assert_eq!(app.balance(a).await?, dec("8"));
    app.stop().await
}

/// A transfer's or bank transaction's key stores no response: its replay is rebuilt from the one row written
/// under it, byte for byte. A key used again after it expired answers with its new row, not the first one.
#[tokio::test]
async fn a_keys_replay_is_rebuilt_from_its_row_even_when_the_key_was_used_before_it_expired() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let a = app.funded_account("10").await?;
    let first = json!({"dst_account_id": a, "amount": 1, "direction": "debit"});
    assert_eq!(app.post("/api/v1/bank_transactions", &first, Some("again")).await?.status, 201);
    let stored: (Option<String>, bool) =
        sqlx::query_as("SELECT response_body, answered_by_row FROM idempotency_keys WHERE key = 'again'")
            .fetch_one(&app.pool)
            .await?;
    assert_eq!(stored, (None, true), "the key is answered by its row, without a copy of the response");
    sqlx::query("UPDATE idempotency_keys SET created_at = now() - interval '9 days' WHERE key = 'again'")
        .execute(&app.pool)
        .await?;
    let day = std::time::Duration::from_secs(86_400);
    assert_eq!(accounts_service::db::purge_expired(&app.pool, 8 * day, day).await?.0, 1);

    let second = json!({"dst_account_id": a, "amount": 2, "direction": "debit"});
    let made = app.post("/api/v1/bank_transactions", &second, Some("again")).await?;
    assert_eq!((made.status, made.str("status")), (201, "success"), "an expired key is free: {}", made.text);
    let replay = app.post("/api/v1/bank_transactions", &second, Some("again")).await?;
    assert_eq!(replay.headers.get("idempotent-replayed").and_then(|v| v.to_str().ok()), Some("true"));
    assert_eq!(
        (replay.status, replay.text.as_str()),
        (201, made.text.as_str()),
        "the second row's answer, byte for byte"
    );
    let reused = app.post("/api/v1/bank_transactions", &first, Some("again")).await?;
    assert_eq!((reused.status, reused.error_code()), (422, "idempotency_key_reused"), "{}", reused.text);
    assert_eq!(app.balance(a).await?, dec("7"));
    app.stop().await
}

/// A key lookup seeks each of the key's rows in the day after one of its uses (a claim, or a purged claim's
/// use) instead of probing every day's partition. A key used again after it expired has two rows, and both are
/// found: "aged" with its first row truly 9 days old (found by its use's seek into that day's partition),
/// "drifted" with its first claim dated 9 days back but its row now (the seek finds nothing there, and the
/// key is then sought everywhere).
#[tokio::test]
async fn a_key_used_again_after_it_expired_finds_every_row_written_under_it() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let a = app.funded_account("100").await?;
    sqlx::query("SELECT ledger_create_partition((now() AT TIME ZONE 'UTC')::date - 9)").execute(&app.pool).await?;
    let mut firsts = Vec::new();
    for key in ["aged", "drifted"] {
        let first = json!({"dst_account_id": a, "amount": 1, "direction": "debit"});
        let made = app.post("/api/v1/bank_transactions", &first, Some(key)).await?;
        firsts.push(made.str("transaction_id").to_owned());
        sqlx::query("UPDATE idempotency_keys SET created_at = created_at - interval '9 days' WHERE key = $1")
            .bind(key)
            .execute(&app.pool)
            .await?;
    }
    // The first row of "aged" moves to 9 days ago with its claim (triggers off, as a bulk load runs).
    let mut conn = app.pool.acquire().await?;
    sqlx::query("SET session_replication_role = replica").execute(&mut *conn).await?;
    let moved = sqlx::query("UPDATE transactions SET created_at = created_at - interval '9 days' WHERE id = $1::uuid")
        .bind(&firsts[0])
        .execute(&mut *conn)
        .await?;
    assert_eq!(moved.rows_affected(), 1);
    drop(conn);
    let day = std::time::Duration::from_secs(86_400);
    assert_eq!(accounts_service::db::purge_expired(&app.pool, 8 * day, day).await?.0, 2);
    let uses: (i64,) = sqlx::query_as("SELECT count(*) FROM idempotency_key_uses").fetch_one(&app.pool).await?;
    assert_eq!(uses.0, 2, "each purged claim left its use");

    let mut seconds = Vec::new();
    for key in ["aged", "drifted"] {
        let second = json!({"dst_account_id": a, "amount": 2, "direction": "debit"});
        let made = app.post("/api/v1/bank_transactions", &second, Some(key)).await?;
        assert_eq!(made.status, 201, "{}", made.text);
        seconds.push(made.str("transaction_id").to_owned());
    }
    let keys = ["aged", "drifted", "never"].map(str::to_owned).to_vec();
    let found = app.api.transactions_by_keys(&keys).await?;
    let ids: Vec<Vec<String>> =
        found.iter().map(|entry| entry.transactions.iter().map(|t| t.transaction_id.to_string()).collect()).collect();
    assert_eq!(
        ids,
        vec![vec![firsts[0].clone(), seconds[0].clone()], vec![firsts[1].clone(), seconds[1].clone()], vec![]],
        "both rows of each key, oldest first"
    );
    for (i, key) in ["aged", "drifted"].iter().enumerate() {
        let one = app.api.transactions_by_key(key).await?;
        let one: Vec<String> = one.iter().map(|t| t.transaction_id.to_string()).collect();
        assert_eq!(one, vec![firsts[i].clone(), seconds[i].clone()], "by_key {key}");
    }
    app.stop().await
}

#[tokio::test]
async fn the_openapi_document_describes_every_endpoint_and_the_docs_page_renders_it() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let spec = app.get("/api/v1/openapi.json").await?;
    assert_eq!(spec.status, 200);
    assert!(spec.json["openapi"].as_str().is_some_and(|v| v.starts_with("3.")));
    let paths = spec.json["paths"].as_object().cloned().unwrap_or_default();
    for path in [
        "/api/v1/accounts",
        "/api/v1/accounts/{account_id}",
        "/api/v1/transaction",
        "/api/v1/bank_transactions",
        "/api/v1/transactions",
        "/api/v1/transactions/export",
        "/api/v1/transactions/by_key",
        "/api/v1/transactions/by_keys",
        "/health",
        "/metrics",
    ] {
        assert!(paths.contains_key(path), "{path} is documented");
    }
    let page = app.client.get(app.url("/docs/")).send().await?;
    assert_eq!(page.status(), 200);
    let html = page.text().await?;
    assert!(html.contains("swagger-ui"), "the page is Swagger UI served from the binary");
    let script = app.client.get(app.url("/docs/swagger-ui-bundle.js")).send().await?;
    assert_eq!(script.status(), 200, "its assets are served locally, not from the web");
    app.stop().await
}

#[tokio::test]
async fn health_metrics_and_unknown_paths_answer_in_json_or_prometheus_text() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let health = app.get("/health").await?;
    assert_eq!((health.status, health.str("status"), health.str("database")), (200, "ok", "ok"));
    let a = app.funded_account("5").await?;
    let b = app.open_account().await?;
    let body = json!({"src_account_id": a, "dst_account_id": b, "amount": 50, "direction": "debit"});
    app.post("/api/v1/transaction", &body, None).await?;
    app.post("/api/v1/transaction", &body, Some("m-1")).await?;
    app.post("/api/v1/transaction", &body, Some("m-1")).await?;
    let metrics = app.client.get(app.url("/metrics")).send().await?.text().await?;
    assert!(
        metrics.contains(r#"ledger_transactions_total{kind="transfer",outcome="insufficient_funds"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"ledger_transactions_total{kind="transfer",outcome="replayed"} 1"#), "{metrics}");
    assert!(
        metrics.contains(r#"http_requests_total{method="POST",route="/api/v1/transaction",status="201"} 3"#),
        "{metrics}"
    );
    assert!(metrics.contains("http_request_duration_seconds_bucket"), "{metrics}");

    let missing = app.get("/api/v2/nothing").await?;
    assert_eq!((missing.status, missing.error_code()), (404, "not_found"));
    let wrong_method = app.client.delete(app.url("/api/v1/transaction")).send().await?;
    assert_eq!(wrong_method.status(), 405);
    let body: Value = wrong_method.json().await?;
    assert_eq!(body["error"]["code"], "method_not_allowed");
    let response = app.client.get(app.url("/health")).send().await?;
    assert!(response.headers().contains_key("x-request-id"), "every response carries its request id");
    app.stop().await
}

#[tokio::test]
async fn the_report_pages_newest_first_with_the_seeds_totals() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let a = app.funded_account("1000").await?;
    let b = app.open_account().await?;
    for i in 1..=24 {
        let body = json!({"src_account_id": a, "dst_account_id": b, "amount": i, "direction": "debit"});
        app.post("/api/v1/transaction", &body, None).await?;
    }
    // 1 funding + 24 transfers = 25 rows: pages of 10, 10, 5.
    let first = app.get("/api/v1/transactions?limit=10").await?;
    assert_eq!(first.status, 200, "{}", first.text);
    assert_eq!((first.json["page"].clone(), first.json["limit"].clone()), (json!(1), json!(10)));
    assert_eq!((first.json["total_amount"].clone(), first.json["total_pages"].clone()), (json!(25), json!(3)));
    let token = first.str("snapshot").to_owned();
    let mut seen: Vec<Value> = first.json["transactions"].as_array().cloned().unwrap_or_default();
    for page in 2..=4 {
        let reply = app.get(&format!("/api/v1/transactions?limit=10&page={page}&snapshot={token}")).await?;
        assert_eq!(reply.status, 200, "{}", reply.text);
        assert_eq!(reply.json["total_amount"], json!(25));
        seen.extend(reply.json["transactions"].as_array().cloned().unwrap_or_default());
    }
    assert_eq!(seen.len(), 25, "page 4 is empty and the rest hold every row once");
    let stamps: Vec<String> =
        seen.iter().map(|row| row["transaction_timestamp"].as_str().unwrap_or_default().to_owned()).collect();
    assert!(stamps.windows(2).all(|pair| pair[0] >= pair[1]), "newest first: {stamps:?}");
    assert_eq!(decimal_of(&seen[0]["amount"]), dec("24"), "the last transfer comes first");
    assert_eq!(seen[24]["kind"], "bank");

    // The default page size is 100.
    let default = app.get("/api/v1/transactions").await?;
    assert_eq!(default.json["limit"], json!(100));
    assert_eq!(default.json["transactions"].as_array().map(Vec::len), Some(25));

    // A window that excludes everything.
    let past = (chrono::Utc::now() - chrono::Duration::days(4)).format("%Y-%m-%d %H:%M:%S%.3f").to_string();
    let earlier = (chrono::Utc::now() - chrono::Duration::days(3)).to_rfc3339();
    let reply = app
        .client
        .get(app.url("/api/v1/transactions"))
        .query(&[("start_timestamp", past.as_str()), ("end_timestamp", earlier.as_str())])
        .send()
        .await?;
    let reply = system_tests::Reply::read(reply).await?;
    assert_eq!((reply.status, reply.json["total_amount"].clone()), (200, json!(0)), "{}", reply.text);
    app.stop().await
}

#[tokio::test]
async fn report_parameters_are_checked() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let six_days = (chrono::Utc::now() - chrono::Duration::days(6)).to_rfc3339();
    let cases: Vec<(String, u16, &str)> = vec![
        ("limit=0".into(), 422, "invalid_limit"),
        ("limit=1001".into(), 422, "invalid_limit"),
        ("page=0".into(), 422, "invalid_page"),
        ("page=-3".into(), 422, "invalid_page"),
        ("page=two".into(), 400, "malformed_request"),
        ("start_timestamp=yesterday".into(), 400, "malformed_request"),
        (format!("start_timestamp={}", urlencode(&six_days)), 422, "window_too_old"),
        ("start_timestamp=2026-01-02%2000:00:00&end_timestamp=2026-01-01%2000:00:00".into(), 422, "window_too_old"),
        ("snapshot=garbage".into(), 400, "malformed_request"),
        (format!("snapshot={}", uuid::Uuid::new_v4()), 404, "not_found"),
    ];
    for (query, status, code) in cases {
        let reply = app.get(&format!("/api/v1/transactions?{query}")).await?;
        assert_eq!((reply.status, reply.error_code()), (status, code), "{query}: {}", reply.text);
    }
    let now = chrono::Utc::now();
    let start = urlencode(&(now - chrono::Duration::hours(1)).to_rfc3339());
    let end = urlencode(&(now - chrono::Duration::hours(2)).to_rfc3339());
    let reply = app.get(&format!("/api/v1/transactions?start_timestamp={start}&end_timestamp={end}")).await?;
    assert_eq!((reply.status, reply.error_code()), (422, "invalid_window"));

    let first = app.get("/api/v1/transactions?limit=10").await?;
    let token = first.str("snapshot");
    let reply = app.get(&format!("/api/v1/transactions?limit=20&snapshot={token}")).await?;
    assert_eq!((reply.status, reply.error_code()), (422, "snapshot_mismatch"));
    let reply = app.get(&format!("/api/v1/transactions/export?format=xml&snapshot={token}")).await?;
    assert_eq!((reply.status, reply.error_code()), (422, "invalid_format"));
    app.stop().await
}

/// The CSV download is written by PostgreSQL (`COPY`), the NDJSON one by the service from decoded rows. The
/// CSV must say what the JSON says, field for field, in the API's formats: amounts of every scale without
/// trailing zeros, the seed's timestamps, missing values as nothing, and client text quoted by RFC 4180 with
/// formulas shown as text. The expected CSV is written here from the NDJSON rows by those rules.
#[tokio::test]
async fn the_csv_download_says_what_the_json_rows_say_field_for_field() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let a = app.funded_account("999999999999.98").await?;
    let b = app.open_account().await?;
    for amount in ["1.5", "2", "0.01", "10.10", "100", "123456.7"] {
        let body = json!({"src_account_id": a, "dst_account_id": b, "amount": amount, "direction": "debit"});
        app.post("/api/v1/transaction", &body, None).await?;
    }
    let too_much = json!({"src_account_id": b, "dst_account_id": a, "amount": "1000000", "direction": "debit"});
    app.post("/api/v1/transaction", &too_much, None).await?;
    let texts = [
        "=1+1",
        "-5",
        "+5",
        "@SUM(A1)",
        "\tx",
        "\rx",
        "a,b",
        "say \"hi\"",
        "line\nbreak",
        "ünïcødé ✓",
        "",
        "plain",
        "=HYPERLINK(\"http://evil.example\",\"x, y\")",
    ];
    for text in texts {
        let credit = json!({"dst_account_id": b, "amount": "0.5", "direction": "credit", "reason": text});
        app.post("/api/v1/bank_transactions", &credit, None).await?;
    }
    let token = app.get("/api/v1/transactions?limit=5").await?.str("snapshot").to_owned();
    for query in [format!("snapshot={token}"), String::new()] {
        let download = |format: &str| {
            let url = app.url(&format!("/api/v1/transactions/export?format={format}&{query}"));
            let request = app.client.get(url);
            async move { anyhow::Ok(request.send().await?.error_for_status()?.text().await?) }
        };
        let (csv, ndjson) = (download("csv").await?, download("ndjson").await?);
        let mut expected = format!("{}\n", ledger_contract::CSV_COLUMNS.join(","));
        for line in ndjson.lines() {
            let row: ledger_contract::Transaction = serde_json::from_str(line)?;
            let text = |text: &Option<String>| {
                let text = text.as_deref().unwrap_or_default();
                let formula = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) { "'" } else { "" };
                let field = format!("{formula}{text}");
                match text.contains([',', '"', '\n', '\r']) {
                    true => format!("\"{}\"", field.replace('"', "\"\"")),
                    false => field,
                }
            };
            let fields = [
                row.transaction_id.to_string(),
                money::timestamp::format_timestamp(row.transaction_timestamp),
                row.kind.to_string(),
                row.src_account_id.map(|id| id.to_string()).unwrap_or_default(),
                row.dst_account_id.to_string(),
                row.amount.to_string(),
                row.direction.to_string(),
                row.status.to_string(),
                text(&row.reason),
                text(&row.description),
                text(&row.recorded_by),
            ];
            expected.push_str(&fields.join(","));
            expected.push('\n');
        }
        assert_eq!(ndjson.lines().count(), 1 + 6 + 1 + texts.len(), "every row, {query:?}");
        assert_eq!(csv, expected, "{query:?}");
    }
    app.stop().await
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A").replace(' ', "%20")
}

#[tokio::test]
async fn the_export_streams_the_same_rows_as_the_report_in_csv_and_ndjson() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let a = app.funded_account("100").await?;
    let b = app.open_account().await?;
    for amount in ["1.5", "2", "300"] {
        let body = json!({"src_account_id": a, "dst_account_id": b, "amount": amount, "direction": "debit"});
        app.post("/api/v1/transaction", &body, None).await?;
    }
    let tricky =
        json!({"dst_account_id": b, "amount": 1, "direction": "credit", "reason": "refund, \"late\"\nline two"});
    app.post("/api/v1/bank_transactions", &tricky, None).await?;

    let report = app.get("/api/v1/transactions?limit=2").await?;
    let token = report.str("snapshot").to_owned();
    let mut report_ids = Vec::new();
    for page in 1..=3 {
        let reply = app.get(&format!("/api/v1/transactions?limit=2&page={page}&snapshot={token}")).await?;
        for row in reply.json["transactions"].as_array().cloned().unwrap_or_default() {
            report_ids.push(row["transaction_id"].as_str().unwrap_or_default().to_owned());
        }
    }
    assert_eq!(report_ids.len(), 5);

    // Rows written after the snapshot are not in its download.
    app.post("/api/v1/bank_transactions", &json!({"dst_account_id": a, "amount": 7, "direction": "credit"}), None)
        .await?;

    let csv =
        app.client.get(app.url(&format!("/api/v1/transactions/export?format=csv&snapshot={token}"))).send().await?;
    assert_eq!(csv.status(), 200);
    assert!(csv.headers()["content-type"].to_str()?.starts_with("text/csv"));
    assert!(csv.headers()["content-disposition"].to_str()?.contains("attachment"));
    let csv = csv.text().await?;
    let header = csv.lines().next().unwrap_or_default();
    assert_eq!(header, "transaction_id,transaction_timestamp,kind,src_account_id,dst_account_id,amount,direction,status,reason,description,recorded_by");
    assert!(csv.contains("\"refund, \"\"late\"\"\nline two\""), "RFC 4180 quoting: {csv}");
    let csv_ids: Vec<String> = csv
        .lines()
        .skip(1)
        .filter(|line| line.len() > 36 && uuid::Uuid::parse_str(&line[..36]).is_ok())
        .map(|line| line[..36].to_owned())
        .collect();
    assert_eq!(csv_ids, report_ids, "same rows, same order");
    assert!(csv.contains(",300,debit,fail,Insufficient funds,"), "{csv}");

    let ndjson =
        app.client.get(app.url(&format!("/api/v1/transactions/export?format=ndjson&snapshot={token}"))).send().await?;
    assert_eq!(ndjson.headers()["content-type"], "application/x-ndjson");
    let ndjson = ndjson.text().await?;
    let ndjson_ids: Vec<String> = ndjson
        .lines()
        .map(|line| {
            serde_json::from_str::<Value>(line).map(|v| v["transaction_id"].as_str().unwrap_or_default().to_owned())
        })
        .collect::<Result<_, _>>()?;
    assert_eq!(ndjson_ids, report_ids);

    // Without a snapshot the download reads what is committed now.
    let fresh = app.client.get(app.url("/api/v1/transactions/export?format=ndjson")).send().await?.text().await?;
    assert_eq!(fresh.lines().count(), 6);
    app.stop().await
}
