-- A worker's latest checkpoint (`details` of its heartbeats), kept when its
-- workflow asks for it and handed to the next attempt on retry.
ALTER TABLE tasks ADD COLUMN details TEXT;

-- Progress over time, kept sparsely (the engine decides which reports become
-- samples), for charts and for telling a stalled task from a slow one.
CREATE TABLE progress_samples (
    task_no  INTEGER NOT NULL REFERENCES tasks (task_no),
    attempt  INTEGER NOT NULL,
    at       INTEGER NOT NULL,
    percent  REAL    NOT NULL,
    message  TEXT,
    PRIMARY KEY (task_no, attempt, at)
) WITHOUT ROWID;

-- Mirrors the migration version for any SQLite tool.
PRAGMA user_version = 2;
