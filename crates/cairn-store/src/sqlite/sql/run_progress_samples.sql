-- Every progress sample of every task of run ?1, task by task (creation
-- order), attempt by attempt, oldest first: for the archive.
SELECT t.id, s.attempt, s.at, s.percent, s.message
FROM runs AS r
JOIN tasks AS t INDEXED BY tasks_run ON t.run_no = r.run_no
JOIN progress_samples AS s ON s.task_no = t.task_no
WHERE r.id = ?1
ORDER BY t.task_no, s.attempt, s.at
