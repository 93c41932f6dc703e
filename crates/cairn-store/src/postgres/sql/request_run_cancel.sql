-- Records that a cancel of a run not yet finished (QUEUED, RUNNING) was
-- asked, and by whom ($2; the first asker is kept), and notifies 'x:<run>'
-- for the run's driver, on whichever server it runs (delivered at commit).
-- Returns the run_no when recorded (else NULL), then the state the
-- statement met, as run_change.sql does.
WITH cur AS (
    SELECT status, last_at FROM runs WHERE id = $1
), upd AS (
    UPDATE runs
    SET cancel_requested_by = COALESCE(cancel_requested_by, $2)
    WHERE id = $1 AND status IN (0, 1)
    RETURNING run_no, id
)
SELECT upd.run_no, cur.status, cur.last_at,
       CASE WHEN upd.run_no IS NOT NULL THEN pg_notify('cairn', 'x:' || upd.id) END
FROM (SELECT) AS one
LEFT JOIN cur ON true
LEFT JOIN upd ON true
