-- Servicing: written-off advances, prepayments, and what was written off in the book.

ALTER TABLE advances DROP CONSTRAINT advances_status_known;
ALTER TABLE advances ADD CONSTRAINT advances_status_known
    CHECK (status IN ('granting', 'active', 'completed', 'failed', 'defaulted', 'cancelled', 'written_off'));

-- A prepayment is collected ahead of the schedule; every other payment is regular.
ALTER TABLE payments ADD COLUMN kind text NOT NULL DEFAULT 'regular'
    CONSTRAINT payments_kind_known CHECK (kind IN ('regular', 'prepayment'));

ALTER TABLE advances ADD COLUMN written_off numeric(20,2) NOT NULL DEFAULT 0;
ALTER TABLE advances DROP CONSTRAINT advances_exposure_not_negative;
ALTER TABLE advances DROP CONSTRAINT advances_exposure_within_amount;
ALTER TABLE advances
    ADD CONSTRAINT advances_exposure_not_negative
        CHECK (outstanding >= 0 AND paid >= 0 AND defaulted >= 0 AND written_off >= 0),
    ADD CONSTRAINT advances_exposure_within_amount CHECK (outstanding + paid + defaulted + written_off <= amount),
    ADD CONSTRAINT advances_written_off_only_written_off CHECK (written_off = 0 OR status = 'written_off');

ALTER TABLE exposure_book ADD COLUMN written_off numeric(22,2) NOT NULL DEFAULT 0
    CONSTRAINT exposure_book_written_off CHECK (written_off >= 0);

CREATE OR REPLACE FUNCTION exposure_book_follow() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND (OLD.product, OLD.status IN ('granting', 'active'), OLD.outstanding, OLD.paid, OLD.defaulted,
                             OLD.written_off)
        IS NOT DISTINCT FROM (NEW.product, NEW.status IN ('granting', 'active'), NEW.outstanding, NEW.paid, NEW.defaulted,
                              NEW.written_off) THEN
        RETURN NULL;  -- most mirror writes (a payment starting, a check recorded) leave the book as it was
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE exposure_book
           SET open_advances = open_advances - (OLD.status IN ('granting', 'active'))::int,
               outstanding = outstanding - OLD.outstanding, paid = paid - OLD.paid, defaulted = defaulted - OLD.defaulted,
               written_off = written_off - OLD.written_off
         WHERE product = coalesce(OLD.product, '');
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO exposure_book AS b (product, open_advances, outstanding, paid, defaulted, written_off)
        VALUES (coalesce(NEW.product, ''), (NEW.status IN ('granting', 'active'))::int, NEW.outstanding, NEW.paid,
                NEW.defaulted, NEW.written_off)
        ON CONFLICT (product) DO UPDATE
           SET open_advances = b.open_advances + EXCLUDED.open_advances, outstanding = b.outstanding + EXCLUDED.outstanding,
               paid = b.paid + EXCLUDED.paid, defaulted = b.defaulted + EXCLUDED.defaulted,
               written_off = b.written_off + EXCLUDED.written_off;
    END IF;
    RETURN NULL;
END $$;
