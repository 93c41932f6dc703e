-- Cairn's PostgreSQL schema, version 1: the same records as the SQLite
-- schema of the same version, in PostgreSQL's own types.
--
-- Ids (ULIDs, lease tokens) are 128-bit `uuid`s: 16 bytes inline, compared
-- bytewise, so ids sort by creation time as in SQLite. Times are `bigint`
-- microseconds since the Unix epoch, statuses the stable `code()` integers of
-- cairn-core as `smallint`, maps and checkpoints `jsonb` (NULL when empty).
--
-- As in SQLite, rows are keyed by `bigint` numbers handed out in creation
-- order (`run_no`, `task_no`, `seq`) and the ULIDs sit in unique indexes
-- written once: a ULID is random below its millisecond, so the logs keyed
-- by it would scatter each batch's inserts over the whole index, while keys
-- in creation order keep a batch on a few neighbouring pages. Columns are
-- laid out widest first, so rows carry no alignment padding.
--
-- Every change of a status is a compare-and-set on its row (status, lease
-- token, last_at) in the same statement that appends its log row; see
-- src/postgres/sql/.
--
-- Foreign keys are enforced where a row is written once per run
-- (run_specs, run_transitions). The per-task tables (tasks, task_transitions,
-- attempts, progress_samples) name their parents without a constraint, as in
-- SQLite: every one of their parent keys is taken from the row the same
-- statement just inserted or updated, so a check could never fail, and the
-- checks (a lookup and a row lock per child row) cost a third of the write
-- throughput.

CREATE TABLE runs (
    run_no       bigint   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    submitted_at bigint   NOT NULL,
    started_at   bigint,
    finished_at  bigint,
    -- Time of the latest transition: a run's log never goes back in time.
    last_at      bigint   NOT NULL,
    id           uuid     NOT NULL,
    status       smallint NOT NULL,
    workflow     text     NOT NULL,
    trigger_kind text     NOT NULL,
    params       jsonb,
    owner        text,
    spec_path    text,
    error        text,
    CONSTRAINT runs_id UNIQUE (id)
);
-- History pages, newest first (ids sort by creation time), per filter; the
-- unfiltered page walks `runs_id` backwards.
CREATE INDEX runs_status ON runs (status, id);
CREATE INDEX runs_workflow ON runs (workflow, id);
CREATE INDEX runs_workflow_status ON runs (workflow, status, id);

-- The workflow text as submitted; apart, so history scans over `runs` stay lean.
CREATE TABLE run_specs (
    run_no bigint NOT NULL PRIMARY KEY REFERENCES runs (run_no),
    source text   NOT NULL
);

CREATE TABLE run_transitions (
    run_no      bigint   NOT NULL REFERENCES runs (run_no),
    seq         bigint   GENERATED ALWAYS AS IDENTITY,
    at          bigint   NOT NULL,
    from_status smallint,
    to_status   smallint NOT NULL,
    reason      text     NOT NULL,
    actor       text     NOT NULL,
    PRIMARY KEY (run_no, seq)
);

-- The hot table: one lean row per task. Results (exit code, error, outputs)
-- live on the attempt that produced them.
CREATE TABLE tasks (
    task_no           bigint   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_no            bigint   NOT NULL, -- runs (run_no)
    -- Time of the latest transition: a task's log never goes back in time.
    last_at           bigint   NOT NULL,
    submitted_at      bigint   NOT NULL,
    started_at        bigint,
    finished_at       bigint,
    not_before        bigint,
    last_heartbeat_at bigint,
    lease_expires_at  bigint,
    progress_at       bigint,
    id                uuid     NOT NULL,
    lease_token       uuid,
    idx               integer  NOT NULL,
    attempt           integer  NOT NULL DEFAULT 0,
    max_attempts      integer  NOT NULL,
    progress_percent  real,
    status            smallint NOT NULL,
    name              text     NOT NULL,
    queue             text,
    worker            text,
    progress_message  text,
    CONSTRAINT tasks_id UNIQUE (id),
    CONSTRAINT tasks_run UNIQUE (run_no, idx)
);
-- The reaper's view: only RUNNING (3) tasks, by lease expiry.
CREATE INDEX tasks_lease_expiry ON tasks (lease_expires_at) WHERE status = 3;

CREATE TABLE task_transitions (
    task_no     bigint   NOT NULL, -- tasks (task_no)
    seq         bigint   GENERATED ALWAYS AS IDENTITY,
    at          bigint   NOT NULL,
    attempt     integer  NOT NULL,
    from_status smallint,
    to_status   smallint NOT NULL,
    reason      text     NOT NULL,
    actor       text     NOT NULL,
    PRIMARY KEY (task_no, seq)
);

CREATE TABLE attempts (
    task_no    bigint   NOT NULL, -- tasks (task_no)
    attempt    integer  NOT NULL,
    started_at bigint   NOT NULL,
    ended_at   bigint,
    exit_code  integer,
    -- The status the attempt ended in (FAILED when it was retried).
    outcome    smallint,
    worker     text     NOT NULL,
    error      text,
    outputs    jsonb,
    PRIMARY KEY (task_no, attempt)
);
