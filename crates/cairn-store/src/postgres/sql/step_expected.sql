-- Every step of workflow $1 with finished tasks (a skip along
-- tasks_done_step, as in step_phases.sql) and the execution and total time
-- of its newest $3 tasks that ended with status $2 (COMPLETED): one range
-- of tasks_done_step per step, newest first. One round trip.
WITH RECURSIVE steps (name) AS (
    (SELECT name FROM tasks WHERE workflow = $1 AND finished_at IS NOT NULL ORDER BY name LIMIT 1)
    UNION ALL
    SELECT (SELECT t.name FROM tasks AS t
            WHERE t.workflow = $1 AND t.name > s.name AND t.finished_at IS NOT NULL ORDER BY t.name LIMIT 1)
    FROM steps AS s
    WHERE s.name IS NOT NULL
)
SELECT s.name, x.running_us, x.total_us
FROM steps AS s
CROSS JOIN LATERAL (
    SELECT t.running_us, t.finished_at - t.submitted_at AS total_us
    FROM tasks AS t
    WHERE t.workflow = $1 AND t.name = s.name AND t.status = $2 AND t.finished_at IS NOT NULL
    ORDER BY t.finished_at DESC, t.task_no DESC
    LIMIT $3
) AS x
WHERE s.name IS NOT NULL
