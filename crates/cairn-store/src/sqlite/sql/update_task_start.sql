-- PENDING (?2) -> RUNNING: the lease is written with the status, so a
-- RUNNING task always has its start, heartbeat and expiry. The attempt
-- number must move forward, which keeps attempt records unique. A lease its
-- driver grants is never renewed by a claim's rules (lease_ms NULL).
-- Whether the task has a queue: only then may an offer of it exist. Its run
-- and submission time, for the status counts. The wait since the last
-- change is time PENDING (V7).
UPDATE tasks
SET status = 3, attempt = ?3, last_at = ?4, started_at = ?5, not_before = NULL,
    pending_us = pending_us + (?4 - last_at),
    lease_token = ?6, worker = ?7, last_heartbeat_at = ?8, lease_expires_at = ?9,
    lease_ms = NULL, cancel_requested = 0,
    progress_percent = NULL, progress_message = NULL, progress_at = NULL
WHERE id = ?1 AND status = ?2 AND last_at <= ?4 AND attempt < ?3
RETURNING task_no, queue IS NOT NULL, run_no, submitted_at
