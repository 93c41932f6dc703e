-- The execution and total time of the newest ?4 tasks of step ?2 of
-- workflow ?1 that ended with status ?3 (COMPLETED): one range of
-- tasks_done_step, newest first, each row then read for its submission.
SELECT running_us, finished_at - submitted_at
FROM tasks INDEXED BY tasks_done_step
WHERE workflow = ?1 AND name = ?2 AND status = ?3 AND finished_at IS NOT NULL
ORDER BY finished_at DESC, task_no DESC
LIMIT ?4
