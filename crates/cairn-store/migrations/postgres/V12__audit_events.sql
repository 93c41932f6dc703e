-- Version 12: the audit log (crate::audit); the same records as the SQLite
-- schema of the same version. Events are only added; read newest first by
-- `event_no`.
CREATE TABLE audit_events (
    event_no bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at       bigint NOT NULL,
    id       uuid   NOT NULL,
    kind     text   NOT NULL,
    actor    text   NOT NULL,
    target   text,
    detail   jsonb,
    CONSTRAINT audit_events_id UNIQUE (id)
);
CREATE INDEX audit_events_kind ON audit_events (kind, event_no);
CREATE INDEX audit_events_actor ON audit_events (actor, event_no);
