-- Version 11: API tokens (cairn_core::auth); the same records as the SQLite
-- schema of the same version. Never the secret: its SHA-256 (`hash`, looked
-- up through a unique index) and the first characters shown to recognise it
-- (`prefix`). At most one token of a name is not revoked, enforced by a
-- partial unique index.
CREATE TABLE api_tokens (
    token_no     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at   bigint NOT NULL,
    expires_at   bigint,
    revoked_at   bigint,
    last_used_at bigint,
    id           uuid   NOT NULL,
    hash         bytea  NOT NULL,
    name         text   NOT NULL,
    role         text   NOT NULL,
    queues       jsonb  NOT NULL,
    workflows    text,
    prefix       text   NOT NULL,
    CONSTRAINT api_tokens_id UNIQUE (id),
    CONSTRAINT api_tokens_hash UNIQUE (hash)
);
CREATE UNIQUE INDEX api_tokens_live_name ON api_tokens (name) WHERE revoked_at IS NULL;
