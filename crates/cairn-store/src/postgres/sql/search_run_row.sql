-- One run of a search's page by primary key (`page.no`, from the branches
-- before it): the columns of run_by_id.sql.
SELECT r.run_no, r.id, r.workflow, r.status, r.trigger_kind, r.params, r.owner, r.spec_path, r.submitted_at,
       r.started_at, r.finished_at, r.error, r.cancel_requested_by, r.schedule_tick
FROM runs AS r
WHERE r.run_no = page.no
