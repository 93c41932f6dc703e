-- Runs whose id lies in [$1, $2], the range a typed id prefix stands for.
SELECT run_no, id, workflow, status, trigger_kind, params, owner, spec_path, submitted_at, started_at, finished_at, error,
       cancel_requested_by, schedule_tick
FROM runs WHERE id BETWEEN $1 AND $2 ORDER BY id DESC LIMIT $3
