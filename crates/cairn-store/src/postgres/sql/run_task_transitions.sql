SELECT tt.task_no, tt.attempt, tt.from_status, tt.to_status, tt.at, tt.reason, tt.actor
FROM tasks t
JOIN task_transitions tt ON tt.task_no = t.task_no
WHERE t.run_no = $1
ORDER BY tt.task_no, tt.seq
