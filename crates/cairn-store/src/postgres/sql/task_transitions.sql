-- One task's log in order (the primary key).
SELECT attempt, from_status, to_status, at, reason, actor
FROM task_transitions
WHERE task_no = $1
ORDER BY seq
