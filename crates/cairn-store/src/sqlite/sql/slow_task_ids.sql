-- The ids of task number ?1 and of its run, for the slowest tasks.
SELECT t.id, r.id FROM tasks AS t JOIN runs AS r ON r.run_no = t.run_no WHERE t.task_no = ?1
