DELETE FROM task_offers WHERE seq = ?1
