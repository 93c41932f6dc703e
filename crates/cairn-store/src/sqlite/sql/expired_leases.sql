SELECT t.id, r.id, t.name, t.attempt, t.max_attempts,
       t.lease_token, t.worker, t.last_heartbeat_at, t.lease_expires_at
FROM tasks t INDEXED BY tasks_lease_expiry -- not tasks_status (V6): no sort
JOIN runs r ON r.run_no = t.run_no
WHERE t.status = 3 AND t.lease_expires_at < ?1
ORDER BY t.lease_expires_at
LIMIT ?2
