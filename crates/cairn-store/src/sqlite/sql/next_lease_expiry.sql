SELECT lease_expires_at FROM tasks WHERE status = 3 ORDER BY lease_expires_at LIMIT 1
