-- The workflows that have runs, in name order, after $1, at most $2: a
-- loose index scan of runs_workflow, one seek per name, however many runs
-- each has.
WITH RECURSIVE names (workflow) AS (
    SELECT (SELECT workflow FROM runs WHERE workflow > $1 ORDER BY workflow LIMIT 1)
    UNION ALL
    SELECT (SELECT r.workflow FROM runs r WHERE r.workflow > names.workflow ORDER BY r.workflow LIMIT 1)
    FROM names
    WHERE names.workflow IS NOT NULL
)
SELECT workflow FROM names WHERE workflow IS NOT NULL LIMIT $2
