-- The finished attempts of imported tasks, with their results.
INSERT INTO attempts (task_no, attempt, worker, started_at, ended_at, outcome, exit_code, error, outputs)
SELECT u.task_no, u.attempt, u.worker, u.started_at, u.ended_at, u.outcome, u.exit_code, u.error,
       u.outputs::jsonb
FROM UNNEST($1::bigint[], $2::integer[], $3::text[], $4::bigint[], $5::bigint[], $6::smallint[],
            $7::integer[], $8::text[], $9::text[])
    AS u (task_no, attempt, worker, started_at, ended_at, outcome, exit_code, error, outputs)
