-- Version 3: dispatch of remote steps across the servers that share this
-- database (src/dispatch.rs): any server can hand a task to a worker,
-- whichever server drives its run. The same records as the SQLite schema
-- of the same version.
--
-- `task_offers` is the hot table of live work: a row exists only while a
-- ready remote task waits in its queue, and a claim takes rows with
-- `SELECT … FOR UPDATE SKIP LOCKED` along `task_offers_claim` (oldest ready
-- offer of a queue first) and deletes them, so concurrent claims never take
-- the same offer nor wait for each other. It is kept apart from the history
-- (tasks, task_transitions), which only grows, so that walk stays as short
-- as the backlog. `seq` is the order of insertion, the tie-breaker between
-- offers ready at the same time; a re-offer of the same task updates its row
-- and keeps its place. Only remote steps (tasks with a queue) are offered and
-- get posted results, so the writes of local steps never touch these tables.
--
-- Every offer is inserted once and deleted once, so the table churns
-- through dead row versions many times its live size, and every dead
-- version left in `task_offers_claim` is one more entry each claim steps
-- over. Its storage parameters keep it small: autovacuum runs on it after a
-- fixed number of dead rows (scale factor 0: the default of 20% of a table
-- that is nearly empty would mean almost never, or after every few rows when
-- the backlog is tiny and then large) and without cost-based sleeps, since
-- a vacuum of a few pages is cheap and a late one makes every claim slower;
-- statistics are refreshed as often, so plans follow the backlog; and a
-- fillfactor of 80 leaves room on each page for the new version of a
-- re-offered row. `task_results` churns the same way (posted, then deleted
-- when the attempt ends) and gets the same treatment.
CREATE TABLE task_offers (
    task_no  bigint NOT NULL PRIMARY KEY, -- tasks (task_no)
    seq      bigint GENERATED ALWAYS AS IDENTITY,
    run_no   bigint NOT NULL,             -- runs (run_no)
    ready_at bigint NOT NULL,
    lease_ms bigint NOT NULL,
    queue    text   NOT NULL,
    -- What the worker is handed (JSON text, opaque to the store).
    payload  text   NOT NULL
) WITH (
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 1000
);
CREATE INDEX task_offers_claim ON task_offers (queue, ready_at, seq);

-- A worker's result, posted for the run's driver by the server the worker
-- reached; the driver reads it and ends the attempt, which deletes it. At
-- most one per task: the current attempt's, under its lease token.
CREATE TABLE task_results (
    task_no bigint NOT NULL PRIMARY KEY, -- tasks (task_no)
    at      bigint NOT NULL,
    token   uuid   NOT NULL,
    body    text   NOT NULL
) WITH (
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0,
    autovacuum_analyze_scale_factor = 0,
    autovacuum_analyze_threshold = 1000
);

-- The lease a claim granted (renewals extend it by as much; NULL for an
-- attempt its driver started, which renewals never extend), and a cancel
-- the driver asked of the worker. Both are cleared when an attempt starts or
-- ends. Adding them rewrites nothing (a constant default is kept in the catalog).
ALTER TABLE tasks
    ADD COLUMN lease_ms bigint,
    ADD COLUMN cancel_requested boolean NOT NULL DEFAULT false;

-- The cron tick that started a run: one run per workflow and tick, however
-- many servers believe they lead when it fires.
ALTER TABLE runs ADD COLUMN schedule_tick bigint;
CREATE UNIQUE INDEX runs_schedule_tick ON runs (workflow, schedule_tick) WHERE schedule_tick IS NOT NULL;
