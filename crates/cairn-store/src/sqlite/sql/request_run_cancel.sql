-- Records that a cancel of a run not yet finished (QUEUED, RUNNING) was
-- asked, and by whom (?2); the first asker is kept. No row back: no such
-- run, or it is finished.
UPDATE runs
SET cancel_requested_by = COALESCE(cancel_requested_by, ?2)
WHERE id = ?1 AND status IN (0, 1)
RETURNING run_no
