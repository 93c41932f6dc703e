-- The one leader lock, held by the leader's session.
SELECT pg_try_advisory_lock($1)
