-- The log of run number ?1 (being deleted).
DELETE FROM run_transitions WHERE run_no = ?1
