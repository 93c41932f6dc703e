-- One progress sample of a task's current attempt.
INSERT OR REPLACE INTO progress_samples (task_no, attempt, at, percent, message)
VALUES (?1, ?2, ?3, ?4, ?5)
