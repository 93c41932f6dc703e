-- Start to finish of the newest $3 runs of workflow $1 that ended with
-- status $2 (COMPLETED): one range of runs_workflow_finished, newest first.
SELECT finished_at - started_at
FROM runs
WHERE workflow = $1 AND status = $2 AND finished_at IS NOT NULL AND started_at IS NOT NULL
ORDER BY finished_at DESC, id DESC
LIMIT $3
