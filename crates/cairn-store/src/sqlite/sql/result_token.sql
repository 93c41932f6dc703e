-- The token a task's posted result was posted under, if any.
SELECT r.token FROM tasks t JOIN task_results r ON r.task_no = t.task_no WHERE t.id = ?1
