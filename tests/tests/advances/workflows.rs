//! AdvanceWorkflow and ReconcileWorkflow started directly on Temporal and run by the real worker binary against
//! the real ledger; the recorded histories in tests/fixtures must keep replaying against the current code.

use advances_model::{payment_key, Advance, AdvanceStatus, AdvanceTerms, PaymentStatus, Prepay, Reschedule};
use advances_model::{AlertKind, ReconcileReport};
use advances_store::Store;
use advances_workflows::{workflow_id, AdvanceInput, AdvanceWorkflow, ReconcileWorkflow, TASK_QUEUE};
use anyhow::Context;
use ledger_contract::{Direction, TransactionStatus};
use rust_decimal::Decimal;
use system_tests::{dec, poll_until, Stack};
use temporalio_client::errors::WorkflowUpdateError;
use temporalio_client::{
    Client, WorkflowDescribeOptions, WorkflowExecuteUpdateOptions, WorkflowExecutionInfo, WorkflowFetchHistoryOptions,
    WorkflowGetResultOptions, WorkflowHandle, WorkflowHistory, WorkflowQueryOptions, WorkflowStartOptions,
    WorkflowTerminateOptions,
};
use temporalio_common::protos::temporal::api::history::v1::history_event::Attributes;
use temporalio_sdk::workflow_replayer::{WorkflowReplayer, WorkflowReplayerOptions};
use uuid::Uuid;

use super::{temporal_client, LONG};

/// One test's world: the whole stack (the worker polls the default task queue of its own dev server), a
/// Temporal client, and the advances store the worker writes.
struct Harness {
    stack: Stack,
    temporal: Client,
    store: Store,
}

type Handle = WorkflowHandle<Client, AdvanceWorkflow>;

/// One ledger row of an account, as the tests compare them.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
struct LedgerRow {
    idempotency_key: Option<String>,
    #[sqlx(try_from = "String")]
    direction: Direction,
    amount: Decimal,
    #[sqlx(try_from = "String")]
    status: TransactionStatus,
}

impl Harness {
    async fn new() -> anyhow::Result<Self> {
        Self::with_temporal(&[]).await
    }

    async fn with_temporal(dynamic_config: &[&str]) -> anyhow::Result<Self> {
        let stack = Stack::start_with(&[], dynamic_config).await?;
        let temporal = temporal_client(&stack).await?;
        let store = Store::new(stack.advances.clone());
        Ok(Self { stack, temporal, store })
    }

    fn terms(&self, account_id: Uuid, amount: &str, payments: u32, interval_ms: u64, max_failed: u32) -> AdvanceTerms {
        AdvanceTerms {
            advance_id: Uuid::new_v4(),
            account_id,
            amount: dec(amount),
            payments,
            interval_ms,
            max_failed_extra_payments: max_failed,
            product: None,
            first_due_at: None,
        }
    }

    async fn start(&self, terms: &AdvanceTerms) -> anyhow::Result<Handle> {
        self.start_run(terms).await?;
        Ok(self.temporal.get_workflow_handle::<AdvanceWorkflow>(workflow_id(terms.advance_id)))
    }

    /// Starts the advance's workflow and returns its first run's id.
    async fn start_run(&self, terms: &AdvanceTerms) -> anyhow::Result<String> {
        let options = WorkflowStartOptions::new(TASK_QUEUE, workflow_id(terms.advance_id)).build();
        let started =
            self.temporal.start_workflow(AdvanceWorkflow::run, AdvanceInput::from(terms.clone()), options).await?;
        Ok(started.run_id().unwrap_or_default().to_owned())
    }

    /// Every run of an advance's chain, first to last, each replayed against the current code: its run id and
    /// the size of its history as Temporal counts it.
    async fn runs(&self, advance_id: Uuid, first_run: &str) -> anyhow::Result<Vec<(String, i64)>> {
        let mut runs = Vec::new();
        let mut next = Some(first_run.to_owned());
        while let Some(run_id) = next.take() {
            let info = WorkflowExecutionInfo::builder()
                .namespace("default")
                .workflow_id(workflow_id(advance_id))
                .run_id(run_id.clone())
                .build();
            let handle: Handle = WorkflowHandle::new(self.temporal.clone(), info);
            let described = handle.describe(WorkflowDescribeOptions::default()).await?;
            let size = described.raw().workflow_execution_info.as_ref().map_or(0, |info| info.history_size_bytes);
            replay(handle.fetch_history(WorkflowFetchHistoryOptions::default())).await?;
            let events = handle.fetch_history(WorkflowFetchHistoryOptions::default()).into_events().await?;
            next = events.last().and_then(|event| match &event.attributes {
                Some(Attributes::WorkflowExecutionContinuedAsNewEventAttributes(handed_over)) => {
                    Some(handed_over.new_execution_run_id.clone())
                }
                _ => None,
            });
            runs.push((run_id, size));
        }
        Ok(runs)
    }

    async fn reconcile(&self, run: u32) -> anyhow::Result<ReconcileReport> {
        let options = WorkflowStartOptions::new(TASK_QUEUE, format!("reconcile-test-{run}")).build();
        let handle = self.temporal.start_workflow(ReconcileWorkflow::run, (), options).await?;
        Ok(handle.get_result(WorkflowGetResultOptions::default()).await?)
    }

    async fn account(&self) -> anyhow::Result<Uuid> {
        self.stack.ledger.open_account().await
    }

    async fn bank(&self, account: Uuid, amount: &str, direction: Direction) -> anyhow::Result<()> {
        self.stack.ledger.bank(account, amount, direction).await.map(|_| ())
    }

    /// The ledger's rows for an account, oldest first.
    async fn ledger_rows(&self, account: Uuid) -> anyhow::Result<Vec<LedgerRow>> {
        Ok(sqlx::query_as(
            "SELECT idempotency_key, direction, amount, status FROM transactions WHERE dst_account_id = $1
             ORDER BY created_at, id",
        )
        .bind(account)
        .fetch_all(&self.stack.ledger.pool)
        .await?)
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.stack.stop().await
    }
}

async fn state(handle: &Handle) -> anyhow::Result<Option<Advance>> {
    Ok(handle.query(AdvanceWorkflow::state, (), WorkflowQueryOptions::default()).await?)
}

/// Polls the workflow's query until `check` holds.
async fn wait_for(handle: &Handle, check: impl Fn(&Advance) -> bool) -> anyhow::Result<Advance> {
    poll_until(LONG, || async { Ok(state(handle).await?.filter(|advance| check(advance))) }).await
}

async fn result(handle: &Handle) -> anyhow::Result<Advance> {
    Ok(handle.get_result(WorkflowGetResultOptions::default()).await?)
}

async fn replay(history: WorkflowHistory) -> anyhow::Result<()> {
    let options = WorkflowReplayerOptions::new().register_workflow::<AdvanceWorkflow>()?.build();
    WorkflowReplayer::new(options)?.replay_workflow(history).await?;
    Ok(())
}

/// Replays the workflow's recorded history against the current code; with `RECORD_HISTORIES=1`, also saves it
/// under tests/fixtures so later code is checked against it.
pub(super) async fn check_replay(handle: &Handle, fixture: &str) -> anyhow::Result<()> {
    replay(handle.fetch_history(WorkflowFetchHistoryOptions::default())).await?;
    if std::env::var("RECORD_HISTORIES").is_ok_and(|value| value == "1") {
        let json = handle.fetch_history(WorkflowFetchHistoryOptions::default()).to_json().await?;
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(fixture);
        std::fs::write(path, json)?;
    }
    Ok(())
}

#[tokio::test]
async fn an_advance_grants_then_collects_every_payment_and_completes() -> anyhow::Result<()> {
    let h = Harness::new().await?;
    let account = h.account().await?;
    // The first payment falls due 2 s after the start, so that it waits for its own timer however slowly the grant
    // runs: due one 200-ms interval after the grant, it was already due once when a loaded machine got to it.
    let terms = AdvanceTerms {
        first_due_at: Some(chrono::Utc::now() + chrono::Duration::seconds(2)),
        ..h.terms(account, "100", 4, 200, 3)
    };
    let handle = h.start(&terms).await?;
    let advance = result(&handle).await?;
    check_replay(&handle, "v2-advance-completed.json").await?;
    assert_eq!(advance.status, AdvanceStatus::Completed);
    assert_eq!((advance.paid_amount(), advance.outstanding_amount()), (dec("100"), Decimal::ZERO));
    assert!(advance.payments.iter().all(|p| p.status == PaymentStatus::Paid && p.transaction_id.is_some()));

    let rows = h.ledger_rows(account).await?;
    assert_eq!(rows.len(), 5, "{rows:?}");
    let row = |key: String, direction, amount| LedgerRow {
        idempotency_key: Some(key),
        direction,
        amount,
        status: TransactionStatus::Success,
    };
    assert_eq!(rows[0], row(format!("advance-{}-grant", terms.advance_id), Direction::Credit, dec("100")));
    for (recorded, payment) in rows[1..].iter().zip(&advance.payments) {
        assert_eq!(recorded, &row(payment_key(payment.payment_id), Direction::Debit, payment.amount));
    }
    assert_eq!(h.stack.balance(account).await?, Decimal::ZERO);

    let stored = h.store.get(terms.advance_id).await?;
    assert_eq!(stored.as_ref().map(|a| (a.status, a.revision)), Some((AdvanceStatus::Completed, advance.revision)));
    let payments = h.store.payments(terms.advance_id).await?;
    assert!(payments.iter().all(|p| p.status == PaymentStatus::Paid), "the mirror holds every payment: {payments:?}");

    // Every activity and timer carries the line the Web UI shows for it.
    let summaries = summaries(&handle).await?;
    let first = &advance.payments[0];
    for expected in [
        format!("Grant 100 to account {account}"),
        format!("Collect payment 1 of 4: {}", first.amount),
        format!("Collect payment 4 of 4: {}", advance.payments[3].amount),
        // A payment already due when its turn comes needs no timer; the first always waits for its own.
        format!(
            "Payment 1 due {}",
            first.due_at.map(|due| due.format("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_default()
        ),
        "Record the advance (completed".to_owned(),
    ] {
        assert!(summaries.iter().any(|summary| summary.contains(&expected)), "{expected:?} in {summaries:?}");
    }
    h.stop().await
}

/// The summaries (as the Web UI shows them) of the activities and timers in a workflow's history.
async fn summaries(handle: &Handle) -> anyhow::Result<Vec<String>> {
    let events = handle.fetch_history(WorkflowFetchHistoryOptions::default()).into_events().await?;
    Ok(events
        .iter()
        .filter_map(|event| event.user_metadata.as_ref()?.summary.as_ref())
        .map(|payload| String::from_utf8_lossy(&payload.data).into_owned())
        .collect())
}

#[tokio::test]
async fn a_refused_payment_rolls_into_the_next_and_the_last_into_an_extra_one() -> anyhow::Result<()> {
    let h = Harness::new().await?;
    let account = h.account().await?;
    let terms = h.terms(account, "40", 2, 1000, 5);
    let handle = h.start(&terms).await?;
    wait_for(&handle, |a| a.status == AdvanceStatus::Active).await?;
    h.bank(account, "40", Direction::Debit).await?; // the account spends the advance at once
    let seen = wait_for(&handle, |a| a.payments.get(1).is_some_and(|p| p.status == PaymentStatus::Failed)).await?;
    assert_eq!(seen.payments[0].moved_to, Some(2));
    assert_eq!(seen.payments.len(), 3, "an extra payment carries the amount");
    // Scheduled, or already being collected if this look came after its due time (a loaded machine).
    assert_eq!(seen.payments[2].amount, dec("40"));
    assert!(matches!(seen.payments[2].status, PaymentStatus::Scheduled | PaymentStatus::Processing), "{seen:?}");
    assert!(seen.formula_holds());
    h.bank(account, "40", Direction::Credit).await?; // money arrives before the extra payment is due
    let advance = result(&handle).await?;
    check_replay(&handle, "v2-advance-rolled-over.json").await?;
    assert_eq!(advance.status, AdvanceStatus::Completed);
    let rows = h.ledger_rows(account).await?;
    let debits: Vec<_> =
        rows.iter().filter(|r| r.direction == Direction::Debit && r.idempotency_key.is_some()).collect();
    assert_eq!(debits.len(), 3, "{rows:?}");
    let statuses: Vec<_> = debits.iter().map(|d| d.status).collect();
    assert_eq!(statuses, [TransactionStatus::Fail, TransactionStatus::Fail, TransactionStatus::Success]);
    assert_eq!(debits[2].amount, dec("40"), "one debit collects everything");
    assert_eq!(debits[2].idempotency_key, Some(payment_key(advance.payments[2].payment_id)));
    h.stop().await
}

#[tokio::test]
async fn failed_extra_payments_in_a_row_default_the_advance_and_raise_an_alert() -> anyhow::Result<()> {
    let h = Harness::new().await?;
    let account = h.account().await?;
    let terms = h.terms(account, "20", 2, 1000, 2);
    let handle = h.start(&terms).await?;
    wait_for(&handle, |a| a.status == AdvanceStatus::Active).await?;
    h.bank(account, "20", Direction::Debit).await?;
    let advance = result(&handle).await?;
    assert_eq!(advance.status, AdvanceStatus::Defaulted);
    assert_eq!(advance.payments.len(), 4, "2 regular + 2 extra payments: {advance:?}");
    assert_eq!(advance.status_reason.as_deref(), Some("2 extra payments failed in a row"));
    let alerts = h.store.alerts(10).await?;
    assert_eq!(alerts.len(), 1);
    assert_eq!((alerts[0].kind, alerts[0].advance_id), (AlertKind::Defaulted, Some(terms.advance_id)));
    assert!(alerts[0].message.contains("20 outstanding"), "{}", alerts[0].message);
    h.stop().await
}

#[tokio::test]
async fn an_unknown_account_fails_the_grant_and_nothing_moves() -> anyhow::Result<()> {
    let h = Harness::new().await?;
    let nobody = Uuid::new_v4();
    let terms = h.terms(nobody, "50", 12, 100, 12);
    let advance = result(&h.start(&terms).await?).await?;
    assert_eq!(advance.status, AdvanceStatus::Failed);
    assert!(advance.status_reason.as_deref().is_some_and(|r| r.contains("does not exist")), "{advance:?}");
    assert!(advance.payments.iter().all(|p| p.status == PaymentStatus::Cancelled));
    assert!(h.ledger_rows(nobody).await?.is_empty());
    h.stop().await
}

#[tokio::test]
async fn operators_pay_off_or_cancel_a_running_advance() -> anyhow::Result<()> {
    let h = Harness::new().await?;
    let account = h.account().await?;
    let weekly = h.terms(account, "120", 12, 3_600_000, 12);
    let other = h.terms(account, "60", 12, 3_600_000, 12);
    let handle = h.start(&weekly).await?;
    wait_for(&handle, |a| a.status == AdvanceStatus::Active).await?;
    let after = handle.execute_update(AdvanceWorkflow::pay_off, String::new(), Default::default()).await?;
    let after = after.ok_or_else(|| anyhow::anyhow!("pay_off answered nothing"))?;
    assert_eq!(after.payments[0].amount, dec("120"));
    assert!(after.payments[1..].iter().all(|p| p.status == PaymentStatus::Superseded));
    let paid_off = result(&handle).await?;
    check_replay(&handle, "v2-advance-paid-off.json").await?;

    let handle = h.start(&other).await?;
    wait_for(&handle, |a| a.status == AdvanceStatus::Active).await?;
    handle.execute_update(AdvanceWorkflow::cancel, "customer request".to_owned(), Default::default()).await?;
    let cancelled = result(&handle).await?;
    assert_eq!((paid_off.status, paid_off.paid_amount()), (AdvanceStatus::Completed, dec("120")));
    assert_eq!(cancelled.status, AdvanceStatus::Cancelled);
    assert_eq!(cancelled.status_reason.as_deref(), Some("customer request"));
    assert_eq!(cancelled.paid_amount(), Decimal::ZERO);
    let debits: Vec<_> =
        h.ledger_rows(account).await?.into_iter().filter(|r| r.direction == Direction::Debit).collect();
    assert_eq!(debits.len(), 1, "the pay-off is one withdrawal, the cancelled advance none: {debits:?}");
    assert_eq!(h.stack.balance(account).await?, dec("60"));
    h.stop().await
}

/// Sends an operator's command (`pause`, `resume` or `pay_off`) as the workflow update of that name.
async fn operate(handle: &Handle, name: &str) -> Result<Option<Advance>, WorkflowUpdateError> {
    let options = Default::default();
    match name {
        "pause" => handle.execute_update(AdvanceWorkflow::pause, "fraud check".into(), options).await,
        "resume" => handle.execute_update(AdvanceWorkflow::resume, String::new(), options).await,
        _ => handle.execute_update(AdvanceWorkflow::pay_off, String::new(), options).await,
    }
}

/// Temporal warns at 10 MB of history (and terminates at 50 MB): no run of an advance may come near it.
const HISTORY_WARNING_BYTES: i64 = 10 * 1024 * 1024;

/// The longest advance the terms allow, on a short interval: before, every mirror carried the whole schedule
/// and Temporal terminated such an advance at payment 235 with 52 MB of history, silently.
#[tokio::test]
async fn the_longest_advance_continues_as_new_collects_every_payment_once_and_its_history_stays_small(
) -> anyhow::Result<()> {
    let h = Harness::new().await?;
    let account = h.account().await?;
    let payments = advances_model::MAX_PAYMENTS;
    let terms = h.terms(account, "5200", payments, 5, 3);
    let first_run = h.start_run(&terms).await?;
    let handle = h.temporal.get_workflow_handle::<AdvanceWorkflow>(workflow_id(terms.advance_id));
    // Watch the running run's history as it grows: over 10 MB at any time fails at once.
    let advance = poll_until(std::time::Duration::from_secs(600), || async {
        let described = handle.describe(WorkflowDescribeOptions::default()).await?;
        let size = described.raw().workflow_execution_info.as_ref().map_or(0, |info| info.history_size_bytes);
        anyhow::ensure!(size < HISTORY_WARNING_BYTES, "a run's history reached {size} bytes");
        let stored = h.store.get(terms.advance_id).await?;
        Ok(stored.filter(|advance| !advance.status.is_open()))
    })
    .await?;
    assert_eq!(advance.status, AdvanceStatus::Completed, "{}", advance.describe());
    assert_eq!(result(&handle).await?, advance, "the last run's result is the mirror");
    assert_eq!(advance.payments.len(), payments as usize);
    assert!(advance.payments.iter().all(|p| p.status == PaymentStatus::Paid));

    let rows = h.ledger_rows(account).await?;
    let keys: std::collections::HashSet<_> = rows.iter().filter_map(|row| row.idempotency_key.clone()).collect();
    assert_eq!((rows.len(), keys.len()), (payments as usize + 1, payments as usize + 1), "each key moved once");
    assert!(rows.iter().all(|row| row.status == TransactionStatus::Success));
    assert_eq!(h.stack.balance(account).await?, Decimal::ZERO);
    let mirrored = h.store.payments(terms.advance_id).await?;
    assert_eq!(mirrored.iter().filter(|p| p.status == PaymentStatus::Paid).count(), payments as usize);

    let runs = h.runs(terms.advance_id, &first_run).await?;
    assert!(runs.len() >= 2, "the advance continued as new: {runs:?}");
    let largest = runs.iter().map(|(_, size)| *size).max().unwrap_or_default();
    assert!(largest > 0 && largest < HISTORY_WARNING_BYTES, "every run stays under 10 MB: {runs:?}");
    println!("{payments} payments in {} runs, the largest history {largest} bytes: {runs:?}", runs.len());
    h.stop().await
}

/// With Temporal suggesting continue-as-new every hundred events, a short advance hands over several times
/// (and is recorded as a fixture): each run starts from the state the last one mirrored.
#[tokio::test]
async fn each_run_continues_from_the_state_the_last_one_handed_over() -> anyhow::Result<()> {
    let h = Harness::with_temporal(&["limit.historyCount.suggestContinueAsNew=100"]).await?;
    let account = h.account().await?;
    let terms = h.terms(account, "60", 6, 50, 3);
    let first_run = h.start_run(&terms).await?;
    let handle = h.temporal.get_workflow_handle::<AdvanceWorkflow>(workflow_id(terms.advance_id));
    let advance = result(&handle).await?;
    assert_eq!((advance.status, advance.paid_amount()), (AdvanceStatus::Completed, dec("60")));
    let runs = h.runs(terms.advance_id, &first_run).await?;
    assert!(runs.len() >= 2, "{runs:?}");
    check_replay(&handle, "v2-advance-continued.json").await?;
    let debits = h.ledger_rows(account).await?.into_iter().filter(|r| r.direction == Direction::Debit).count();
    assert_eq!(debits, 6, "each payment once across the runs");
    h.stop().await
}

/// Pausing stops collection across a due time; resuming moves every unpaid payment by the time paused, and
/// the validators refuse what does not apply.
#[tokio::test]
async fn a_paused_advance_collects_nothing_until_resumed_and_then_keeps_its_spacing() -> anyhow::Result<()> {
    let h = Harness::new().await?;
    let account = h.account().await?;
    let terms = h.terms(account, "30", 3, 1500, 3);
    let handle = h.start(&terms).await?;
    let granted = wait_for(&handle, |a| a.status == AdvanceStatus::Active).await?;
    let update = |name: &'static str| operate(&handle, name);
    let rejected = |result: Result<Option<Advance>, WorkflowUpdateError>| match result {
        Err(WorkflowUpdateError::Failed(failure)) => failure.message.clone(),
        other => format!("not rejected: {other:?}"),
    };
    assert!(rejected(update("resume").await).contains("not paused"));
    let paused = update("pause").await?.ok_or_else(|| anyhow::anyhow!("pause answered nothing"))?;
    let since = paused.paused.as_ref().map(|pause| pause.since).ok_or_else(|| anyhow::anyhow!("not paused"))?;
    assert!(rejected(update("pause").await).contains("already paused"));
    assert!(rejected(update("pay_off").await).contains("paused"));

    // Wait (a known time, not a guess) until payment 1 is overdue: nothing is collected while paused.
    let first_due = granted.payments[0].due_at.unwrap_or_default();
    let overdue = (first_due - chrono::Utc::now()).to_std().unwrap_or_default() + std::time::Duration::from_millis(500);
    tokio::time::sleep(overdue).await;
    let still = state(&handle).await?.ok_or_else(|| anyhow::anyhow!("no state"))?;
    assert_eq!(still.payments[0].status, PaymentStatus::Scheduled, "{}", still.describe());
    assert!(h.ledger_rows(account).await?.iter().all(|row| row.direction == Direction::Credit));
    assert!(still.formula_holds());

    let resumed = update("resume").await?.ok_or_else(|| anyhow::anyhow!("resume answered nothing"))?;
    assert!(resumed.paused.is_none());
    let shift = resumed.payments[0].due_at.unwrap_or_default() - first_due;
    assert!(shift > chrono::Utc::now() - since - chrono::Duration::seconds(5) && shift > chrono::Duration::zero());
    for (before, after) in granted.payments.iter().zip(&resumed.payments) {
        assert_eq!(after.due_at.unwrap_or_default() - before.due_at.unwrap_or_default(), shift, "one shift for all");
    }
    let advance = result(&handle).await?;
    check_replay(&handle, "v2-advance-paused.json").await?;
    assert_eq!(advance.status, AdvanceStatus::Completed);
    let debits = h.ledger_rows(account).await?.into_iter().filter(|r| r.direction == Direction::Debit).count();
    assert_eq!(debits, 3, "each payment once");
    let summaries = summaries(&handle).await?;
    assert!(summaries.iter().any(|s| s.contains("Payment 1 due")), "{summaries:?}");
    h.stop().await
}

#[tokio::test]
async fn reconciliation_reports_each_injected_mismatch_once() -> anyhow::Result<()> {
    let h = Harness::new().await?;
    let account = h.account().await?;
    let healthy = h.terms(account, "120", 12, 3_600_000, 12);
    let tampered_amount = h.terms(account, "120", 12, 3_600_000, 12);
    let tampered_paid = h.terms(account, "120", 12, 3_600_000, 12);
    let tampered_failed = h.terms(account, "120", 12, 3_600_000, 12);
    let terminated = h.terms(account, "120", 12, 3_600_000, 12);
    for terms in [&healthy, &tampered_amount, &tampered_paid, &tampered_failed, &terminated] {
        wait_for(&h.start(terms).await?, |a| a.status == AdvanceStatus::Active).await?;
    }
    poll_until(LONG, || async {
        let open = h.store.open_advances(Uuid::nil(), 100).await?;
        Ok((open.iter().filter(|a| a.status == AdvanceStatus::Active).count() == 5).then_some(()))
    })
    .await?;
    let clean = h.reconcile(1).await?;
    // A payment amount changed behind the workflow's back, and a payment marked paid that the ledger never saw.
    sqlx::query("UPDATE payments SET amount = amount + 1 WHERE advance_id = $1 AND number = 3")
        .bind(tampered_amount.advance_id)
        .execute(h.store.pool())
        .await?;
    sqlx::query("UPDATE payments SET status = 'paid', transaction_id = $2 WHERE advance_id = $1 AND number = 1")
        .bind(tampered_paid.advance_id)
        .bind(Uuid::new_v4())
        .execute(h.store.pool())
        .await?;
    // And a payment recorded as failed (its amount rolled into the next, as a refusal would) whose debit the
    // ledger did make under the worker's key.
    let second = h.store.payments(tampered_failed.advance_id).await?.into_iter().nth(1).context("payment 2")?;
    sqlx::query(
        "UPDATE payments SET status = CASE number WHEN 2 THEN 'failed' ELSE status END,
                             failure_reason = CASE number WHEN 2 THEN 'Insufficient funds' END,
                             moved_to = CASE number WHEN 2 THEN 3 END,
                             amount = CASE number WHEN 3 THEN amount + $2 ELSE amount END
         WHERE advance_id = $1 AND number IN (2, 3)",
    )
    .bind(tampered_failed.advance_id)
    .bind(second.amount)
    .execute(h.store.pool())
    .await?;
    // Written as the service writes: the transaction's id first, then the row dated by the clock.
    let mut debit = h.stack.ledger.pool.begin().await?;
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *debit).await?;
    sqlx::query(
        "INSERT INTO transactions (id, created_at, kind, dst_account_id, amount, direction, status, idempotency_key,
                                   recorded_by, dst_balance_after)
         VALUES ($1, clock_timestamp(), 'bank', $2, $3, 'debit', 'success', $4, 'advances-worker', 0)",
    )
    .bind(Uuid::now_v7())
    .bind(account)
    .bind(second.amount)
    .bind(payment_key(second.id))
    .execute(&mut *debit)
    .await?;
    debit.commit().await?;
    // And a written-off advance with a payment still scheduled.
    let written_off = Uuid::new_v4();
    sqlx::query(
        "INSERT INTO advances (id, account_id, amount, status, state, written_off) VALUES ($1, $2, 10, 'written_off', '{}', 5)",
    )
    .bind(written_off)
    .bind(account)
    .execute(h.store.pool())
    .await?;
    sqlx::query("INSERT INTO payments (id, advance_id, number, amount, status) VALUES ($1, $2, 2, 5, 'scheduled')")
        .bind(Uuid::new_v4())
        .bind(written_off)
        .execute(h.store.pool())
        .await?;
    // And a workflow terminated behind everyone's back: the database still says active.
    let options = WorkflowTerminateOptions::builder().reason("an operator's mistake").build();
    h.temporal.get_workflow_handle::<AdvanceWorkflow>(workflow_id(terminated.advance_id)).terminate(options).await?;
    let (report, again) = (h.reconcile(2).await?, h.reconcile(3).await?);
    assert_eq!((clean.advances_checked, clean.mismatches.len()), (5, 0), "{clean:?}");
    // The ranges are checked in parallel: the order of the mismatches is not part of the contract.
    let sorted = |report: &ReconcileReport| {
        let mut kinds: Vec<_> = report.mismatches.iter().map(|m| (m.kind.as_str(), m.advance_id)).collect();
        kinds.sort();
        kinds
    };
    let mut expected = vec![
        (AlertKind::WorkflowNotRunning.as_str(), Some(terminated.advance_id)),
        (AlertKind::FormulaMismatch.as_str(), Some(tampered_amount.advance_id)),
        (AlertKind::LedgerMismatch.as_str(), Some(tampered_paid.advance_id)),
        (AlertKind::LedgerMismatch.as_str(), Some(tampered_failed.advance_id)),
        (AlertKind::FormulaMismatch.as_str(), Some(written_off)),
    ];
    expected.sort();
    assert_eq!(sorted(&report), expected, "{report:?}");
    assert_eq!(report.mismatch_count, 5);
    let about = |id: Uuid| report.mismatches.iter().find(|m| m.advance_id == Some(id)).map(|m| m.message.clone());
    assert!(about(terminated.advance_id).unwrap_or_default().contains("Temporal says terminated"), "{report:?}");
    assert!(about(tampered_failed.advance_id).unwrap_or_default().contains("recorded as failed"), "{report:?}");
    // And the API says so instead of answering `active`.
    let path = |terms: &AdvanceTerms| format!("/api/v1/advances/{}", terms.advance_id);
    let dead = h.stack.get(&h.stack.api_url, &path(&terminated)).await?;
    assert_eq!(dead.str("status"), "workflow_not_running", "{}", dead.text);
    assert!(dead.str("status_reason").contains("terminated"), "{}", dead.text);
    assert_eq!(h.stack.get(&h.stack.api_url, &path(&healthy)).await?.str("status"), "active");
    assert!(about(written_off).unwrap_or_default().contains("payment 2 is still scheduled"), "{report:?}");
    assert_eq!(again.mismatches.len(), 5, "the mismatches persist");
    let alerts = h.store.alerts(10).await?;
    assert_eq!(alerts.len(), 5, "one alert per mismatch, not one per run: {alerts:?}");
    h.stop().await
}

/// An advance started under a product with a chosen first due time, paused and rescheduled, prepaid (once
/// collected, once refused), and written off: each command's arithmetic on the real workflow, recorded as the
/// fixtures `v3-advance-serviced.json` (until the failed prepayment) and `v3-advance-written-off.json`.
#[tokio::test]
async fn servicing_commands_reschedule_prepay_and_write_off_a_running_advance() -> anyhow::Result<()> {
    let h = Harness::new().await?;
    let account = h.account().await?;
    h.bank(account, "100", Direction::Credit).await?;
    let first_due = chrono::Utc::now() + chrono::Duration::seconds(60);
    let terms = AdvanceTerms {
        product: Some("standard".into()),
        first_due_at: Some(first_due),
        ..h.terms(account, "120", 12, 60_000, 3)
    };
    let handle = h.start(&terms).await?;
    let granted = wait_for(&handle, |a| a.status == AdvanceStatus::Active).await?;
    assert_eq!(granted.payments[0].due_at, Some(first_due), "the chosen first due time");
    let options = || WorkflowExecuteUpdateOptions::default();
    let answer = |advance: Option<Advance>| advance.ok_or_else(|| anyhow::anyhow!("the update answered nothing"));

    // Paused, then rescheduled over 4 payments: 120 in 4 × 30, still paused; then resumed.
    operate(&handle, "pause").await?;
    let reschedule = Reschedule { payments: 4, first_due_at: None, reason: "hardship".into() };
    let rescheduled = answer(handle.execute_update(AdvanceWorkflow::reschedule, reschedule, options()).await?)?;
    let scheduled: Vec<_> = rescheduled.payments.iter().filter(|p| p.status == PaymentStatus::Scheduled).collect();
    assert_eq!(
        scheduled.iter().map(|p| (p.number, p.amount)).collect::<Vec<_>>(),
        [(13, dec("30")), (14, dec("30")), (15, dec("30")), (16, dec("30"))]
    );
    assert!(rescheduled.paused.is_some() && rescheduled.formula_holds());
    operate(&handle, "resume").await?;

    // A prepayment of 40: collected now, taking the last payment whole and 10 of the one before.
    let prepay = Prepay { amount: dec("40"), reason: String::new() };
    answer(handle.execute_update(AdvanceWorkflow::prepay, prepay, options()).await?)?;
    let prepaid =
        wait_for(&handle, |a| a.payments.iter().any(|p| p.number == 17 && p.status == PaymentStatus::Paid)).await?;
    assert_eq!(prepaid.paid_amount(), dec("40"));
    assert_eq!((prepaid.payments[15].status, prepaid.payments[14].amount), (PaymentStatus::Superseded, dec("20")));
    assert!(prepaid.formula_holds());
    check_replay(&handle, "v3-advance-serviced.json").await?;

    // The account emptied: a prepayment fails and gives its amount back; nothing else changes.
    let balance = h.stack.balance(account).await?;
    h.bank(account, &balance.to_string(), Direction::Debit).await?;
    let prepay = Prepay { amount: dec("50"), reason: String::new() };
    answer(handle.execute_update(AdvanceWorkflow::prepay, prepay, options()).await?)?;
    let refused =
        wait_for(&handle, |a| a.payments.iter().any(|p| p.number == 18 && p.status == PaymentStatus::Failed)).await?;
    assert_eq!(refused.payments[..17], prepaid.payments[..17], "the schedule is as it was");
    assert_eq!(refused.payments[17].failure_reason.as_deref(), Some("Insufficient funds"));

    // Written off: 80 recorded as lost, nothing left to collect, the workflow completes.
    answer(handle.execute_update(AdvanceWorkflow::write_off, "customer deceased".to_owned(), options()).await?)?;
    let advance = result(&handle).await?;
    check_replay(&handle, "v3-advance-written-off.json").await?;
    assert_eq!((advance.status, advance.written_off), (AdvanceStatus::WrittenOff, dec("80")));
    assert!(advance.formula_holds() && advance.payments.iter().all(|p| p.status != PaymentStatus::Scheduled));
    let debits: Vec<_> =
        h.ledger_rows(account).await?.into_iter().filter(|r| r.direction == Direction::Debit).collect();
    assert_eq!(debits.len(), 3, "the emptying debit and two prepayments: {debits:?}");
    let summaries = summaries(&handle).await?;
    for expected in
        ["rescheduled 120 over 4 payments", "prepayment 17 of 40 due now", "Collect prepayment 17: 40", "wrote off 80"]
    {
        assert!(summaries.iter().any(|s| s.contains(expected)), "{expected}: {summaries:?}");
    }
    h.stop().await
}

/// The recorded histories, each of which must replay. Adding a fixture means naming it here; deleting one (or
/// all of a version) fails the test instead of replaying fewer.
const FIXTURES: [&str; 11] = [
    "v1-advance-completed.json",
    "v1-advance-paid-off.json",
    "v1-advance-rolled-over.json",
    "v2-advance-completed.json",
    "v2-advance-continued.json",
    "v2-advance-paid-off.json",
    "v2-advance-paused.json",
    "v2-advance-rolled-over.json",
    "v2-advance-started-with-update.json",
    "v3-advance-serviced.json",
    "v3-advance-written-off.json",
];

/// Histories recorded from earlier versions of the code (tests/fixtures, written with `RECORD_HISTORIES=1`)
/// must replay against the current workflow code: a change that would break running advances fails here.
#[tokio::test]
async fn recorded_histories_replay_against_the_current_code() -> anyhow::Result<()> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let mut found: Vec<String> = std::fs::read_dir(&dir)?
        .map(|entry| Ok(entry?.file_name().to_string_lossy().into_owned()))
        .collect::<std::io::Result<Vec<_>>>()?;
    found.retain(|name| name.ends_with(".json"));
    found.sort();
    assert_eq!(found, FIXTURES, "the recorded histories in {} are exactly the named ones", dir.display());
    for name in FIXTURES {
        let path = dir.join(name);
        let history = WorkflowHistory::from_json(&std::fs::read(&path)?)?;
        replay(history).await.map_err(|error| anyhow::anyhow!("{}: {error}", path.display()))?;
    }
    Ok(())
}
