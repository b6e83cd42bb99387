-- Every account's book, bounded (issue 21): where an account's rows are, on each side, so that a statement page
-- or a balance at a time seeks only the day partitions that can hold them.
--
-- A seek into the book indexes (`transactions_src_book`, `transactions_dst_book`) descends each day partition
-- of its window, and a side where the account has no row there descends them all to learn so: an account that
-- only ever pays probes every day of its window on the payee side. On a large ledger those descents were most
-- of a statement page's time (BENCHMARKS.md, "A statement page and a balance at any time").
--
-- For each side, the earliest and the latest `created_at` of the account's rows on that side, or NULL when it
-- has none: every hot row of the account on that side lies between the two. The service widens them in the
-- statement that writes the rows (`db::movements::write_rows`), from the rows' own dates, and reads them in the
-- statement that seeks (`db::statements`), so both see one snapshot. They are never narrowed: a row archived
-- and dropped leaves them wider than needed, which costs a seek and is never wrong.
ALTER TABLE accounts
    ADD COLUMN src_first_at timestamptz,
    ADD COLUMN src_last_at  timestamptz,
    ADD COLUMN dst_first_at timestamptz,
    ADD COLUMN dst_last_at  timestamptz,
    ADD CONSTRAINT accounts_src_bounds CHECK ((src_first_at IS NULL) = (src_last_at IS NULL) AND src_first_at <= src_last_at),
    ADD CONSTRAINT accounts_dst_bounds CHECK ((dst_first_at IS NULL) = (dst_last_at IS NULL) AND dst_first_at <= dst_last_at);

-- Widens the bounds of the accounts `among` (every account when NULL) to cover all their hot rows. Safe to run
-- at any time, beside writers: it only widens, and a writer's own widening is never undone. It is for rows written
-- by anything but the service (a repair, a test's fixture), and for rows written by an older version of the
-- service that ran beside this one. Upgrade: stop older instances before starting this version, or run
-- `SELECT ledger_widen_book_bounds()` once the last of them has stopped (until then, their rows may be missing
-- from statements and `as_of`). It reads every hot row (or the rows of the accounts `among`).
CREATE FUNCTION ledger_widen_book_bounds(among uuid[] DEFAULT NULL) RETURNS bigint
LANGUAGE sql AS $$
    WITH sides AS (
        SELECT src_account_id AS id, min(created_at) AS src_first, max(created_at) AS src_last,
               NULL::timestamptz AS dst_first, NULL::timestamptz AS dst_last
        FROM transactions WHERE src_account_id IS NOT NULL AND (among IS NULL OR src_account_id = ANY (among))
        GROUP BY src_account_id
        UNION ALL
        SELECT dst_account_id, NULL, NULL, min(created_at), max(created_at)
        FROM transactions WHERE among IS NULL OR dst_account_id = ANY (among)
        GROUP BY dst_account_id
    ),
    bounds AS (
        SELECT id, min(src_first) AS src_first, max(src_last) AS src_last, min(dst_first) AS dst_first,
               max(dst_last) AS dst_last
        FROM sides GROUP BY id
    ),
    widened AS (
        UPDATE accounts a
        SET src_first_at = least(a.src_first_at, b.src_first), src_last_at = greatest(a.src_last_at, b.src_last),
            dst_first_at = least(a.dst_first_at, b.dst_first), dst_last_at = greatest(a.dst_last_at, b.dst_last)
        FROM bounds b
        WHERE a.id = b.id
          AND (a.src_first_at IS DISTINCT FROM least(a.src_first_at, b.src_first)
               OR a.src_last_at IS DISTINCT FROM greatest(a.src_last_at, b.src_last)
               OR a.dst_first_at IS DISTINCT FROM least(a.dst_first_at, b.dst_first)
               OR a.dst_last_at IS DISTINCT FROM greatest(a.dst_last_at, b.dst_last))
        RETURNING 1
    )
    SELECT count(*) FROM widened
$$;

-- Every account's rows already written. One pass over the hot rows: on a large ledger this migration takes as
-- long as reading them once.
SELECT ledger_widen_book_bounds();
