-- A task's progress samples, attempt by attempt, oldest first.
SELECT s.attempt, s.at, s.percent, s.message
FROM progress_samples s
JOIN tasks t ON t.task_no = s.task_no
WHERE t.id = $1
ORDER BY s.attempt, s.at
