-- A worker's latest checkpoint (`details` of its heartbeats), kept when its
-- workflow asks for it and handed to the next attempt on retry.
ALTER TABLE tasks ADD COLUMN details jsonb;

-- Progress over time, kept sparsely (the engine decides which reports become
-- samples), for charts and for telling a stalled task from a slow one.
CREATE TABLE progress_samples (
    task_no bigint  NOT NULL, -- tasks (task_no), unenforced as in V1
    at      bigint  NOT NULL,
    attempt integer NOT NULL,
    percent real    NOT NULL,
    message text,
    PRIMARY KEY (task_no, attempt, at)
);
