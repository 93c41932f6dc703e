//! Alerts on PostgreSQL (`crate::alerts`): each write is one statement that
//! also notifies `a:<id>`, delivered only if it commits.

use cairn_core::AlertId;
use cairn_core::alert::Alert;
use deadpool_postgres::Pool;
use tokio_postgres::Row;

use super::{Error, Uuid};
use crate::alerts::{self, AlertQuery, AlertWrite};
use crate::error::StoreError;

const RAISE: &str = "\
WITH raised AS (
    INSERT INTO alerts (id, kind, workflow, status, raised_at, message, details)
    VALUES ($1, $2, $3, $4, $5, $6, $7)
    ON CONFLICT (kind, workflow, status) WHERE resolved_at IS NULL DO NOTHING
    RETURNING id
)
SELECT id, pg_notify('cairn', 'a:' || id) FROM raised";

// Never dated before the alert was raised, whatever the resolver's clock says.
const RESOLVE: &str = "\
WITH resolved AS (
    UPDATE alerts SET resolved_at = greatest(raised_at, $4)
    WHERE kind = $1 AND workflow = $2 AND status = $3 AND resolved_at IS NULL
    RETURNING id
)
SELECT id, pg_notify('cairn', 'a:' || id) FROM resolved";

const COLUMNS: &str = "id, kind, workflow, status, raised_at, resolved_at, message, details";

pub(super) async fn write(pool: &Pool, w: &AlertWrite) -> Result<Option<AlertId>, Error> {
    let client = pool.get().await?;
    let row = match w {
        AlertWrite::Raise(a) => {
            let stmt = client.prepare_cached(RAISE).await?;
            let status = a.key.status_code() as i16;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
                &Uuid(a.id.to_bytes()),
                &a.key.kind.as_str(),
                &a.key.workflow,
                &status,
                &a.raised_at.as_micros(),
                &a.message,
                &a.details,
            ];
            client.query_opt(&stmt, &params).await?
        }
        AlertWrite::Resolve { key, at } => {
            let stmt = client.prepare_cached(RESOLVE).await?;
            let status = key.status_code() as i16;
            client.query_opt(&stmt, &[&key.kind.as_str(), &key.workflow, &status, &at.as_micros()]).await?
        }
    };
    row.map(|r| Ok(AlertId::from_bytes(r.try_get::<_, Uuid>(0)?.0))).transpose()
}

pub(super) async fn list(pool: &Pool, q: &AlertQuery) -> Result<Vec<Alert>, Error> {
    let client = pool.get().await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM alerts \
         WHERE (NOT $1 OR resolved_at IS NULL) AND ($2::text IS NULL OR kind = $2) \
           AND ($3::text[] IS NULL OR workflow = ANY ($3)) AND ($4::uuid IS NULL OR id < $4) \
         ORDER BY id DESC LIMIT $5"
    );
    let stmt = client.prepare_cached(&sql).await?;
    let before = q.before.map(|id| Uuid(id.to_bytes()));
    let limit = i64::try_from(q.limit.min(alerts::MAX_ALERTS)).unwrap_or(0);
    let rows = client
        .query(
            &stmt,
            &[
                &q.open_only,
                &q.kind.map(|k| k.as_str()),
                &crate::counts::workflow_filter(&q.workflows),
                &before,
                &limit,
            ],
        )
        .await?;
    rows.iter().map(alert).collect()
}

pub(super) async fn get(pool: &Pool, id: AlertId) -> Result<Option<Alert>, Error> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(&format!("SELECT {COLUMNS} FROM alerts WHERE id = $1")).await?;
    client.query_opt(&stmt, &[&Uuid(id.to_bytes())]).await?.as_ref().map(alert).transpose()
}

fn alert(row: &Row) -> Result<Alert, Error> {
    alerts::from_columns(
        row.try_get::<_, Uuid>(0)?.0,
        row.try_get(1)?,
        row.try_get(2)?,
        i64::from(row.try_get::<_, i16>(3)?),
        (row.try_get(4)?, row.try_get(5)?),
        row.try_get(6)?,
        row.try_get(7)?,
    )
    .map_err(|e| Error::Store(StoreError::Corrupt(e)))
}
