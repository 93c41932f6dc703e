-- Version 4: a cancel of a run asked on any server (Change::RequestRunCancel).
-- A run is driven by one server, its owner, but a user may ask any server to
-- cancel it. The server asked records who asked on the run, and the run's
-- driver hears of it and makes the status changes itself, as it makes every
-- other. NULL while nobody asked; the first asker is kept, also once the run
-- is finished.
ALTER TABLE runs ADD COLUMN cancel_requested_by TEXT;

-- Mirrors the migration version for any SQLite tool.
PRAGMA user_version = 4;
