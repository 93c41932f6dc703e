-- Version 8: retention (src/retention.rs). The same index as the SQLite
-- schema of the same version; on PostgreSQL the append-only logs are
-- partitioned besides.
--
-- Deleting a run deletes its label terms, found by the run's number.
CREATE INDEX run_labels_run ON run_labels (run_no);

-- The logs of tasks — task_transitions, attempts, progress_samples — only
-- grow, and retention takes them away by the span of time, so they are
-- partitioned by ranges of `task_no`: task numbers are handed out in
-- creation order, so one range holds the logs of the tasks created in one
-- span of time, and every key of these tables starts with `task_no`, so a
-- read of one task's log still probes one partition. `runs` and `tasks`
-- stay whole: their unique id indexes must cover every row.
--
-- Retention deletes runs and tasks row by row (with their counts) and
-- leaves their log rows where they are: nothing reads a log but through
-- its task. The leader drops the partitions of a range once no task of it
-- is left, and keeps a range ready ahead of the newest task number (see
-- src/postgres/partitions.rs); a DEFAULT partition takes any row beyond
-- the last range, so an insert never fails for want of one, and the next
-- range made takes those rows in.
--
-- The three tables are partitioned alike, one range at a time, named
-- `<table>_<first task number>`; `log_partitions` lists the ranges, with
-- when each was made (µs).
CREATE TABLE log_partitions (
    lo         bigint NOT NULL PRIMARY KEY,
    hi         bigint NOT NULL,
    created_at bigint NOT NULL,
    CHECK (lo < hi)
);

-- The tables as they are become the first range: every task stored so far
-- and room for a million more (attaching them reads them once, to check
-- the range; nothing is copied). The identity of task_transitions.seq moves
-- to the partitioned table and continues where it was.
DO $$
DECLARE
    first_hi constant bigint := (SELECT COALESCE(max(task_no), 0) FROM tasks) + 1000000;
    next_seq bigint;
BEGIN
    EXECUTE format(
        'SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM %s',
        pg_get_serial_sequence('task_transitions', 'seq')
    ) INTO next_seq;
    ALTER TABLE task_transitions ALTER COLUMN seq DROP IDENTITY;

    ALTER TABLE task_transitions RENAME TO task_transitions_0;
    ALTER INDEX task_transitions_pkey RENAME TO task_transitions_0_pkey;
    CREATE TABLE task_transitions (
        LIKE task_transitions_0 INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
        PRIMARY KEY (task_no, seq)
    ) PARTITION BY RANGE (task_no);
    EXECUTE format(
        'ALTER TABLE task_transitions ALTER COLUMN seq ADD GENERATED ALWAYS AS IDENTITY (START WITH %s)',
        next_seq
    );

    ALTER TABLE attempts RENAME TO attempts_0;
    ALTER INDEX attempts_pkey RENAME TO attempts_0_pkey;
    ALTER INDEX attempts_worker RENAME TO attempts_0_worker;
    CREATE TABLE attempts (
        LIKE attempts_0 INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
        PRIMARY KEY (task_no, attempt)
    ) PARTITION BY RANGE (task_no);
    -- The tasks a worker ran (V6), now one probe per partition.
    CREATE INDEX attempts_worker ON attempts (worker, task_no);

    ALTER TABLE progress_samples RENAME TO progress_samples_0;
    ALTER INDEX progress_samples_pkey RENAME TO progress_samples_0_pkey;
    CREATE TABLE progress_samples (
        LIKE progress_samples_0 INCLUDING DEFAULTS INCLUDING CONSTRAINTS,
        PRIMARY KEY (task_no, attempt, at)
    ) PARTITION BY RANGE (task_no);

    EXECUTE format('ALTER TABLE task_transitions ATTACH PARTITION task_transitions_0 FOR VALUES FROM (0) TO (%s)', first_hi);
    EXECUTE format('ALTER TABLE attempts ATTACH PARTITION attempts_0 FOR VALUES FROM (0) TO (%s)', first_hi);
    EXECUTE format('ALTER TABLE progress_samples ATTACH PARTITION progress_samples_0 FOR VALUES FROM (0) TO (%s)', first_hi);
    INSERT INTO log_partitions (lo, hi, created_at)
    VALUES (0, first_hi, (extract(epoch FROM clock_timestamp()) * 1000000)::bigint);
END
$$;

CREATE TABLE task_transitions_default PARTITION OF task_transitions DEFAULT;
CREATE TABLE attempts_default PARTITION OF attempts DEFAULT;
CREATE TABLE progress_samples_default PARTITION OF progress_samples DEFAULT;
