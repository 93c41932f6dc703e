-- The newest minute holding a run count: the end of the primary key.
SELECT max(minute) FROM run_counts_minute
