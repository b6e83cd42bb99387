-- Every account's book, lighter to write (issue 21): what a transfer pays for the book, cut where it was measured
-- (BENCHMARKS.md, "Where the book's WAL goes").
--
-- 1. The book indexes key an account's rows by `(account, created_at)`, without the row's `id`: 24 bytes a key
--    instead of 40, so each of a row's two entries is smaller and the indexes, which fill at random places (one
--    place per account), split less often (more entries fit on a page). One account's rows may share a `created_at` (two rows of one
--    batch in the same microsecond); the seeks still return `(created_at, id)` order, the index giving
--    `created_at` and an incremental sort the few ties (`db::statements`, whose plans the tests check).
--
--    Upgrade: the two indexes are built again on every hot partition, and writes wait while that runs (as for
--    any index built on a partitioned table): about as long as reading the hot rows once.
DROP INDEX transactions_src_book;
DROP INDEX transactions_dst_book;
CREATE INDEX transactions_src_book ON transactions (src_account_id, created_at) WHERE src_account_id IS NOT NULL;
CREATE INDEX transactions_dst_book ON transactions (dst_account_id, created_at);

-- 2. Accounts' pages keep a fifth free, so that a balance's update (with the book's bounds, wider than before)
--    fits on its row's page and is a HOT update: no new entry in the accounts' primary key, and less WAL. The
--    pages already written keep what they hold until the table is next rewritten (`VACUUM FULL accounts`);
--    new and moved rows get the room at once.
ALTER TABLE accounts SET (fillfactor = 80);

-- 3. The book's bounds (migration 0015) are days, and an account has them from its creation. The service widens
--    them to the start of the day a writing transaction began and to the end of the day after (`db::movements`):
--    they cover every row the transaction writes, and change at most once a day, so an update of the balance
--    no longer rewrites them each time, and an account a failed row touched is written only when they must grow.
--    Set at creation to the creation day (no row of the account is older) and the day after, the account's row
--    has its full width from the start: a first payment does not grow it. A side where the account never had a
--    row is then sought over those first days only, instead of not at all (an empty seek of a day or two, and
--    none once the window is past them). Accounts created before this migration keep NULL bounds where they had
--    no row, which still means none.
ALTER TABLE accounts
    ALTER COLUMN src_first_at SET DEFAULT date_trunc('day', now(), 'UTC'),
    ALTER COLUMN src_last_at SET DEFAULT date_trunc('day', now(), 'UTC') + interval '2 days',
    ALTER COLUMN dst_first_at SET DEFAULT date_trunc('day', now(), 'UTC'),
    ALTER COLUMN dst_last_at SET DEFAULT date_trunc('day', now(), 'UTC') + interval '2 days';
