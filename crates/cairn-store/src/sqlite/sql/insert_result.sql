-- A worker's result, kept only for a RUNNING remote task (one with a queue)
-- under the lease (?2) it names. No row back: the lease is not current, the
-- task has no queue, or the result is already there (posting again is harmless).
INSERT INTO task_results (task_no, token, at, body)
SELECT task_no, ?2, ?3, ?4 FROM tasks WHERE id = ?1 AND status = 3 AND lease_token = ?2 AND queue IS NOT NULL
ON CONFLICT (task_no) DO NOTHING
RETURNING task_no
