-- RUNNING -> ?2: only the holder of the current lease (?3) may end the attempt.
UPDATE tasks
SET status = ?2, last_at = ?4, finished_at = ?5, not_before = ?6,
    lease_token = NULL, worker = NULL, last_heartbeat_at = NULL, lease_expires_at = NULL
WHERE id = ?1 AND status = 3 AND lease_token = ?3 AND last_at <= ?4
RETURNING task_no, attempt
