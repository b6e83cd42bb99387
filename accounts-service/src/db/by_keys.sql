-- The transactions a client ($1) recorded under its idempotency keys ($2), sought by the keys' uses
-- (`db::ledger::transactions_by_keys` says why each step is sound). Each use of a key (its claim, or a purged
-- claim's use) dates the one row it wrote a moment after it: that row is sought in the hour after the use, in
-- the one day partition (two across midnight) where it is. A use that found nothing there, and a key with no
-- use, come out as a key with no row (`id` NULL), for the caller to seek in every partition.
WITH uses AS (
         SELECT c.key, c.created_at AS at FROM idempotency_keys c WHERE c.client = $1 AND c.key = ANY($2::text[])
         UNION ALL
         SELECT u.key, u.claimed_at FROM idempotency_key_uses u WHERE u.client = $1 AND u.key = ANY($2::text[]))
SELECT a.key, t.id, t.created_at, t.kind, t.src_account_id, t.dst_account_id, t.amount, t.direction, t.status, t.reason, t.description, t.recorded_by
FROM (SELECT DISTINCT k AS key FROM unnest($2::text[]) AS k) a
LEFT JOIN uses u ON u.key = a.key
LEFT JOIN LATERAL (
    -- OFFSET 0 keeps this one seek per use, its partitions pruned by its own hour.
    SELECT t.* FROM transactions t
    WHERE t.recorded_by = $1 AND t.idempotency_key = u.key
      AND t.created_at >= u.at AND t.created_at < u.at + interval '1 hour'
    OFFSET 0) t ON true
