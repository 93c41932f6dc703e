-- A new owner ($3) takes over a run that is not finished, only from the owner
-- the caller saw ($2), so two servers can never both adopt it.
UPDATE runs
SET owner = $3
WHERE id = $1 AND owner IS NOT DISTINCT FROM $2 AND status IN (0, 1)
RETURNING run_no
