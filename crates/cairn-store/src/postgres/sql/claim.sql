-- A claim: up to $3 offers of the queues $1 ready at $2, oldest first, each
-- leased to worker $4 (actor $5), in one statement (one round trip, its own
-- transaction).
--
-- `picked` walks each queue's offers along task_offers_claim, in order,
-- locking the offer and its task with SKIP LOCKED: an offer another claim
-- (or a withdrawal, or its driver) holds is stepped over, never waited for,
-- so concurrent claims take disjoint offers. Each queue yields at most $3,
-- merged oldest first (with several queues, the few extra locked rows stay
-- untouched until commit). Every picked offer is deleted; its task moves
-- PENDING -> RUNNING as its next attempt, dated $2 or the task's last change
-- if that is later (another server's clock may lag; the wait until then is
-- time PENDING, V7), under a fresh random
-- token (gen_random_uuid, PostgreSQL 13+) for the offer's lease_ms; the
-- attempt record opens and the transition row is appended. An offer whose
-- task left PENDING is deleted and skipped. Each task of a run owned by
-- another server than $6 notifies 'c:<run>:<task>'. The status counts
-- (src/counts.rs) move the claimed tasks from PENDING to RUNNING, minute,
-- hour and day tables in turn, each in key order, as counts_upsert.sql does.
--
-- Rows back: one per task leased, oldest offer first, or a single row of
-- NULLs when none was; each carries the earliest ready_at still in the
-- future among these queues' offers (NULL: none).
WITH queues AS (
    SELECT DISTINCT unnest($1::text[]) AS queue
), picked AS MATERIALIZED (
    SELECT p.*
    FROM queues q,
    LATERAL (
        SELECT o.task_no, o.seq, o.ready_at, o.lease_ms, o.payload
        FROM task_offers o
        JOIN tasks t ON t.task_no = o.task_no
        WHERE o.queue = q.queue AND o.ready_at <= $2
        ORDER BY o.ready_at, o.seq
        LIMIT $3
        FOR UPDATE OF o, t SKIP LOCKED
    ) p
    ORDER BY p.ready_at, p.seq
    LIMIT $3
), taken AS (
    -- By the primary key: the array keeps the planner from hashing the whole table.
    DELETE FROM task_offers WHERE task_no = ANY (ARRAY(SELECT task_no FROM picked))
), upd AS (
    UPDATE tasks t
    SET status = 3, attempt = t.attempt + 1, pending_us = t.pending_us + (GREATEST($2, t.last_at) - t.last_at),
        last_at = GREATEST($2, t.last_at), started_at = GREATEST($2, t.last_at),
        last_heartbeat_at = GREATEST($2, t.last_at),
        lease_expires_at = GREATEST($2, t.last_at) + p.lease_ms * 1000,
        not_before = NULL, lease_token = gen_random_uuid(), worker = $4, lease_ms = p.lease_ms,
        cancel_requested = false,
        progress_percent = NULL, progress_message = NULL, progress_at = NULL
    FROM picked p
    -- The array, again, keeps the planner to the primary key.
    WHERE t.task_no = ANY (ARRAY(SELECT task_no FROM picked)) AND t.task_no = p.task_no AND t.status = 2
    RETURNING t.task_no, t.id, t.run_no, t.attempt, t.last_at AS at, t.lease_expires_at, t.lease_token,
              p.seq, p.ready_at, p.payload, t.submitted_at
), opened AS (
    INSERT INTO attempts (task_no, attempt, worker, started_at)
    SELECT task_no, attempt, $4, at FROM upd
), logged AS (
    INSERT INTO task_transitions (task_no, attempt, from_status, to_status, at, reason, actor)
    SELECT task_no, attempt, 2, 3, at, 'attempt ' || attempt || ' started', $5 FROM upd
), counted AS MATERIALIZED (
    -- The claimed tasks per submission minute (floored) and workflow, each
    -- run's by a lookup (a join would let the planner walk all of `runs`).
    SELECT m.minute, (m.minute - ((m.minute % 60) + 60) % 60) / 60 AS hour,
           (m.minute - ((m.minute % 1440) + 1440) % 1440) / 1440 AS day, m.workflow, count(*) AS n
    FROM (
        SELECT (u.submitted_at - ((u.submitted_at % 60000000) + 60000000) % 60000000) / 60000000 AS minute,
               (SELECT workflow FROM runs r WHERE r.run_no = u.run_no) AS workflow
        FROM upd u
    ) m
    GROUP BY 1, 2, 3, 4
), moved AS (
    SELECT c.minute, c.hour, c.day, c.workflow, s.status, s.sign * c.n AS n
    FROM counted c, (VALUES (2::smallint, -1), (3::smallint, 1)) AS s (status, sign)
), task_minute AS (
    INSERT INTO task_counts_minute AS c (minute, workflow, status, n)
    SELECT minute, workflow, status, sum(n)::bigint FROM moved
    GROUP BY minute, workflow, status
    ORDER BY minute, workflow, status
    ON CONFLICT (minute, workflow, status) DO UPDATE SET n = c.n + excluded.n
    RETURNING 1
), task_hour AS (
    -- After every minute row (an InitPlan, evaluated before its first row).
    INSERT INTO task_counts_hour AS c (hour, workflow, status, n)
    SELECT hour, workflow, status, sum(n)::bigint FROM moved
    WHERE (SELECT count(*) FROM task_minute) >= 0
    GROUP BY hour, workflow, status
    ORDER BY hour, workflow, status
    ON CONFLICT (hour, workflow, status) DO UPDATE SET n = c.n + excluded.n
    RETURNING 1
), task_day AS (
    -- After every hour row.
    INSERT INTO task_counts_day AS c (day, workflow, status, n)
    SELECT day, workflow, status, sum(n)::bigint FROM moved
    WHERE (SELECT count(*) FROM task_hour) >= 0
    GROUP BY day, workflow, status
    ORDER BY day, workflow, status
    ON CONFLICT (day, workflow, status) DO UPDATE SET n = c.n + excluded.n
    RETURNING 1
), next AS (
    SELECT min(x.ready_at) AS ready_at
    FROM queues q,
    LATERAL (
        SELECT ready_at FROM task_offers WHERE queue = q.queue AND ready_at > $2 ORDER BY ready_at LIMIT 1
    ) x
)
SELECT n.ready_at, u.id, r.id, u.attempt, u.at, u.lease_expires_at, u.lease_token, u.payload,
       CASE WHEN u.id IS NOT NULL AND r.owner IS DISTINCT FROM $6
            THEN pg_notify('cairn', 'c:' || r.id || ':' || u.id) END
FROM next n
LEFT JOIN (upd u JOIN runs r ON r.run_no = u.run_no) ON true
ORDER BY u.ready_at, u.seq
