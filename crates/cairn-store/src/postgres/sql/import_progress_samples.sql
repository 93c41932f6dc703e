-- The progress samples of imported tasks.
INSERT INTO progress_samples (task_no, attempt, at, percent, message)
SELECT * FROM UNNEST($1::bigint[], $2::integer[], $3::bigint[], $4::real[], $5::text[])
