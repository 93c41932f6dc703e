-- Workers' results, one task per element of the arrays, each task at most
-- once, kept only for a RUNNING remote task (one with a queue) under the
-- lease (token) they name. The
-- task's row is share-locked, so ending the attempt (which deletes its
-- result) comes wholly before or after: no result outlives its attempt. A
-- result already there was posted under the same lease (it is deleted with
-- its attempt) and stays as it is. Each result written notifies
-- 'p:<run>:<task>'. One row back per element, in order: the task_no when
-- the lease is current (else NULL), whether this post wrote the result,
-- then, only when refused, the state met.
WITH input AS (
    SELECT *
    FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::bigint[], $5::text[])
        WITH ORDINALITY AS i (id, run, token, at, body, ord)
), held AS (
    SELECT i.ord, t.task_no
    FROM input i
    JOIN tasks t ON t.id = i.id
    WHERE t.status = 3 AND t.lease_token = i.token AND t.queue IS NOT NULL
    FOR SHARE OF t
), posted AS (
    INSERT INTO task_results (task_no, token, at, body)
    SELECT h.task_no, i.token, i.at, i.body
    FROM held h
    JOIN input i ON i.ord = h.ord
    ON CONFLICT (task_no) DO NOTHING
    RETURNING task_no
)
SELECT i.ord, h.task_no, p.task_no IS NOT NULL, s.status, s.attempt, s.last_at, s.lease_token,
       CASE WHEN p.task_no IS NOT NULL THEN pg_notify('cairn', 'p:' || i.run || ':' || i.id) END
FROM input i
LEFT JOIN held h ON h.ord = i.ord
LEFT JOIN posted p ON p.task_no = h.task_no
LEFT JOIN LATERAL (
    -- OFFSET 0 keeps the subquery whole, so the lookup runs only for a refusal.
    SELECT status, attempt, last_at, lease_token FROM tasks WHERE id = i.id AND h.task_no IS NULL OFFSET 0
) s ON true
ORDER BY i.ord
