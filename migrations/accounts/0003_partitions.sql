-- Transactions by day: `transactions` becomes a table partitioned by `created_at`, one partition per UTC day
-- (`transactions_YYYYMMDD`), so that a day can be archived and dropped whole and the report's scans touch only
-- the days of their window.
--
-- The migration rewrites the table: it holds an exclusive lock on `transactions` while it copies every row
-- (README "Transactions by day" gives the measured time per million rows). Every column keeps its value, the
-- row ids and `created_xid` included, so report snapshots taken before the migration stay exact.
--
-- The primary key becomes (created_at, id): a partitioned table's unique keys must hold its partition key.
-- It also serves the report's newest-first scans (a b-tree is read backwards), replacing the report index.
-- Ids are UUIDv7 made by the service; nothing references a transaction by id alone.

ALTER TABLE transactions RENAME TO transactions_unpartitioned;
ALTER INDEX transactions_pkey RENAME TO transactions_unpartitioned_pkey;
ALTER INDEX transactions_report_order RENAME TO transactions_unpartitioned_report_order;
ALTER INDEX transactions_idempotency_key RENAME TO transactions_unpartitioned_idempotency_key;

CREATE TABLE transactions (
    id               uuid          NOT NULL,
    created_at       timestamptz   NOT NULL,
    kind             text          NOT NULL CONSTRAINT transactions_kind CHECK (kind IN ('transfer', 'bank')),
    -- NULL for bank transactions: the bank's side has no account.
    src_account_id   uuid          REFERENCES accounts (id),
    dst_account_id   uuid          NOT NULL REFERENCES accounts (id),
    amount           numeric(15,2) NOT NULL
                     CONSTRAINT transactions_amount_range CHECK (amount > 0 AND amount <= 1000000000000.00),
    direction        text          NOT NULL CONSTRAINT transactions_direction CHECK (direction IN ('debit', 'credit')),
    status           text          NOT NULL CONSTRAINT transactions_status CHECK (status IN ('success', 'fail')),
    -- Why it failed; present exactly when it failed.
    reason           text,
    -- The bank transaction's own description (the request's `reason`).
    description      text          CONSTRAINT transactions_description_length CHECK (length(description) <= 500),
    idempotency_key  text,
    -- The id of the database transaction that inserted the row: a report snapshot includes a row exactly
    -- when this transaction had committed when the snapshot was taken (pg_visible_in_snapshot).
    created_xid      xid8          NOT NULL DEFAULT pg_current_xact_id(),
    -- Who recorded it (the client's name). NULL only for rows recorded before clients existed (0002).
    recorded_by      text,
    CONSTRAINT transactions_reason_iff_failed CHECK ((status = 'fail') = (reason IS NOT NULL)),
    CONSTRAINT transactions_src_iff_transfer CHECK ((kind = 'transfer') = (src_account_id IS NOT NULL)),
    CONSTRAINT transactions_distinct_accounts CHECK (src_account_id IS DISTINCT FROM dst_account_id),
    PRIMARY KEY (created_at, id)
) PARTITION BY RANGE (created_at);

CREATE INDEX transactions_idempotency_key ON transactions (recorded_by, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- Creates the partition of one UTC day unless it exists; returns whether it created it. The partition is
-- created on its own and then attached: attaching takes a SHARE UPDATE EXCLUSIVE lock on `transactions`, which
-- does not stop inserts (CREATE TABLE … PARTITION OF would lock them out). Its constraints are copied first,
-- because ATTACH requires the parent's CHECK constraints on the child.
CREATE FUNCTION ledger_create_partition(day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    name text := 'transactions_' || to_char(day, 'YYYYMMDD');
BEGIN
    IF EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'transactions'::regclass AND c.relname = name) THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE transactions INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
    EXECUTE format('ALTER TABLE transactions ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
    RETURN true;
END $$;

-- A partition for every day that has rows, and for today and the next seven (the service keeps creating them
-- ahead; see `db::partitions`).
SELECT ledger_create_partition(day)
FROM (
    SELECT DISTINCT (created_at AT TIME ZONE 'UTC')::date AS day FROM transactions_unpartitioned
    UNION
    SELECT (now() AT TIME ZONE 'UTC')::date + g FROM generate_series(0, 7) AS g
) AS days
ORDER BY day;

INSERT INTO transactions
    (id, created_at, kind, src_account_id, dst_account_id, amount, direction, status, reason, description,
     idempotency_key, created_xid, recorded_by)
SELECT id, created_at, kind, src_account_id, dst_account_id, amount, direction, status, reason, description,
       idempotency_key, created_xid, recorded_by
FROM transactions_unpartitioned;

DROP TABLE transactions_unpartitioned;

-- Every row recorded from now on names its client. NOT VALID (added after the copy) keeps the old NULLs, as in
-- 0002; partitions created later copy the check and hold it for all their rows.
ALTER TABLE transactions ADD CONSTRAINT transactions_recorded_by_present CHECK (recorded_by IS NOT NULL) NOT VALID;
