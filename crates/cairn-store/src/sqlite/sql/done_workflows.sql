-- The workflows with finished tasks, by name: a skip along tasks_done_step,
-- one seek per workflow however many tasks each has (a loose index scan).
WITH RECURSIVE done (workflow) AS (
    SELECT (SELECT workflow FROM tasks INDEXED BY tasks_done_step
            WHERE finished_at IS NOT NULL ORDER BY workflow LIMIT 1)
    UNION ALL
    SELECT (SELECT t.workflow FROM tasks AS t INDEXED BY tasks_done_step
            WHERE t.workflow > d.workflow AND t.finished_at IS NOT NULL ORDER BY t.workflow LIMIT 1)
    FROM done AS d
    WHERE d.workflow IS NOT NULL
)
SELECT workflow FROM done WHERE workflow IS NOT NULL
