-- The driver takes its offer back; no row back: there was none (a claim took it).
DELETE FROM task_offers WHERE task_no = (SELECT task_no FROM tasks WHERE id = ?1)
RETURNING task_no
