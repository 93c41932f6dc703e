-- Offers of PENDING remote tasks (those with a queue) to their queues, one
-- task per element of the arrays, each task at most once. The task's row is
-- locked, so an offer is ordered with a claim of the task and with its
-- driver's own changes: a task no longer PENDING when its lock is granted
-- gets no offer. An offer of the task still waiting is replaced in place (it
-- keeps its seq, its place in line). Each offer written notifies
-- 'o:<queue>' (delivered at commit, repeats merged). Rows back as in
-- tasks_plain.sql.
WITH input AS (
    SELECT *
    FROM UNNEST($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::text[])
        WITH ORDINALITY AS i (id, queue, ready_at, lease_ms, payload, ord)
), task AS (
    SELECT i.ord, t.task_no, t.run_no
    FROM input i
    JOIN tasks t ON t.id = i.id
    WHERE t.status = 2 AND t.queue IS NOT NULL
    FOR UPDATE OF t
), offered AS (
    INSERT INTO task_offers (task_no, run_no, queue, ready_at, lease_ms, payload)
    SELECT k.task_no, k.run_no, i.queue, i.ready_at, i.lease_ms, i.payload
    FROM task k
    JOIN input i ON i.ord = k.ord
    -- New offers take their seq (their place in line) in the batch's order,
    -- whatever order the plan reads the tasks in.
    ORDER BY k.ord
    ON CONFLICT (task_no) DO UPDATE
    SET queue = EXCLUDED.queue, ready_at = EXCLUDED.ready_at, lease_ms = EXCLUDED.lease_ms,
        payload = EXCLUDED.payload
)
SELECT i.ord, k.task_no, s.status, s.attempt, s.last_at, s.lease_token,
       CASE WHEN k.task_no IS NOT NULL THEN pg_notify('cairn', 'o:' || i.queue) END
FROM input i
LEFT JOIN task k ON k.ord = i.ord
LEFT JOIN LATERAL (
    -- OFFSET 0 keeps the subquery whole, so the lookup runs only for a refusal.
    SELECT status, attempt, last_at, lease_token FROM tasks WHERE id = i.id AND k.task_no IS NULL OFFSET 0
) s ON true
ORDER BY i.ord
