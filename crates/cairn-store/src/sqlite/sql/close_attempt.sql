UPDATE attempts
SET ended_at = ?3, outcome = ?4, exit_code = ?5, error = ?6, outputs = ?7
WHERE task_no = ?1 AND attempt = ?2
