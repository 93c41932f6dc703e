-- A finished task, imported whole (src/import.rs): no lease, its last
-- transition at `finished_at` (?4, also `last_at`), its run's workflow
-- (?17) for search, and the time it spent in each phase (V7), summed from
-- its log. An id already stored fails the statement.
INSERT INTO tasks (id, status, attempt, last_at, finished_at, run_no, idx, max_attempts, submitted_at,
                   started_at, not_before, progress_percent, progress_at, name, queue, progress_message,
                   details, workflow, blocked_us, pending_us, running_us)
VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20)
