-- The label terms of run number ?1 (being deleted), by run_labels_run.
DELETE FROM run_labels INDEXED BY run_labels_run WHERE run_no = ?1
