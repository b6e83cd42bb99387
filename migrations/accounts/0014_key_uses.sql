-- Keys for free (issue 23): a key lookup (`GET /transactions/by_key`, `POST …/by_keys`) finds a key's rows in
-- the day partitions where they are, instead of probing every day's partition (a key holds no date).
--
-- Each use of a key (a claim) writes at most one transaction row under it, in the claim's own database
-- transaction, so that row is dated just after the claim. A claim is kept in `idempotency_keys` for
-- IDEMPOTENCY_KEY_TTL; when it is purged, its use moves here, and stays as long as a row dated after it can be
-- in `transactions` (until its day is archived). A key's uses, current and past, therefore date every row ever
-- written under it while the row is hot; a lookup seeks each row in the day after its use, and probes every
-- partition only for a key with a use that found nothing there (a key whose request wrote no row, such as an
-- account's), or with no use at all.
CREATE TABLE idempotency_key_uses (
    client     text        NOT NULL,
    key        text        NOT NULL,
    claimed_at timestamptz NOT NULL,
    PRIMARY KEY (client, key, claimed_at)
);
CREATE INDEX idempotency_key_uses_claimed_at ON idempotency_key_uses (claimed_at);

-- Every keyed row already written is a use, dated by the row itself (its claim was a moment earlier, so a seek
-- from the row's time finds the row). One pass over the hot rows: on a large ledger, this migration takes as
-- long as reading its keyed rows once. Rows recorded before clients existed (no `recorded_by`) are found by
-- no lookup, as before.
INSERT INTO idempotency_key_uses (client, key, claimed_at)
SELECT recorded_by, idempotency_key, created_at FROM transactions
WHERE idempotency_key IS NOT NULL AND recorded_by IS NOT NULL
ON CONFLICT DO NOTHING;
