-- PENDING -> RUNNING, one task per element of the arrays, each task at most
-- once. The lease is written with the status, so a RUNNING task always has
-- its start, heartbeat and expiry; the attempt record opens and the
-- transition row is appended, or nothing happens. The attempt number must
-- move forward, which keeps attempt records unique. A lease its driver
-- grants is never renewed by a claim's rules (lease_ms NULL), and an offer of
-- the task is deleted. Rows back as in tasks_plain.sql (with the run and
-- submission time of an applied change, for the status counts). The wait
-- since the task's last change is time PENDING (V7).
WITH input AS (
    SELECT *
    FROM UNNEST($1::uuid[], $2::smallint[], $3::integer[], $4::bigint[], $5::bigint[], $6::uuid[],
                $7::text[], $8::bigint[], $9::bigint[], $10::text[], $11::text[])
        WITH ORDINALITY AS i (id, from_status, attempt, at, started_at, token, worker, heartbeat_at,
                              expires_at, reason, actor, ord)
), upd AS (
    UPDATE tasks t
    SET status = 3, attempt = i.attempt, last_at = i.at, started_at = i.started_at, not_before = NULL,
        pending_us = t.pending_us + (i.at - t.last_at),
        lease_token = i.token, worker = i.worker, last_heartbeat_at = i.heartbeat_at,
        lease_expires_at = i.expires_at, lease_ms = NULL, cancel_requested = false,
        progress_percent = NULL, progress_message = NULL, progress_at = NULL
    FROM input i
    WHERE t.id = i.id AND t.status = i.from_status AND t.last_at <= i.at AND t.attempt < i.attempt
    RETURNING i.ord, t.task_no, i.attempt, i.from_status, i.at, i.started_at, i.worker, i.reason, i.actor,
              t.queue IS NOT NULL AS remote, t.run_no, t.submitted_at
), opened AS (
    INSERT INTO attempts (task_no, attempt, worker, started_at)
    SELECT task_no, attempt, worker, started_at FROM upd
), logged AS (
    INSERT INTO task_transitions (task_no, attempt, from_status, to_status, at, reason, actor)
    SELECT task_no, attempt, from_status, 3, at, reason, actor FROM upd
), unoffered AS (
    -- Only a task with a queue has one. By the primary key: the array keeps
    -- the planner from hashing the whole table.
    DELETE FROM task_offers WHERE task_no = ANY (ARRAY(SELECT task_no FROM upd WHERE remote))
)
SELECT i.ord, u.task_no, s.status, s.attempt, s.last_at, s.lease_token, u.run_no, u.submitted_at
FROM input i
LEFT JOIN upd u ON u.ord = i.ord
LEFT JOIN LATERAL (
    -- OFFSET 0 keeps the subquery whole, so the lookup runs only for a refusal.
    SELECT status, attempt, last_at, lease_token FROM tasks WHERE id = i.id AND u.task_no IS NULL OFFSET 0
) s ON true
ORDER BY i.ord
