-- Version 15: the attempts the reaper ended (crate::reaped), newest first,
-- straight from the transition log. The index holds only the reaper's
-- transitions out of RUNNING (3), so it stays a few rows among millions and
-- costs the hot path nothing but the check of its condition.
CREATE INDEX task_transitions_reaped ON task_transitions (at, seq)
WHERE actor = 'reaper' AND from_status = 3;

PRAGMA user_version = 15;
