-- A new run (QUEUED) with its workflow text, its creation transition and all
-- its tasks (SUBMITTED) with theirs, in one statement: the tasks come as
-- parallel arrays, one element per task, so a run of 100,000 tasks is one
-- round trip and a few set-wise inserts. Each task's number is drawn once
-- (the materialized `numbered`) and shared by its row and its log row, so
-- the two inserts need no join. No row back: the id is taken, or ($21) a run
-- of the same workflow for the same schedule tick exists.
WITH run AS (
    INSERT INTO runs (id, workflow, status, trigger_kind, params, owner, spec_path, submitted_at, last_at,
                      schedule_tick)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8, $21)
    ON CONFLICT DO NOTHING
    RETURNING run_no
), spec AS (
    INSERT INTO run_specs (run_no, source)
    SELECT run_no, $9::text FROM run
), run_log AS (
    INSERT INTO run_transitions (run_no, from_status, to_status, at, reason, actor)
    SELECT run_no, NULL, $3::smallint, $8::bigint, $10::text, $11::text FROM run
), numbered AS MATERIALIZED (
    SELECT nextval('tasks_task_no_seq') AS task_no, run.run_no, u.*
    FROM run,
         UNNEST($13::uuid[], $14::integer[], $15::integer[], $16::bigint[], $17::text[], $18::text[],
                $19::text[], $20::text[])
             AS u (id, idx, max_attempts, at, name, queue, reason, actor)
), new_tasks AS (
    -- Each task keeps its run's workflow, for search (V6).
    INSERT INTO tasks (task_no, id, run_no, idx, status, max_attempts, last_at, submitted_at, name, queue,
                       workflow)
    OVERRIDING SYSTEM VALUE
    SELECT task_no, id, run_no, idx, $12::smallint, max_attempts, at, at, name, queue, $2::text FROM numbered
), labels AS (
    -- The search terms of the run's labels (search::label_terms).
    INSERT INTO run_labels (term, run_id, run_no)
    SELECT u.term, $1::uuid, run.run_no FROM run, UNNEST($22::text[]) AS u (term)
), task_log AS (
    INSERT INTO task_transitions (task_no, attempt, from_status, to_status, at, reason, actor)
    SELECT task_no, 0, NULL, $12::smallint, at, reason, actor FROM numbered
)
SELECT run_no FROM run
