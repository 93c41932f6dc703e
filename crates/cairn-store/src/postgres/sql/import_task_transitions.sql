-- The logs of imported tasks, each in its order: rows are inserted in the
-- arrays' order, so `seq` keeps it.
INSERT INTO task_transitions (task_no, attempt, from_status, to_status, at, reason, actor)
SELECT u.task_no, u.attempt, u.from_status, u.to_status, u.at, u.reason, u.actor
FROM UNNEST($1::bigint[], $2::integer[], $3::smallint[], $4::smallint[], $5::bigint[], $6::text[],
            $7::text[])
    WITH ORDINALITY AS u (task_no, attempt, from_status, to_status, at, reason, actor, ord)
ORDER BY u.ord
