-- A run status change, applied only from the expected status ($2) and not
-- older than the run's last change, with its transition row. Returns the
-- run_no when applied (else NULL), then the state the compare-and-set met,
-- then the run's submission time when applied, for the status counts.
WITH cur AS (
    SELECT status, last_at FROM runs WHERE id = $1
), upd AS (
    UPDATE runs
    SET status = $3, last_at = $4,
        started_at = COALESCE($5, started_at),
        finished_at = $6,
        error = COALESCE($7, error)
    WHERE id = $1 AND status = $2 AND last_at <= $4
    RETURNING run_no, submitted_at
), logged AS (
    INSERT INTO run_transitions (run_no, from_status, to_status, at, reason, actor)
    SELECT run_no, $2::smallint, $3::smallint, $4::bigint, $8::text, $9::text FROM upd
)
SELECT (SELECT run_no FROM upd), cur.status, cur.last_at, (SELECT submitted_at FROM upd)
FROM (SELECT) AS one LEFT JOIN cur ON true
