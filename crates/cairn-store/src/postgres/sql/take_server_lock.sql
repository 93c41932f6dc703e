-- A member's liveness lock ($1, $2), held by its session for as long as it lives.
SELECT pg_try_advisory_lock($1, $2)
