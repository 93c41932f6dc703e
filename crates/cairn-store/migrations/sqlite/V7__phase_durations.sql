-- Version 7: phase durations (src/analytics.rs).
--
-- The time each task has spent BLOCKED, PENDING and RUNNING so far, in µs,
-- summed over all its attempts — what `cairn_core::durations::Durations`
-- derives from the task's log, up to its last transition. The statement
-- that applies a transition adds the span since the task's last one
-- (`at - last_at`) to the phase of the status it leaves, so keeping them
-- costs no read and no statement of its own.
ALTER TABLE tasks ADD COLUMN blocked_us INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN pending_us INTEGER NOT NULL DEFAULT 0;
ALTER TABLE tasks ADD COLUMN running_us INTEGER NOT NULL DEFAULT 0;

-- The tasks written before, from their logs (one pass in log order): each
-- transition's span until the next one goes to the status it entered.
UPDATE tasks
SET blocked_us = p.blocked, pending_us = p.pending, running_us = p.running
FROM (
    SELECT task_no,
           SUM(CASE WHEN to_status = 1 AND span > 0 THEN span ELSE 0 END) AS blocked,
           SUM(CASE WHEN to_status = 2 AND span > 0 THEN span ELSE 0 END) AS pending,
           SUM(CASE WHEN to_status = 3 AND span > 0 THEN span ELSE 0 END) AS running
    FROM (
        SELECT task_no, to_status, LEAD(at) OVER (PARTITION BY task_no ORDER BY seq) - at AS span
        FROM task_transitions
    )
    WHERE span IS NOT NULL
    GROUP BY task_no
) AS p
WHERE p.task_no = tasks.task_no AND p.blocked + p.pending + p.running > 0;

-- Finished tasks of one step, per status, by finish time: the phase
-- statistics of a window walk one range per (workflow, step, status), the
-- expected durations the newest completed tasks of each step, and the
-- distinct steps of a workflow are a skip along its prefix. The phases are
-- in the key so every read is answered from the index alone; the entry is
-- written once, when the task finishes (finished tasks never change), so
-- its width costs no later write. `task_no` orders ties of finish time.
CREATE INDEX tasks_done_step
    ON tasks (workflow, name, status, finished_at, task_no, blocked_us, pending_us, running_us)
    WHERE finished_at IS NOT NULL;

-- Mirrors the migration version for any SQLite tool.
PRAGMA user_version = 7;
