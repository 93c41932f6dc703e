-- Drivers take their offers back, one task per element of the array. An
-- offer a claim has locked is waited for: once the claim commits it is gone,
-- and the withdrawal finds nothing, so a withdrawal and a claim never both
-- win. One row back per element, in order: whether an offer was deleted.
WITH input AS (
    SELECT * FROM UNNEST($1::uuid[]) WITH ORDINALITY AS i (id, ord)
), task AS (
    SELECT i.ord, t.task_no FROM input i JOIN tasks t ON t.id = i.id
), taken AS (
    -- By the primary key: the array keeps the planner from hashing the whole table.
    DELETE FROM task_offers WHERE task_no = ANY (ARRAY(SELECT task_no FROM task))
    RETURNING task_no
)
SELECT i.ord, k.task_no IS NOT NULL
FROM input i
LEFT JOIN task t ON t.ord = i.ord
LEFT JOIN taken k ON k.task_no = t.task_no
ORDER BY i.ord
