-- The task_results rows of the tasks of run number ?1 (being deleted).
DELETE FROM task_results WHERE task_no IN (SELECT task_no FROM tasks INDEXED BY tasks_run WHERE run_no = ?1)
