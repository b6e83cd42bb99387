//! Lending with limits: products bound every advance, and exposure caps hold under concurrent requests on two
//! API instances.

use std::time::Duration;

use advances_contract::{AdvanceState, AdvancesError, CreateAdvanceRequest, Created};
use chrono::{DateTime, Utc};
use money::Amount;
use rust_decimal::Decimal;
use system_tests::process::add_client;
use system_tests::{dec, Stack};
use uuid::Uuid;

use super::LONG;

fn request(account: Uuid, amount: &str, product: Option<&str>) -> anyhow::Result<CreateAdvanceRequest> {
    Ok(CreateAdvanceRequest {
        account_id: account,
        amount: Amount::parse(amount)?.into(),
        advance_id: None,
        product: product.map(str::to_owned),
        first_due_at: None,
    })
}

/// The error code and message of a refused call (panics on anything else, with what it was).
fn refusal<T: std::fmt::Debug>(result: Result<T, AdvancesError>) -> (u16, String, String) {
    match result {
        Err(AdvancesError::Api { status, body, .. }) => (status, body.error.code, body.error.message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// The status and error code of a refused call.
fn code<T: std::fmt::Debug>(result: Result<T, AdvancesError>) -> (u16, String) {
    let (status, code, _) = refusal(result);
    (status, code)
}

async fn advances_of(stack: &Stack, account: Uuid) -> anyhow::Result<i64> {
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM advances WHERE account_id = $1")
        .bind(account)
        .fetch_one(&stack.advances)
        .await?;
    Ok(count)
}

#[tokio::test]
async fn the_print_money_attack_is_refused_by_the_product_and_by_the_caps() -> anyhow::Result<()> {
    let stack = Stack::start(&[
        ("ADVANCE_PAYMENT_INTERVAL", "1h"),
        ("PRODUCT_MIN_AMOUNT", "10"),
        ("PRODUCT_MAX_AMOUNT", "500"),
        ("MAX_OUTSTANDING_PER_ACCOUNT", "1000"),
    ])
    .await?;
    // A product that lends up to the money rule's maximum: only the cap stands between a client and the bank.
    stack
        .operator(&[
            "product",
            "add",
            "--name",
            "wide",
            "--payments",
            "12",
            "--interval",
            "1h",
            "--min-amount",
            "10",
            "--max-amount",
            "1000000000000",
        ])
        .await?;
    let account = stack.account("9.30").await?;

    // The attack of the issue: three advances of 999999999999.00 for one account, with the demo client's scopes.
    let demo =
        add_client("advances-api", &stack.advances_db.url, "demo", &["advances:read", "advances:write", "alerts:read"])
            .await?;
    let demo = advances_contract::AdvancesClient::new(&stack.api_url, Some(demo), Duration::from_secs(60))?;
    for n in 0..3 {
        let key = format!("attack-{n}");
        let standard = refusal(demo.create_advance(&request(account, "999999999999.00", None)?, Some(&key)).await);
        assert_eq!(standard.0, 422);
        assert_eq!(standard.1, "invalid_amount");
        assert_eq!(standard.2, "product standard lends from 10.00 to 500.00, not 999999999999.00");
        let wide = refusal(demo.create_advance(&request(account, "999999999999.00", Some("wide"))?, Some(&key)).await);
        assert_eq!(wide.0, 422);
        assert_eq!(wide.1, "limit_exceeded");
        assert_eq!(
            wide.2,
            "MAX_OUTSTANDING_PER_ACCOUNT is 1000.00; the account owes 0.00 on its open advances, and this advance \
             would add 999999999999.00"
        );
    }
    assert_eq!(stack.balance(account).await?, dec("9.30"), "nothing was granted");
    assert_eq!((stack.grants(account).await?, advances_of(&stack, account).await?), (0, 0), "nothing was started");

    // The refused keys were not used up: the same key with an amount that fits is granted.
    let granted = demo.create_advance(&request(account, "600", Some("wide"))?, Some("attack-0")).await?;
    assert!(!granted.replayed);
    assert_eq!(granted.advance.product.as_deref(), Some("wide"));
    stack.wait_for_advance(granted.advance.advance_id, LONG, |a| a.status == AdvanceState::ACTIVE).await?;
    assert_eq!(stack.balance(account).await?, dec("609.30"));
    // The cap counts what is outstanding: 600 now, so 400 more fits and 400.01 does not.
    let over = refusal(demo.create_advance(&request(account, "400.01", None)?, None).await);
    assert_eq!((over.0, over.1.as_str()), (422, "limit_exceeded"));
    assert!(over.2.contains("the account owes 600.00"), "{}", over.2);
    demo.create_advance(&request(account, "400", None)?, None).await?;
    // A replay of an accepted request is answered as before, cap or no cap.
    let again = demo.create_advance(&request(account, "600", Some("wide"))?, Some("attack-0")).await?;
    assert!(again.replayed);
    stack.stop().await
}

#[tokio::test]
async fn products_give_their_terms_and_a_retired_one_lends_no_more() -> anyhow::Result<()> {
    let stack = Stack::start(&[("ADVANCE_PAYMENT_INTERVAL", "1h"), ("FIRST_DUE_MIN_LEAD", "500ms")]).await?;
    let add = [
        "product",
        "add",
        "--name",
        "fortnightly",
        "--payments",
        "6",
        "--interval",
        "10s",
        "--min-amount",
        "1",
        "--max-amount",
        "300",
        "--max-failed-extra-payments",
        "2",
    ];
    stack.operator(&add).await?;
    assert!(stack.operator(&add).await?.contains("already exists with these terms"), "adding it again is harmless");
    let mut other_terms = add;
    other_terms[7] = "11s";
    assert!(stack.operator(&other_terms).await.is_err(), "a name is never given other terms");
    let names: Vec<String> = stack.api.products().await?.into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["fortnightly", "standard"]);
    let listed = stack.api.products().await?;
    assert_eq!((listed[0].payments, listed[0].interval_ms, listed[0].min_amount), (6, 10_000, dec("1")));

    // The product's terms, and a first payment on the client's day; the others follow at the interval.
    let account = stack.account("0").await?;
    let now = Utc::now();
    // Far enough ahead that a slow grant still comes before it (a grant after it would ignore it).
    let first = DateTime::from_timestamp_millis(now.timestamp_millis() + 15_000).unwrap_or(now);
    let chosen = CreateAdvanceRequest { first_due_at: Some(first), ..request(account, "120", Some("fortnightly"))? };
    let advance = stack.api.create_advance(&chosen, Some("payday")).await?.advance;
    assert_eq!(
        (advance.product.as_deref(), advance.payments.len(), advance.payment_interval_ms),
        (Some("fortnightly"), 6, 10_000)
    );
    let advance = stack.wait_for_advance(advance.advance_id, LONG, |a| a.status == AdvanceState::ACTIVE).await?;
    assert_eq!(advance.payments[0].due_at, Some(first));
    assert_eq!(advance.payments[5].due_at, Some(first + chrono::Duration::seconds(50)));
    assert!(advance.payments.iter().all(|p| p.amount == dec("20")));

    // A first due time too soon or more than two intervals ahead (by 5 s: the service reads its clock when the
    // request arrives, which on a loaded machine was once more than 100 ms after this one was read).
    for offset_ms in [100, 25_000] {
        let at = DateTime::from_timestamp_millis(Utc::now().timestamp_millis() + offset_ms).unwrap_or(now);
        let early = CreateAdvanceRequest { first_due_at: Some(at), ..request(account, "120", Some("fortnightly"))? };
        let (status, code, message) = refusal(stack.api.create_advance(&early, None).await);
        assert_eq!((status, code.as_str()), (422, "invalid_terms"), "{message}");
    }
    // Unknown, retired: 422 unknown_product; the running advance keeps its terms.
    let unknown = refusal(stack.api.create_advance(&request(account, "120", Some("gold"))?, None).await);
    assert_eq!((unknown.0, unknown.1.as_str()), (422, "unknown_product"));
    stack.operator(&["product", "retire", "--name", "fortnightly"]).await?;
    let retired = refusal(stack.api.create_advance(&request(account, "120", Some("fortnightly"))?, None).await);
    assert_eq!((retired.0, retired.1.as_str()), (422, "unknown_product"));
    assert!(stack.operator(&["product", "retire", "--name", "fortnightly"]).await.is_err(), "retired once");
    let names: Vec<String> = stack.api.products().await?.into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["standard"]);
    assert!(stack.operator(&["product", "list"]).await?.contains("fortnightly"), "the list keeps retired ones");
    // A retry of the accepted request still answers it.
    assert!(stack.api.create_advance(&chosen, Some("payday")).await?.replayed);
    let still = stack.wait_for_advance(advance.advance_id, LONG, |a| a.payments[0].status.is_owed()).await?;
    assert_eq!((still.payment_interval_ms, still.payments.len()), (10_000, 6));
    // Bad definitions never reach the database.
    for bad in [
        [
            "product",
            "add",
            "--name",
            "Big",
            "--payments",
            "12",
            "--interval",
            "7d",
            "--min-amount",
            "10",
            "--max-amount",
            "500",
        ],
        [
            "product",
            "add",
            "--name",
            "tiny",
            "--payments",
            "12",
            "--interval",
            "7d",
            "--min-amount",
            "0.11",
            "--max-amount",
            "500",
        ],
        [
            "product",
            "add",
            "--name",
            "upside",
            "--payments",
            "12",
            "--interval",
            "7d",
            "--min-amount",
            "600",
            "--max-amount",
            "500",
        ],
        [
            "product",
            "add",
            "--name",
            "never",
            "--payments",
            "12",
            "--interval",
            "0s",
            "--min-amount",
            "10",
            "--max-amount",
            "500",
        ],
    ] {
        assert!(stack.operator(&bad).await.is_err(), "{bad:?}");
    }
    stack.stop().await
}

/// 50 requests at once, spread over two API instances on one database, where the cap admits 3: exactly 3
/// advances, for one account (its open-advances cap) and across accounts (the book's total cap).
#[tokio::test]
async fn caps_hold_under_fifty_concurrent_requests_on_two_instances() -> anyhow::Result<()> {
    let stack = Stack::start(&[
        ("ADVANCE_PAYMENT_INTERVAL", "1h"),
        ("MAX_OPEN_ADVANCES_PER_ACCOUNT", "3"),
        ("MAX_OUTSTANDING_TOTAL", "600"),
    ])
    .await?;
    let other = stack.other_api(2).await?;
    let apis = [stack.api.clone(), other.api.clone()];

    let account = stack.account("0").await?;
    let outcomes = futures::future::join_all((0..50).map(|n| {
        let (api, request) = (apis[n % 2].clone(), request(account, "100", None));
        async move { api.create_advance(&request?, Some(&format!("burst-{n}"))).await.map_err(anyhow::Error::from) }
    }))
    .await;
    let granted = count_outcomes(outcomes)?;
    assert_eq!(granted, 3, "the per-account cap");
    assert_eq!((advances_of(&stack, account).await?, stack.grants(account).await?), (3, 3));

    // The book holds 300; the total cap admits 3 more of 100, whichever accounts ask.
    let mut accounts = Vec::new();
    for _ in 0..50 {
        accounts.push(stack.account("0").await?);
    }
    let outcomes = futures::future::join_all(accounts.iter().enumerate().map(|(n, account)| {
        let (api, request) = (apis[n % 2].clone(), request(*account, "100", None));
        async move { api.create_advance(&request?, None).await.map_err(anyhow::Error::from) }
    }))
    .await;
    assert_eq!(count_outcomes(outcomes)?, 3, "the total cap");
    let exposure = stack.api.exposure().await?;
    assert_eq!((exposure.total.open_advances, exposure.total.outstanding), (6, dec("600")));
    assert_eq!(exposure.caps.max_outstanding_total, Some(dec("600")));
    stack.stop().await
}

/// Granted answers, after checking that every other answer is a `limit_exceeded` refusal.
fn count_outcomes(outcomes: Vec<anyhow::Result<Created>>) -> anyhow::Result<usize> {
    let mut granted = 0;
    for outcome in outcomes {
        match outcome {
            Ok(created) => {
                assert!(!created.replayed);
                granted += 1;
            }
            Err(error) => match error.downcast_ref::<AdvancesError>() {
                Some(AdvancesError::Api { status: 422, body, .. }) if body.error.code == "limit_exceeded" => {}
                _ => anyhow::bail!("not a cap's refusal: {error:#}"),
            },
        }
    }
    Ok(granted)
}

#[tokio::test]
async fn the_book_follows_every_advance_from_acceptance_to_close() -> anyhow::Result<()> {
    let stack = Stack::start(&[("ADVANCE_PAYMENT_INTERVAL", "300ms")]).await?;
    let paying = stack.account("0").await?;
    let done = stack.create_advance(paying, "120", None).await?.advance;
    // An advance under a product whose first payment is an hour away stays outstanding throughout.
    stack
        .operator(&[
            "product",
            "add",
            "--name",
            "slow",
            "--payments",
            "12",
            "--interval",
            "1h",
            "--min-amount",
            "1",
            "--max-amount",
            "100",
        ])
        .await?;
    let waiting = stack.account("0").await?;
    let unpaid = stack.api.create_advance(&request(waiting, "60", Some("slow"))?, None).await?.advance;
    let done = stack.wait_for_advance(done.advance_id, LONG, |a| a.status == AdvanceState::COMPLETED).await?;
    assert_eq!(done.paid_amount, dec("120"));
    let exposure = system_tests::poll_until(LONG, || async {
        let exposure = stack.api.exposure().await?;
        Ok((exposure.total.paid == dec("120")).then_some(exposure))
    })
    .await?;
    assert_eq!(exposure.total.open_advances, 1);
    assert_eq!(exposure.total.outstanding, dec("60"), "only the unpaid advance is outstanding");
    let by_product: Vec<_> = exposure
        .by_product
        .iter()
        .map(|line| (line.product.as_deref(), line.open_advances, line.outstanding, line.paid))
        .collect();
    assert_eq!(
        by_product,
        [(Some("slow"), 1, dec("60"), Decimal::ZERO), (Some("standard"), 0, Decimal::ZERO, dec("120"))]
    );
    assert_eq!(exposure.total.defaulted, Decimal::ZERO);
    let unpaid = stack.api.advance(unpaid.advance_id).await?;
    assert_eq!(unpaid.product.as_deref(), Some("slow"));

    // The gauges say the same; the exposure needs its own scope, which a lending front end does not hold.
    let metrics = stack.client.get(format!("{}/metrics", stack.api_url)).send().await?.text().await?;
    assert!(metrics.contains("advances_book_open_advances{product=\"slow\"} 1"), "{metrics}");
    assert!(metrics.contains("advances_book_amount{kind=\"paid\",product=\"standard\"} 120"), "{metrics}");
    let token =
        add_client("advances-api", &stack.advances_db.url, "front", &["advances:read", "advances:write"]).await?;
    let front = advances_contract::AdvancesClient::new(&stack.api_url, Some(token), Duration::from_secs(60))?;
    assert_eq!(front.exposure().await.err().and_then(|e| e.status()), Some(403));
    stack.stop().await
}

/// The servicing commands through the API, each one's arithmetic and each one's refusals.
#[tokio::test]
async fn servicing_reschedules_prepays_quotes_and_writes_off_through_the_api() -> anyhow::Result<()> {
    use advances_contract::{PaymentView, PrepayRequest, RescheduleRequest};
    use advances_model::{PaymentKind, PaymentStatus};

    let stack = Stack::start(&[("ADVANCE_PAYMENT_INTERVAL", "1h"), ("FIRST_DUE_MIN_LEAD", "500ms")]).await?;
    let account = stack.account("100").await?;
    let advance = stack.create_advance(account, "120", None).await?.advance;
    let id = advance.advance_id;
    let advance = stack.wait_for_advance(id, LONG, |a| a.status == AdvanceState::ACTIVE).await?;
    let scheduled = |advance: &advances_contract::AdvanceView| -> Vec<(u32, Decimal)> {
        advance.payments.iter().filter(|p| p.status == PaymentStatus::Scheduled).map(|p| (p.number, p.amount)).collect()
    };

    // The quote: everything now; less the payments due before a later time.
    assert_eq!(stack.api.payoff_quote(id, None).await?.amount, dec("120"));
    let after_first = advance.payments[0].due_at.unwrap_or_default() + chrono::Duration::seconds(1);
    assert_eq!(stack.api.payoff_quote(id, Some(after_first)).await?.amount, dec("110"));
    let past = Utc::now() - chrono::Duration::hours(1);
    assert_eq!(code(stack.api.payoff_quote(id, Some(past)).await), (422, "invalid_at".into()));

    // A reschedule of a paused advance: 120 over 6 payments of 20, from the chosen day, still paused.
    let bad = |payments, first_due_at| RescheduleRequest { payments, first_due_at, reason: None };
    assert_eq!(code(stack.api.reschedule(id, &bad(0, None)).await), (422, "invalid_terms".into()));
    assert_eq!(code(stack.api.reschedule(id, &bad(6, Some(Utc::now()))).await), (422, "invalid_terms".into()));
    assert_eq!(code(stack.api.reschedule(id, &bad(12_001, None)).await), (422, "invalid_terms".into()));
    stack.api.command(id, advances_contract::Command::Pause, Some("lost job")).await?;
    let first = DateTime::from_timestamp(Utc::now().timestamp() + 7200, 0).unwrap_or_default();
    let request = RescheduleRequest { payments: 6, first_due_at: Some(first), reason: Some("hardship".into()) };
    let rescheduled = stack.api.reschedule(id, &request).await?;
    assert_eq!(scheduled(&rescheduled), (13..=18).map(|n| (n, dec("20"))).collect::<Vec<_>>());
    assert_eq!(rescheduled.payments[12].due_at, Some(first));
    assert!(rescheduled.payments[..12].iter().all(|p| p.status == PaymentStatus::Superseded && p.moved_to == Some(13)));
    assert!(rescheduled.paused_since.is_some(), "still paused");
    let prepay = |amount: &str| -> anyhow::Result<PrepayRequest> {
        Ok(PrepayRequest { amount: Amount::parse(amount)?.into(), reason: None })
    };
    assert_eq!(code(stack.api.prepay(id, &prepay("30")?).await), (409, "advance_not_active".into()), "paused");
    stack.api.command(id, advances_contract::Command::Resume, None).await?;

    // A prepayment of 30: collected now, from the last payments backwards.
    assert_eq!(code(stack.api.prepay(id, &prepay("120.01")?).await), (409, "advance_not_active".into()));
    let asked = stack.api.prepay(id, &prepay("30")?).await?;
    let prepayment: &PaymentView = asked.payments.last().ok_or_else(|| anyhow::anyhow!("no prepayment"))?;
    assert_eq!((prepayment.number, prepayment.kind, prepayment.amount), (19, PaymentKind::Prepayment, dec("30")));
    let prepaid = stack
        .wait_for_advance(id, LONG, |a| a.payments.last().is_some_and(|p| p.status == PaymentStatus::Paid))
        .await?;
    assert_eq!((prepaid.paid_amount, prepaid.outstanding_amount), (dec("30"), dec("90")));
    assert_eq!(
        scheduled(&prepaid),
        [(13, dec("20")), (14, dec("20")), (15, dec("20")), (16, dec("20")), (17, dec("10"))]
    );
    assert_eq!(stack.balance(account).await?, dec("190"));
    assert_eq!(stack.debits(account).await?.len(), 1, "one debit, keyed like every payment");

    // Written off: what was left is lost, and the book says so.
    let reader = add_client("advances-api", &stack.advances_db.url, "reader", &["advances:read"]).await?;
    let reader = advances_contract::AdvancesClient::new(&stack.api_url, Some(reader), Duration::from_secs(60))?;
    assert_eq!(reader.write_off(id, "no").await.err().and_then(|e| e.status()), Some(403));
    assert_eq!(code(stack.api.write_off(id, " ").await), (422, "invalid_reason".into()));
    let written_off = stack.api.write_off(id, "fraud").await?;
    assert_eq!(written_off.status, AdvanceState::Status(advances_model::AdvanceStatus::WrittenOff));
    assert_eq!((written_off.written_off_amount, written_off.status_reason.as_deref()), (dec("90"), Some("fraud")));
    assert!(scheduled(&written_off).is_empty(), "nothing left to collect");
    assert_eq!(code(stack.api.payoff_quote(id, None).await), (409, "advance_not_active".into()));
    assert_eq!(code(stack.api.write_off(id, "again").await), (409, "advance_not_active".into()));
    let book = system_tests::poll_until(LONG, || async {
        let book = stack.api.exposure().await?.total;
        Ok((book.written_off == dec("90")).then_some(book))
    })
    .await?;
    assert_eq!((book.open_advances, book.outstanding, book.paid), (0, Decimal::ZERO, dec("30")));
    let metrics = stack.client.get(format!("{}/metrics", stack.api_url)).send().await?.text().await?;
    assert!(metrics.contains("advances_book_amount{kind=\"written_off\",product=\"standard\"} 90"), "{metrics}");
    stack.stop().await
}
