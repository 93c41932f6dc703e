//! The webhook outbox on SQLite (`crate::webhooks`): enqueues and attempts
//! written on the writer thread like every other write, reads on the
//! reader pool.

use cairn_core::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Error;
use crate::error::StoreError;
use crate::webhooks::{self, COLUMNS, Columns, Delivery, DeliveryAttempt, DeliveryQuery, NewDelivery};

/// A write to the outbox.
pub(crate) enum WebhookWrite {
    Enqueue(NewDelivery),
    Attempt(DeliveryAttempt),
}

const ENQUEUE: &str = "\
INSERT INTO webhook_deliveries
    (webhook, kind, event_key, workflow, body, created_at, state, max_attempts, next_attempt_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'pending', ?7, ?6)
ON CONFLICT (webhook, event_key) DO NOTHING
RETURNING id";

// Only a pending row takes an attempt: one recorded twice, or after the row
// was settled, changes nothing.
const ATTEMPT: &str = "\
UPDATE webhook_deliveries
SET attempts = attempts + 1, last_attempt_at = ?2, last_status = ?3, last_error = ?4,
    state = ?5, next_attempt_at = ?6, delivered_at = ?7
WHERE id = ?1 AND state = 'pending'
RETURNING id";

/// On the writer's transaction: the id enqueued or attempted; `None` when
/// the key was there already, or the delivery is no longer pending.
pub(super) fn write(conn: &Connection, w: &WebhookWrite) -> Result<Option<i64>, Error> {
    match w {
        WebhookWrite::Enqueue(d) => Ok(conn
            .prepare_cached(ENQUEUE)?
            .query_row(
                params![
                    d.webhook,
                    d.kind,
                    d.key,
                    d.workflow,
                    d.body,
                    d.created_at.as_micros(),
                    i64::from(d.max_attempts.max(1))
                ],
                |row| row.get(0),
            )
            .optional()?),
        WebhookWrite::Attempt(a) => {
            let (state, next, delivered) = webhooks::after_attempt(a);
            Ok(conn
                .prepare_cached(ATTEMPT)?
                .query_row(
                    params![a.id, a.at.as_micros(), a.status.map(i64::from), a.error, state, next, delivered],
                    |row| row.get(0),
                )
                .optional()?)
        }
    }
}

pub(super) fn due(conn: &Connection, now: Timestamp, limit: usize) -> Result<Vec<Delivery>, Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhook_deliveries \
         WHERE state = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?2"
    ))?;
    let limit = i64::try_from(limit.min(webhooks::MAX_DELIVERIES)).unwrap_or(0);
    let rows = stmt.query_map(params![now.as_micros(), limit], |row| Ok(delivery(row)))?;
    rows.map(|r| r?).collect()
}

pub(super) fn list(conn: &Connection, q: &DeliveryQuery) -> Result<Vec<Delivery>, Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM webhook_deliveries \
         WHERE (?1 IS NULL OR state = ?1) AND (?2 IS NULL OR webhook = ?2) AND (?3 IS NULL OR id < ?3) \
         ORDER BY id DESC LIMIT ?4"
    ))?;
    let limit = i64::try_from(q.limit.min(webhooks::MAX_DELIVERIES)).unwrap_or(0);
    let rows = stmt.query_map(params![q.state.map(|s| s.as_str()), q.webhook, q.before, limit], |row| {
        Ok(delivery(row))
    })?;
    rows.map(|r| r?).collect()
}

fn delivery(row: &Row<'_>) -> Result<Delivery, Error> {
    Columns {
        id: row.get(0)?,
        webhook: row.get(1)?,
        kind: row.get(2)?,
        key: row.get(3)?,
        workflow: row.get(4)?,
        body: row.get(5)?,
        created_at: row.get(6)?,
        state: row.get(7)?,
        attempts: row.get(8)?,
        max_attempts: row.get(9)?,
        next_attempt_at: row.get(10)?,
        last_attempt_at: row.get(11)?,
        last_status: row.get(12)?,
        last_error: row.get(13)?,
        delivered_at: row.get(14)?,
    }
    .into_delivery()
    .map_err(|e| Error::Store(StoreError::Corrupt(e)))
}
