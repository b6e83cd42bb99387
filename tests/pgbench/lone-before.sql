-- One keyed transfer as the ledger before issue 19 sent it on its own (2d1260f, ledger.rs): nine statements.
-- See BENCHMARKS.md ("One money path") for how it is run beside lone-group.sql.
\set a random(1, 5000)
\set b random(5001, 10000)
\set k random(1, 1000000000000)
BEGIN;
SET LOCAL lock_timeout = 5000;
SELECT pg_advisory_xact_lock(hashtextextended('bench' || ' ' || 'k' || :k, 0));
INSERT INTO idempotency_keys (client, key, request_hash) VALUES ('bench', 'k' || :k, '\x0011') ON CONFLICT (client, key) DO NOTHING;
SET LOCAL lock_timeout = 0;
SELECT id, balance FROM accounts WHERE id = ANY(ARRAY[('00000000-0000-0000-0000-' || lpad(:a::text, 12, '0'))::uuid, ('00000000-0000-0000-0000-' || lpad(:b::text, 12, '0'))::uuid]) ORDER BY id FOR NO KEY UPDATE;
UPDATE accounts SET balance = balance - 1, updated_at = clock_timestamp() WHERE id = ('00000000-0000-0000-0000-' || lpad(:a::text, 12, '0'))::uuid;
UPDATE accounts SET balance = balance + 1, updated_at = clock_timestamp() WHERE id = ('00000000-0000-0000-0000-' || lpad(:b::text, 12, '0'))::uuid;
INSERT INTO transactions AS t (id, created_at, kind, src_account_id, dst_account_id, amount, direction, status, idempotency_key, recorded_by) VALUES (gen_random_uuid(), clock_timestamp(), 'transfer', ('00000000-0000-0000-0000-' || lpad(:a::text, 12, '0'))::uuid, ('00000000-0000-0000-0000-' || lpad(:b::text, 12, '0'))::uuid, 1, 'credit', 'success', 'k' || :k, 'bench') RETURNING t.id, t.created_at, t.kind, t.src_account_id, t.dst_account_id, t.amount, t.direction, t.status, t.reason, t.description, t.recorded_by;
UPDATE idempotency_keys SET status_code = 201, response_body = '{"transaction_id":"x","a":"a response body of some length, about two hundred bytes, as the service stores it for a transfer"}' WHERE client = 'bench' AND key = 'k' || :k;
COMMIT;
