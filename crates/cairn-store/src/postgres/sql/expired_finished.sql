-- Runs of workflow $1 in finished status $2 that finished before $3, the
-- earliest first, at most $4: one range of runs_workflow_finished.
SELECT id, finished_at
FROM runs
WHERE workflow = $1 AND status = $2 AND finished_at IS NOT NULL AND finished_at < $3
ORDER BY finished_at, id
LIMIT $4
