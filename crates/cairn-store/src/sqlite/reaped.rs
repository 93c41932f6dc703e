//! Reaped attempts on SQLite (`crate::reaped`): one walk of the partial
//! index `task_transitions_reaped` (V15), newest first.

use cairn_core::{RunId, TaskId, Timestamp};
use rusqlite::{Connection, Row, params};

use super::Error;
use crate::error::StoreError;
use crate::reaped::{MAX_REAPED, ReapedAttempt, ReapedCursor, ReapedQuery};

// The conditions on `actor` and `from_status` are the index's own, so the
// planner can use it; the workflows are checked on the rows it walks.
const LIST: &str = "\
SELECT tt.at, tt.seq, tt.attempt, tt.to_status, tt.reason, t.id, t.name, r.id, r.workflow
FROM task_transitions tt INDEXED BY task_transitions_reaped
JOIN tasks t ON t.task_no = tt.task_no
JOIN runs r ON r.run_no = t.run_no
WHERE tt.actor = 'reaper' AND tt.from_status = 3
  AND (?1 IS NULL OR (tt.at, tt.seq) < (?1, ?2))
  AND (?3 IS NULL OR r.workflow IN (SELECT value FROM json_each(?3)))
ORDER BY tt.at DESC, tt.seq DESC
LIMIT ?4";

pub(super) fn list(conn: &Connection, q: &ReapedQuery) -> Result<Vec<ReapedAttempt>, Error> {
    let workflows = crate::counts::workflow_filter(&q.workflows)
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::InvalidQuery(format!("the workflows cannot be encoded: {e}")))?;
    let limit = i64::try_from(q.limit.min(MAX_REAPED)).unwrap_or(0);
    let mut stmt = conn.prepare_cached(LIST)?;
    let rows = stmt.query_map(
        params![q.before.map(|c| c.at.as_micros()), q.before.map(|c| c.seq), workflows, limit],
        |row| Ok(reaped(row)),
    )?;
    rows.map(|r| r?).collect()
}

fn reaped(row: &Row<'_>) -> Result<ReapedAttempt, Error> {
    let at = Timestamp::from_micros(row.get(0)?);
    Ok(ReapedAttempt {
        cursor: ReapedCursor { at, seq: row.get(1)? },
        at,
        attempt: row.get(2)?,
        to: super::read::task_status(row.get(3)?)?,
        reason: row.get(4)?,
        task_id: TaskId::from_bytes(row.get(5)?),
        step: row.get(6)?,
        run_id: RunId::from_bytes(row.get(7)?),
        workflow: row.get(8)?,
    })
}
