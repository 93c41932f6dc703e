-- A task left PENDING: an offer of it must not outlive that.
DELETE FROM task_offers WHERE task_no = ?1
