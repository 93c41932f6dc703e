-- Asks the holders of the current leases (token) to stop, one task per
-- element of the arrays, each task at most once: their renewals answer
-- cancel_requested from now on. Rows back as in tasks_plain.sql.
WITH input AS (
    SELECT * FROM UNNEST($1::uuid[], $2::uuid[]) WITH ORDINALITY AS i (id, token, ord)
), upd AS (
    UPDATE tasks t
    SET cancel_requested = true
    FROM input i
    WHERE t.id = i.id AND t.status = 3 AND t.lease_token = i.token
    RETURNING i.ord, t.task_no
)
SELECT i.ord, u.task_no, s.status, s.attempt, s.last_at, s.lease_token
FROM input i
LEFT JOIN upd u ON u.ord = i.ord
LEFT JOIN LATERAL (
    -- OFFSET 0 keeps the subquery whole, so the lookup runs only for a refusal.
    SELECT status, attempt, last_at, lease_token FROM tasks WHERE id = i.id AND u.task_no IS NULL OFFSET 0
) s ON true
ORDER BY i.ord
