-- An attempt ended: the result posted for it has been applied.
DELETE FROM task_results WHERE task_no = ?1
