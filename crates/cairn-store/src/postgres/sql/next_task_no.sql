-- The task number the next task will get (a read of the sequence: no
-- number is taken).
SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM tasks_task_no_seq
