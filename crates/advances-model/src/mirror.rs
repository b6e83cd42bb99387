//! What the workflow sends to be mirrored into the database: its whole state once, then only what changed.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::advance::{Advance, Pause, Payment};
use crate::status::AdvanceStatus;

/// What changed in an advance since an earlier state of it: every field but the terms, and only the payments
/// that changed or are new. The workflow mirrors this instead of the whole advance, so that its history grows
/// with what happened, not with the length of the schedule times the number of changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdvanceChange {
    pub advance_id: Uuid,
    /// The revision of the state before this change; applying it to any other state is refused.
    pub from_revision: u64,
    pub revision: u64,
    pub status: AdvanceStatus,
    pub granted_at: Option<DateTime<Utc>>,
    pub grant_transaction_id: Option<Uuid>,
    pub status_reason: Option<String>,
    pub failed_extra_in_row: u32,
    pub paused: Option<Pause>,
    pub payments: Vec<Payment>,
    /// Absent in changes recorded before write-offs and reschedules existed.
    #[serde(default, skip_serializing_if = "Decimal::is_zero")]
    pub written_off: Decimal,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regular_through: Option<u32>,
}

/// What the workflow sends to be mirrored: its whole state the first time, then what changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mirror")]
pub enum Mirror {
    Whole { advance: Advance },
    Change { change: AdvanceChange },
}

impl Mirror {
    pub fn advance_id(&self) -> Uuid {
        match self {
            Self::Whole { advance } => advance.terms.advance_id,
            Self::Change { change } => change.advance_id,
        }
    }

    pub fn revision(&self) -> u64 {
        match self {
            Self::Whole { advance } => advance.revision,
            Self::Change { change } => change.revision,
        }
    }
}

/// How an [`AdvanceChange`] does not fit the state it is applied to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChangeError {
    #[error("the change is for advance {change}, not {advance}")]
    OtherAdvance { advance: Uuid, change: Uuid },
    #[error("the change follows revision {from}, but the state is at revision {at}")]
    OtherRevision { from: u64, at: u64 },
}

impl Advance {
    /// What changed since `before` (an earlier state of this advance): see [`AdvanceChange`].
    pub fn changes_since(&self, before: &Advance) -> AdvanceChange {
        let payments = self
            .payments
            .iter()
            .filter(|payment| before.payments.iter().find(|old| old.number == payment.number) != Some(*payment))
            .cloned()
            .collect();
        AdvanceChange {
            advance_id: self.terms.advance_id,
            from_revision: before.revision,
            revision: self.revision,
            status: self.status,
            granted_at: self.granted_at,
            grant_transaction_id: self.grant_transaction_id,
            status_reason: self.status_reason.clone(),
            failed_extra_in_row: self.failed_extra_in_row,
            paused: self.paused.clone(),
            payments,
            written_off: self.written_off,
            regular_through: self.regular_through,
        }
    }

    /// Applies a change made by [`Advance::changes_since`] from this very state.
    pub fn apply(&mut self, change: AdvanceChange) -> Result<(), ChangeError> {
        if change.advance_id != self.terms.advance_id {
            return Err(ChangeError::OtherAdvance { advance: self.terms.advance_id, change: change.advance_id });
        }
        if change.from_revision != self.revision {
            return Err(ChangeError::OtherRevision { from: change.from_revision, at: self.revision });
        }
        self.revision = change.revision;
        self.status = change.status;
        self.granted_at = change.granted_at;
        self.grant_transaction_id = change.grant_transaction_id;
        self.status_reason = change.status_reason;
        self.failed_extra_in_row = change.failed_extra_in_row;
        self.paused = change.paused;
        self.written_off = change.written_off;
        self.regular_through = change.regular_through;
        for payment in change.payments {
            match self.payment_mut(payment.number) {
                Some(slot) => *slot = payment,
                None => self.payments.push(payment),
            }
        }
        self.payments.sort_by_key(|payment| payment.number);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{granted, terms};

    #[test]
    fn a_change_applies_only_to_the_state_it_was_made_from() {
        let before = granted("120");
        let mut after = before.clone();
        assert!(after.start(1).is_ok());
        let change = after.changes_since(&before);
        assert_eq!(change.payments.len(), 1, "only payment 1 changed: {change:?}");
        let mut stale = Advance::new(terms("120"));
        assert_eq!(stale.apply(change.clone()), Err(ChangeError::OtherRevision { from: 1, at: 0 }));
        let mut other = before.clone();
        other.terms.advance_id = Uuid::from_u128(99);
        assert!(matches!(other.apply(change.clone()), Err(ChangeError::OtherAdvance { .. })));
        let mut mirror = before;
        assert_eq!(mirror.apply(change), Ok(()));
        assert_eq!(mirror, after);
    }
}
