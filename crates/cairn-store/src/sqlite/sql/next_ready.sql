-- The earliest offer of queue ?1 not ready yet at ?2.
SELECT ready_at FROM task_offers WHERE queue = ?1 AND ready_at > ?2 ORDER BY ready_at LIMIT 1
