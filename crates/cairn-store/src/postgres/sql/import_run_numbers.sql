-- $1 new run numbers, handed out to the runs of an import (src/import.rs)
-- before they are written, so the rows of their logs name them without a
-- join back to what was inserted.
SELECT nextval('runs_run_no_seq') FROM generate_series(1, $1::bigint)
