-- The ledger. Every invariant the service checks in Rust is also a constraint here, so that a bug in one
-- is caught by the other.

CREATE TABLE accounts (
    id          uuid          PRIMARY KEY,
    balance     numeric(20,2) NOT NULL DEFAULT 0
                CONSTRAINT accounts_balance_not_negative CHECK (balance >= 0),
    created_at  timestamptz   NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz   NOT NULL DEFAULT clock_timestamp()
);

-- Append-only: rows are inserted once and never updated or deleted by the service. The report's snapshot
-- semantics rely on that (see report_snapshots).
CREATE TABLE transactions (
    id               uuid          PRIMARY KEY,
    created_at       timestamptz   NOT NULL,
    kind             text          NOT NULL CONSTRAINT transactions_kind CHECK (kind IN ('transfer', 'bank')),
    -- NULL for bank transactions: the bank's side has no account.
    src_account_id   uuid          REFERENCES accounts (id),
    dst_account_id   uuid          NOT NULL REFERENCES accounts (id),
    amount           numeric(15,2) NOT NULL
                     CONSTRAINT transactions_amount_range CHECK (amount > 0 AND amount <= 1000000000000.00),
    direction        text          NOT NULL CONSTRAINT transactions_direction CHECK (direction IN ('debit', 'credit')),
    status           text          NOT NULL CONSTRAINT transactions_status CHECK (status IN ('success', 'fail')),
    -- Why it failed; present exactly when it failed.
    reason           text,
    -- The bank transaction's own description (the request's `reason`).
    description      text          CONSTRAINT transactions_description_length CHECK (length(description) <= 500),
    idempotency_key  text,
    -- The id of the database transaction that inserted the row: a report snapshot includes a row exactly
    -- when this transaction had committed when the snapshot was taken (pg_visible_in_snapshot).
    created_xid      xid8          NOT NULL DEFAULT pg_current_xact_id(),
    CONSTRAINT transactions_reason_iff_failed CHECK ((status = 'fail') = (reason IS NOT NULL)),
    CONSTRAINT transactions_src_iff_transfer CHECK ((kind = 'transfer') = (src_account_id IS NOT NULL)),
    CONSTRAINT transactions_distinct_accounts CHECK (src_account_id IS DISTINCT FROM dst_account_id)
);

-- The report reads newest first; this index serves both the window scan and keyset page seeks.
CREATE INDEX transactions_report_order ON transactions (created_at DESC, id DESC);
CREATE INDEX transactions_idempotency_key ON transactions (idempotency_key) WHERE idempotency_key IS NOT NULL;

-- One row per Idempotency-Key. The row is inserted in the same database transaction that moves the money,
-- so the key and the movement commit (or vanish) together; a concurrent duplicate waits on the unique
-- index until the first one ends, then replays its stored response.
CREATE TABLE idempotency_keys (
    key            text        PRIMARY KEY CONSTRAINT idempotency_keys_length CHECK (length(key) BETWEEN 1 AND 255),
    request_hash   bytea       NOT NULL,
    status_code    smallint    NOT NULL,
    response_body  text        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);

-- A report snapshot: the PostgreSQL snapshot that page 1 was served from, the window, and the totals.
CREATE TABLE report_snapshots (
    id            uuid        PRIMARY KEY,
    snapshot      pg_snapshot NOT NULL,
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    page_limit    integer     NOT NULL CHECK (page_limit BETWEEN 1 AND 1000),
    -- Checkpoints are recorded every `stride` rows (a multiple of page_limit).
    stride        integer     NOT NULL CHECK (stride >= page_limit AND stride % page_limit = 0),
    total_rows    bigint      NOT NULL CHECK (total_rows >= 0),
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    CHECK (window_start <= window_end)
);
CREATE INDEX report_snapshots_created_at ON report_snapshots (created_at);

-- Every stride-th key of a snapshot's window, newest first: page N starts at checkpoint
-- ((N-1)*limit / stride) plus a bounded skip, so a deep page never scans from the top.
CREATE TABLE report_snapshot_checkpoints (
    snapshot_id  uuid        NOT NULL REFERENCES report_snapshots (id) ON DELETE CASCADE,
    seq          integer     NOT NULL,
    created_at   timestamptz NOT NULL,
    id           uuid        NOT NULL,
    PRIMARY KEY (snapshot_id, seq)
);
