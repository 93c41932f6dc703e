-- Pinned to the reaper's partial index: without statistics SQLite would
-- rather walk tasks_status (V6) and sort every RUNNING task.
SELECT lease_expires_at FROM tasks INDEXED BY tasks_lease_expiry WHERE status = 3 ORDER BY lease_expires_at LIMIT 1
