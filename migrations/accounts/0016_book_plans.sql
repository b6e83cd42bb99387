-- Every account's book, planned for many accounts (issue 21): the seeks of a statement page and of a balance at
-- a time use the book indexes whatever the ledger's mix of accounts.
--
-- The book pool plans each seek once, without its values (a generic plan), so PostgreSQL estimates
-- `src_account_id = $1` as one over the number of distinct accounts in each day partition. Where one account
-- owns nearly every row of a day (the bench's ledger of 1 million rows, a bank's own settlement account), that
-- is about one half, and the plan walks the day's primary key `(created_at, id)` backwards, filtering on the
-- account, instead of seeking `transactions_src_book`: 6 695 rows read and dropped for one seek of an account
-- with 100 rows (BENCHMARKS.md, "Every account's book, bounded"). For a seek by account the book index is never
-- the worse path (it holds the account's rows in the order asked), so the planner is told that accounts are many:
-- a tenth of a day's rows, whatever ANALYZE counted. Nothing else filters `transactions` by account.
--
-- A partition does not inherit its parent's column options, so `ledger_create_partition` sets them on each new
-- one. They take effect at the table's next ANALYZE (the one below for the days already here; autovacuum's for
-- a new day, which until then has no statistics and is planned with a small default estimate anyway).
CREATE FUNCTION ledger_plan_for_many_accounts(partition regclass) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('ALTER TABLE %s ALTER COLUMN src_account_id SET (n_distinct = -0.1), '
                   'ALTER COLUMN dst_account_id SET (n_distinct = -0.1)', partition);
END $$;

CREATE OR REPLACE FUNCTION ledger_create_partition(day date) RETURNS boolean
LANGUAGE plpgsql AS $$
DECLARE
    name text := 'transactions_' || to_char(day, 'YYYYMMDD');
BEGIN
    IF EXISTS (SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'transactions'::regclass AND c.relname = name) THEN
        RETURN false;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE transactions INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', name);
    PERFORM ledger_plan_for_many_accounts(name::regclass);
    EXECUTE format('ALTER TABLE transactions ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   name, day::timestamp AT TIME ZONE 'UTC', (day + 1)::timestamp AT TIME ZONE 'UTC');
    RETURN true;
END $$;

SELECT ledger_plan_for_many_accounts('transactions');
SELECT ledger_plan_for_many_accounts(inhrelid::regclass) FROM pg_inherits WHERE inhparent = 'transactions'::regclass;

-- Recurses into every partition; only these two columns' statistics are taken again.
ANALYZE transactions (src_account_id, dst_account_id);
