-- The task counts of minutes [?1, ?2), summed per slot ((minute - ?3) / ?4), workflow
-- and status, of the workflows in the JSON array ?5 (NULL: every workflow).
-- One range of the primary key; the workflows are checked on the rows in it.
SELECT (minute - ?3) / ?4, workflow, status, SUM(n)
FROM task_counts_minute
WHERE minute >= ?1 AND minute < ?2
  AND (?5 IS NULL OR workflow IN (SELECT value FROM json_each(?5)))
GROUP BY 1, 2, 3
