-- One task by id (the unique index tasks_id), with the result of its current
-- attempt; the columns of run_tasks.sql, then the run's run_no.
SELECT t.task_no, t.id, t.idx, t.name, t.status, t.attempt, t.max_attempts, t.queue,
       t.submitted_at, t.started_at, t.finished_at, t.not_before,
       t.lease_token, t.worker, t.last_heartbeat_at, t.lease_expires_at,
       t.progress_percent, t.progress_message, t.progress_at,
       a.exit_code, a.error, a.outputs, t.details,
       t.run_no
FROM tasks t
LEFT JOIN attempts a ON a.task_no = t.task_no AND a.attempt = t.attempt
WHERE t.id = $1
