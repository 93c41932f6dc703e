-- The steps of workflow ?1 with finished tasks, by name: a skip along
-- tasks_done_step, one seek per step (a loose index scan).
WITH RECURSIVE done (name) AS (
    SELECT (SELECT name FROM tasks INDEXED BY tasks_done_step
            WHERE workflow = ?1 AND finished_at IS NOT NULL ORDER BY name LIMIT 1)
    UNION ALL
    SELECT (SELECT t.name FROM tasks AS t INDEXED BY tasks_done_step
            WHERE t.workflow = ?1 AND t.name > d.name AND t.finished_at IS NOT NULL ORDER BY t.name LIMIT 1)
    FROM done AS d
    WHERE d.name IS NOT NULL
)
SELECT name FROM done WHERE name IS NOT NULL
