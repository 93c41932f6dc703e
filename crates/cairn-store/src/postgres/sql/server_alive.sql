-- Whether the server whose liveness lock is ($1, $2) is alive: its session
-- holds the lock. Taken and released in one statement when free, so nothing
-- stays locked on the pooled connection that asks.
SELECT CASE WHEN pg_try_advisory_lock($1, $2) THEN NOT pg_advisory_unlock($1, $2) ELSE true END
