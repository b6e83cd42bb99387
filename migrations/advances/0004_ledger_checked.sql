-- Reconciliation checks each settled payment (and each grant) against the ledger once, soon after it settles,
-- and remembers it: the ledger moves days past HOT_RETENTION_DAYS to cold storage, and a check that needed
-- those rows would then fail. A payment whose amount, status or transaction changes is checked again.
ALTER TABLE payments ADD COLUMN ledger_checked_at timestamptz;
ALTER TABLE advances ADD COLUMN grant_checked_at timestamptz;

CREATE FUNCTION payments_recheck_on_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.amount, NEW.status, NEW.transaction_id) IS DISTINCT FROM (OLD.amount, OLD.status, OLD.transaction_id) THEN
        NEW.ledger_checked_at := NULL;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER payments_recheck_on_change BEFORE UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION payments_recheck_on_change();

CREATE FUNCTION advances_recheck_grant_on_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF (NEW.amount, NEW.account_id) IS DISTINCT FROM (OLD.amount, OLD.account_id) THEN
        NEW.grant_checked_at := NULL;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER advances_recheck_grant_on_change BEFORE UPDATE ON advances
    FOR EACH ROW EXECUTE FUNCTION advances_recheck_grant_on_change();

-- The settled payments still to check, found without reading the ones already checked.
CREATE INDEX payments_unchecked ON payments (advance_id) WHERE status IN ('paid', 'failed') AND ledger_checked_at IS NULL;
