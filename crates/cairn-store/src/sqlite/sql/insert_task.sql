-- A new task; its workflow (its run's, ?9) is kept on it for search (V6).
INSERT INTO tasks (id, status, last_at, run_no, idx, max_attempts, submitted_at, name, queue, workflow)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?3, ?7, ?8, ?9)
