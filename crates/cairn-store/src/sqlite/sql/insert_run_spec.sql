INSERT INTO run_specs (run_no, source) VALUES (?1, ?2)
