-- Version 9: alerts (cairn_core::alert); the same records as the SQLite
-- schema of the same version. At most one alert per (kind, workflow,
-- status) is open at a time, enforced by a partial unique index, so servers
-- racing to raise the same alert record it once. `status` is -1 for an
-- alert about no status, since NULLs would not collide in a unique index.
CREATE TABLE alerts (
    alert_no    bigint   GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    raised_at   bigint   NOT NULL,
    resolved_at bigint,
    id          uuid     NOT NULL,
    status      smallint NOT NULL,
    kind        text     NOT NULL,
    workflow    text     NOT NULL,
    message     text     NOT NULL,
    details     jsonb    NOT NULL,
    CONSTRAINT alerts_id UNIQUE (id)
);
CREATE UNIQUE INDEX alerts_open ON alerts (kind, workflow, status) WHERE resolved_at IS NULL;
