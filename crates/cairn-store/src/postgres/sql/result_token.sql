-- Why a posted result was not written, read again: the task's state and the
-- token its result was posted under, if any.
SELECT t.status, t.attempt, t.last_at, t.lease_token, r.token
FROM tasks t
LEFT JOIN task_results r ON r.task_no = t.task_no
WHERE t.id = $1
