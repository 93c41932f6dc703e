-- Version 5: status counts maintained with the changes they count
-- (src/counts.rs), so counts and trends over any window read a few
-- aggregate rows instead of every run and task.
--
-- Each row is the number `n` of runs (or tasks) submitted in one minute (or
-- hour) since the epoch, of one workflow (a task: its run's), that have one
-- status now. Every write transaction adds the net changes of its applied
-- changes, one upsert per row, before it commits, so the tables always equal
-- a count of the records. Keyed by the bucket first: a window is one range
-- of each table. A row whose count came back to zero may stay; reads skip it.
CREATE TABLE run_counts_minute (
    minute   INTEGER NOT NULL,
    workflow TEXT    NOT NULL,
    status   INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (minute, workflow, status)
) WITHOUT ROWID;

CREATE TABLE run_counts_hour (
    hour     INTEGER NOT NULL,
    workflow TEXT    NOT NULL,
    status   INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (hour, workflow, status)
) WITHOUT ROWID;

CREATE TABLE task_counts_minute (
    minute   INTEGER NOT NULL,
    workflow TEXT    NOT NULL,
    status   INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (minute, workflow, status)
) WITHOUT ROWID;

CREATE TABLE task_counts_hour (
    hour     INTEGER NOT NULL,
    workflow TEXT    NOT NULL,
    status   INTEGER NOT NULL,
    n        INTEGER NOT NULL,
    PRIMARY KEY (hour, workflow, status)
) WITHOUT ROWID;

-- The records written before this version, counted once. Minutes and hours
-- are floored (SQLite's `/` truncates towards zero, wrong before 1970).
INSERT INTO run_counts_minute (minute, workflow, status, n)
SELECT (submitted_at - ((submitted_at % 60000000) + 60000000) % 60000000) / 60000000, workflow, status,
       COUNT(*)
FROM runs
GROUP BY 1, 2, 3;

INSERT INTO task_counts_minute (minute, workflow, status, n)
SELECT (t.submitted_at - ((t.submitted_at % 60000000) + 60000000) % 60000000) / 60000000, r.workflow,
       t.status, COUNT(*)
FROM tasks t
JOIN runs r ON r.run_no = t.run_no
GROUP BY 1, 2, 3;

INSERT INTO run_counts_hour (hour, workflow, status, n)
SELECT (minute - ((minute % 60) + 60) % 60) / 60, workflow, status, SUM(n)
FROM run_counts_minute
GROUP BY 1, 2, 3;

INSERT INTO task_counts_hour (hour, workflow, status, n)
SELECT (minute - ((minute % 60) + 60) % 60) / 60, workflow, status, SUM(n)
FROM task_counts_minute
GROUP BY 1, 2, 3;

-- Mirrors the migration version for any SQLite tool.
PRAGMA user_version = 5;
