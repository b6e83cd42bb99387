-- The statement that writes a group's rows (db/movements.rs, write_rows, as of 408af89) for 16 transfers among 32
-- random accounts of 100 000 ('00000000-0000-0000-0000-000000000001' onwards), each row with its balances after,
-- each account's balance and book bounds updated, each row's event: prepared as `write_group`, for
-- write-callgrind.sh. The arrays the service binds are drawn here instead.
PREPARE write_group AS
WITH day AS MATERIALIZED (
     SELECT date_trunc('day', now(), 'UTC') AS first,
            date_trunc('day', now(), 'UTC') + interval '2 days' AS last),
 ids AS MATERIALIZED (SELECT array_agg(('00000000-0000-0000-0000-' || lpad((1+floor(random()*100000))::int::text, 12, '0'))::uuid) AS ids FROM generate_series(1, 32) g),
 pairs AS (SELECT i, ids[2*i-1] AS src, ids[2*i] AS dst FROM ids, generate_series(1, 16) i WHERE ids[2*i-1] <> ids[2*i]),
 written AS (
     INSERT INTO transactions AS t
         (id, created_at, kind, src_account_id, dst_account_id, amount, direction, status, reason,
          description, idempotency_key, recorded_by, src_balance_after, dst_balance_after)
     SELECT gen_random_uuid(), clock_timestamp(), 'transfer', src, dst, 1, 'credit', 'success', NULL, NULL, 'k' || random(), 'bench', 999999.99 - i, 1000001.01 + i
     FROM pairs ORDER BY i
     RETURNING t.id, t.created_at, t.kind, t.src_account_id, t.dst_account_id, t.amount, t.direction, t.status, t.reason, t.description, t.recorded_by),
 moved AS (
     UPDATE accounts a
     SET balance = coalesce(v.balance, a.balance), held = coalesce(v.held, a.held),
         updated_at = CASE WHEN v.balance IS NULL THEN a.updated_at ELSE clock_timestamp() END,
         src_first_at = CASE WHEN v.paid THEN least(a.src_first_at, d.first) ELSE a.src_first_at END,
         src_last_at = CASE WHEN v.paid THEN greatest(a.src_last_at, d.last) ELSE a.src_last_at END,
         dst_first_at = CASE WHEN v.received THEN least(a.dst_first_at, d.first) ELSE a.dst_first_at END,
         dst_last_at = CASE WHEN v.received THEN greatest(a.dst_last_at, d.last) ELSE a.dst_last_at END
     FROM (SELECT DISTINCT id, 1000000::numeric AS balance, 0::numeric AS held, true AS paid, true AS received FROM ids, unnest(ids) id) AS v,
          day AS d
     WHERE a.id = v.id
       AND (v.balance IS NOT NULL
            OR v.paid AND (a.src_first_at IS NULL OR a.src_first_at > d.first OR a.src_last_at < d.last)
            OR v.received AND (a.dst_first_at IS NULL OR a.dst_first_at > d.first OR a.dst_last_at < d.last))),
 noted AS (
     INSERT INTO events (id, type, subject, subject_at)
     SELECT gen_random_uuid(), 'transaction.succeeded', w.id, w.created_at FROM written w)
 SELECT count(*) FROM written
