-- One task of a search's page by primary key (`page.no`, from the branches
-- before it): the columns of run_tasks.sql, then its run's id and workflow.
SELECT t.task_no, t.id, t.idx, t.name, t.status, t.attempt, t.max_attempts, t.queue,
       t.submitted_at, t.started_at, t.finished_at, t.not_before,
       t.lease_token, t.worker, t.last_heartbeat_at, t.lease_expires_at,
       t.progress_percent, t.progress_message, t.progress_at,
       a.exit_code, a.error, a.outputs, t.details,
       r.id AS run_id, r.workflow AS run_workflow
FROM tasks AS t
JOIN runs AS r ON r.run_no = t.run_no
LEFT JOIN attempts AS a ON a.task_no = t.task_no AND a.attempt = t.attempt
WHERE t.task_no = page.no
