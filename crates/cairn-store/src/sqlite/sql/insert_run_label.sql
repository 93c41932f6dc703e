-- One search term of a new run's labels (search::label_terms).
INSERT INTO run_labels (term, run_id, run_no) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING
