-- A new run; no row back means the id is taken, or (?9) a run of the same
-- workflow for the same schedule tick exists.
INSERT INTO runs (id, workflow, status, trigger_kind, params, owner, spec_path, submitted_at, last_at, schedule_tick)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8, ?9)
ON CONFLICT DO NOTHING
RETURNING run_no
