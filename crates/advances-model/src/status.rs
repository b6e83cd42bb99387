//! The statuses of an advance and of its payments, from the workflow's state to the database row to the JSON.

use ledger_contract::UnknownValue;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AdvanceStatus {
    /// Started; the grant is being made.
    Granting,
    /// Granted; payments are being collected.
    Active,
    /// Everything is paid.
    Completed,
    /// The grant was refused (nothing was lent).
    Failed,
    /// Too many extra payments failed in a row.
    Defaulted,
    /// An operator stopped future collection.
    Cancelled,
    /// An operator stopped collection and recorded what was outstanding as lost.
    WrittenOff,
}

impl AdvanceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Granting => "granting",
            Self::Active => "active",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Defaulted => "defaulted",
            Self::Cancelled => "cancelled",
            Self::WrittenOff => "written_off",
        }
    }

    /// Every status, in the order of an advance's life.
    pub const ALL: [Self; 7] = [
        Self::Granting,
        Self::Active,
        Self::Completed,
        Self::Failed,
        Self::Defaulted,
        Self::Cancelled,
        Self::WrittenOff,
    ];

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|status| status.as_str() == text)
    }

    /// The statuses of an advance that still collects.
    pub const OPEN: [Self; 2] = [Self::Granting, Self::Active];

    /// Whether the advance still collects (reconciliation checks open advances).
    pub fn is_open(self) -> bool {
        matches!(self, Self::Granting | Self::Active)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    /// Not due yet.
    Scheduled,
    /// Its withdrawal is under way.
    Processing,
    /// Withdrawn; `transaction_id` is the ledger's.
    Paid,
    /// Refused; its amount moved to `moved_to`.
    Failed,
    /// Replaced: merged into an earlier payment by a pay-off, re-spread by a reschedule, or covered by a
    /// prepayment; its amount moved to `moved_to`.
    Superseded,
    /// Will never be collected (cancelled advance or refused grant).
    Cancelled,
}

/// What a payment is for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentKind {
    /// Part of the schedule (or an extra payment carrying a failed amount).
    #[default]
    Regular,
    /// An amount an operator collects ahead of the schedule; it reduces the last scheduled payments.
    Prepayment,
}

impl PaymentKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Regular => "regular",
            Self::Prepayment => "prepayment",
        }
    }

    pub fn is_regular(&self) -> bool {
        *self == Self::Regular
    }
}

impl TryFrom<String> for AdvanceStatus {
    type Error = UnknownValue;

    fn try_from(text: String) -> Result<Self, UnknownValue> {
        Self::parse(&text).ok_or(UnknownValue { what: "advance status", value: text })
    }
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Processing => "processing",
            Self::Paid => "paid",
            Self::Failed => "failed",
            Self::Superseded => "superseded",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Scheduled, Self::Processing, Self::Paid, Self::Failed, Self::Superseded, Self::Cancelled]
            .into_iter()
            .find(|status| status.as_str() == text)
    }

    /// Counted by the seed's formula.
    pub fn is_owed(self) -> bool {
        matches!(self, Self::Scheduled | Self::Processing | Self::Paid)
    }
}

impl TryFrom<String> for PaymentStatus {
    type Error = UnknownValue;

    fn try_from(text: String) -> Result<Self, UnknownValue> {
        Self::parse(&text).ok_or(UnknownValue { what: "payment status", value: text })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_parse_back_from_their_names() {
        use PaymentStatus::*;
        for status in [Scheduled, Processing, Paid, Failed, Superseded, Cancelled] {
            assert_eq!(PaymentStatus::parse(status.as_str()), Some(status));
        }
        assert_eq!(PaymentStatus::parse("paid "), None);
        assert_eq!(AdvanceStatus::parse("active"), Some(AdvanceStatus::Active));
    }
}
