-- Version 14: the webhook outbox and delivery log (crate::webhooks). One
-- row per (webhook, event key): the same event enqueued twice, by one
-- server or by several sharing a store, is delivered once. `state` is
-- pending, delivered or failed (given up); a pending row is due at
-- `next_attempt_at`. `body` is the JSON text posted, as signed. Times are
-- µs since the epoch.
CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    webhook         TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    event_key       TEXT    NOT NULL,
    workflow        TEXT,
    body            TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    state           TEXT    NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL,
    next_attempt_at INTEGER,
    last_attempt_at INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    delivered_at    INTEGER
);
CREATE UNIQUE INDEX webhook_deliveries_key ON webhook_deliveries (webhook, event_key);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_state ON webhook_deliveries (state, id);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook, id);

PRAGMA user_version = 14;
