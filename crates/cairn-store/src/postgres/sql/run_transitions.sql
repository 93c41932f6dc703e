SELECT from_status, to_status, at, reason, actor
FROM run_transitions WHERE run_no = $1 ORDER BY seq
