-- The tasks of run number ?1 (being deleted), with what the status counts
-- need to subtract each.
DELETE FROM tasks INDEXED BY tasks_run WHERE run_no = ?1 RETURNING status, submitted_at
