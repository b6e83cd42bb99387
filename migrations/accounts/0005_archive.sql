-- Cold storage (`archive.rs`): the days whose partition was exported to the archive and verified there. A row
-- is written only after the object was read back and matched; `dropped_at` is set in the transaction that
-- drops the partition. Nothing is dropped without a row here.
CREATE TABLE archived_days (
    day             date        PRIMARY KEY,
    object          text        NOT NULL,
    row_count       bigint      NOT NULL CONSTRAINT archived_days_row_count CHECK (row_count >= 0),
    -- SHA-256 of the rows (see archive.rs), and of the file's bytes.
    rows_sha256     text        NOT NULL CONSTRAINT archived_days_rows_sha256 CHECK (rows_sha256 ~ '^[0-9a-f]{64}$'),
    file_sha256     text        NOT NULL CONSTRAINT archived_days_file_sha256 CHECK (file_sha256 ~ '^[0-9a-f]{64}$'),
    file_bytes      bigint      NOT NULL CONSTRAINT archived_days_file_bytes CHECK (file_bytes > 0),
    min_created_at  timestamptz,
    max_created_at  timestamptz,
    verified_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    dropped_at      timestamptz
);
