-- A snapshot taken for a hot standby (REPORT_DATABASE_URL) keeps the primary's WAL position when it was taken.
-- Every page and download of its token waits until the standby serving it has replayed past that position:
-- a different standby behind the same address, or one restarted from an older restartpoint, would otherwise
-- serve a page before it holds every row the snapshot counted. NULL for snapshots read on the primary.
ALTER TABLE report_snapshots ADD COLUMN wal_lsn pg_lsn;
