-- Version 11: API tokens (cairn_core::auth). Never the secret: its SHA-256
-- (`hash`, looked up through a unique index) and the first characters shown
-- to recognise it (`prefix`). `queues` is a JSON array (the queues of a
-- worker token), `workflows` the name pattern the token is limited to. At
-- most one token of a name is not revoked, enforced by a partial unique
-- index; times are µs since the epoch.
CREATE TABLE api_tokens (
    token_no     INTEGER PRIMARY KEY,
    id           BLOB    NOT NULL,
    name         TEXT    NOT NULL,
    role         TEXT    NOT NULL,
    queues       TEXT    NOT NULL,
    workflows    TEXT,
    prefix       TEXT    NOT NULL,
    hash         BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER
);
CREATE UNIQUE INDEX api_tokens_id ON api_tokens (id);
CREATE UNIQUE INDEX api_tokens_hash ON api_tokens (hash);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;

PRAGMA user_version = 11;
