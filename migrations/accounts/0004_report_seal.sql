-- A report's first page in time that does not grow with its window.
--
-- The seal: every row with `created_at` before `report_seal.frontier` is committed, and no row dated before it
-- will ever be inserted. The service moves the frontier forward (`db::seal`) only after PostgreSQL shows that
-- every database transaction that could still insert a row dated before it has ended: rows are dated by
-- `clock_timestamp()` after their transaction has taken its id (it locks its accounts first), and the sealer
-- reads the clock before it takes an id of its own: a transaction with a newer id dates its rows after that
-- reading, and once every transaction with an older id has ended, nothing can be dated before it any more.
--
-- Sealed rows are numbered in (created_at, id) order, once, as they are sealed. Every 100th row, and the first
-- row of every UTC day, is kept as a mark with its number. The number of sealed rows before any time is then
-- one mark lookup plus a count of fewer than 100 rows, however many rows there are; a report snapshot needs two
-- such lookups and a live count of the rows dated after the frontier (seconds of traffic).

CREATE TABLE report_seal (
    only_row         boolean     PRIMARY KEY DEFAULT true CONSTRAINT report_seal_one_row CHECK (only_row),
    -- Nothing is sealed at first: the Unix epoch is before any row (and, unlike -infinity, a time every client
    -- library can read).
    frontier         timestamptz NOT NULL DEFAULT '1970-01-01 00:00:00+00',
    -- Rows sealed so far, ever (archived ones included): the number the next sealed row gets.
    next_num         bigint      NOT NULL DEFAULT 0 CONSTRAINT report_seal_next_num CHECK (next_num >= 0),
    -- The newest sealed row's time: whether the next sealed row opens a new UTC day.
    last_created_at  timestamptz,
    sealed_at        timestamptz
);
INSERT INTO report_seal DEFAULT VALUES;

CREATE TABLE report_marks (
    num         bigint      PRIMARY KEY CONSTRAINT report_marks_num CHECK (num >= 0),
    created_at  timestamptz NOT NULL,
    id          uuid        NOT NULL
);
CREATE UNIQUE INDEX report_marks_key ON report_marks (created_at, id);

-- The number of sealed rows dated before `t`, which must not be after the frontier. The latest mark before `t`
-- plus the rows from it up to `t` (fewer than 100). With no mark before `t`, no retained row is before it either
-- (the oldest retained row is the first of its day, a mark), so it is the oldest mark's number; with no mark at
-- all, every sealed row was archived.
CREATE FUNCTION report_rows_before(t timestamptz) RETURNS bigint
LANGUAGE sql STABLE AS $$
    SELECT coalesce(
        (SELECT m.num + (SELECT count(*) FROM transactions x
                         WHERE x.created_at >= m.created_at AND x.created_at < t
                           AND (x.created_at, x.id) >= (m.created_at, m.id))
         FROM report_marks m WHERE m.created_at < t ORDER BY m.created_at DESC, m.id DESC LIMIT 1),
        (SELECT min(num) FROM report_marks),
        (SELECT next_num FROM report_seal))
$$;

-- A row dated before the frontier would silently make every count after it wrong. The service never writes
-- one; this refuses anyone who tries (a backfill, a hand-written INSERT), per statement.
CREATE FUNCTION transactions_after_seal() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    sealed timestamptz;
    earliest timestamptz;
BEGIN
    SELECT frontier INTO sealed FROM report_seal;
    SELECT min(created_at) INTO earliest FROM inserted;
    IF earliest < sealed THEN
        RAISE EXCEPTION 'transaction rows dated % are before the report seal (%): rows are dated as they are inserted',
            earliest, sealed USING ERRCODE = 'check_violation', CONSTRAINT = 'transactions_after_seal';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER transactions_after_seal AFTER INSERT ON transactions
    REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION transactions_after_seal();

-- Snapshots no longer keep checkpoints of their own: they read the shared marks. Tokens taken before this
-- migration (at most REPORT_SNAPSHOT_TTL old) are forgotten and answer 404.
DROP TABLE report_snapshot_checkpoints;
TRUNCATE report_snapshots;
ALTER TABLE report_snapshots
    DROP COLUMN stride,
    -- The frontier when the snapshot was taken: rows before it are read through the marks, rows after it live.
    ADD COLUMN frontier    timestamptz NOT NULL,
    -- The number of sealed rows up to the window's end (the marks' numbering): where the sealed part starts.
    ADD COLUMN sealed_top  bigint      NOT NULL,
    -- Rows of the window dated after the frontier and visible in the snapshot: they come first.
    ADD COLUMN open_rows   bigint      NOT NULL CONSTRAINT report_snapshots_open_rows CHECK (open_rows >= 0);
