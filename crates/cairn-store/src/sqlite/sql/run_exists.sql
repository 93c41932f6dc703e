-- Why a new run was refused: its id is taken (a row), else its schedule tick.
SELECT 1 FROM runs WHERE id = ?1
