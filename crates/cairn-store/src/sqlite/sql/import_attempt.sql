-- One finished attempt of an imported task, with its result.
INSERT INTO attempts (task_no, attempt, worker, started_at, ended_at, outcome, exit_code, error, outputs)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
