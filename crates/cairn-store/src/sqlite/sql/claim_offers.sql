-- A claim's candidates in one queue (?1): offers ready at ?2, oldest first
-- (a walk along task_offers_claim), at most ?3, each with its run.
SELECT o.seq, o.task_no, o.ready_at, o.lease_ms, o.payload, r.id, r.owner
FROM task_offers o
CROSS JOIN runs r ON r.run_no = o.run_no
WHERE o.queue = ?1 AND o.ready_at <= ?2
ORDER BY o.ready_at, o.seq
LIMIT ?3
