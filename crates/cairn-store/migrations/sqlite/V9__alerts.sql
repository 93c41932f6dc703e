-- Version 9: alerts (cairn_core::alert), e.g. a swing in a workflow's status
-- mix. Keyed by creation order like the other tables; the ULID is in a
-- unique index. At most one alert per (kind, workflow, status) is open at a
-- time, enforced by a partial unique index, so servers racing to raise the
-- same alert record it once. `status` is -1 for an alert about no status,
-- since NULLs would not collide in a unique index.
CREATE TABLE alerts (
    alert_no    INTEGER PRIMARY KEY,
    id          BLOB    NOT NULL,
    kind        TEXT    NOT NULL,
    workflow    TEXT    NOT NULL,
    status      INTEGER NOT NULL,
    raised_at   INTEGER NOT NULL,
    resolved_at INTEGER,
    message     TEXT    NOT NULL,
    details     TEXT    NOT NULL
);
CREATE UNIQUE INDEX alerts_id ON alerts (id);
CREATE UNIQUE INDEX alerts_open ON alerts (kind, workflow, status) WHERE resolved_at IS NULL;

PRAGMA user_version = 9;
