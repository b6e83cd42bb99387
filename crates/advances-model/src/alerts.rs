//! Alerts for operators: what they are about and what they say.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// What an alert is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// Too many extra payments failed in a row.
    Defaulted,
    /// paid + scheduled + processing differs from the advance's amount.
    FormulaMismatch,
    /// The grant or a paid payment does not match exactly one successful ledger transaction, or a failed
    /// payment has one.
    LedgerMismatch,
    /// The ledger refused a grant or a collection for a reason only an operator can fix (a token, a scope, a
    /// key taken): the activity retries until it is fixed.
    LedgerRefused,
    /// The database says the advance is open, but its workflow is not running (terminated, timed out, failed,
    /// completed without its last mirror, or missing): nothing would collect it.
    WorkflowNotRunning,
    /// A webhook endpoint failed for longer than its retry schedule and was disabled (written by the `events`
    /// crate as `webhook_disabled`).
    WebhookDisabled,
}

impl AlertKind {
    pub const ALL: [Self; 6] = [
        Self::Defaulted,
        Self::FormulaMismatch,
        Self::LedgerMismatch,
        Self::LedgerRefused,
        Self::WorkflowNotRunning,
        Self::WebhookDisabled,
    ];

    /// The name in logs, metrics, the database and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Defaulted => "defaulted",
            Self::FormulaMismatch => "formula_mismatch",
            Self::LedgerMismatch => "ledger_mismatch",
            Self::LedgerRefused => "ledger_refused",
            Self::WorkflowNotRunning => "workflow_not_running",
            Self::WebhookDisabled => "webhook_disabled",
        }
    }
}

impl std::fmt::Display for AlertKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for AlertKind {
    type Error = ledger_contract::UnknownValue;

    fn try_from(text: String) -> Result<Self, Self::Error> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == text)
            .ok_or(ledger_contract::UnknownValue { what: "alert kind", value: text })
    }
}

/// An alert for operators: an ERROR log line, a counter and a row in `alerts`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub advance_id: Option<Uuid>,
    pub kind: AlertKind,
    pub message: String,
}
