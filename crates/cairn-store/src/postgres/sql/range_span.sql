-- Whether tasks are left in the range of task numbers [$1, $2), and the
-- submission times of its first and last: two probes of the primary key.
SELECT (SELECT submitted_at FROM tasks WHERE task_no >= $1 AND task_no < $2 ORDER BY task_no LIMIT 1),
       (SELECT submitted_at FROM tasks WHERE task_no >= $1 AND task_no < $2 ORDER BY task_no DESC LIMIT 1)
