-- Deletes the runs of $1 that are finished (COMPLETED, PARTIALLY_SUCCEEDED,
-- FAILED, CANCELED) and whose every task is too (COMPLETED, FAILED,
-- CANCELED, SKIPPED, ABANDONED): running work is never deleted, whoever
-- asks. With each run go its tasks, its workflow text, its log, its label
-- terms, and any offer or posted result of its tasks (none, once finished).
-- The logs of its tasks (task_transitions, attempts, progress_samples) stay
-- in their partitions, unreachable, until the leader drops the partitions
-- of a range with no task left (V8).
--
-- Rows back, for the status counts: one per run deleted (kind 0, with its
-- id and workflow) and one per run, submission time and status of its
-- tasks (kind 1, with how many).
WITH gone AS (
    DELETE FROM runs r
    WHERE r.id = ANY ($1::uuid[])
      AND r.status IN (2, 3, 4, 5)
      AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.run_no = r.run_no AND t.status NOT IN (4, 5, 6, 7, 8))
    RETURNING r.run_no, r.id, r.workflow, r.status, r.submitted_at
), gone_tasks AS (
    -- By tasks_run: the array keeps the planner from hashing the whole table.
    DELETE FROM tasks WHERE run_no = ANY (ARRAY(SELECT run_no FROM gone))
    RETURNING task_no, run_no, status, submitted_at
), specs AS (
    DELETE FROM run_specs WHERE run_no = ANY (ARRAY(SELECT run_no FROM gone))
), run_log AS (
    DELETE FROM run_transitions WHERE run_no = ANY (ARRAY(SELECT run_no FROM gone))
), labels AS (
    DELETE FROM run_labels WHERE run_no = ANY (ARRAY(SELECT run_no FROM gone))
), offers AS (
    DELETE FROM task_offers WHERE task_no = ANY (ARRAY(SELECT task_no FROM gone_tasks))
), results AS (
    DELETE FROM task_results WHERE task_no = ANY (ARRAY(SELECT task_no FROM gone_tasks))
)
SELECT 0::smallint AS kind, g.run_no, g.id, g.workflow, g.status, g.submitted_at, 1::bigint AS n
FROM gone g
UNION ALL
SELECT 1::smallint, t.run_no, NULL, NULL, t.status, t.submitted_at, count(*)
FROM gone_tasks t
GROUP BY t.run_no, t.status, t.submitted_at
