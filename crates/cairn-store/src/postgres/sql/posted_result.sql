-- The result posted for a task's current attempt, with the task's run.
SELECT r.token, r.at, r.body, ru.id
FROM tasks t
JOIN task_results r ON r.task_no = t.task_no
JOIN runs ru ON ru.run_no = t.run_no
WHERE t.id = $1
