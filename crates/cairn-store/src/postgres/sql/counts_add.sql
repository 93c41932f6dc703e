-- Rows of the status counts to add to (src/counts.rs), already summed per
-- row: one element per (kind 0 = runs, 1 = tasks; grain 0 = minute, 1 =
-- hour, 2 = day; bucket; workflow; status) with its change, none zero. Used where
-- the workflows are known and the runs may be gone (retention). Upserted
-- table after table in key order, each insert waiting on the one before
-- it, as counts_upsert.sql does, so writers take these row locks in one
-- order.
WITH delta AS MATERIALIZED (
    SELECT *
    FROM UNNEST($1::smallint[], $2::smallint[], $3::bigint[], $4::text[], $5::smallint[], $6::bigint[])
        AS d (kind, grain, bucket, workflow, status, n)
), run_minute AS (
    INSERT INTO run_counts_minute AS c (minute, workflow, status, n)
    SELECT bucket, workflow, status, n FROM delta
    WHERE kind = 0 AND grain = 0
    ORDER BY bucket, workflow, status
    ON CONFLICT (minute, workflow, status) DO UPDATE SET n = c.n + excluded.n
    RETURNING 1
), run_hour AS (
    INSERT INTO run_counts_hour AS c (hour, workflow, status, n)
    SELECT bucket, workflow, status, n FROM delta
    WHERE kind = 0 AND grain = 1 AND (SELECT count(*) FROM run_minute) >= 0
    ORDER BY bucket, workflow, status
    ON CONFLICT (hour, workflow, status) DO UPDATE SET n = c.n + excluded.n
    RETURNING 1
), run_day AS (
    INSERT INTO run_counts_day AS c (day, workflow, status, n)
    SELECT bucket, workflow, status, n FROM delta
    WHERE kind = 0 AND grain = 2 AND (SELECT count(*) FROM run_hour) >= 0
    ORDER BY bucket, workflow, status
    ON CONFLICT (day, workflow, status) DO UPDATE SET n = c.n + excluded.n
    RETURNING 1
), task_minute AS (
    INSERT INTO task_counts_minute AS c (minute, workflow, status, n)
    SELECT bucket, workflow, status, n FROM delta
    WHERE kind = 1 AND grain = 0 AND (SELECT count(*) FROM run_day) >= 0
    ORDER BY bucket, workflow, status
    ON CONFLICT (minute, workflow, status) DO UPDATE SET n = c.n + excluded.n
    RETURNING 1
), task_hour AS (
    INSERT INTO task_counts_hour AS c (hour, workflow, status, n)
    SELECT bucket, workflow, status, n FROM delta
    WHERE kind = 1 AND grain = 1 AND (SELECT count(*) FROM task_minute) >= 0
    ORDER BY bucket, workflow, status
    ON CONFLICT (hour, workflow, status) DO UPDATE SET n = c.n + excluded.n
    RETURNING 1
), task_day AS (
    INSERT INTO task_counts_day AS c (day, workflow, status, n)
    SELECT bucket, workflow, status, n FROM delta
    WHERE kind = 1 AND grain = 2 AND (SELECT count(*) FROM task_hour) >= 0
    ORDER BY bucket, workflow, status
    ON CONFLICT (day, workflow, status) DO UPDATE SET n = c.n + excluded.n
    RETURNING 1
)
SELECT count(*) FROM task_day
