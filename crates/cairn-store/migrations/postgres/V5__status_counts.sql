-- Version 5: status counts maintained with the changes they count
-- (src/counts.rs), so counts and trends over any window read a few
-- aggregate rows instead of every run and task. The same records as the
-- SQLite schema of the same version.
--
-- Each row is the number `n` of runs (or tasks) submitted in one minute (or
-- hour) since the epoch, of one workflow (a task: its run's), that have one
-- status now. Every write transaction adds the net changes of its applied
-- changes at its very end, one upsert per row in key order, so the tables
-- always equal a count of the records, and the row locks on the keys every
-- server updates (this minute's) are held only from there to the commit
-- and always taken in one order. Keyed by the bucket first: a window is one
-- range of each table. A row whose count came back to zero may stay; reads
-- skip it. Rows are updated in place all the time and `n` is in no index,
-- so a fillfactor below 100 keeps room on each page for HOT updates.
CREATE TABLE run_counts_minute (
    minute   bigint   NOT NULL,
    n        bigint   NOT NULL,
    status   smallint NOT NULL,
    workflow text     NOT NULL,
    PRIMARY KEY (minute, workflow, status)
) WITH (fillfactor = 80);

CREATE TABLE run_counts_hour (
    hour     bigint   NOT NULL,
    n        bigint   NOT NULL,
    status   smallint NOT NULL,
    workflow text     NOT NULL,
    PRIMARY KEY (hour, workflow, status)
) WITH (fillfactor = 80);

CREATE TABLE task_counts_minute (
    minute   bigint   NOT NULL,
    n        bigint   NOT NULL,
    status   smallint NOT NULL,
    workflow text     NOT NULL,
    PRIMARY KEY (minute, workflow, status)
) WITH (fillfactor = 80);

CREATE TABLE task_counts_hour (
    hour     bigint   NOT NULL,
    n        bigint   NOT NULL,
    status   smallint NOT NULL,
    workflow text     NOT NULL,
    PRIMARY KEY (hour, workflow, status)
) WITH (fillfactor = 80);

-- The records written before this version, counted once (the servers are
-- stopped for an upgrade, see docs/operations.md). Minutes and hours are
-- floored (`/` truncates towards zero, wrong before 1970).
INSERT INTO run_counts_minute (minute, workflow, status, n)
SELECT (submitted_at - ((submitted_at % 60000000) + 60000000) % 60000000) / 60000000, workflow, status,
       count(*)
FROM runs
GROUP BY 1, 2, 3;

INSERT INTO task_counts_minute (minute, workflow, status, n)
SELECT (t.submitted_at - ((t.submitted_at % 60000000) + 60000000) % 60000000) / 60000000, r.workflow,
       t.status, count(*)
FROM tasks t
JOIN runs r ON r.run_no = t.run_no
GROUP BY 1, 2, 3;

INSERT INTO run_counts_hour (hour, workflow, status, n)
SELECT (minute - ((minute % 60) + 60) % 60) / 60, workflow, status, sum(n)
FROM run_counts_minute
GROUP BY 1, 2, 3;

INSERT INTO task_counts_hour (hour, workflow, status, n)
SELECT (minute - ((minute % 60) + 60) % 60) / 60, workflow, status, sum(n)
FROM task_counts_minute
GROUP BY 1, 2, 3;
