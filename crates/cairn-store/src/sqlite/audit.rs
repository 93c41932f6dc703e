//! The audit log on SQLite (`crate::audit`): added on the writer thread,
//! read on the reader pool.

use rusqlite::{Connection, Row, params};

use super::Error;
use crate::audit::{self, AuditEvent, AuditQuery, NewAuditEvent};
use crate::error::StoreError;

const COLUMNS: &str = "id, at, kind, actor, target, detail";

const INSERT: &str = "\
INSERT INTO audit_events (id, at, kind, actor, target, detail) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// On the writer's transaction.
pub(super) fn record(conn: &Connection, e: &NewAuditEvent) -> Result<(), Error> {
    let detail = e.detail.as_ref().map(|d| d.to_string());
    conn.prepare_cached(INSERT)?.execute(params![
        e.id.to_bytes(),
        e.at.as_micros(),
        e.kind.as_str(),
        e.actor,
        e.target,
        detail
    ])?;
    Ok(())
}

pub(super) fn list(conn: &Connection, q: &AuditQuery) -> Result<Vec<AuditEvent>, Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM audit_events \
         WHERE (?1 IS NULL OR kind = ?1) AND (?2 IS NULL OR actor = ?2) \
           AND (?3 IS NULL OR event_no < (SELECT event_no FROM audit_events WHERE id = ?3)) \
         ORDER BY event_no DESC LIMIT ?4"
    ))?;
    let limit = i64::try_from(q.limit.min(audit::MAX_AUDIT_EVENTS)).unwrap_or(0);
    let rows = stmt.query_map(
        params![q.kind.map(|k| k.as_str()), q.actor, q.before.map(|id| id.to_bytes()), limit],
        |row| Ok(event(row)),
    )?;
    rows.map(|r| r?).collect()
}

fn event(row: &Row<'_>) -> Result<AuditEvent, Error> {
    let detail = row
        .get::<_, Option<String>>(5)?
        .map(|d| serde_json::from_str(&d))
        .transpose()
        .map_err(|e| Error::Store(StoreError::Corrupt(format!("audit event detail is not JSON: {e}"))))?;
    audit::from_columns(row.get(0)?, row.get(1)?, &row.get::<_, String>(2)?, row.get(3)?, row.get(4)?, detail)
        .map_err(|e| Error::Store(StoreError::Corrupt(e)))
}
