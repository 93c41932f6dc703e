-- One task's attempts in order (the primary key).
SELECT attempt, worker, started_at, ended_at, outcome, exit_code, error
FROM attempts
WHERE task_no = $1
ORDER BY attempt
