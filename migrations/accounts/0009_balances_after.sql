-- Every account's own book: each transaction row records the balance after it of each account it touched, so a
-- statement page and a balance at any time are index lookups instead of sums over an account's history.
--
-- `src_balance_after` is the balance of `src_account_id` after the row (NULL for bank rows, which have no source);
-- `dst_balance_after` that of `dst_account_id`. A failed row carries the balance it left unchanged. The service
-- computes both inside group commit (`domain::transfer::Balances`), where the balances are locked.
--
-- Existing rows are filled from each account's balance now, backwards: the balance after a row is the balance
-- now minus the effects of the account's later rows (in `created_at, id` order). That needs no row older than the
-- oldest one still here (days already in cold storage are not read), and it is exact because `accounts` is
-- locked against writes (SHARE) for the migration: no balance changes while the history is computed.
--
-- Cost: every row is rewritten once and both indexes are built while writes wait (README "Every account's book"
-- gives the measured time per million rows).

LOCK TABLE accounts IN SHARE MODE;

ALTER TABLE transactions
    ADD COLUMN src_balance_after numeric(20,2),
    ADD COLUMN dst_balance_after numeric(20,2);

-- Rows from before clients existed keep their NULL `recorded_by` (0002, 0003: the check is NOT VALID); an
-- updated row would have to pass it, so it is lifted for the fill and put back as it was.
ALTER TABLE transactions DROP CONSTRAINT transactions_recorded_by_present;

WITH effects AS (
    SELECT t.created_at, t.id, t.src_account_id AS account_id, true AS is_src,
           CASE WHEN t.status <> 'success' THEN 0
                WHEN t.direction = 'debit' THEN -t.amount ELSE t.amount END AS effect
    FROM transactions t WHERE t.src_account_id IS NOT NULL
    UNION ALL
    SELECT t.created_at, t.id, t.dst_account_id, false,
           CASE WHEN t.status <> 'success' THEN 0
                WHEN (t.kind = 'transfer') = (t.direction = 'debit') THEN t.amount ELSE -t.amount END
    FROM transactions t
),
after AS (
    SELECT e.created_at, e.id, e.is_src,
           a.balance - coalesce(sum(e.effect) OVER (PARTITION BY e.account_id ORDER BY e.created_at DESC, e.id DESC
                                                     ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS balance
    FROM effects e JOIN accounts a ON a.id = e.account_id
),
rows AS (
    SELECT created_at, id, max(balance) FILTER (WHERE is_src) AS src, max(balance) FILTER (WHERE NOT is_src) AS dst
    FROM after GROUP BY created_at, id
)
UPDATE transactions t SET src_balance_after = r.src, dst_balance_after = r.dst
FROM rows r WHERE t.created_at = r.created_at AND t.id = r.id;

ALTER TABLE transactions ADD CONSTRAINT transactions_recorded_by_present CHECK (recorded_by IS NOT NULL) NOT VALID;

-- A row without its balances, or with a negative one, is refused (partitions created later copy these checks).
ALTER TABLE transactions
    ADD CONSTRAINT transactions_src_balance_after
        CHECK ((src_balance_after IS NOT NULL) = (src_account_id IS NOT NULL) AND src_balance_after >= 0),
    ADD CONSTRAINT transactions_dst_balance_after CHECK (dst_balance_after IS NOT NULL AND dst_balance_after >= 0);

-- An account's rows in time order, from either side: a statement page and the balance before any time are a
-- seek into these (one per day partition the window spans).
CREATE INDEX transactions_src_book ON transactions (src_account_id, created_at, id) WHERE src_account_id IS NOT NULL;
CREATE INDEX transactions_dst_book ON transactions (dst_account_id, created_at, id);

-- Cold storage keeps each account's place in every archived day: the first and last of its rows that day and its
-- balance after the last, so a statement reads only the day files where the account has rows, and a balance
-- before any archived time is one lookup here plus, at most, one day file. Written in the transaction that records
-- the day as verified, from the day's partition.
CREATE TABLE archived_account_days (
    account_id        uuid          NOT NULL,
    day               date          NOT NULL REFERENCES archived_days (day),
    row_count         integer       NOT NULL CONSTRAINT archived_account_days_rows CHECK (row_count > 0),
    first_created_at  timestamptz   NOT NULL,
    last_created_at   timestamptz   NOT NULL,
    last_id           uuid          NOT NULL,
    closing_balance   numeric(20,2) NOT NULL CONSTRAINT archived_account_days_closing CHECK (closing_balance >= 0),
    PRIMARY KEY (account_id, day),
    CHECK (first_created_at <= last_created_at)
);

-- Whether a day's file has the balance columns and its accounts are in `archived_account_days`. Days archived
-- before this migration do not: a statement or balance that needs one of them says so instead of guessing.
ALTER TABLE archived_days ADD COLUMN has_book boolean NOT NULL DEFAULT false;
ALTER TABLE archived_days ALTER COLUMN has_book DROP DEFAULT;
