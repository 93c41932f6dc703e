-- Version 14: the webhook outbox and delivery log (crate::webhooks); the
-- same records as the SQLite schema of the same version. One row per
-- (webhook, event key), so servers sharing the database that each enqueue
-- an event deliver it once.
CREATE TABLE webhook_deliveries (
    id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    webhook         text   NOT NULL,
    kind            text   NOT NULL,
    event_key       text   NOT NULL,
    workflow        text,
    body            text   NOT NULL,
    created_at      bigint NOT NULL,
    state           text   NOT NULL,
    attempts        integer NOT NULL DEFAULT 0,
    max_attempts    integer NOT NULL,
    next_attempt_at bigint,
    last_attempt_at bigint,
    last_status     integer,
    last_error      text,
    delivered_at    bigint,
    CONSTRAINT webhook_deliveries_key UNIQUE (webhook, event_key)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE state = 'pending';
CREATE INDEX webhook_deliveries_state ON webhook_deliveries (state, id);
CREATE INDEX webhook_deliveries_webhook ON webhook_deliveries (webhook, id);
