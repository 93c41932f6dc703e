-- Renewals of claimed leases, one task per element of the arrays, each task
-- at most once: only for the current holder (token), only while the lease
-- has not expired at `at`, and only for a lease a claim granted (lease_ms),
-- which each renewal extends by as much from `at`. As for heartbeats,
-- neither the heartbeat time nor the expiry ever moves back; progress is
-- replaced only when the renewal carries one, details only when it carries
-- them. One row back per element, in order: the new expiry and whether a
-- cancel was asked, or NULLs for a stale lease (nothing written).
WITH input AS (
    SELECT *
    FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::boolean[], $5::real[], $6::text[], $7::jsonb[])
        WITH ORDINALITY AS i (id, token, at, has_progress, percent, message, details, ord)
), upd AS (
    UPDATE tasks t
    SET last_heartbeat_at = GREATEST(t.last_heartbeat_at, i.at),
        lease_expires_at = GREATEST(t.lease_expires_at, i.at + t.lease_ms * 1000),
        progress_percent = CASE WHEN i.has_progress THEN i.percent ELSE t.progress_percent END,
        progress_message = CASE WHEN i.has_progress THEN i.message ELSE t.progress_message END,
        progress_at = CASE WHEN i.has_progress THEN i.at ELSE t.progress_at END,
        details = COALESCE(i.details, t.details)
    FROM input i
    WHERE t.id = i.id AND t.status = 3 AND t.lease_token = i.token AND t.lease_ms IS NOT NULL
      AND t.lease_expires_at >= i.at
    RETURNING i.ord, t.lease_expires_at, t.cancel_requested
)
SELECT i.ord, u.lease_expires_at, u.cancel_requested
FROM input i
LEFT JOIN upd u ON u.ord = i.ord
ORDER BY i.ord
