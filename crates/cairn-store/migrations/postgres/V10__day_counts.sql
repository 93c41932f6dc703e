-- Version 10: status counts per day too (src/counts.rs); the same records
-- as the SQLite schema of the same version. A count over a long window sums
-- whole days from these tables and only its edges from the hour and minute
-- tables. Days are UTC days since the epoch, filled from the hour tables
-- (floored: `/` truncates towards zero).
CREATE TABLE run_counts_day (
    day      bigint   NOT NULL,
    n        bigint   NOT NULL,
    status   smallint NOT NULL,
    workflow text     NOT NULL,
    PRIMARY KEY (day, workflow, status)
) WITH (fillfactor = 80);

CREATE TABLE task_counts_day (
    day      bigint   NOT NULL,
    n        bigint   NOT NULL,
    status   smallint NOT NULL,
    workflow text     NOT NULL,
    PRIMARY KEY (day, workflow, status)
) WITH (fillfactor = 80);

INSERT INTO run_counts_day (day, workflow, status, n)
SELECT (hour - ((hour % 24) + 24) % 24) / 24, workflow, status, sum(n)
FROM run_counts_hour
GROUP BY 1, 2, 3;

INSERT INTO task_counts_day (day, workflow, status, n)
SELECT (hour - ((hour % 24) + 24) % 24) / 24, workflow, status, sum(n)
FROM task_counts_hour
GROUP BY 1, 2, 3;
