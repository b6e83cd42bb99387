-- The seal's guard (0004), per row and off the hot path.
--
-- 0004 refused rows dated before the frontier with a statement trigger: every INSERT statement collected its
-- rows in a transition table and ran a function. That cost a single-row transfer about 7-13 % of its
-- throughput in raw SQL (pgbench, 64 clients), and a statement trigger on the partitioned table never fires
-- for rows inserted straight into a day's partition.
--
-- Now a row trigger, which PostgreSQL clones onto every partition, present and future, runs its function only
-- for a row dated before its own statement began: a backfill, a replay, a bug. The service dates every row with
-- clock_timestamp() inside its INSERT, so its rows never reach the function.
--
-- What the filter lets through unchecked: a row dated while its own statement runs. Such a row can be before
-- the frontier only if it was dated before its transaction took an id (the sealer waits for every transaction
-- with an older id than its own, and reads the clock before taking it), which is possible only in the first
-- writing statement of a transaction, between the statement's start and its first row. 0004's trigger did not
-- close that window either: a seal that commits after the check and before the writer's commit passes it.
-- Writers must date rows after their transaction holds an id (the service locks its accounts first).
DROP TRIGGER transactions_after_seal ON transactions;
DROP FUNCTION transactions_after_seal();

CREATE FUNCTION transactions_after_seal() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    sealed timestamptz;
BEGIN
    SELECT frontier INTO sealed FROM report_seal;
    IF NEW.created_at < sealed THEN
        RAISE EXCEPTION 'a transaction row dated % is before the report seal (%): rows are dated as they are inserted',
            NEW.created_at, sealed USING ERRCODE = 'check_violation', CONSTRAINT = 'transactions_after_seal';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER transactions_after_seal BEFORE INSERT ON transactions FOR EACH ROW
    WHEN (NEW.created_at < statement_timestamp()) EXECUTE FUNCTION transactions_after_seal();
