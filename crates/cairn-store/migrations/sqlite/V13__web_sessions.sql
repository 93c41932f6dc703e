-- Version 13: web sessions (crate::tokens): a browser signs in with an API
-- token and gets a session key in a cookie. Never the key: its SHA-256
-- (`hash`, looked up through a unique index). A session acts as its token
-- (`token_id`), so revoking the token ends it; signing out sets
-- `expires_at` to the time of it. `csrf` is the anti-CSRF token the
-- session's pages send back with every change. Times are µs since the
-- epoch.
CREATE TABLE web_sessions (
    session_no INTEGER PRIMARY KEY,
    hash       BLOB    NOT NULL,
    token_id   BLOB    NOT NULL,
    csrf       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE UNIQUE INDEX web_sessions_hash ON web_sessions (hash);
CREATE INDEX web_sessions_expires ON web_sessions (expires_at);

PRAGMA user_version = 13;
