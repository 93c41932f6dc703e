-- The task counts of days [$1, $2), summed per slot ((day - $3) / $4), workflow
-- and status, of the workflows $5 (empty: every workflow). One range of the
-- primary key; the workflows are checked on the rows in it.
SELECT (day - $3::bigint) / $4::bigint, workflow, status, sum(n)::bigint
FROM task_counts_day
WHERE day >= $1::bigint AND day < $2::bigint
  AND (cardinality($5::text[]) = 0 OR workflow = ANY ($5::text[]))
GROUP BY 1, 2, 3
