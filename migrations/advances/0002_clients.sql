-- Least privilege: every caller of the advances-api is a client with its own token and scopes. The token is
-- stored only as its SHA-256; it is shown once, by `advances-api client add`. Names are never reused.
CREATE TABLE api_clients (
    name          text        PRIMARY KEY
                  CONSTRAINT api_clients_name CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$' AND name <> 'anonymous'),
    token_sha256  bytea       NOT NULL UNIQUE CONSTRAINT api_clients_token_sha256 CHECK (length(token_sha256) = 32),
    scopes        text[]      NOT NULL CONSTRAINT api_clients_scopes CHECK (cardinality(scopes) > 0),
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    revoked_at    timestamptz
);
