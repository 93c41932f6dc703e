-- The net change ?4 of the runs of workflow ?2 submitted in hour ?1 with status ?3
-- (src/counts.rs), added once per row at the end of a write transaction.
INSERT INTO run_counts_hour (hour, workflow, status, n)
VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (hour, workflow, status) DO UPDATE SET n = n + excluded.n
