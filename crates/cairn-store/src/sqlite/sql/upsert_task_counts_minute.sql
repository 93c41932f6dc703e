-- The net change ?4 of the tasks of workflow ?2 submitted in minute ?1 with status ?3
-- (src/counts.rs), added once per row at the end of a write transaction.
INSERT INTO task_counts_minute (minute, workflow, status, n)
VALUES (?1, ?2, ?3, ?4)
ON CONFLICT (minute, workflow, status) DO UPDATE SET n = n + excluded.n
