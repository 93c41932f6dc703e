-- Every step of workflow $1 with finished tasks — a skip along
-- tasks_done_step, one seek per step (a loose index scan) — and for each
-- step and each status of $4, the newest $5 tasks that ended so and
-- finished in [$2, $3), with their phases: one range of tasks_done_step
-- per (step, status), read from the index alone, newest first. One round
-- trip for the whole workflow.
WITH RECURSIVE steps (name) AS (
    (SELECT name FROM tasks WHERE workflow = $1 AND finished_at IS NOT NULL ORDER BY name LIMIT 1)
    UNION ALL
    SELECT (SELECT t.name FROM tasks AS t
            WHERE t.workflow = $1 AND t.name > s.name AND t.finished_at IS NOT NULL ORDER BY t.name LIMIT 1)
    FROM steps AS s
    WHERE s.name IS NOT NULL
)
SELECT s.name, x.status, x.finished_at, x.task_no, x.blocked_us, x.pending_us, x.running_us
FROM steps AS s
CROSS JOIN UNNEST($4::smallint[]) AS st (status)
CROSS JOIN LATERAL (
    SELECT t.status, t.finished_at, t.task_no, t.blocked_us, t.pending_us, t.running_us
    FROM tasks AS t
    WHERE t.workflow = $1 AND t.name = s.name AND t.status = st.status AND t.finished_at IS NOT NULL
      AND t.finished_at >= $2 AND t.finished_at < $3
    ORDER BY t.finished_at DESC, t.task_no DESC
    LIMIT $5
) AS x
WHERE s.name IS NOT NULL
