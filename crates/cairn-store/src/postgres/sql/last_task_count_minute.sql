-- The newest minute holding a task count: the end of the primary key.
SELECT max(minute) FROM task_counts_minute
