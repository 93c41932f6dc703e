-- The newest minute holding a run count: the end of the primary key.
SELECT MAX(minute) FROM run_counts_minute
