-- The task_offers rows of the tasks of run number ?1 (being deleted).
DELETE FROM task_offers WHERE task_no IN (SELECT task_no FROM tasks INDEXED BY tasks_run WHERE run_no = ?1)
