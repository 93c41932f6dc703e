-- The workflow text of run number ?1 (being deleted).
DELETE FROM run_specs WHERE run_no = ?1
