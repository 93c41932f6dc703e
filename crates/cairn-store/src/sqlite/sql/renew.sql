-- A renewal of a claimed lease (?2 the holder's token) by its lease_ms from
-- ?3, only while it has not expired at ?3. As for heartbeats, neither the
-- heartbeat time nor the expiry ever moves back; progress is replaced when
-- the renewal carries one (?4), details (?7, JSON) when it carries them.
UPDATE tasks
SET last_heartbeat_at = MAX(last_heartbeat_at, ?3),
    lease_expires_at = MAX(lease_expires_at, ?3 + lease_ms * 1000),
    progress_percent = CASE WHEN ?4 THEN ?5 ELSE progress_percent END,
    progress_message = CASE WHEN ?4 THEN ?6 ELSE progress_message END,
    progress_at = CASE WHEN ?4 THEN ?3 ELSE progress_at END,
    details = COALESCE(?7, details)
WHERE id = ?1 AND status = 3 AND lease_token = ?2 AND lease_ms IS NOT NULL AND lease_expires_at >= ?3
RETURNING lease_expires_at, cancel_requested
