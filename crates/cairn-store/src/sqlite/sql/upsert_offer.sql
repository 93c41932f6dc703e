-- Offers a PENDING remote task (one with a queue) to queue ?2; an offer of
-- it still waiting is replaced in place (it keeps its seq, its place in
-- line). No row back: the task is missing, not PENDING or has no queue.
INSERT INTO task_offers (task_no, run_no, queue, ready_at, lease_ms, payload)
SELECT task_no, run_no, ?2, ?3, ?4, ?5 FROM tasks WHERE id = ?1 AND status = 2 AND queue IS NOT NULL
ON CONFLICT (task_no) DO UPDATE
SET queue = excluded.queue, ready_at = excluded.ready_at, lease_ms = excluded.lease_ms,
    payload = excluded.payload
RETURNING task_no
