INSERT INTO task_transitions (task_no, attempt, from_status, to_status, at, reason, actor)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
