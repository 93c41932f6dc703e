-- RUNNING -> to_status, one task per element of the arrays, each task at
-- most once: only the holder of the current lease (token) may end the
-- attempt. The lease (and any cancel asked of it) is cleared, the attempt
-- record closed with its result, the result posted for it deleted and the
-- transition row appended. One row back per element, in order: the
-- task_no when applied (else NULL), the attempt it ended and whether that
-- attempt's record was closed (it must be, or the store is corrupt), then,
-- only when refused, the state the compare-and-set met, then, when applied,
-- the task's run and submission time, for the status counts. The
-- attempt's time goes to the phase RUNNING (V7).
WITH input AS (
    SELECT *
    FROM UNNEST($1::uuid[], $2::smallint[], $3::uuid[], $4::bigint[], $5::bigint[], $6::bigint[],
                $7::smallint[], $8::integer[], $9::text[], $10::jsonb[], $11::integer[], $12::text[],
                $13::text[])
        WITH ORDINALITY AS i (id, to_status, token, at, finished_at, not_before, outcome, exit_code,
                              error, outputs, attempt, reason, actor, ord)
), upd AS (
    UPDATE tasks t
    SET status = i.to_status, last_at = i.at, finished_at = i.finished_at, not_before = i.not_before,
        running_us = t.running_us + (i.at - t.last_at),
        lease_token = NULL, worker = NULL, last_heartbeat_at = NULL, lease_expires_at = NULL,
        lease_ms = NULL, cancel_requested = false
    FROM input i
    WHERE t.id = i.id AND t.status = 3 AND t.lease_token = i.token AND t.last_at <= i.at
    RETURNING i.ord, t.task_no, t.attempt AS ended, i.to_status, i.at, i.outcome, i.exit_code,
              i.error, i.outputs, i.attempt, i.reason, i.actor, t.queue IS NOT NULL AS remote,
              t.run_no, t.submitted_at
), closed AS (
    UPDATE attempts a
    SET ended_at = u.at, outcome = u.outcome, exit_code = u.exit_code, error = u.error, outputs = u.outputs
    FROM upd u
    WHERE a.task_no = u.task_no AND a.attempt = u.ended
    RETURNING u.ord
), logged AS (
    INSERT INTO task_transitions (task_no, attempt, from_status, to_status, at, reason, actor)
    SELECT task_no, attempt, 3, to_status, at, reason, actor FROM upd
), applied AS (
    -- The result posted for the attempt, if any, is applied now.
    -- Only a task with a queue has one. By the primary key: the array keeps
    -- the planner from hashing the whole table.
    DELETE FROM task_results WHERE task_no = ANY (ARRAY(SELECT task_no FROM upd WHERE remote))
)
SELECT i.ord, u.task_no, u.ended, c.ord IS NOT NULL, s.status, s.attempt, s.last_at, s.lease_token,
       u.run_no, u.submitted_at
FROM input i
LEFT JOIN upd u ON u.ord = i.ord
LEFT JOIN closed c ON c.ord = i.ord
LEFT JOIN LATERAL (
    -- OFFSET 0 keeps the subquery whole, so the lookup runs only for a refusal.
    SELECT status, attempt, last_at, lease_token FROM tasks WHERE id = i.id AND u.task_no IS NULL OFFSET 0
) s ON true
ORDER BY i.ord
