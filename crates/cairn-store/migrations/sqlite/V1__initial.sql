-- Cairn's SQLite schema, version 1.
--
-- Rows are keyed by integer surrogates (`run_no`, `task_no`, `seq`) handed
-- out in creation order, and the public ULIDs live in unique indexes. ULIDs
-- of one run are random below the millisecond, so keying tables by them
-- would scatter every batch of updates over the whole B-tree; keyed by
-- creation order, a batch touching neighbouring tasks dirties a few pages
-- and the WAL stays small. The id indexes are written once, at creation.
--
-- Ids are 16-byte BLOBs, times INTEGER microseconds since the Unix epoch,
-- statuses the stable `code()` integers of cairn-core, maps JSON TEXT (NULL
-- when empty).

CREATE TABLE runs (
    run_no       INTEGER PRIMARY KEY,
    id           BLOB    NOT NULL,
    workflow     TEXT    NOT NULL,
    status       INTEGER NOT NULL,
    trigger_kind TEXT    NOT NULL,
    params       TEXT,
    owner        TEXT,
    spec_path    TEXT,
    submitted_at INTEGER NOT NULL,
    started_at   INTEGER,
    finished_at  INTEGER,
    -- Time of the latest transition: a run's log never goes back in time.
    last_at      INTEGER NOT NULL,
    error        TEXT
);
CREATE UNIQUE INDEX runs_id ON runs (id);
-- History pages, newest first (ids sort by creation time), per filter.
CREATE INDEX runs_status ON runs (status, id);
CREATE INDEX runs_workflow ON runs (workflow, id);
CREATE INDEX runs_workflow_status ON runs (workflow, status, id);

-- The workflow text as submitted; apart, so history scans over `runs` stay lean.
CREATE TABLE run_specs (
    run_no INTEGER PRIMARY KEY REFERENCES runs (run_no),
    source TEXT    NOT NULL
);

CREATE TABLE run_transitions (
    seq         INTEGER PRIMARY KEY,
    run_no      INTEGER NOT NULL REFERENCES runs (run_no),
    from_status INTEGER,
    to_status   INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    actor       TEXT    NOT NULL
);
CREATE INDEX run_transitions_run ON run_transitions (run_no, seq);

-- The hot table: one lean row per task. Results (exit code, error, outputs)
-- live on the attempt that produced them.
CREATE TABLE tasks (
    task_no           INTEGER PRIMARY KEY,
    id                BLOB    NOT NULL,
    status            INTEGER NOT NULL,
    attempt           INTEGER NOT NULL DEFAULT 0,
    -- Time of the latest transition: a task's log never goes back in time.
    last_at           INTEGER NOT NULL,
    lease_token       BLOB,
    lease_expires_at  INTEGER,
    last_heartbeat_at INTEGER,
    run_no            INTEGER NOT NULL REFERENCES runs (run_no),
    idx               INTEGER NOT NULL,
    max_attempts      INTEGER NOT NULL,
    submitted_at      INTEGER NOT NULL,
    started_at        INTEGER,
    finished_at       INTEGER,
    not_before        INTEGER,
    worker            TEXT,
    progress_percent  REAL,
    progress_at       INTEGER,
    name              TEXT    NOT NULL,
    queue             TEXT,
    progress_message  TEXT
);
CREATE UNIQUE INDEX tasks_id ON tasks (id);
CREATE UNIQUE INDEX tasks_run ON tasks (run_no, idx);
-- The reaper's view: only RUNNING (3) tasks, by lease expiry.
CREATE INDEX tasks_lease_expiry ON tasks (lease_expires_at) WHERE status = 3;

CREATE TABLE task_transitions (
    seq         INTEGER PRIMARY KEY,
    task_no     INTEGER NOT NULL REFERENCES tasks (task_no),
    attempt     INTEGER NOT NULL,
    from_status INTEGER,
    to_status   INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    actor       TEXT    NOT NULL
);
CREATE INDEX task_transitions_task ON task_transitions (task_no, seq);

CREATE TABLE attempts (
    task_no    INTEGER NOT NULL REFERENCES tasks (task_no),
    attempt    INTEGER NOT NULL,
    worker     TEXT    NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    -- The status the attempt ended in (PENDING when it was retried).
    outcome    INTEGER,
    exit_code  INTEGER,
    error      TEXT,
    outputs    TEXT,
    PRIMARY KEY (task_no, attempt)
) WITHOUT ROWID;

-- Mirrors the migration version, so `sqlite3 cairn.db 'PRAGMA user_version'`
-- tells which schema a file has without knowing refinery's table.
PRAGMA user_version = 1;
