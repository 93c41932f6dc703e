-- Extends the lease of the current holder (?2). Heartbeats may arrive out of
-- order, so neither the expiry nor the heartbeat time ever moves back.
-- Progress is replaced only when the heartbeat carries one (?5); details
-- (?8, JSON) only when it carries them.
UPDATE tasks
SET lease_expires_at = MAX(lease_expires_at, ?4),
    last_heartbeat_at = MAX(last_heartbeat_at, ?3),
    progress_percent = CASE WHEN ?5 THEN ?6 ELSE progress_percent END,
    progress_message = CASE WHEN ?5 THEN ?7 ELSE progress_message END,
    progress_at = CASE WHEN ?5 THEN ?3 ELSE progress_at END,
    details = COALESCE(?8, details)
WHERE id = ?1 AND status = 3 AND lease_token = ?2
RETURNING task_no, attempt
