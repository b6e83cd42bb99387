//! Reconciliation: every open advance's payments add up to its amount, every paid payment and grant matches
//! exactly one successful ledger transaction under its key, every open advance's workflow runs, and no
//! written-off advance has a payment left to collect.

use std::collections::{HashMap, HashSet};

use advances_model::{
    grant_key, payment_key, AdvanceStatus, Alert, AlertKind, IdRange, PaymentStatus, RangeProgress, ReconcileReport,
};
use advances_store::{AdvanceToCheck, OpenAdvance, PaymentRow};
use advances_workflows::temporal::advance_not_running;
use futures::StreamExt;
use ledger_contract::{Transaction, TransactionStatus, MAX_KEYS_PER_LOOKUP};
use rust_decimal::Decimal;
use temporalio_client::{Client, WorkflowListOptions};
use temporalio_sdk::activities::ActivityContext;
use uuid::Uuid;

use crate::Activities;

impl Activities {
    /// Checks every open advance in one call: their workflows, then the whole id range (what runs started
    /// before ranges were checked in parallel still call).
    pub async fn check_all(&self, temporal: &Client) -> anyhow::Result<ReconcileReport> {
        let mut report = self.check_running_workflows(temporal, None).await?;
        let whole = IdRange { first: Uuid::nil(), last: Uuid::max() };
        report.merge(
            self.check_range(whole, RangeProgress { next: Some(whole.first), ..Default::default() }, None).await?,
        );
        Ok(report)
    }

    /// Checks the open advances of `range`, from `progress.next` on, page by page: each advance's payments
    /// must sum to its amount (paid + scheduled + processing), and its grant and every paid payment must match
    /// exactly one successful ledger transaction with its key, and no failed payment may have one. The ledger
    /// is asked up to a thousand keys at a time, several lookups at once, while the next page is read.
    /// Mismatches are raised as alerts as they are found; after every page the progress is heartbeaten through
    /// `ctx`, so a retry resumes at the next page.
    pub async fn check_range(
        &self,
        range: IdRange,
        mut progress: RangeProgress,
        ctx: Option<&ActivityContext>,
    ) -> anyhow::Result<ReconcileReport> {
        let Some(first) = progress.next else { return Ok(progress.report) };
        let mut page = self.store.open_page(first, range.last, PAGE_ADVANCES).await?;
        while let Some(last) = page.last().map(|advance| advance.open.advance_id) {
            let next = last.as_u128().checked_add(1).map(Uuid::from_u128).filter(|next| *next <= range.last);
            let following = async {
                match next {
                    Some(next) => self.store.open_page(next, range.last, PAGE_ADVANCES).await,
                    None => Ok(Vec::new()),
                }
            };
            let (following, checked) = tokio::join!(following, self.check_page(&page));
            let (checked, alerts) = checked?;
            for alert in alerts {
                self.raise(&alert).await?;
                progress.report.found(alert);
            }
            progress.report.merge(checked);
            progress.next = next;
            if let Some(ctx) = ctx {
                ctx.record_heartbeat(progress.clone()).await.map_err(|error| anyhow::anyhow!("{error}"))?;
            }
            page = following?;
        }
        Ok(progress.report)
    }

    /// One page's checks: the formula of each advance, and its keys against the ledger. Returns the counts
    /// and the mismatches.
    async fn check_page(&self, page: &[AdvanceToCheck]) -> anyhow::Result<(ReconcileReport, Vec<Alert>)> {
        let mut counts = ReconcileReport::default();
        let mut alerts = Vec::new();
        let mut checks: Vec<KeyCheck> = Vec::new();
        for advance in page {
            let open = &advance.open;
            counts.advances_checked += 1;
            if advance.owed != open.amount {
                alerts.push(Alert {
                    advance_id: Some(open.advance_id),
                    kind: AlertKind::FormulaMismatch,
                    message: format!(
                        "advance {}: paid + scheduled + processing = {}, but the advance is {}",
                        open.advance_id, advance.owed, open.amount
                    ),
                });
            }
            let keys = KeyCheck::of(open, &advance.settled);
            // Every check but the grant's is one payment's.
            counts.payments_checked +=
                keys.iter().filter(|check| !matches!(check.expected, Expected::Grant { .. })).count() as u64;
            checks.extend(keys);
        }
        let lookups: Vec<Vec<KeyCheck>> = checks.chunks(MAX_KEYS_PER_LOOKUP).map(<[KeyCheck]>::to_vec).collect();
        let mut settled =
            futures::stream::iter(lookups).map(|batch| self.settle(batch)).buffer_unordered(LOOKUPS_IN_FLIGHT);
        while let Some(found) = settled.next().await {
            alerts.extend(found?);
        }
        Ok((counts, alerts))
    }

    /// Every advance the database says is open must have a running workflow: one that was terminated, timed out,
    /// failed, or is missing would never collect again while everything else still looks fine. The running
    /// workflows come from one visibility listing (their ids held as 16-byte uuids); an advance missing from it
    /// is confirmed with `describe` (visibility lags) before it is an alert. An advance registered in the last
    /// minute may still be starting. Heartbeats through `ctx` while it lists and pages.
    pub async fn check_running_workflows(
        &self,
        temporal: &Client,
        ctx: Option<&ActivityContext>,
    ) -> anyhow::Result<ReconcileReport> {
        let heartbeat = || async {
            if let Some(ctx) = ctx {
                ctx.record_heartbeat(()).await.map_err(|error| anyhow::anyhow!("{error}"))?;
            }
            anyhow::Ok(())
        };
        let query = "WorkflowType = 'AdvanceWorkflow' AND ExecutionStatus = 'Running'";
        let mut listing = temporal.list_workflows(query, WorkflowListOptions::default());
        let mut running = HashSet::new();
        while let Some(execution) = listing.next().await {
            if let Some(advance_id) = advances_workflows::advance_of_workflow(execution?.id()) {
                running.insert(advance_id);
            }
            if running.len() % 10_000 == 0 {
                heartbeat().await?;
            }
        }
        let mut report = ReconcileReport::default();
        let starting = chrono::Utc::now() - chrono::Duration::minutes(1);
        let mut next = Some(Uuid::nil());
        while let Some(first) = next {
            let page = self.store.open_advances(first, PAGE_ADVANCES).await?;
            next = page.last().and_then(|advance| advance.advance_id.as_u128().checked_add(1)).map(Uuid::from_u128);
            for advance in page {
                if running.contains(&advance.advance_id)
                    || (advance.status == AdvanceStatus::Granting && advance.created_at > starting)
                {
                    continue;
                }
                let Some(temporal_says) = advance_not_running(temporal, advance.advance_id).await? else {
                    // Visibility had not caught up with a running workflow.
                    continue;
                };
                let alert = Alert {
                    advance_id: Some(advance.advance_id),
                    kind: AlertKind::WorkflowNotRunning,
                    message: format!(
                        "advance {} is {} in the database, but its workflow is not running: Temporal says {temporal_says}",
                        advance.advance_id,
                        advance.status.as_str()
                    ),
                };
                self.raise(&alert).await?;
                report.found(alert);
            }
            heartbeat().await?;
        }
        // A written-off advance's workflow has ended; nothing may be left for anyone to collect.
        for (advance_id, number) in self.store.written_off_with_scheduled(PAGE_ADVANCES).await? {
            let alert = Alert {
                advance_id: Some(advance_id),
                kind: AlertKind::FormulaMismatch,
                message: format!("advance {advance_id} is written off, but its payment {number} is still scheduled"),
            };
            self.raise(&alert).await?;
            report.found(alert);
        }
        Ok(report)
    }

    /// Asks the ledger for every key of `batch` at once and returns what does not match.
    async fn settle(&self, batch: Vec<KeyCheck>) -> anyhow::Result<Vec<Alert>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = batch.iter().map(|check| check.key.clone()).collect();
        let found = self.ledger.transactions_by_keys(&keys).await?;
        let by_key: HashMap<&str, &[Transaction]> =
            found.iter().map(|entry| (entry.idempotency_key.as_str(), entry.transactions.as_slice())).collect();
        let (mut alerts, mut agreed, mut grants) = (Vec::new(), Vec::new(), Vec::new());
        for check in batch {
            let rows = by_key.get(check.key.as_str()).copied().unwrap_or_default();
            match check.problem(rows) {
                Some(problem) => alerts.push(Alert {
                    advance_id: Some(check.advance_id),
                    kind: AlertKind::LedgerMismatch,
                    message: format!("advance {} {}: {problem}", check.advance_id, check.what()),
                }),
                // The ledger agrees: remembered, so the check never needs these rows again (they go to cold
                // storage after HOT_RETENTION_DAYS). A mismatch is looked at again on every run.
                None => match check.payment {
                    Some(payment) => agreed.push(payment),
                    None => grants.push(check.advance_id),
                },
            }
        }
        self.store.mark_checked(&agreed, &grants).await?;
        Ok(alerts)
    }
}

/// Open advances per page of reconciliation (two queries to the advances database, a few lookups to the ledger).
pub const PAGE_ADVANCES: i64 = 1000;
/// Ledger lookups (of up to a thousand keys each) one range keeps in flight.
pub const LOOKUPS_IN_FLIGHT: usize = 4;

/// What reconciliation expects the ledger to hold under one key.
#[derive(Debug, Clone, PartialEq)]
enum Expected {
    /// The grant: one success of the advance's amount to its account.
    Grant { amount: Decimal },
    /// A paid payment: one success, the payment's own transaction, of its amount.
    Paid { number: i32, amount: Decimal, transaction_id: Option<Uuid> },
    /// A failed payment: no success at all.
    Failed { number: i32 },
}

/// One key of one advance, and what must be under it.
#[derive(Debug, Clone)]
struct KeyCheck {
    advance_id: Uuid,
    account_id: Uuid,
    key: String,
    expected: Expected,
    /// The payment as read (none for the grant): remembered as checked only if it is still so.
    payment: Option<PaymentRow>,
}

impl KeyCheck {
    /// The keys of an open advance not checked yet: its grant (once granted), its paid and its failed payments
    /// (the store reads only the unchecked ones).
    fn of(open: &OpenAdvance, payments: &[PaymentRow]) -> Vec<Self> {
        let check = |key: String, expected: Expected, payment: Option<&PaymentRow>| Self {
            advance_id: open.advance_id,
            account_id: open.account_id,
            key,
            expected,
            payment: payment.cloned(),
        };
        let mut checks = Vec::new();
        if open.status != AdvanceStatus::Granting && !open.grant_checked {
            checks.push(check(grant_key(open.advance_id), Expected::Grant { amount: open.amount }, None));
        }
        for payment in payments {
            let expected = match payment.status {
                PaymentStatus::Paid => Expected::Paid {
                    number: payment.number,
                    amount: payment.amount,
                    transaction_id: payment.transaction_id,
                },
                PaymentStatus::Failed => Expected::Failed { number: payment.number },
                _ => continue,
            };
            checks.push(check(payment_key(payment.id), expected, Some(payment)));
        }
        checks
    }

    fn what(&self) -> String {
        match &self.expected {
            Expected::Grant { .. } => "grant".to_owned(),
            Expected::Paid { number, .. } | Expected::Failed { number } => format!("payment {number}"),
        }
    }

    /// What is wrong with the ledger's `rows` under this key, if anything.
    fn problem(&self, rows: &[Transaction]) -> Option<String> {
        let successes: Vec<&Transaction> = rows.iter().filter(|row| row.status == TransactionStatus::Success).collect();
        match (&self.expected, successes.as_slice()) {
            (Expected::Failed { .. }, []) => None,
            (Expected::Failed { .. }, [moved, ..]) => Some(format!(
                "is recorded as failed, but the ledger moved {} in transaction {}",
                moved.amount, moved.transaction_id
            )),
            (Expected::Paid { transaction_id, .. }, [one]) if Some(one.transaction_id) != *transaction_id => {
                Some(format!("the ledger's transaction is {}, the payment says {transaction_id:?}", one.transaction_id))
            }
            (Expected::Paid { amount, .. }, [one])
                if one.amount.value() != *amount || one.dst_account_id != self.account_id =>
            {
                Some(format!("the ledger moved {} on account {}", one.amount, one.dst_account_id))
            }
            (Expected::Grant { amount }, [one])
                if one.amount.value() != *amount || one.dst_account_id != self.account_id =>
            {
                Some(format!("the ledger granted {} to account {}", one.amount, one.dst_account_id))
            }
            (_, [_]) => None,
            (_, many) => Some(format!("{} successful ledger transactions with key {}", many.len(), self.key)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use ledger_contract::{Direction, TransactionKind};
    use money::Amount;

    const ACCOUNT: Uuid = Uuid::from_u128(7);

    fn row(amount: &str, status: TransactionStatus) -> Transaction {
        Transaction {
            transaction_id: Uuid::from_u128(42),
            transaction_timestamp: Utc::now(),
            kind: TransactionKind::Bank,
            src_account_id: None,
            dst_account_id: ACCOUNT,
            amount: Amount::parse(amount).unwrap_or_else(|error| panic!("{error}")),
            direction: Direction::Debit,
            status,
            reason: None,
            description: None,
            recorded_by: Some("advances-worker".into()),
        }
    }

    fn check(expected: Expected) -> KeyCheck {
        KeyCheck {
            advance_id: Uuid::from_u128(1),
            account_id: ACCOUNT,
            key: "payment-x".into(),
            expected,
            payment: None,
        }
    }

    #[test]
    fn a_failed_payment_must_have_no_success_under_its_key() {
        let failed = check(Expected::Failed { number: 2 });
        assert_eq!(failed.problem(&[]), None);
        assert_eq!(failed.problem(&[row("10", TransactionStatus::Fail)]), None, "a refused debit is fine");
        let moved = failed.problem(&[row("10", TransactionStatus::Success)]).unwrap_or_default();
        assert!(moved.contains("recorded as failed") && moved.contains("10"), "{moved}");
    }

    #[test]
    fn a_paid_payment_must_match_exactly_one_success_of_its_own() {
        let paid_row = row("10", TransactionStatus::Success);
        let one = std::slice::from_ref(&paid_row);
        let paid = |amount: &str, transaction_id| {
            check(Expected::Paid {
                number: 3,
                amount: Decimal::from_str_exact(amount).unwrap_or_default(),
                transaction_id,
            })
        };
        assert_eq!(paid("10", Some(paid_row.transaction_id)).problem(one), None);
        assert!(paid("10", Some(Uuid::from_u128(99))).problem(one).is_some(), "another transaction");
        assert!(paid("11", Some(paid_row.transaction_id)).problem(one).is_some(), "another amount");
        assert!(paid("10", Some(paid_row.transaction_id)).problem(&[]).is_some(), "nothing in the ledger");
        let twice = [paid_row.clone(), paid_row.clone()];
        assert!(paid("10", Some(paid_row.transaction_id)).problem(&twice).unwrap_or_default().contains("2 successful"));
    }

    #[test]
    fn the_grant_must_be_the_advances_amount_to_its_account() {
        let grant = check(Expected::Grant { amount: Decimal::new(120, 0) });
        assert_eq!(grant.problem(&[row("120", TransactionStatus::Success)]), None);
        assert!(grant.problem(&[row("12", TransactionStatus::Success)]).is_some());
    }
}
