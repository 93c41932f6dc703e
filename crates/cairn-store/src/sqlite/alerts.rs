//! Alerts on SQLite (`crate::alerts`): written on the writer thread like
//! every other write, which publishes [`Notice::Alert`](crate::Notice::Alert)
//! once it commits; read on the reader pool.

use cairn_core::AlertId;
use cairn_core::alert::Alert;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Error;
use crate::alerts::{self, AlertQuery, AlertWrite};
use crate::error::StoreError;

const RAISE: &str = "\
INSERT INTO alerts (id, kind, workflow, status, raised_at, message, details)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
ON CONFLICT (kind, workflow, status) WHERE resolved_at IS NULL DO NOTHING
RETURNING id";

// Never dated before the alert was raised, whatever the resolver's clock says.
const RESOLVE: &str = "\
UPDATE alerts SET resolved_at = max(raised_at, ?4)
WHERE kind = ?1 AND workflow = ?2 AND status = ?3 AND resolved_at IS NULL
RETURNING id";

const COLUMNS: &str = "id, kind, workflow, status, raised_at, resolved_at, message, details";

/// On the writer's transaction: the id of the alert raised or resolved.
pub(super) fn write(conn: &Connection, w: &AlertWrite) -> Result<Option<AlertId>, Error> {
    let id = match w {
        AlertWrite::Raise(a) => conn
            .prepare_cached(RAISE)?
            .query_row(
                params![
                    a.id.to_bytes(),
                    a.key.kind.as_str(),
                    a.key.workflow,
                    a.key.status_code(),
                    a.raised_at.as_micros(),
                    a.message,
                    a.details.to_string(),
                ],
                |r| r.get::<_, [u8; 16]>(0),
            )
            .optional()?,
        AlertWrite::Resolve { key, at } => conn
            .prepare_cached(RESOLVE)?
            .query_row(params![key.kind.as_str(), key.workflow, key.status_code(), at.as_micros()], |r| {
                r.get::<_, [u8; 16]>(0)
            })
            .optional()?,
    };
    Ok(id.map(AlertId::from_bytes))
}

pub(super) fn list(conn: &Connection, q: &AlertQuery) -> Result<Vec<Alert>, Error> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM alerts \
         WHERE (?1 = 0 OR resolved_at IS NULL) AND (?2 IS NULL OR kind = ?2) \
           AND (?3 IS NULL OR workflow IN (SELECT value FROM json_each(?3))) AND (?4 IS NULL OR id < ?4) \
         ORDER BY id DESC LIMIT ?5"
    ))?;
    let limit = i64::try_from(q.limit.min(alerts::MAX_ALERTS)).unwrap_or(0);
    let workflows = crate::counts::workflow_filter(&q.workflows)
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| StoreError::InvalidQuery(format!("the workflows cannot be encoded: {e}")))?;
    let rows = stmt.query_map(
        params![q.open_only, q.kind.map(|k| k.as_str()), workflows, q.before.map(|id| id.to_bytes()), limit],
        |row| Ok(alert(row)),
    )?;
    rows.map(|r| r?).collect()
}

pub(super) fn get(conn: &Connection, id: AlertId) -> Result<Option<Alert>, Error> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM alerts WHERE id = ?1"))?
        .query_row([id.to_bytes()], |row| Ok(alert(row)))
        .optional()?
        .transpose()
}

fn alert(row: &Row<'_>) -> Result<Alert, Error> {
    let details: String = row.get(7)?;
    let details = serde_json::from_str(&details)
        .map_err(|e| Error::Store(StoreError::Corrupt(format!("alert details are not JSON: {e}"))))?;
    alerts::from_columns(
        row.get(0)?,
        &row.get::<_, String>(1)?,
        row.get(2)?,
        row.get(3)?,
        (row.get(4)?, row.get(5)?),
        row.get(6)?,
        details,
    )
    .map_err(|e| Error::Store(StoreError::Corrupt(e)))
}
