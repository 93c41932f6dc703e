-- Why a run change was refused, read again as task_state.sql is.
SELECT status, last_at FROM runs WHERE id = $1
