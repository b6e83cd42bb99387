-- Least privilege: every caller is a client with its own token and scopes, and what it writes is its own.

-- The token is stored only as its SHA-256; it is shown once, by `accounts-service client add`. Names are never
-- reused (a revoked client keeps its row), because they are recorded with every transaction.
CREATE TABLE api_clients (
    name          text        PRIMARY KEY
                  CONSTRAINT api_clients_name CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$' AND name <> 'anonymous'),
    token_sha256  bytea       NOT NULL UNIQUE CONSTRAINT api_clients_token_sha256 CHECK (length(token_sha256) = 32),
    scopes        text[]      NOT NULL CONSTRAINT api_clients_scopes CHECK (cardinality(scopes) > 0),
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    revoked_at    timestamptz
);

-- An Idempotency-Key belongs to the client that sent it: the same key from two clients is two requests.
-- Keys stored before clients existed belong to `anonymous` (what AUTH=off calls every caller).
ALTER TABLE idempotency_keys ADD COLUMN client text NOT NULL DEFAULT 'anonymous';
ALTER TABLE idempotency_keys ALTER COLUMN client DROP DEFAULT;
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_pkey;
ALTER TABLE idempotency_keys ADD PRIMARY KEY (client, key);

-- Who recorded each transaction (the client's name; `anonymous` with AUTH=off). Rows recorded before this
-- migration stay NULL: NOT VALID makes the check hold for every new row without rewriting the old ones.
ALTER TABLE transactions ADD COLUMN recorded_by text;
ALTER TABLE transactions ADD CONSTRAINT transactions_recorded_by_present CHECK (recorded_by IS NOT NULL) NOT VALID;
DROP INDEX transactions_idempotency_key;
CREATE INDEX transactions_idempotency_key ON transactions (recorded_by, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
