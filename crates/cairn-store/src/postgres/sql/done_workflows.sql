-- The workflows with finished tasks, by name: a skip along tasks_done_step,
-- one seek per workflow however many tasks each has (a loose index scan).
WITH RECURSIVE done (workflow) AS (
    (SELECT workflow FROM tasks WHERE finished_at IS NOT NULL ORDER BY workflow LIMIT 1)
    UNION ALL
    SELECT (SELECT t.workflow FROM tasks AS t
            WHERE t.workflow > d.workflow AND t.finished_at IS NOT NULL ORDER BY t.workflow LIMIT 1)
    FROM done AS d
    WHERE d.workflow IS NOT NULL
)
SELECT workflow FROM done WHERE workflow IS NOT NULL
