-- The search terms of imported runs' labels (search::label_terms).
INSERT INTO run_labels (term, run_id, run_no)
SELECT * FROM UNNEST($1::text[], $2::uuid[], $3::bigint[])
