-- Finished runs of workflow ?1 older than its newest ?2 runs (the newest
-- count whatever their status), oldest first, at most ?3: the id of the
-- first run beyond the kept ones is found by walking runs_workflow back ?2
-- entries (none: fewer runs than that, nothing expires), and the runs up
-- to it are walked forward from the oldest.
SELECT id
FROM runs INDEXED BY runs_workflow
WHERE workflow = ?1
  AND id <= (SELECT id FROM runs INDEXED BY runs_workflow WHERE workflow = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)
  AND status IN (2, 3, 4, 5)
ORDER BY id
LIMIT ?3
