-- A claimed key's response is NULL until its request has one, instead of the sentinel `status_code = 0,
-- response_body = ''`: a claim is inserted and given its response in the same database transaction, so a
-- committed row without a response can only be a bug, which the service reports instead of replaying it.
--
-- Upgrade: a version before this one claims keys with the sentinel, which the new CHECK refuses: stop the older
-- instances before starting this one (a rolling deploy across this migration answers 500 to the older
-- instances' keyed requests until they are gone; no money moves for them).
ALTER TABLE idempotency_keys ALTER COLUMN status_code DROP NOT NULL, ALTER COLUMN response_body DROP NOT NULL;
-- No committed row can hold the sentinel; the statement only makes that explicit for the constraint below.
UPDATE idempotency_keys SET status_code = NULL, response_body = NULL WHERE status_code = 0;
ALTER TABLE idempotency_keys
    ADD CONSTRAINT idempotency_keys_response_whole CHECK ((status_code IS NULL) = (response_body IS NULL)),
    ADD CONSTRAINT idempotency_keys_status_http CHECK (status_code BETWEEN 100 AND 599);
