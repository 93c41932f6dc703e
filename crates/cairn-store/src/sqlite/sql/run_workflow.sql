-- The workflow of a run, to name the status counts of its changes (once per
-- run and transaction).
SELECT workflow FROM runs WHERE run_no = ?1
