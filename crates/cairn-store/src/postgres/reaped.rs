//! Reaped attempts on PostgreSQL (`crate::reaped`): the partial index
//! `task_transitions_reaped` (V15) of each partition of the log, merged
//! newest first.

use cairn_core::{RunId, TaskId, Timestamp};
use deadpool_postgres::Pool;
use tokio_postgres::Row;

use super::{Error, Uuid};
use crate::error::StoreError;
use crate::reaped::{MAX_REAPED, ReapedAttempt, ReapedCursor, ReapedQuery};

// The conditions on `actor` and `from_status` are the index's own, so the
// planner can use it; the workflows are checked on the rows it walks.
const LIST: &str = "\
SELECT tt.at, tt.seq, tt.attempt, tt.to_status, tt.reason, t.id, t.name, r.id, r.workflow
FROM task_transitions tt
JOIN tasks t ON t.task_no = tt.task_no
JOIN runs r ON r.run_no = t.run_no
WHERE tt.actor = 'reaper' AND tt.from_status = 3
  AND ($1::bigint IS NULL OR (tt.at, tt.seq) < ($1, $2::bigint))
  AND ($3::text[] IS NULL OR r.workflow = ANY ($3))
ORDER BY tt.at DESC, tt.seq DESC
LIMIT $4";

pub(super) async fn list(pool: &Pool, q: &ReapedQuery) -> Result<Vec<ReapedAttempt>, Error> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(LIST).await?;
    let workflows = crate::counts::workflow_filter(&q.workflows);
    let limit = i64::try_from(q.limit.min(MAX_REAPED)).unwrap_or(0);
    let rows = client
        .query(&stmt, &[&q.before.map(|c| c.at.as_micros()), &q.before.map(|c| c.seq), &workflows, &limit])
        .await?;
    rows.iter().map(reaped).collect()
}

fn reaped(row: &Row) -> Result<ReapedAttempt, Error> {
    let at = Timestamp::from_micros(row.try_get(0)?);
    let attempt: i32 = row.try_get(2)?;
    Ok(ReapedAttempt {
        cursor: ReapedCursor { at, seq: row.try_get(1)? },
        at,
        attempt: u32::try_from(attempt)
            .map_err(|_| Error::Store(StoreError::Corrupt(format!("negative attempt {attempt}"))))?,
        to: super::read::task_status(row.try_get(3)?)?,
        reason: row.try_get(4)?,
        task_id: TaskId::from_bytes(row.try_get::<_, Uuid>(5)?.0),
        step: row.try_get(6)?,
        run_id: RunId::from_bytes(row.try_get::<_, Uuid>(7)?.0),
        workflow: row.try_get(8)?,
    })
}
