-- Why a run change was refused.
SELECT status, last_at FROM runs WHERE id = ?1
