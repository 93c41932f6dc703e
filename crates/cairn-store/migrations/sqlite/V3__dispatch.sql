-- Version 3: dispatch of remote steps through the store (src/dispatch.rs),
-- so that a task can be handed to a worker by whichever server the worker
-- asks, not only by the server that drives its run.
--
-- `task_offers` is the hot table of live work: a row exists only while a
-- ready remote task waits in its queue, and a claim deletes the rows it
-- takes. It is kept apart from the history (tasks, task_transitions), which
-- only grows, so the claim's walk along `task_offers_claim` (oldest ready
-- offer of a queue first) stays as short as the backlog. `seq` (the rowid)
-- is the order of insertion, the tie-breaker between offers ready at the
-- same time; a re-offer of the same task keeps its row and its place. Only
-- remote steps (tasks with a queue) are offered and get posted results, so
-- the writes of local steps never touch these tables.
CREATE TABLE task_offers (
    seq      INTEGER PRIMARY KEY,
    task_no  INTEGER NOT NULL, -- tasks (task_no)
    run_no   INTEGER NOT NULL, -- runs (run_no)
    ready_at INTEGER NOT NULL,
    lease_ms INTEGER NOT NULL,
    queue    TEXT    NOT NULL,
    -- What the worker is handed (JSON text, opaque to the store).
    payload  TEXT    NOT NULL
);
CREATE UNIQUE INDEX task_offers_task ON task_offers (task_no);
CREATE INDEX task_offers_claim ON task_offers (queue, ready_at, seq);

-- A worker's result, posted for the run's driver by the server the worker
-- reached; the driver reads it and ends the attempt, which deletes it. At
-- most one per task: the current attempt's, under its lease token.
CREATE TABLE task_results (
    task_no INTEGER PRIMARY KEY, -- tasks (task_no)
    at      INTEGER NOT NULL,
    token   BLOB    NOT NULL,
    body    TEXT    NOT NULL
);

-- The lease a claim granted (renewals extend it by as much; NULL for an
-- attempt its driver started, which renewals never extend), and a cancel
-- the driver asked of the worker. Both are cleared when an attempt starts or ends.
ALTER TABLE tasks ADD COLUMN lease_ms INTEGER;
ALTER TABLE tasks ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;

-- The cron tick that started a run: one run per workflow and tick, however
-- many servers believe they lead when it fires.
ALTER TABLE runs ADD COLUMN schedule_tick INTEGER;
CREATE UNIQUE INDEX runs_schedule_tick ON runs (workflow, schedule_tick) WHERE schedule_tick IS NOT NULL;

-- Mirrors the migration version for any SQLite tool.
PRAGMA user_version = 3;
