-- A run status change, applied only from the expected status (?2) and not
-- older than the run's last change. Its submission time and workflow, for
-- the status counts.
UPDATE runs
SET status = ?3, last_at = ?4,
    started_at = COALESCE(?5, started_at),
    finished_at = ?6,
    error = COALESCE(?7, error)
WHERE id = ?1 AND status = ?2 AND last_at <= ?4
RETURNING run_no, submitted_at, workflow
