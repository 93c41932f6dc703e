-- The number of the first task submitted at or after the instant whose
-- smallest id is $1 (ids sort by submission time), by tasks_id.
SELECT task_no FROM tasks WHERE id >= $1 ORDER BY id LIMIT 1
