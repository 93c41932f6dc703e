-- A new run; no row back means the id is taken.
INSERT INTO runs (id, workflow, status, trigger_kind, params, owner, spec_path, submitted_at, last_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?8)
ON CONFLICT (id) DO NOTHING
RETURNING run_no
