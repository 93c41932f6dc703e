-- $1 new task numbers, handed out to the tasks of an import (src/import.rs)
-- before they are written, so the rows of their logs and attempts name them
-- without a join back to what was inserted.
SELECT nextval('tasks_task_no_seq') FROM generate_series(1, $1::bigint)
