-- The net changes of the status counts of one batch (src/counts.rs), added
-- at its very end, just before the commit: one element per (kind 0 = runs,
-- 1 = tasks; minute; hour; run; status) with its change, none zero. Each
-- run is named by its workflow here (a lookup by primary key per element),
-- the changes are summed per row of each aggregate table, rows that come to
-- zero are left alone, and the rest are upserted in key order, table after
-- table: each insert's input waits on a count of the one before it (an
-- InitPlan, evaluated before its first row), so every writer takes the row
-- locks of the six tables in the same order, as claim.sql does for the two
-- task tables, and two batches never wait for each other in a cycle.
WITH delta AS MATERIALIZED (
    -- The workflow by a lookup per element: a join would let the planner
    -- walk all of `runs`.
    SELECT d.kind, d.minute, d.hour, (d.hour - ((d.hour % 24) + 24) % 24) / 24 AS day,
           (SELECT workflow FROM runs r WHERE r.run_no = d.run_no) AS workflow, d.status, d.n
    FROM UNNEST($1::smallint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::smallint[], $6::bigint[])
        AS d (kind, minute, hour, run_no, status, n)
), run_minute AS (
    INSERT INTO run_counts_minute AS c (minute, workflow, status, n)
    SELECT minute, workflow, status, sum(n)::bigint FROM delta
    WHERE kind = 0
    GROUP BY minute, workflow, status HAVING sum(n) <> 0
    ORDER BY minute, workflow, status
    ON CONFLICT (minute, workflow, status) DO UPDATE SET n = c.n + excluded.n
    RETURNING 1
), run_hour AS (
    INSERT INTO run_counts_hour AS c (hour, workflow, status, n)
    SELECT hour, workflow, status, sum(n)::bigint FROM delta
    WHERE kind = 0 AND (SELECT count(*) FROM run_minute) >= 0
    GROUP BY hour, workflow, status HAVING sum(n) <> 0
    ORDER BY hour, workflow, status
    ON CONFLICT (hour, workflow, status) DO UPDATE SET n = c.n + excluded.n
    RETURNING 1
), run_day AS (
    INSERT INTO run_counts_day AS c (day, workflow, status, n)
    SELECT day, workflow, status, sum(n)::bigint FROM delta
    WHERE kind = 0 AND (SELECT count(*) FROM run_hour) >= 0
    GROUP BY day, workflow, status HAVING sum(n) <> 0
    ORDER BY day, workflow, status
    ON CONFLICT (day, workflow, status) DO UPDATE SET n = c.n + excluded.n
    RETURNING 1
), task_minute AS (
    INSERT INTO task_counts_minute AS c (minute, workflow, status, n)
    SELECT minute, workflow, status, sum(n)::bigint FROM delta
    WHERE kind = 1 AND (SELECT count(*) FROM run_day) >= 0
    GROUP BY minute, workflow, status HAVING sum(n) <> 0
    ORDER BY minute, workflow, status
    ON CONFLICT (minute, workflow, status) DO UPDATE SET n = c.n + excluded.n
    RETURNING 1
), task_hour AS (
    INSERT INTO task_counts_hour AS c (hour, workflow, status, n)
    SELECT hour, workflow, status, sum(n)::bigint FROM delta
    WHERE kind = 1 AND (SELECT count(*) FROM task_minute) >= 0
    GROUP BY hour, workflow, status HAVING sum(n) <> 0
    ORDER BY hour, workflow, status
    ON CONFLICT (hour, workflow, status) DO UPDATE SET n = c.n + excluded.n
    RETURNING 1
), task_day AS (
    INSERT INTO task_counts_day AS c (day, workflow, status, n)
    SELECT day, workflow, status, sum(n)::bigint FROM delta
    WHERE kind = 1 AND (SELECT count(*) FROM task_hour) >= 0
    GROUP BY day, workflow, status HAVING sum(n) <> 0
    ORDER BY day, workflow, status
    ON CONFLICT (day, workflow, status) DO UPDATE SET n = c.n + excluded.n
    RETURNING 1
)
SELECT count(*) FROM task_day
