-- The newest ?6 tasks of step ?2 of workflow ?1 that ended with status ?3
-- and finished in [?4, ?5), with their phases: one range of
-- tasks_done_step, read from the index alone, newest first.
SELECT finished_at, task_no, blocked_us, pending_us, running_us
FROM tasks INDEXED BY tasks_done_step
WHERE workflow = ?1 AND name = ?2 AND status = ?3 AND finished_at IS NOT NULL
  AND finished_at >= ?4 AND finished_at < ?5
ORDER BY finished_at DESC, task_no DESC
LIMIT ?6
