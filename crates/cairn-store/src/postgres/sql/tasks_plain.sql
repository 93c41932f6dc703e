-- Task changes outside RUNNING, one per element of the arrays, each task at
-- most once. Each is a compare-and-set: applied only if the task is still in
-- the expected status and the change is not older than its last one, and
-- then its transition row is appended (and an offer of a task that leaves
-- PENDING deleted). One row back per element, in order:
-- the task_no when applied (else NULL), then, only when refused, the state
-- the compare-and-set met (status NULL: no such task), then, when applied,
-- the task's run and submission time, for the status counts. The time
-- since the task's last change goes to the phase it leaves (V7; never
-- RUNNING here).
WITH input AS (
    SELECT *
    FROM UNNEST($1::uuid[], $2::smallint[], $3::smallint[], $4::bigint[], $5::bigint[],
                $6::integer[], $7::text[], $8::text[])
        WITH ORDINALITY AS i (id, from_status, to_status, at, finished_at, attempt, reason, actor, ord)
), upd AS (
    UPDATE tasks t
    SET status = i.to_status, last_at = i.at, finished_at = i.finished_at,
        blocked_us = t.blocked_us + CASE WHEN t.status = 1 THEN i.at - t.last_at ELSE 0 END,
        pending_us = t.pending_us + CASE WHEN t.status = 2 THEN i.at - t.last_at ELSE 0 END
    FROM input i
    WHERE t.id = i.id AND t.status = i.from_status AND t.last_at <= i.at
    RETURNING i.ord, t.task_no, i.attempt, i.from_status, i.to_status, i.at, i.reason, i.actor,
              t.queue IS NOT NULL AS remote, t.run_no, t.submitted_at
), logged AS (
    INSERT INTO task_transitions (task_no, attempt, from_status, to_status, at, reason, actor)
    SELECT task_no, attempt, from_status, to_status, at, reason, actor FROM upd
), unoffered AS (
    -- No offer outlives its task's PENDING (2) status; only a task with a
    -- queue has one. By the primary key: the array keeps the planner from
    -- hashing the whole table.
    DELETE FROM task_offers
    WHERE task_no = ANY (ARRAY(SELECT task_no FROM upd WHERE from_status = 2 AND remote))
)
SELECT i.ord, u.task_no, s.status, s.attempt, s.last_at, s.lease_token, u.run_no, u.submitted_at
FROM input i
LEFT JOIN upd u ON u.ord = i.ord
LEFT JOIN LATERAL (
    -- OFFSET 0 keeps the subquery whole, so the lookup runs only for a refusal.
    SELECT status, attempt, last_at, lease_token FROM tasks WHERE id = i.id AND u.task_no IS NULL OFFSET 0
) s ON true
ORDER BY i.ord
