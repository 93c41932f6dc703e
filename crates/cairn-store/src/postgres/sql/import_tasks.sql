-- Finished tasks imported whole (src/import.rs), each with its number
-- already drawn: no lease, the last transition at `finished_at` (also
-- `last_at`), the run's workflow for search, the time spent in each phase
-- (V7) summed from the log. An id already stored fails the statement
-- (tasks_id).
INSERT INTO tasks (task_no, run_no, id, status, attempt, last_at, finished_at, submitted_at, started_at,
                   not_before, idx, max_attempts, progress_percent, progress_at, name, queue,
                   progress_message, details, workflow, blocked_us, pending_us, running_us)
OVERRIDING SYSTEM VALUE
SELECT u.task_no, u.run_no, u.id, u.status, u.attempt, u.finished_at, u.finished_at, u.submitted_at,
       u.started_at, u.not_before, u.idx, u.max_attempts, u.progress_percent, u.progress_at, u.name,
       u.queue, u.progress_message, u.details::jsonb, u.workflow, u.blocked_us, u.pending_us, u.running_us
FROM UNNEST($1::bigint[], $2::bigint[], $3::uuid[], $4::smallint[], $5::integer[], $6::bigint[],
            $7::bigint[], $8::bigint[], $9::bigint[], $10::integer[], $11::integer[], $12::real[],
            $13::bigint[], $14::text[], $15::text[], $16::text[], $17::text[], $18::text[], $19::bigint[],
            $20::bigint[], $21::bigint[])
    AS u (task_no, run_no, id, status, attempt, finished_at, submitted_at, started_at, not_before, idx,
          max_attempts, progress_percent, progress_at, name, queue, progress_message, details, workflow,
          blocked_us, pending_us, running_us)
