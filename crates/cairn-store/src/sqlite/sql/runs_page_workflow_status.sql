SELECT run_no, id, workflow, status, trigger_kind, params, owner, spec_path, submitted_at, started_at, finished_at, error,
       cancel_requested_by, schedule_tick
FROM runs WHERE workflow = ?4 AND status = ?3 AND id < ?1 ORDER BY id DESC LIMIT ?2
