-- RUNNING -> ?2: only the holder of the current lease (?3) may end the attempt.
-- Whether the task has a queue: only then may a result have been posted. Its
-- run and submission time, for the status counts. The attempt's time goes
-- to the phase RUNNING (V7).
UPDATE tasks
SET status = ?2, last_at = ?4, finished_at = ?5, not_before = ?6,
    running_us = running_us + (?4 - last_at),
    lease_token = NULL, worker = NULL, last_heartbeat_at = NULL, lease_expires_at = NULL,
    lease_ms = NULL, cancel_requested = 0
WHERE id = ?1 AND status = 3 AND lease_token = ?3 AND last_at <= ?4
RETURNING task_no, attempt, queue IS NOT NULL, run_no, submitted_at
