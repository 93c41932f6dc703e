//! The webhook outbox on PostgreSQL (`crate::webhooks`): one statement per
//! enqueue or attempt. The unique (webhook, event key) makes servers that
//! each enqueue one event agree on one row.

use cairn_core::Timestamp;
use deadpool_postgres::Pool;
use tokio_postgres::Row;

use super::Error;
use crate::error::StoreError;
use crate::webhooks::{self, COLUMNS, Columns, Delivery, DeliveryAttempt, DeliveryQuery, NewDelivery};

const ENQUEUE: &str = "\
INSERT INTO webhook_deliveries
    (webhook, kind, event_key, workflow, body, created_at, state, max_attempts, next_attempt_at)
VALUES ($1, $2, $3, $4, $5, $6, 'pending', $7, $6)
ON CONFLICT (webhook, event_key) DO NOTHING
RETURNING id";

// Only a pending row takes an attempt (see the SQLite twin).
const ATTEMPT: &str = "\
UPDATE webhook_deliveries
SET attempts = attempts + 1, last_attempt_at = $2, last_status = $3, last_error = $4,
    state = $5, next_attempt_at = $6, delivered_at = $7
WHERE id = $1 AND state = 'pending'
RETURNING id";

pub(super) async fn enqueue(pool: &Pool, d: &NewDelivery) -> Result<Option<i64>, Error> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(ENQUEUE).await?;
    let max = i32::try_from(d.max_attempts.max(1)).unwrap_or(i32::MAX);
    let row = client
        .query_opt(
            &stmt,
            &[&d.webhook, &d.kind, &d.key, &d.workflow, &d.body, &d.created_at.as_micros(), &max],
        )
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

pub(super) async fn attempt(pool: &Pool, a: &DeliveryAttempt) -> Result<Option<i64>, Error> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(ATTEMPT).await?;
    let (state, next, delivered) = webhooks::after_attempt(a);
    let status = a.status.map(i32::from);
    let row = client
        .query_opt(&stmt, &[&a.id, &a.at.as_micros(), &status, &a.error, &state, &next, &delivered])
        .await?;
    Ok(row.map(|r| r.try_get(0)).transpose()?)
}

pub(super) async fn due(pool: &Pool, now: Timestamp, limit: usize) -> Result<Vec<Delivery>, Error> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM webhook_deliveries \
         WHERE state = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at, id LIMIT $2"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let limit = i64::try_from(limit.min(webhooks::MAX_DELIVERIES)).unwrap_or(0);
    let rows = client.query(&stmt, &[&now.as_micros(), &limit]).await?;
    rows.iter().map(delivery).collect()
}

pub(super) async fn list(pool: &Pool, q: &DeliveryQuery) -> Result<Vec<Delivery>, Error> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM webhook_deliveries \
         WHERE ($1::text IS NULL OR state = $1) AND ($2::text IS NULL OR webhook = $2) \
           AND ($3::bigint IS NULL OR id < $3) \
         ORDER BY id DESC LIMIT $4"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let limit = i64::try_from(q.limit.min(webhooks::MAX_DELIVERIES)).unwrap_or(0);
    let rows = client.query(&stmt, &[&q.state.map(|s| s.as_str()), &q.webhook, &q.before, &limit]).await?;
    rows.iter().map(delivery).collect()
}

fn delivery(row: &Row) -> Result<Delivery, Error> {
    let int = |i: usize| -> Result<i64, Error> { Ok(i64::from(row.try_get::<_, i32>(i)?)) };
    let opt_int =
        |i: usize| -> Result<Option<i64>, Error> { Ok(row.try_get::<_, Option<i32>>(i)?.map(i64::from)) };
    Columns {
        id: row.try_get(0)?,
        webhook: row.try_get(1)?,
        kind: row.try_get(2)?,
        key: row.try_get(3)?,
        workflow: row.try_get(4)?,
        body: row.try_get(5)?,
        created_at: row.try_get(6)?,
        state: row.try_get(7)?,
        attempts: int(8)?,
        max_attempts: int(9)?,
        next_attempt_at: row.try_get(10)?,
        last_attempt_at: row.try_get(11)?,
        last_status: opt_int(12)?,
        last_error: row.try_get(13)?,
        delivered_at: row.try_get(14)?,
    }
    .into_delivery()
    .map_err(|e| Error::Store(StoreError::Corrupt(e)))
}
