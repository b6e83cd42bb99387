-- Lean events: an event about an object that never changes after it is written (a transaction row) stores the
-- object's id and time instead of its JSON, and the service renders `data` from the row when the event is read
-- or delivered (crates/events/src/subjects.rs). An event row is then about 100 bytes instead of about 450. Objects
-- that change later (holds, advances) keep their data in the event. The ledger's database has the same columns
-- (migrations/accounts/0012_event_subjects.sql), so the one `events` crate reads both.
ALTER TABLE events
    ALTER COLUMN data DROP NOT NULL,
    ADD COLUMN subject    uuid,
    ADD COLUMN subject_at timestamptz;

-- Either the data or the object it is rendered from, never both or neither. Rows written before this migration
-- satisfy it by construction (data was NOT NULL, the subject columns are new), so it is not validated: that
-- would scan the whole table under the lock this migration's transaction holds, stopping every writer.
ALTER TABLE events ADD CONSTRAINT events_body
    CHECK ((data IS NULL) = (subject IS NOT NULL) AND (subject IS NULL) = (subject_at IS NULL)) NOT VALID;
