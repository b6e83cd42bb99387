-- Products, and the lender's book: what every advance adds to the exposure, kept beside its state, and the
-- book's totals by product, kept by a trigger in the same transaction as each advance's row.

-- A product's terms never change once added; an operator retires it and adds another. Names are never reused.
CREATE TABLE products (
    name                      text          PRIMARY KEY
                              CONSTRAINT products_name CHECK (name ~ '^[a-z0-9][a-z0-9._-]{0,63}$'),
    payments                  integer       NOT NULL CONSTRAINT products_payments CHECK (payments BETWEEN 1 AND 520),
    interval_ms               bigint        NOT NULL
                              CONSTRAINT products_interval CHECK (interval_ms BETWEEN 1 AND 365 * 86400000::bigint),
    min_amount                numeric(20,2) NOT NULL CONSTRAINT products_min_amount CHECK (min_amount >= payments * 0.01),
    max_amount                numeric(20,2) NOT NULL
                              CONSTRAINT products_max_amount CHECK (max_amount >= min_amount AND max_amount <= 1000000000000),
    max_failed_extra_payments integer       NOT NULL
                              CONSTRAINT products_max_failed CHECK (max_failed_extra_payments BETWEEN 1 AND 520),
    created_at                timestamptz   NOT NULL DEFAULT clock_timestamp(),
    retired_at                timestamptz
);

-- Each advance's part of the book (advances_model::Exposure), written with its state. An advance started before
-- products has none (its terms came from the process's settings).
ALTER TABLE advances
    ADD COLUMN product     text REFERENCES products (name),
    ADD COLUMN outstanding numeric(20,2) NOT NULL DEFAULT 0,
    ADD COLUMN paid        numeric(20,2) NOT NULL DEFAULT 0,
    ADD COLUMN defaulted   numeric(20,2) NOT NULL DEFAULT 0;

UPDATE advances a SET paid = p.paid
  FROM (SELECT advance_id, sum(amount) AS paid FROM payments WHERE status = 'paid' GROUP BY advance_id) p
 WHERE p.advance_id = a.id;
UPDATE advances SET outstanding = amount - paid WHERE status IN ('granting', 'active');
UPDATE advances SET defaulted = amount - paid WHERE status = 'defaulted';

ALTER TABLE advances
    ADD CONSTRAINT advances_exposure_not_negative CHECK (outstanding >= 0 AND paid >= 0 AND defaulted >= 0),
    ADD CONSTRAINT advances_exposure_within_amount CHECK (outstanding + paid + defaulted <= amount),
    ADD CONSTRAINT advances_outstanding_only_open CHECK (outstanding = 0 OR status IN ('granting', 'active')),
    ADD CONSTRAINT advances_defaulted_only_defaulted CHECK (defaulted = 0 OR status = 'defaulted');

-- An account's open advances, read (under the account's lock) by every new advance of the account.
CREATE INDEX advances_open_by_account ON advances (account_id) INCLUDE (outstanding)
    WHERE status IN ('granting', 'active');

-- The book by product ('' for advances from before products): one row each, so the total is a sum of a few
-- rows, however many advances there are.
CREATE TABLE exposure_book (
    product       text          PRIMARY KEY,
    open_advances bigint        NOT NULL DEFAULT 0 CONSTRAINT exposure_book_open CHECK (open_advances >= 0),
    outstanding   numeric(22,2) NOT NULL DEFAULT 0 CONSTRAINT exposure_book_outstanding CHECK (outstanding >= 0),
    paid          numeric(22,2) NOT NULL DEFAULT 0 CONSTRAINT exposure_book_paid CHECK (paid >= 0),
    defaulted     numeric(22,2) NOT NULL DEFAULT 0 CONSTRAINT exposure_book_defaulted CHECK (defaulted >= 0)
);

INSERT INTO exposure_book (product, open_advances, outstanding, paid, defaulted)
SELECT coalesce(product, ''), count(*) FILTER (WHERE status IN ('granting', 'active')), sum(outstanding), sum(paid),
       sum(defaulted)
  FROM advances GROUP BY coalesce(product, '');

CREATE FUNCTION exposure_book_follow() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND (OLD.product, OLD.status IN ('granting', 'active'), OLD.outstanding, OLD.paid, OLD.defaulted)
        IS NOT DISTINCT FROM (NEW.product, NEW.status IN ('granting', 'active'), NEW.outstanding, NEW.paid, NEW.defaulted) THEN
        RETURN NULL;  -- most mirror writes (a payment starting, a check recorded) leave the book as it was
    END IF;
    IF TG_OP IN ('UPDATE', 'DELETE') THEN
        UPDATE exposure_book
           SET open_advances = open_advances - (OLD.status IN ('granting', 'active'))::int,
               outstanding = outstanding - OLD.outstanding, paid = paid - OLD.paid, defaulted = defaulted - OLD.defaulted
         WHERE product = coalesce(OLD.product, '');
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') THEN
        INSERT INTO exposure_book AS b (product, open_advances, outstanding, paid, defaulted)
        VALUES (coalesce(NEW.product, ''), (NEW.status IN ('granting', 'active'))::int, NEW.outstanding, NEW.paid,
                NEW.defaulted)
        ON CONFLICT (product) DO UPDATE
           SET open_advances = b.open_advances + EXCLUDED.open_advances, outstanding = b.outstanding + EXCLUDED.outstanding,
               paid = b.paid + EXCLUDED.paid, defaulted = b.defaulted + EXCLUDED.defaulted;
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER advances_exposure_book AFTER INSERT OR UPDATE OR DELETE ON advances
    FOR EACH ROW EXECUTE FUNCTION exposure_book_follow();
