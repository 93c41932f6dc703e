-- Asks the holder of the current lease (?2) to stop; its renewals say so.
UPDATE tasks SET cancel_requested = 1
WHERE id = ?1 AND status = 3 AND lease_token = ?2
RETURNING task_no
