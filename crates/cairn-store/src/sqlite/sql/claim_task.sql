-- PENDING -> RUNNING by a claim: the next attempt, leased to worker ?4 under
-- token ?3 for ?5 ms, dated ?2 or the task's last change if that is later
-- (another server's clock may lag). No row back: the task left PENDING. Its
-- run and submission time, for the status counts. The wait until the
-- claim is time PENDING (V7).
UPDATE tasks
SET status = 3, attempt = attempt + 1, pending_us = pending_us + (MAX(?2, last_at) - last_at),
    last_at = MAX(?2, last_at), started_at = MAX(?2, last_at), last_heartbeat_at = MAX(?2, last_at),
    lease_expires_at = MAX(?2, last_at) + ?5 * 1000,
    not_before = NULL, lease_token = ?3, worker = ?4, lease_ms = ?5, cancel_requested = 0,
    progress_percent = NULL, progress_message = NULL, progress_at = NULL
WHERE task_no = ?1 AND status = 2
RETURNING id, attempt, last_at, lease_expires_at, run_no, submitted_at
