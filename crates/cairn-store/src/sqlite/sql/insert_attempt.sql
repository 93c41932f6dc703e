INSERT INTO attempts (task_no, attempt, worker, started_at) VALUES (?1, ?2, ?3, ?4)
