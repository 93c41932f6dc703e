-- The newest minute holding a task count (NULL: none): the end of the
-- primary key, walked back past rows that came to zero (retention deletes
-- the runs of old minutes, so the newest rows are almost never zero).
SELECT (SELECT minute FROM task_counts_minute WHERE n <> 0 ORDER BY minute DESC LIMIT 1)
