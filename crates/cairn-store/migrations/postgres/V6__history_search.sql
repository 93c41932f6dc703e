-- Version 6: history search (src/history.rs, src/search.rs); the same
-- records and indexes as the SQLite schema of the same version. Every search
-- walks one ordered index range per value of its driving filter and checks
-- the other filters on the rows it reaches; these are the indexes the walks
-- need, and no more.
--
-- Write cost on PostgreSQL: an UPDATE that cannot be HOT (every change of a
-- task is not, since `status` and `lease_expires_at` are indexed) adds an
-- entry to every index of the table whose predicate the new row version
-- meets — heartbeats included. So the only new full index on `tasks` is
-- `tasks_status`; the others hold finished tasks only (`WHERE finished_at
-- IS NOT NULL`): a finished task is written once more when it ends and
-- never again, and the live tasks are reached through `tasks_status`.

-- A run's labels (NewRun::labels), one row per search term: each label as
-- given (`key` or `key=value`) and, for `key=value`, its `key` alone, so a
-- filter `key` matches any value. Keyed (term, run id): a label filter walks
-- its term's runs in id order, newest first, with no sort.
CREATE TABLE run_labels (
    term   text   NOT NULL,
    run_id uuid   NOT NULL,
    run_no bigint NOT NULL, -- runs (run_no), unenforced as for tasks
    PRIMARY KEY (term, run_id)
);

-- Runs by trigger, newest first.
CREATE INDEX runs_trigger ON runs (trigger_kind, id);
-- Finished runs by finish time (then id), per status: a finished sort walks
-- one range per terminal status, merged, and a finished-time window is the
-- range itself.
CREATE INDEX runs_finished ON runs (status, finished_at, id) WHERE finished_at IS NOT NULL;
-- The same per workflow: a workflow's recent finished runs.
CREATE INDEX runs_workflow_finished ON runs (workflow, status, finished_at, id) WHERE finished_at IS NOT NULL;

-- A task's workflow (its run's), written with the task, so its finished
-- tasks can be indexed by workflow; the tasks written before are filled in
-- (one pass over `tasks`, at upgrade).
ALTER TABLE tasks ADD COLUMN workflow text;
UPDATE tasks AS t SET workflow = r.workflow FROM runs AS r WHERE r.run_no = t.run_no;
ALTER TABLE tasks ALTER COLUMN workflow SET NOT NULL;

-- Tasks by status, newest first; also how every search reaches live tasks.
CREATE INDEX tasks_status ON tasks (status, id);
-- Finished tasks by finish time (then id), per status: the finished sort.
CREATE INDEX tasks_finished ON tasks (status, finished_at, id) WHERE finished_at IS NOT NULL;
-- Finished tasks of a workflow, per status, newest first.
CREATE INDEX tasks_done_workflow ON tasks (workflow, status, id) WHERE finished_at IS NOT NULL;
-- Finished tasks of a queue (remote steps only), newest first.
CREATE INDEX tasks_done_queue ON tasks (queue, id) WHERE finished_at IS NOT NULL AND queue IS NOT NULL;

-- The tasks a worker ran (any attempt): how many, to tell whether a worker
-- filter is rare enough to drive a search; then which, by primary key.
CREATE INDEX attempts_worker ON attempts (worker, task_no);
