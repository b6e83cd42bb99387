//! What a reconciliation run reports, and the slices of the advances' id space it checks in parallel.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::alerts::Alert;

/// What a reconciliation run found. Every mismatch is raised as an alert (a row, a log line, a counter) when it
/// is found; the report counts them all and carries the first [`ReconcileReport::MAX_LISTED`], so that a run
/// that finds a million never puts a million alerts into a workflow's history.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconcileReport {
    pub advances_checked: u64,
    pub payments_checked: u64,
    pub mismatches: Vec<Alert>,
    /// Every mismatch found, listed or not (absent in reports of versions that listed them all).
    #[serde(default)]
    pub mismatch_count: u64,
}

impl ReconcileReport {
    pub const MAX_LISTED: usize = 100;

    /// Counts a mismatch, listing it while there is room.
    pub fn found(&mut self, alert: Alert) {
        self.mismatch_count += 1;
        if self.mismatches.len() < Self::MAX_LISTED {
            self.mismatches.push(alert);
        }
    }

    /// Adds another part's findings (a range of advances, the workflows' check).
    pub fn merge(&mut self, other: ReconcileReport) {
        self.advances_checked += other.advances_checked;
        self.payments_checked += other.payments_checked;
        self.mismatch_count += other.mismatch_count;
        let room = Self::MAX_LISTED.saturating_sub(self.mismatches.len());
        self.mismatches.extend(other.mismatches.into_iter().take(room));
    }
}

/// A slice of the advances' id space, both ends included (ids compare as 128-bit numbers, as PostgreSQL
/// compares uuids). Reconciliation checks the slices in parallel activities.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdRange {
    pub first: Uuid,
    pub last: Uuid,
}

impl IdRange {
    /// The whole id space in `parts` slices of equal width (at least one).
    pub fn split(parts: u32) -> Vec<IdRange> {
        let parts = u128::from(parts.max(1));
        let width = u128::MAX / parts;
        (0..parts)
            .map(|part| {
                let first = part * width + part;
                let last = if part + 1 == parts { u128::MAX } else { (part + 1) * width + part };
                IdRange { first: Uuid::from_u128(first), last: Uuid::from_u128(last) }
            })
            .collect()
    }

    /// The range's line in the Web UI ("00000000…3fffffff").
    pub fn describe(&self) -> String {
        let (first, last) = (self.first.simple().to_string(), self.last.simple().to_string());
        format!("{}…{}", &first[..8], &last[..8])
    }
}

/// How far a range's check has come, recorded with each heartbeat: a retried activity resumes at `next`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RangeProgress {
    /// The first id not checked yet (`None` once the range is done).
    pub next: Option<Uuid>,
    pub report: ReconcileReport,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::AlertKind;

    #[test]
    fn the_ranges_cover_every_id_once_in_order() {
        for parts in [1, 2, 3, 4, 7] {
            let ranges = IdRange::split(parts);
            assert_eq!(ranges.len(), parts as usize);
            assert_eq!(ranges[0].first, Uuid::nil());
            assert_eq!(ranges[ranges.len() - 1].last, Uuid::max());
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].last.as_u128() + 1, pair[1].first.as_u128(), "{parts}: {pair:?}");
            }
            assert!(ranges.iter().all(|range| range.first <= range.last));
        }
        assert_eq!(IdRange::split(0).len(), 1);
        assert_eq!(IdRange::split(4)[1].describe(), "40000000…7fffffff");
    }

    #[test]
    fn a_report_counts_every_mismatch_and_lists_the_first_hundred() {
        let alert = |n: usize| Alert { advance_id: None, kind: AlertKind::FormulaMismatch, message: n.to_string() };
        let mut report = ReconcileReport::default();
        (0..150).for_each(|n| report.found(alert(n)));
        let mut other = ReconcileReport { advances_checked: 5, ..Default::default() };
        other.found(alert(999));
        report.merge(other);
        assert_eq!((report.mismatch_count, report.mismatches.len(), report.advances_checked), (151, 100, 5));
    }
}
