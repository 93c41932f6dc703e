//! History searches on PostgreSQL (see `crate::search` for the plans): the
//! probes, then one statement — the plan's branches as one `UNION ALL`,
//! each an ordered index walk stopping after a page, merged in page order
//! and cut to a page and one row, each row of which is read by primary key
//! in a `LATERAL` subquery. One round trip, one snapshot.
//!
//! Statements are sent unnamed with their parameter types
//! (`query_typed`): a search's text varies with its filters, so caching
//! each as a prepared statement would grow every connection's cache
//! without bound, and the planner sees the actual values every time.

use deadpool_postgres::Pool;
use tokio_postgres::types::{IsNull, Json, ToSql, Type, to_sql_checked};
use tokio_postgres::{Client, Row};

use super::read::{run_record, task_record};
use super::{Error, Uuid};
use crate::history::{RunPage, TaskPage, TaskRow};
use crate::model::RunRecord;
use crate::search::{
    Dialect, Few, Key, Page, Plan, PlannedStatement, ProbeSql, QueryPlan, Runs, Sql, Tasks, Value,
};
use cairn_core::RunId;

const RUN_ROW: &str = include_str!("sql/search_run_row.sql");
const TASK_ROW: &str = include_str!("sql/search_task_row.sql");

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        match self {
            Value::Int(n) => n.to_sql(ty, out),
            Value::Status(code) => i16::from(*code).to_sql(ty, out),
            Value::Text(text) => text.to_sql(ty, out),
            Value::Id(id) => Uuid(*id).to_sql(ty, out),
        }
    }

    fn accepts(ty: &Type) -> bool {
        [Type::INT8, Type::INT2, Type::TEXT, Type::UUID].contains(ty)
    }

    to_sql_checked!();
}

fn pg_type(value: &Value) -> Type {
    match value {
        Value::Int(_) => Type::INT8,
        Value::Status(_) => Type::INT2,
        Value::Text(_) => Type::TEXT,
        Value::Id(_) => Type::UUID,
    }
}

async fn query(client: &Client, sql: &Sql) -> Result<Vec<Row>, Error> {
    let params: Vec<(&(dyn ToSql + Sync), Type)> =
        sql.params.iter().map(|v| (v as &(dyn ToSql + Sync), pg_type(v))).collect();
    Ok(client.query_typed(&sql.text, &params).await?)
}

/// The plan's branches merged into one statement, each row of the page
/// read by `row` (which names the page's row as `page.no`).
fn statement(plan: &impl Plan, row: &str) -> Sql {
    let mut sql = Sql::new(Dialect::Postgres);
    sql.push("SELECT x.* FROM (");
    if plan.branches() == 1 {
        plan.write(0, &mut sql);
    } else {
        for i in 0..plan.branches() {
            if i > 0 {
                sql.push(" UNION ALL ");
            }
            sql.push("SELECT no, id, finished_at FROM (");
            plan.write(i, &mut sql);
            sql.push(&format!(") AS b{i}"));
        }
        plan.page().order_by(&mut sql, "finished_at", "id");
        sql.limit(plan.page().fetch());
    }
    sql.push(") AS page CROSS JOIN LATERAL (").push(row.trim_end()).push(" OFFSET 0) AS x");
    sql
}

/// Runs each probe: a filter whose counts stay within its cap matches few.
async fn probe(client: &Client, probes: &[ProbeSql]) -> Result<Few, Error> {
    let mut counts = Vec::with_capacity(probes.len());
    for p in probes {
        let count: i64 = query(client, &p.sql).await?.first().map_or(Ok(0), |row| row.try_get(0))?;
        counts.push((p.probe, p.cap, usize::try_from(count).unwrap_or(usize::MAX)));
    }
    Ok(Few::new(counts))
}

/// The rows read, in page order, split into the page and the next cursor.
fn paged<T>(page: &Page, mut rows: Vec<(Key, T)>) -> (Vec<T>, Option<crate::Cursor>) {
    rows.sort_by(|a, b| page.cmp(&a.0, &b.0));
    page.split(rows)
}

pub(super) async fn search_runs(pool: &Pool, q: &Runs) -> Result<RunPage, Error> {
    let client = pool.get().await?;
    let few = probe(&client, &q.probes(Dialect::Postgres)).await?;
    let plan = q.plan(&few);
    if plan.branches() == 0 {
        return Ok(RunPage::default());
    }
    let rows = query(&client, &statement(&plan, RUN_ROW)).await?;
    let keyed = rows
        .iter()
        .map(|row| {
            let run = run_record(row)?;
            Ok((q.page().key(run.id.to_bytes(), run.finished_at.map(|t| t.as_micros())), run))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let (runs, next) = paged(q.page(), keyed);
    Ok(RunPage { runs, next })
}

/// [`crate::Store::list_runs`], as a search.
pub(super) async fn list_runs(pool: &Pool, q: &Runs) -> Result<Vec<RunRecord>, Error> {
    search_runs(pool, q).await.map(|page| page.runs)
}

pub(super) async fn search_tasks(pool: &Pool, q: &Tasks) -> Result<TaskPage, Error> {
    let client = pool.get().await?;
    let few = probe(&client, &q.probes(Dialect::Postgres)).await?;
    let plan = q.plan(&few);
    if plan.branches() == 0 {
        return Ok(TaskPage::default());
    }
    let rows = query(&client, &statement(&plan, TASK_ROW)).await?;
    let keyed = rows
        .iter()
        .map(|row| {
            let run = RunId::from_bytes(row.try_get::<_, Uuid>(23)?.0);
            let task = task_record(row, run)?;
            let key = q.page().key(task.id.to_bytes(), task.finished_at.map(|t| t.as_micros()));
            Ok((key, TaskRow { workflow: row.try_get(24)?, task }))
        })
        .collect::<Result<Vec<_>, Error>>()?;
    let (tasks, next) = paged(q.page(), keyed);
    Ok(TaskPage { tasks, next })
}

async fn explain(
    client: &Client,
    plan: &impl Plan,
    probes: &[ProbeSql],
    row: &str,
) -> Result<QueryPlan, Error> {
    let mut sqls: Vec<Sql> = probes.iter().map(|p| p.sql.clone()).collect();
    if plan.branches() > 0 {
        sqls.push(statement(plan, row));
    }
    let mut statements = Vec::new();
    for sql in sqls {
        let explained = Sql {
            text: format!("EXPLAIN (FORMAT JSON) {}", sql.text),
            params: sql.params.clone(),
            ..sql.clone()
        };
        let rows = query(client, &explained).await?;
        let plan: Json<serde_json::Value> =
            rows.first().map_or(Ok(Json(serde_json::Value::Null)), |r| r.try_get(0))?;
        statements.push(PlannedStatement { sql: sql.text, plan: plan.0.to_string() });
    }
    Ok(QueryPlan { shape: plan.shape().to_owned(), statements })
}

pub(super) async fn explain_runs(pool: &Pool, q: &Runs) -> Result<QueryPlan, Error> {
    let client = pool.get().await?;
    let probes = q.probes(Dialect::Postgres);
    let few = probe(&client, &probes).await?;
    explain(&client, &q.plan(&few), &probes, RUN_ROW).await
}

pub(super) async fn explain_tasks(pool: &Pool, q: &Tasks) -> Result<QueryPlan, Error> {
    let client = pool.get().await?;
    let probes = q.probes(Dialect::Postgres);
    let few = probe(&client, &probes).await?;
    explain(&client, &q.plan(&few), &probes, TASK_ROW).await
}
