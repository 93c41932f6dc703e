-- Why a new run was refused: its id is taken (true), else its schedule tick.
SELECT EXISTS (SELECT 1 FROM runs WHERE id = $1)
