-- A page of history, newest first, walking `runs_id` backwards from the
-- cursor $1: strictly older runs, or from $1 itself when $2 (the first page
-- starts at the largest id there is). The same shape, with the filter's
-- index, in runs_page_status.sql, runs_page_workflow.sql and
-- runs_page_workflow_status.sql: $4 the status or workflow, $5 the workflow
-- when both filter.
SELECT run_no, id, workflow, status, trigger_kind, params, owner, spec_path, submitted_at, started_at, finished_at, error,
       cancel_requested_by, schedule_tick
FROM runs WHERE id <= $1 AND (id <> $1 OR $2) ORDER BY id DESC LIMIT $3
