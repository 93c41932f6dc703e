-- The run counts of minutes [$1, $2), summed per slot ((minute - $3) / $4), workflow
-- and status, of the workflows $5 (empty: every workflow). One range of the
-- primary key; the workflows are checked on the rows in it.
SELECT (minute - $3::bigint) / $4::bigint, workflow, status, sum(n)::bigint
FROM run_counts_minute
WHERE minute >= $1::bigint AND minute < $2::bigint
  AND (cardinality($5::text[]) = 0 OR workflow = ANY ($5::text[]))
GROUP BY 1, 2, 3
