-- Holds (two-phase transfers): money reserved on an account without moving it, then captured (moved, in part or
-- whole, the rest released), voided or expired. The service decides every step inside group commit
-- (`domain::transfer::Balances`); these constraints refuse what it must never write.
--
-- `accounts.held` is the sum of the account's pending holds; what the account can spend is `balance - held`,
-- which never goes below zero. A transfer or bank debit checks it, like a new hold.

ALTER TABLE accounts
    ADD COLUMN held numeric(20,2) NOT NULL DEFAULT 0 CONSTRAINT accounts_held_not_negative CHECK (held >= 0),
    ADD CONSTRAINT accounts_available_not_negative CHECK (balance - held >= 0);

CREATE TABLE holds (
    id                      uuid          PRIMARY KEY,
    account_id              uuid          NOT NULL REFERENCES accounts (id),
    amount                  numeric(15,2) NOT NULL
                            CONSTRAINT holds_amount_range CHECK (amount > 0 AND amount <= 1000000000000.00),
    status                  text          NOT NULL
                            CONSTRAINT holds_status CHECK (status IN ('pending', 'captured', 'voided', 'expired', 'fail')),
    -- Why it failed (`Insufficient funds`); present exactly when it failed.
    reason                  text,
    -- The request's `reason`: what the money is reserved for.
    description             text          NOT NULL CONSTRAINT holds_description_length CHECK (length(description) BETWEEN 1 AND 500),
    created_at              timestamptz   NOT NULL,
    expires_at              timestamptz   NOT NULL,
    -- When it was captured, voided or expired (decided: the time its lock was granted), by which client
    -- (`accounts-service` for an expiry).
    settled_at              timestamptz,
    settled_by              text,
    captured_amount         numeric(15,2),
    -- The capture's transfer or bank debit, and the row releasing what was not captured. No foreign keys: a
    -- transaction's key is (created_at, id), and its day may have left for cold storage.
    capture_transaction_id  uuid,
    release_transaction_id  uuid,
    idempotency_key         text,
    recorded_by             text          NOT NULL,
    CONSTRAINT holds_reason_iff_failed CHECK ((status = 'fail') = (reason IS NOT NULL)),
    CONSTRAINT holds_expiry_after_creation CHECK (expires_at > created_at),
    CONSTRAINT holds_settled_iff_ended CHECK ((status IN ('pending', 'fail')) = (settled_at IS NULL)
                                              AND (settled_at IS NULL) = (settled_by IS NULL)),
    CONSTRAINT holds_capture_iff_captured CHECK ((status = 'captured') = (captured_amount IS NOT NULL)
                                                 AND (status = 'captured') = (capture_transaction_id IS NOT NULL)),
    CONSTRAINT holds_capture_within_amount CHECK (captured_amount > 0 AND captured_amount <= amount),
    -- From `expires_at` on, a hold can only expire: a capture or void is decided before it, an expiry at or after.
    CONSTRAINT holds_expiry_decides CHECK (CASE WHEN status IN ('captured', 'voided') THEN settled_at < expires_at
                                                WHEN status = 'expired' THEN settled_at >= expires_at
                                                ELSE true END),
    -- A void or expiry releases the whole amount; a capture releases the rest, if any.
    CONSTRAINT holds_release_of_the_rest CHECK (
        CASE status WHEN 'voided' THEN release_transaction_id IS NOT NULL
                    WHEN 'expired' THEN release_transaction_id IS NOT NULL
                    WHEN 'captured' THEN (release_transaction_id IS NULL) = (captured_amount = amount)
                    ELSE release_transaction_id IS NULL END)
);

-- The expiry task's queue: the pending holds, soonest first.
CREATE INDEX holds_due ON holds (expires_at) WHERE status = 'pending';
CREATE INDEX holds_account ON holds (account_id, created_at);
CREATE INDEX holds_idempotency_key ON holds (recorded_by, idempotency_key) WHERE idempotency_key IS NOT NULL;

-- A hold ends once: only a pending hold changes, and only its settlement columns (Blnk #41: a void applied twice).
CREATE FUNCTION holds_end_once() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.status <> 'pending' THEN
        RAISE EXCEPTION 'hold % is already %', OLD.id, OLD.status
            USING ERRCODE = 'check_violation', CONSTRAINT = 'holds_end_once';
    END IF;
    IF (NEW.id, NEW.account_id, NEW.amount, NEW.created_at, NEW.expires_at, NEW.recorded_by)
       IS DISTINCT FROM (OLD.id, OLD.account_id, OLD.amount, OLD.created_at, OLD.expires_at, OLD.recorded_by) THEN
        RAISE EXCEPTION 'hold % may change only its settlement', OLD.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'holds_end_once';
    END IF;
    RETURN NEW;
END $$;

CREATE TRIGGER holds_end_once BEFORE UPDATE ON holds FOR EACH ROW EXECUTE FUNCTION holds_end_once();

-- A third kind of row: the release of a hold's money (voided, expired, or the rest of a capture). It moves nothing
-- (its effect on the balance is 0, and its balance-after is the balance), but statements show it, and the
-- report too. Replacing the CHECK scans every hot partition while writes wait (like 0009, in one migration).
ALTER TABLE transactions DROP CONSTRAINT transactions_kind;
ALTER TABLE transactions ADD CONSTRAINT transactions_kind CHECK (kind IN ('transfer', 'bank', 'hold_release'));
