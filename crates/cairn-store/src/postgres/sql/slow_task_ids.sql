-- The ids of the tasks numbered in $1 and of their runs, for the slowest
-- tasks; by the primary keys.
SELECT t.task_no, t.id, r.id
FROM tasks AS t
JOIN runs AS r ON r.run_no = t.run_no
WHERE t.task_no = ANY ($1::bigint[])
