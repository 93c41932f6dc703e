-- The first entry of the partial index tasks_lease_expiry.
SELECT lease_expires_at FROM tasks WHERE status = 3 ORDER BY lease_expires_at LIMIT 1
