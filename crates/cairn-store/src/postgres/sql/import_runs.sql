-- Finished runs imported whole (src/import.rs), one element of each array
-- per run, each with its number already drawn: the last transition is the
-- finish, so `last_at` is `finished_at`. A run whose id (or schedule tick)
-- is taken is left out and returns no row.
INSERT INTO runs (run_no, id, workflow, status, trigger_kind, params, owner, spec_path, submitted_at,
                  started_at, finished_at, last_at, error, cancel_requested_by, schedule_tick)
OVERRIDING SYSTEM VALUE
SELECT u.run_no, u.id, u.workflow, u.status, u.trigger_kind, u.params::jsonb, u.owner, u.spec_path,
       u.submitted_at, u.started_at, u.finished_at, u.finished_at, u.error, u.cancel_requested_by,
       u.schedule_tick
FROM UNNEST($1::bigint[], $2::uuid[], $3::text[], $4::smallint[], $5::text[], $6::text[], $7::text[],
            $8::text[], $9::bigint[], $10::bigint[], $11::bigint[], $12::text[], $13::text[], $14::bigint[])
    AS u (run_no, id, workflow, status, trigger_kind, params, owner, spec_path, submitted_at, started_at,
          finished_at, error, cancel_requested_by, schedule_tick)
ON CONFLICT DO NOTHING
RETURNING run_no
