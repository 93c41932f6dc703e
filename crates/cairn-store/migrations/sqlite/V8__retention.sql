-- Version 8: retention (src/retention.rs). Deleting a run deletes its label
-- terms, found by the run's number; the same index as the PostgreSQL schema
-- of the same version. SQLite keeps the logs in plain tables (PostgreSQL
-- partitions them): a run's log rows are deleted with it.
CREATE INDEX run_labels_run ON run_labels (run_no);

-- Mirrors the migration version for any SQLite tool.
PRAGMA user_version = 8;
