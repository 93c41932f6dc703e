-- A change outside RUNNING, applied only if the task is still in the
-- expected status (?2) and the change is not older than its last one.
-- Whether the task has a queue: only then may an offer of it exist. Its run
-- and submission time, for the status counts. The time since the last
-- change goes to the phase left (V7; never RUNNING here).
UPDATE tasks
SET status = ?3, last_at = ?4, finished_at = ?5,
    blocked_us = blocked_us + CASE WHEN ?2 = 1 THEN ?4 - last_at ELSE 0 END,
    pending_us = pending_us + CASE WHEN ?2 = 2 THEN ?4 - last_at ELSE 0 END
WHERE id = ?1 AND status = ?2 AND last_at <= ?4
RETURNING task_no, queue IS NOT NULL, run_no, submitted_at
