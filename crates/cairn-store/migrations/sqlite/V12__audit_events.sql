-- Version 12: the audit log (crate::audit). Events are only added; read
-- newest first by `event_no`. `actor` is a token's name, `user:NAME` or
-- `cli`; `target` a token's name or a route; `detail` JSON. Times are µs
-- since the epoch.
CREATE TABLE audit_events (
    event_no INTEGER PRIMARY KEY,
    id       BLOB    NOT NULL,
    at       INTEGER NOT NULL,
    kind     TEXT    NOT NULL,
    actor    TEXT    NOT NULL,
    target   TEXT,
    detail   TEXT
);
CREATE UNIQUE INDEX audit_events_id ON audit_events (id);
CREATE INDEX audit_events_kind ON audit_events (kind, event_no);
CREATE INDEX audit_events_actor ON audit_events (actor, event_no);

PRAGMA user_version = 12;
