INSERT INTO run_transitions (run_no, from_status, to_status, at, reason, actor)
VALUES (?1, ?2, ?3, ?4, ?5, ?6)
