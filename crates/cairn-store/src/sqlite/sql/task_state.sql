-- Why a task change was refused.
SELECT status, attempt, last_at, lease_token FROM tasks WHERE id = ?1
