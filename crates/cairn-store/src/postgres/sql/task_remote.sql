-- Why a dispatch change was refused when the task's status and lease fit:
-- whether the task has a queue (only a remote task is offered or posted for).
SELECT queue IS NOT NULL FROM tasks WHERE id = $1
