-- The run counts of days [?1, ?2), summed per slot ((day - ?3) / ?4), workflow
-- and status, of the workflows in the JSON array ?5 (NULL: every workflow).
-- One range of the primary key; the workflows are checked on the rows in it.
SELECT (day - ?3) / ?4, workflow, status, SUM(n)
FROM run_counts_day
WHERE day >= ?1 AND day < ?2
  AND (?5 IS NULL OR workflow IN (SELECT value FROM json_each(?5)))
GROUP BY 1, 2, 3
