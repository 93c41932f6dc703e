-- The net change ?4 of the runs of workflow ?2 submitted in day ?1 with status ?3
-- (src/counts.rs), added once per row at the end of a write transaction.
INSERT INTO run_counts_day (day, workflow, status, n)
VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (day, workflow, status) DO UPDATE SET n = n + excluded.n
