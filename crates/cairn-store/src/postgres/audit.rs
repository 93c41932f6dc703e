//! The audit log on PostgreSQL (`crate::audit`): one statement per event.

use deadpool_postgres::Pool;
use tokio_postgres::Row;

use super::{Error, Uuid};
use crate::audit::{self, AuditEvent, AuditQuery, NewAuditEvent};
use crate::error::StoreError;

const COLUMNS: &str = "id, at, kind, actor, target, detail";

const INSERT: &str = "\
INSERT INTO audit_events (id, at, kind, actor, target, detail) VALUES ($1, $2, $3, $4, $5, $6)";

pub(super) async fn record(pool: &Pool, e: &NewAuditEvent) -> Result<(), Error> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(INSERT).await?;
    client
        .execute(
            &stmt,
            &[&Uuid(e.id.to_bytes()), &e.at.as_micros(), &e.kind.as_str(), &e.actor, &e.target, &e.detail],
        )
        .await?;
    Ok(())
}

pub(super) async fn list(pool: &Pool, q: &AuditQuery) -> Result<Vec<AuditEvent>, Error> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM audit_events \
         WHERE ($1::text IS NULL OR kind = $1) AND ($2::text IS NULL OR actor = $2) \
           AND ($3::uuid IS NULL OR event_no < (SELECT event_no FROM audit_events WHERE id = $3)) \
         ORDER BY event_no DESC LIMIT $4"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let before = q.before.map(|id| Uuid(id.to_bytes()));
    let limit = i64::try_from(q.limit.min(audit::MAX_AUDIT_EVENTS)).unwrap_or(0);
    let rows = client.query(&stmt, &[&q.kind.map(|k| k.as_str()), &q.actor, &before, &limit]).await?;
    rows.iter().map(event).collect()
}

fn event(row: &Row) -> Result<AuditEvent, Error> {
    audit::from_columns(
        row.try_get::<_, Uuid>(0)?.0,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
        row.try_get(5)?,
    )
    .map_err(|e| Error::Store(StoreError::Corrupt(e)))
}
