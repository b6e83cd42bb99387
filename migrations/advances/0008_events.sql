-- Events out (issue 22): the advances service's outbox, feed and webhooks, the same tables as the ledger's
-- (migrations/accounts/0011_events.sql, which explains each; the code is the `events` crate's). The alerts of
-- this database gain the kind a disabled webhook endpoint raises.

ALTER TABLE alerts DROP CONSTRAINT alerts_kind_known;
ALTER TABLE alerts ADD CONSTRAINT alerts_kind_known CHECK (kind IN (
    'defaulted', 'formula_mismatch', 'ledger_mismatch', 'ledger_refused', 'workflow_not_running', 'webhook_disabled'));

-- Every change's event, written by the change's own transaction. Its position is (xid, seq): the id of the
-- writing transaction, then its number in the sequence. The feed returns only events whose xid is below its
-- snapshot's xmin, in position order, so no event can commit before a position a reader has passed.
CREATE TABLE events (
    xid        xid8        NOT NULL DEFAULT pg_current_xact_id(),
    seq        bigint      GENERATED ALWAYS AS IDENTITY,
    id         uuid        NOT NULL,
    type       text        NOT NULL CONSTRAINT events_type CHECK (type ~ '^[a-z_]{1,32}\.[a-z_]{1,32}$'),
    created_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    -- json, not jsonb: kept byte for byte as the API wrote it (key order included), and cheaper to write.
    data       json        NOT NULL CONSTRAINT events_data CHECK (json_typeof(data) = 'object'),
    PRIMARY KEY (xid, seq)
);

-- The last position deleted past EVENT_RETENTION (moved in the pruning transaction): a cursor before it is
-- refused with 410 instead of being served with a gap.
CREATE TABLE event_horizon (
    one      boolean     PRIMARY KEY DEFAULT true CHECK (one),
    xid      xid8        NOT NULL,
    seq      bigint      NOT NULL,
    moved_at timestamptz
);
INSERT INTO event_horizon (xid, seq) VALUES ('0', 0);

-- A client's webhook endpoints. The secret signs deliveries, so it is kept as it is (a hash could not sign):
-- it is shown to the client once, and this table is as sensitive as the database's credentials.
CREATE TABLE webhook_endpoints (
    id              uuid        PRIMARY KEY,
    client          text        NOT NULL,
    url             text        NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    types           text[]      CHECK (types IS NULL OR cardinality(types) BETWEEN 1 AND 64),
    description     text        CHECK (description IS NULL OR length(description) <= 500),
    secret          text        NOT NULL CHECK (secret LIKE 'whsec\_%'),
    created_at      timestamptz NOT NULL DEFAULT now(),
    -- Events after this position are delivered to it: the fan-out's position when it was made.
    start_xid       xid8        NOT NULL,
    start_seq       bigint      NOT NULL,
    -- After a failure, the endpoint's other deliveries wait until then.
    paused_until    timestamptz NOT NULL DEFAULT '-infinity',
    failing_since   timestamptz,
    disabled_at     timestamptz,
    disabled_reason text,
    CONSTRAINT webhook_endpoints_disabled CHECK ((disabled_at IS NULL) = (disabled_reason IS NULL))
);
CREATE INDEX webhook_endpoints_client ON webhook_endpoints (client, created_at);

-- How far events have been queued for the endpoints: one row, locked by the one instance fanning out.
CREATE TABLE webhook_fanout (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    xid xid8    NOT NULL,
    seq bigint  NOT NULL
);
INSERT INTO webhook_fanout (xid, seq) VALUES ('0', 0);

-- One event waiting for one endpoint. Deleted once delivered; after the last attempt it stays, dead, until a
-- replay revives it.
CREATE TABLE webhook_deliveries (
    endpoint_id     uuid        NOT NULL REFERENCES webhook_endpoints ON DELETE CASCADE,
    xid             xid8        NOT NULL,
    seq             bigint      NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    attempts        integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    leased_until    timestamptz,
    last_error      text,
    dead_at         timestamptz,
    PRIMARY KEY (endpoint_id, xid, seq)
);

-- A replay under way: the endpoint's events in (after, through] are queued again, a batch at a time.
CREATE TABLE webhook_replays (
    endpoint_id uuid   PRIMARY KEY REFERENCES webhook_endpoints ON DELETE CASCADE,
    after_xid   xid8   NOT NULL,
    after_seq   bigint NOT NULL,
    through_xid xid8   NOT NULL,
    through_seq bigint NOT NULL
);
