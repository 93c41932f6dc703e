INSERT INTO tasks (id, status, last_at, run_no, idx, max_attempts, submitted_at, name, queue)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?3, ?7, ?8)
