SELECT a.task_no, a.attempt, a.worker, a.started_at, a.ended_at, a.outcome, a.exit_code, a.error
FROM tasks t
JOIN attempts a ON a.task_no = t.task_no
WHERE t.run_no = $1
ORDER BY a.task_no, a.attempt
