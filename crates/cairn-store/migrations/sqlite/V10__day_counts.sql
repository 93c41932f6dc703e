-- Version 10: status counts per day too (src/counts.rs). A count over a
-- long window sums whole days from these tables and only its edges from the
-- hour and minute tables, so a month reads some thirty rows per workflow and
-- status instead of seven hundred. Days are UTC days since the epoch,
-- filled from the hour tables (floored: `/` truncates towards zero).
CREATE TABLE run_counts_day (
    day      INTEGER NOT NULL,
    workflow TEXT    NOT NULL,
    status   INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (day, workflow, status)
) WITHOUT ROWID;

CREATE TABLE task_counts_day (
    day      INTEGER NOT NULL,
    workflow TEXT    NOT NULL,
    status   INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (day, workflow, status)
) WITHOUT ROWID;

INSERT INTO run_counts_day (day, workflow, status, n)
SELECT (hour - ((hour % 24) + 24) % 24) / 24, workflow, status, SUM(n)
FROM run_counts_hour
GROUP BY 1, 2, 3;

INSERT INTO task_counts_day (day, workflow, status, n)
SELECT (hour - ((hour % 24) + 24) % 24) / 24, workflow, status, SUM(n)
FROM task_counts_hour
GROUP BY 1, 2, 3;

PRAGMA user_version = 10;
