-- The workflow texts of imported runs.
INSERT INTO run_specs (run_no, source)
SELECT * FROM UNNEST($1::bigint[], $2::text[])
