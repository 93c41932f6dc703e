-- The logs of imported runs, each in its order: rows are inserted in the
-- arrays' order, so `seq` keeps it.
INSERT INTO run_transitions (run_no, from_status, to_status, at, reason, actor)
SELECT u.run_no, u.from_status, u.to_status, u.at, u.reason, u.actor
FROM UNNEST($1::bigint[], $2::smallint[], $3::smallint[], $4::bigint[], $5::text[], $6::text[])
    WITH ORDINALITY AS u (run_no, from_status, to_status, at, reason, actor, ord)
ORDER BY u.ord
