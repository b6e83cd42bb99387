-- The advances database: a mirror of each advance workflow's state, for listing and reconciliation.
-- The workflow is the source of truth while it runs; these rows are written by its activities.

CREATE TABLE advances (
    id          uuid          PRIMARY KEY,
    account_id  uuid          NOT NULL,
    amount      numeric(20,2) NOT NULL CONSTRAINT advances_amount_positive CHECK (amount > 0),
    status      text          NOT NULL CONSTRAINT advances_status_known
                CHECK (status IN ('granting', 'active', 'completed', 'failed', 'defaulted', 'cancelled')),
    -- The workflow state's revision this row holds: a late, retried write of an older state never wins.
    revision    bigint        NOT NULL DEFAULT 0,
    -- The whole state (schedule included) at `revision`, as the workflow's query returns it.
    state       jsonb         NOT NULL,
    created_at  timestamptz   NOT NULL DEFAULT now(),
    updated_at  timestamptz   NOT NULL DEFAULT now()
);
CREATE INDEX advances_account_id ON advances (account_id, created_at DESC, id DESC);
CREATE INDEX advances_status ON advances (status, created_at DESC, id DESC);

CREATE TABLE payments (
    id              uuid          PRIMARY KEY,
    advance_id      uuid          NOT NULL REFERENCES advances (id),
    number          integer       NOT NULL CONSTRAINT payments_number_positive CHECK (number > 0),
    amount          numeric(20,2) NOT NULL CONSTRAINT payments_amount_not_negative CHECK (amount >= 0),
    due_at          timestamptz,
    status          text          NOT NULL CONSTRAINT payments_status_known
                    CHECK (status IN ('scheduled', 'processing', 'paid', 'failed', 'superseded', 'cancelled')),
    transaction_id  uuid,
    failure_reason  text,
    moved_to        integer,
    CONSTRAINT payments_number_unique UNIQUE (advance_id, number),
    CONSTRAINT payments_paid_has_transaction CHECK ((status = 'paid') = (transaction_id IS NOT NULL))
);

CREATE TABLE alerts (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    advance_id  uuid,
    kind        text        NOT NULL,
    message     text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alerts_created_at ON alerts (created_at DESC, id DESC);
CREATE INDEX alerts_advance_id ON alerts (advance_id, kind);
