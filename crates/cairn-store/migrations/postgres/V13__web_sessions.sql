-- Version 13: web sessions (crate::tokens); the same records as the SQLite
-- schema of the same version. Never the session key: its SHA-256. A
-- session acts as its token, so revoking the token ends it; signing out
-- sets `expires_at` to the time of it.
CREATE TABLE web_sessions (
    session_no bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at bigint NOT NULL,
    expires_at bigint NOT NULL,
    token_id   uuid   NOT NULL,
    hash       bytea  NOT NULL,
    csrf       text   NOT NULL,
    CONSTRAINT web_sessions_hash UNIQUE (hash)
);
CREATE INDEX web_sessions_expires ON web_sessions (expires_at);
