//! AdvanceWorkflow: grant, then collect each payment when it falls due, until the advance closes.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use temporalio_common::RetryPolicy;
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityOptions, ContinueAsNewOptions, SyncWorkflowContext, TimerOptions, WorkflowContext, WorkflowContextView,
    WorkflowResult,
};

use ledger_contract::Direction;

use crate::activities::{AdvanceActivities, MoneyMove, MoneyOutcome};
use crate::search;
use advances_model::{
    grant_key, payment_key, Advance, AdvanceStatus, AdvanceTerms, Alert, AlertKind, Mirror, PaymentKind, Prepay,
    Reschedule, ScheduleError,
};

type Rejection = Box<dyn std::error::Error + Send + Sync>;

/// One advance's life. Its state is the [`Advance`] schedule; the query [`AdvanceWorkflow::state`] returns it,
/// the updates `cancel`, `pay_off`, `pause`, `resume`, `reschedule`, `prepay` and `write_off` are the
/// operator's commands; `await_grant` answers
/// when the grant is decided.
#[workflow]
#[derive(Default)]
pub struct AdvanceWorkflow {
    advance: Option<Advance>,
    /// The state as last mirrored into the database (this run's), from which the next mirror is a change.
    mirrored: Option<Advance>,
    /// What a servicing command did, for the summary of the mirror that records it in the Web UI.
    note: Option<String>,
}

/// What an advance's workflow starts from: its terms, and, in a run continued as new, the state the previous
/// run had reached. It reads the bare terms that every earlier version started with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvanceInput {
    #[serde(flatten)]
    pub terms: AdvanceTerms,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carried: Option<Box<Advance>>,
}

impl From<AdvanceTerms> for AdvanceInput {
    fn from(terms: AdvanceTerms) -> Self {
        Self { terms, carried: None }
    }
}

/// The patch under which a run mirrors changes (`mirror_advance`) instead of the whole advance
/// (`record_advance`), and continues as new when Temporal suggests it. Histories recorded before it replay
/// without it.
pub const SMALL_HISTORY_PATCH: &str = "mirror-changes-and-continue-as-new";

/// How long one call to the ledger may take before Temporal retries it (with the same key).
const MONEY_CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Retries back off from 1 s to at most this; they never give up, because a call whose outcome is unknown
/// may have moved money, and only a retry with the same key can tell.
const MAX_RETRY_INTERVAL: Duration = Duration::from_secs(30);

/// The options of every activity; `summary` is the line the Web UI shows for it.
fn activity_options(summary: String) -> ActivityOptions {
    ActivityOptions::with_start_to_close_timeout(MONEY_CALL_TIMEOUT)
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(Duration::from_secs(1))
                .backoff_coefficient(2.0)
                .maximum_interval(MAX_RETRY_INTERVAL)
                .build(),
        )
        .summary(summary)
        .build()
}

fn now<W>(ctx: &WorkflowContext<W>) -> DateTime<Utc> {
    ctx.workflow_time().map(DateTime::<Utc>::from).unwrap_or_default()
}

impl AdvanceWorkflow {
    /// An update validator: the model's own rule for the command (`Advance::can_*`), its refusal in its words.
    fn allows(&self, rule: impl Fn(&Advance) -> Result<(), ScheduleError>) -> Result<(), Rejection> {
        let advance = self.advance.as_ref().ok_or("the advance has not started")?;
        rule(advance).map_err(|refusal| refusal.to_string().into())
    }

    /// An update handler, after its validator accepted it: applies the command and answers the advance. The
    /// validator asked the same rule of the same state, so a refusal here is a bug: it is logged, never silent.
    /// The answer stays `Option<Advance>`, the type recorded in the histories of running advances.
    fn command(
        &mut self,
        name: &str,
        apply: impl FnOnce(&mut Advance) -> Result<(), ScheduleError>,
    ) -> Option<Advance> {
        let advance = self.advance.as_mut()?;
        match apply(advance) {
            Ok(()) => Some(advance.clone()),
            Err(refusal) => {
                tracing::error!(command = name, %refusal, "an accepted operator command was refused by the model");
                None
            }
        }
    }

    fn revision(&self) -> u64 {
        self.advance.as_ref().map_or(0, |advance| advance.revision)
    }

    fn snapshot(ctx: &WorkflowContext<Self>) -> Option<Advance> {
        ctx.state(|state| state.advance.clone())
    }

    /// Mirrors the state into the database, the search attributes and the workflow's current details. Under
    /// [`SMALL_HISTORY_PATCH`] only what changed since the last mirror goes into the history, and nothing at all
    /// when nothing changed.
    async fn publish(ctx: &WorkflowContext<Self>) -> WorkflowResult<()> {
        let Some(advance) = Self::snapshot(ctx) else { return Ok(()) };
        if !ctx.patched(SMALL_HISTORY_PATCH) {
            ctx.upsert_search_attributes([search::STATUS.value_set(advance.status.as_str().to_owned())]);
            ctx.set_current_details(advance.describe());
            let summary = format!("Record the advance ({}, revision {})", advance.status.as_str(), advance.revision);
            ctx.execute_activity(AdvanceActivities::record_advance, advance, activity_options(summary)).await?;
            return Ok(());
        }
        let mirrored = ctx.state(|state| state.mirrored.as_ref().map(|before| (before.revision, before.status)));
        if mirrored.is_some_and(|(revision, _)| revision == advance.revision) {
            return Ok(());
        }
        if mirrored.is_none_or(|(_, status)| status != advance.status) {
            ctx.upsert_search_attributes([search::STATUS.value_set(advance.status.as_str().to_owned())]);
        }
        ctx.set_current_details(advance.describe());
        let mirror = ctx.state(|state| match &state.mirrored {
            Some(before) => Mirror::Change { change: advance.changes_since(before) },
            None => Mirror::Whole { advance: advance.clone() },
        });
        let mut summary = format!("Record the advance ({}, revision {})", advance.status.as_str(), advance.revision);
        if let Some(note) = ctx.state_mut(|state| state.note.take()) {
            summary = format!("{summary}: {note}");
        }
        ctx.execute_activity(AdvanceActivities::mirror_advance, mirror, activity_options(summary)).await?;
        ctx.state_mut(|state| state.mirrored = Some(advance));
        Ok(())
    }

    /// Whether this run should hand over to a new one: Temporal suggests it when the history grows large
    /// (thousands of events or megabytes), long before its limits.
    fn should_continue_as_new(ctx: &WorkflowContext<Self>) -> bool {
        ctx.patched(SMALL_HISTORY_PATCH) && ctx.continue_as_new_suggested()
    }

    /// Registers the advance and makes its grant.
    async fn grant(ctx: &WorkflowContext<Self>, terms: AdvanceTerms) -> WorkflowResult<()> {
        let advance = Advance::new(terms);
        ctx.upsert_search_attributes([search::ACCOUNT_ID.value_set(advance.terms.account_id.to_string())]);
        let grant = Self::money_move(
            &advance,
            grant_key(advance.terms.advance_id),
            advance.terms.amount,
            Direction::Credit,
            format!("Advance {}", advance.terms.advance_id),
        );
        ctx.state_mut(|state| state.advance = Some(advance));
        Self::publish(ctx).await?;

        let summary = format!("Grant {} to account {}", grant.amount, grant.account_id);
        let outcome = ctx.execute_activity(AdvanceActivities::grant, grant, activity_options(summary)).await;
        let at = now(ctx);
        ctx.state_mut(|state| {
            let Some(advance) = state.advance.as_mut() else { return };
            match outcome {
                Ok(MoneyOutcome::Done { transaction_id }) => advance.granted(at, transaction_id),
                Ok(MoneyOutcome::Refused { reason }) => advance.grant_refused(&reason),
                Err(error) => advance.grant_refused(&format!("the grant failed: {error}")),
            }
        });
        Self::publish(ctx).await
    }

    /// Collects each payment when it falls due, until the advance closes (or this run hands over to a new one).
    async fn collect_until_closed(ctx: &WorkflowContext<Self>) -> WorkflowResult<()> {
        loop {
            // Between payments nothing is in flight: the only safe place to hand over.
            if Self::should_continue_as_new(ctx) {
                return Self::continue_as_new(ctx).await;
            }
            let revision = ctx.state(Self::revision);
            let Some((number, due)) = ctx.state(|state| state.advance.as_ref().and_then(Advance::next_due)) else {
                let paused = ctx.state(|state| state.advance.as_ref().is_some_and(|a| a.paused.is_some()));
                if !paused {
                    break;
                }
                // Paused: nothing is collected until an operator resumes (or cancels).
                if ctx.wait_condition(move |state| state.revision() != revision).await.is_err() {
                    break;
                }
                Self::publish(ctx).await?;
                continue;
            };
            let wait = (due - now(ctx)).to_std().unwrap_or_default();
            if !wait.is_zero() {
                let timer = TimerOptions::builder(wait)
                    .summary(format!("Payment {number} due {}", due.format("%Y-%m-%d %H:%M:%S UTC")))
                    .build();
                let changed = temporalio_sdk::workflows::select! {
                    _ = ctx.timer(timer) => false,
                    _ = ctx.wait_condition(move |state| state.revision() != revision) => true,
                };
                if changed {
                    // An operator paid off, cancelled, paused or resumed: publish, then look again at what is due.
                    Self::publish(ctx).await?;
                    continue;
                }
            }
            Self::collect(ctx, number).await?;
        }
        Self::publish(ctx).await
    }

    /// Collects payment `number`, now due, and records what the ledger did.
    async fn collect(ctx: &WorkflowContext<Self>, number: u32) -> WorkflowResult<()> {
        let started = ctx.state_mut(|state| {
            let advance = state.advance.as_mut()?;
            let payment = advance.start(number).ok()?.clone();
            let reason = format!("Advance {} payment {}", advance.terms.advance_id, payment.number);
            Some(Self::money_move(advance, payment_key(payment.payment_id), payment.amount, Direction::Debit, reason))
        });
        let Some(debit) = started else { return Ok(()) };
        Self::publish(ctx).await?;

        let (of, prepayment) = ctx.state(|state| {
            let advance = state.advance.as_ref();
            let prepayment = advance
                .and_then(|advance| advance.payments.iter().find(|p| p.number == number))
                .is_some_and(|payment| payment.kind == PaymentKind::Prepayment);
            (advance.map_or(0, |advance| advance.payments.len()), prepayment)
        });
        let summary = match prepayment {
            true => format!("Collect prepayment {number}: {}", debit.amount),
            false => format!("Collect payment {number} of {of}: {}", debit.amount),
        };
        let outcome = ctx.execute_activity(AdvanceActivities::collect, debit, activity_options(summary)).await;
        let defaulted = ctx.state_mut(|state| {
            let advance = state.advance.as_mut()?;
            let applied = match outcome {
                Ok(MoneyOutcome::Done { transaction_id }) => advance.paid(number, transaction_id),
                Ok(MoneyOutcome::Refused { reason }) => advance.failed(number, &reason),
                Err(error) => advance.failed(number, &format!("the ledger refused the debit: {error}")),
            };
            debug_assert!(applied.is_ok());
            (advance.status == AdvanceStatus::Defaulted).then(|| Alert {
                advance_id: Some(advance.terms.advance_id),
                kind: AlertKind::Defaulted,
                message: format!(
                    "advance {} of account {} defaulted with {} outstanding: {}",
                    advance.terms.advance_id,
                    advance.terms.account_id,
                    advance.terms.amount - advance.paid_amount(),
                    advance.status_reason.as_deref().unwrap_or_default()
                ),
            })
        });
        Self::publish(ctx).await?;
        if let Some(alert) = defaulted {
            let summary = format!("Alert: {}", alert.kind);
            ctx.execute_activity(AdvanceActivities::raise_alert, alert, activity_options(summary)).await?;
        }
        Ok(())
    }

    /// Mirrors the state, then continues as a new run that starts from it: the new run's history holds only
    /// its own events, so an advance of any length stays far from Temporal's history limits.
    async fn continue_as_new(ctx: &WorkflowContext<Self>) -> WorkflowResult<()> {
        Self::publish(ctx).await?;
        let Some(advance) = Self::snapshot(ctx) else { return Ok(()) };
        let input = AdvanceInput { terms: advance.terms.clone(), carried: Some(Box::new(advance)) };
        match ctx.continue_as_new(input, ContinueAsNewOptions::default()) {
            Err(handed_over) => Err(handed_over),
            Ok(never) => match never {},
        }
    }

    fn money_move(
        advance: &Advance,
        key: String,
        amount: rust_decimal::Decimal,
        direction: Direction,
        reason: String,
    ) -> MoneyMove {
        MoneyMove { idempotency_key: key, account_id: advance.terms.account_id, amount, direction, reason }
    }
}

#[workflow_methods]
impl AdvanceWorkflow {
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: AdvanceInput) -> WorkflowResult<Advance> {
        let AdvanceInput { terms, carried } = input;
        let initial = Advance::new(terms.clone());
        match carried {
            // Continued as new: the previous run mirrored this state just before it handed over.
            Some(carried) => {
                let advance = *carried;
                ctx.set_current_details(advance.describe());
                ctx.state_mut(|state| {
                    state.mirrored = Some(advance.clone());
                    state.advance = Some(advance);
                });
            }
            None => Self::grant(ctx, terms).await?,
        }
        Self::collect_until_closed(ctx).await?;
        Ok(Self::snapshot(ctx).unwrap_or(initial))
    }

    /// Answers once the grant is decided (made or refused), with the advance as it then stands: the API starts
    /// the workflow with this update (update-with-start) instead of polling for the grant.
    #[update]
    pub async fn await_grant(ctx: &mut WorkflowContext<Self>) -> Option<Advance> {
        let decided =
            |state: &Self| state.advance.as_ref().is_some_and(|advance| advance.status != AdvanceStatus::Granting);
        ctx.wait_condition(decided).await.ok()?;
        Self::snapshot(ctx)
    }

    /// The live state of the advance (absent only before the workflow's first step).
    #[query]
    pub fn state(&self, _ctx: &WorkflowContextView) -> Option<Advance> {
        self.advance.clone()
    }

    #[update_validator(cancel)]
    fn validate_cancel(&self, _ctx: &WorkflowContextView, _reason: &String) -> Result<(), Rejection> {
        self.allows(Advance::can_cancel)
    }

    /// Stops future collection; a withdrawal already under way finishes and is recorded.
    #[update]
    pub fn cancel(&mut self, _ctx: &mut SyncWorkflowContext<Self>, reason: String) -> Option<Advance> {
        self.command("cancel", |advance| advance.cancel(&reason))
    }

    #[update_validator(pay_off)]
    fn validate_pay_off(&self, _ctx: &WorkflowContextView, _note: &String) -> Result<(), Rejection> {
        self.allows(Advance::can_pay_off)
    }

    /// Collects everything outstanding now, in one withdrawal.
    #[update]
    pub fn pay_off(&mut self, ctx: &mut SyncWorkflowContext<Self>, _note: String) -> Option<Advance> {
        let at = ctx.workflow_time().map(DateTime::<Utc>::from).unwrap_or_default();
        self.command("pay_off", |advance| advance.pay_off(at).map(|_| ()))
    }

    #[update_validator(pause)]
    fn validate_pause(&self, _ctx: &WorkflowContextView, _reason: &String) -> Result<(), Rejection> {
        self.allows(Advance::can_pause)
    }

    /// Stops collection until resumed; a withdrawal already under way finishes and is recorded.
    #[update]
    pub fn pause(&mut self, ctx: &mut SyncWorkflowContext<Self>, reason: String) -> Option<Advance> {
        let at = ctx.workflow_time().map(DateTime::<Utc>::from).unwrap_or_default();
        self.command("pause", |advance| advance.pause(at, &reason))
    }

    #[update_validator(resume)]
    fn validate_resume(&self, _ctx: &WorkflowContextView, _note: &String) -> Result<(), Rejection> {
        self.allows(Advance::can_resume)
    }

    /// Continues collection; every payment still scheduled moves later by the time the advance was paused.
    #[update]
    pub fn resume(&mut self, ctx: &mut SyncWorkflowContext<Self>, _note: String) -> Option<Advance> {
        let at = ctx.workflow_time().map(DateTime::<Utc>::from).unwrap_or_default();
        self.command("resume", |advance| advance.resume(at).map(|_| ()))
    }

    #[update_validator(reschedule)]
    fn validate_reschedule(&self, _ctx: &WorkflowContextView, request: &Reschedule) -> Result<(), Rejection> {
        self.allows(|advance| advance.can_reschedule(request))
    }

    /// Re-spreads what is scheduled over new payments (a customer in hardship); paused advances included.
    #[update]
    pub fn reschedule(&mut self, ctx: &mut SyncWorkflowContext<Self>, request: Reschedule) -> Option<Advance> {
        let at = ctx.workflow_time().map(DateTime::<Utc>::from).unwrap_or_default();
        let mut first = 0;
        let answer = self.command("reschedule", |advance| advance.reschedule(&request, at).map(|n| first = n));
        self.add_note(answer.as_ref().map(|advance| {
            let first = advance.payments.iter().find(|p| p.number == first);
            let from = first.and_then(|p| p.due_at).map(|due| due.format("%Y-%m-%d %H:%M:%S UTC").to_string());
            format!(
                "rescheduled {} over {} payments from {}{}",
                advance.outstanding_amount(),
                request.payments,
                from.unwrap_or_default(),
                reason_suffix(&request.reason)
            )
        }));
        answer
    }

    #[update_validator(prepay)]
    fn validate_prepay(&self, _ctx: &WorkflowContextView, request: &Prepay) -> Result<(), Rejection> {
        self.allows(|advance| advance.can_prepay(request))
    }

    /// Collects an amount now, in one debit, before anything else; it reduces the last scheduled payments.
    #[update]
    pub fn prepay(&mut self, ctx: &mut SyncWorkflowContext<Self>, request: Prepay) -> Option<Advance> {
        let at = ctx.workflow_time().map(DateTime::<Utc>::from).unwrap_or_default();
        let mut number = 0;
        let answer = self.command("prepay", |advance| advance.prepay(&request, at).map(|n| number = n));
        self.add_note(
            answer.as_ref().map(|_| {
                format!("prepayment {number} of {} due now{}", request.amount, reason_suffix(&request.reason))
            }),
        );
        answer
    }

    #[update_validator(write_off)]
    fn validate_write_off(&self, _ctx: &WorkflowContextView, _reason: &String) -> Result<(), Rejection> {
        self.allows(Advance::can_write_off)
    }

    /// Stops collection and records what is scheduled as written off; a withdrawal under way finishes.
    #[update]
    pub fn write_off(&mut self, _ctx: &mut SyncWorkflowContext<Self>, reason: String) -> Option<Advance> {
        let answer = self.command("write_off", |advance| advance.write_off(&reason));
        self.add_note(answer.as_ref().map(|advance| format!("wrote off {}: {reason}", advance.written_off)));
        answer
    }

    /// Adds what a command did to the note the next mirror's summary carries. Two commands can be applied
    /// before that mirror is scheduled (a busy worker), so each is kept; a refused one adds nothing.
    fn add_note(&mut self, note: Option<String>) {
        if let Some(note) = note {
            self.note = Some(match self.note.take() {
                Some(earlier) => format!("{earlier}; {note}"),
                None => note,
            });
        }
    }
}

/// An operator's reason, as the end of a summary.
fn reason_suffix(reason: &str) -> String {
    match reason.is_empty() {
        true => String::new(),
        false => format!(" ({reason})"),
    }
}
