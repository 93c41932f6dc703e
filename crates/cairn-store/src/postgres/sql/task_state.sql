-- Why a task change was refused, read again when the state its
-- compare-and-set met had since moved on (a concurrent writer committed).
SELECT status, attempt, last_at, lease_token FROM tasks WHERE id = $1
