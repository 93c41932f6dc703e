-- Deletes run ?1 if it is finished (COMPLETED, PARTIALLY_SUCCEEDED, FAILED,
-- CANCELED) and so is every task of it (COMPLETED, FAILED, CANCELED,
-- SKIPPED, ABANDONED): running work is never deleted, whoever asks. Back:
-- what the status counts need to subtract it. Its rows elsewhere go next,
-- by its number.
DELETE FROM runs
WHERE id = ?1
  AND status IN (2, 3, 4, 5)
  AND NOT EXISTS (
      SELECT 1 FROM tasks INDEXED BY tasks_run WHERE tasks.run_no = runs.run_no AND tasks.status NOT IN (4, 5, 6, 7, 8)
  )
RETURNING run_no, workflow, status, submitted_at
