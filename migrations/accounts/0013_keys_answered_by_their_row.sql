-- Keys for free (issue 23): a transfer's or bank transaction's key no longer stores its response. Its answer is
-- the one transaction row the request wrote under the key, shown as `GET` shows it, so the replay is rebuilt
-- from that row: the same bytes (a row never changes). The key's row is written once, at its claim, with the
-- status it will be answered with, instead of being inserted and then updated with a copy of the response.
-- Holds and accounts (whose objects change after the answer) still store theirs.
ALTER TABLE idempotency_keys ADD COLUMN answered_by_row boolean NOT NULL DEFAULT false;

-- A claim answered by its row has its status from the start and never a body; any other is answered by a
-- stored response (NULL until its request has one). Rows written before this migration satisfy it by
-- construction (they all have answered_by_row = false and satisfied the constraint it replaces), so it is not
-- validated: that would scan the table under the lock this migration's transaction holds, stopping every writer.
ALTER TABLE idempotency_keys DROP CONSTRAINT idempotency_keys_response_whole;
ALTER TABLE idempotency_keys ADD CONSTRAINT idempotency_keys_response_whole CHECK (
    CASE WHEN answered_by_row THEN status_code IS NOT NULL AND response_body IS NULL
         ELSE (status_code IS NULL) = (response_body IS NULL) END) NOT VALID;
