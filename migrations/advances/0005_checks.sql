-- Invariants the model has always kept, now also held by the schema (as the ledger's are), so that a bug in one
-- is caught by the other. They are validated against the rows already there: a row that breaks one stops the
-- migration, and the service with it, naming the constraint; that row was written by a bug to look at first.

-- An alert is of a kind the code knows (advances_model::AlertKind).
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_known
    CHECK (kind IN ('defaulted', 'formula_mismatch', 'ledger_mismatch', 'ledger_refused', 'workflow_not_running'));

-- A payment has a failure reason exactly when it failed.
ALTER TABLE payments ADD CONSTRAINT payments_reason_iff_failed
    CHECK ((status = 'failed') = (failure_reason IS NOT NULL));

-- Only a failed or superseded payment says where its amount went, and a superseded one always does (a failed
-- one does not when the advance closed as it failed: cancelled while it was under way, or defaulted).
ALTER TABLE payments ADD CONSTRAINT payments_moved_only_when_failed_or_superseded
    CHECK (moved_to IS NULL OR status IN ('failed', 'superseded'));
ALTER TABLE payments ADD CONSTRAINT payments_superseded_moved
    CHECK (status <> 'superseded' OR moved_to IS NOT NULL);
ALTER TABLE payments ADD CONSTRAINT payments_moved_to_another
    CHECK (moved_to IS NULL OR moved_to <> number);

-- Revisions count changes from 0.
ALTER TABLE advances ADD CONSTRAINT advances_revision_not_negative CHECK (revision >= 0);
