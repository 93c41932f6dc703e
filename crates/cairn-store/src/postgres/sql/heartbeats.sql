-- Lease extensions, one task per element of the arrays, each task at most
-- once, each only for the current holder (token). Heartbeats may arrive out
-- of order, so neither the expiry nor the heartbeat time ever moves back.
-- Progress is replaced only when the heartbeat carries one (has_progress);
-- details only when it carries them; a sample of the progress history is
-- kept when asked (sample). Rows back as in tasks_plain.sql.
WITH input AS (
    SELECT *
    FROM UNNEST($1::uuid[], $2::uuid[], $3::bigint[], $4::bigint[], $5::boolean[], $6::real[],
                $7::text[], $8::jsonb[], $9::boolean[])
        WITH ORDINALITY AS i (id, token, at, expires_at, has_progress, percent, message, details,
                              sample, ord)
), upd AS (
    UPDATE tasks t
    SET lease_expires_at = GREATEST(t.lease_expires_at, i.expires_at),
        last_heartbeat_at = GREATEST(t.last_heartbeat_at, i.at),
        progress_percent = CASE WHEN i.has_progress THEN i.percent ELSE t.progress_percent END,
        progress_message = CASE WHEN i.has_progress THEN i.message ELSE t.progress_message END,
        progress_at = CASE WHEN i.has_progress THEN i.at ELSE t.progress_at END,
        details = COALESCE(i.details, t.details)
    FROM input i
    WHERE t.id = i.id AND t.status = 3 AND t.lease_token = i.token
    RETURNING i.ord, t.task_no, t.attempt, i.at, i.percent, i.message, i.has_progress AND i.sample AS keep
), sampled AS (
    INSERT INTO progress_samples (task_no, attempt, at, percent, message)
    SELECT task_no, attempt, at, percent, message FROM upd WHERE keep
    ON CONFLICT (task_no, attempt, at) DO UPDATE SET percent = EXCLUDED.percent, message = EXCLUDED.message
)
SELECT i.ord, u.task_no, s.status, s.attempt, s.last_at, s.lease_token
FROM input i
LEFT JOIN upd u ON u.ord = i.ord
LEFT JOIN LATERAL (
    -- OFFSET 0 keeps the subquery whole, so the lookup runs only for a refusal.
    SELECT status, attempt, last_at, lease_token FROM tasks WHERE id = i.id AND u.task_no IS NULL OFFSET 0
) s ON true
ORDER BY i.ord
