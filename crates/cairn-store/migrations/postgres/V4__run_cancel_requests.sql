-- Version 4: a cancel of a run asked on any server (Change::RequestRunCancel).
-- A run is driven by one server, its owner, but a user may ask any server to
-- cancel it. The server asked records who asked on the run and notifies
-- 'x:<run>', and the run's driver, on whichever server it runs, hears of it
-- and makes the status changes itself, as it makes every other. NULL while
-- nobody asked; the first asker is kept, also once the run is finished. The
-- same records as the SQLite schema of the same version. Adding the column
-- rewrites nothing (it has no default).
ALTER TABLE runs ADD COLUMN cancel_requested_by text;
