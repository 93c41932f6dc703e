-- A finished run, imported whole (src/import.rs): its last transition is
-- its finish, so `last_at` is `finished_at`. No row back: the id is taken,
-- or (?13) a run of the same workflow for the same schedule tick exists.
INSERT INTO runs (id, workflow, status, trigger_kind, params, owner, spec_path, submitted_at, started_at,
                  finished_at, last_at, error, cancel_requested_by, schedule_tick)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?11, ?12, ?13)
ON CONFLICT DO NOTHING
RETURNING run_no
