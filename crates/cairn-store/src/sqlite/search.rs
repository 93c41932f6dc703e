//! History searches on SQLite (see `crate::search` for the plans): the
//! probes, then every branch of the plan stepped at once and merged row by
//! row in page order — each branch an ordered index walk pinned by
//! `INDEXED BY`, read no further than the page needs — then the page's
//! records by primary key, all in one read transaction.

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, Rows, params_from_iter};

use super::Error;
use super::read::{run_record, task_record};
use crate::history::{RunPage, TaskPage, TaskRow};
use crate::model::RunRecord;
use crate::search::{Dialect, Few, Key, Page, Plan, ProbeSql, Runs, Sql, Tasks, Value};
use crate::search::{PlannedStatement, QueryPlan};
use cairn_core::RunId;

const RUN_BY_NO: &str = include_str!("sql/run_by_no.sql");
const TASK_ROW: &str = include_str!("sql/search_task_row.sql");

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Int(n) => ToSqlOutput::Borrowed(ValueRef::Integer(*n)),
            Value::Status(code) => ToSqlOutput::Borrowed(ValueRef::Integer(i64::from(*code))),
            Value::Text(text) => ToSqlOutput::Borrowed(ValueRef::Text(text.as_bytes())),
            Value::Id(id) => ToSqlOutput::Borrowed(ValueRef::Blob(id)),
        })
    }
}

pub(super) fn search_runs(conn: &Connection, q: &Runs) -> Result<RunPage, Error> {
    let snapshot = conn.unchecked_transaction()?;
    let few = probe(&snapshot, &q.probes(Dialect::Sqlite))?;
    let picked = merge(&snapshot, &q.plan(&few))?;
    let mut stmt = snapshot.prepare_cached(RUN_BY_NO)?;
    let mut rows = Vec::with_capacity(picked.len());
    for (key, no) in picked {
        let run = stmt.query_row([no], |row| Ok(run_record(row)))??;
        rows.push((key, run));
    }
    drop(stmt);
    snapshot.finish()?;
    let (runs, next) = q.page().split(rows);
    Ok(RunPage { runs, next })
}

/// [`crate::Store::list_runs`], as a search.
pub(super) fn list_runs(conn: &Connection, q: &Runs) -> Result<Vec<RunRecord>, Error> {
    search_runs(conn, q).map(|page| page.runs)
}

pub(super) fn search_tasks(conn: &Connection, q: &Tasks) -> Result<TaskPage, Error> {
    let snapshot = conn.unchecked_transaction()?;
    let few = probe(&snapshot, &q.probes(Dialect::Sqlite))?;
    let picked = merge(&snapshot, &q.plan(&few))?;
    let mut stmt = snapshot.prepare_cached(TASK_ROW)?;
    let mut rows = Vec::with_capacity(picked.len());
    for (key, no) in picked {
        let task = stmt.query_row([no], |row| Ok(task_row(row)))??;
        rows.push((key, task));
    }
    drop(stmt);
    snapshot.finish()?;
    let (tasks, next) = q.page().split(rows);
    Ok(TaskPage { tasks, next })
}

/// Columns as in `sql/search_task_row.sql`.
fn task_row(row: &rusqlite::Row<'_>) -> Result<TaskRow, Error> {
    let run = RunId::from_bytes(row.get(23)?);
    Ok(TaskRow { workflow: row.get(24)?, task: task_record(row, run)? })
}

/// Runs each probe: a filter whose counts stay within its cap matches few.
fn probe(conn: &Connection, probes: &[ProbeSql]) -> Result<Few, Error> {
    let mut counts = Vec::with_capacity(probes.len());
    for p in probes {
        let count: i64 =
            conn.prepare_cached(&p.sql.text)?.query_row(params_from_iter(&p.sql.params), |row| row.get(0))?;
        counts.push((p.probe, p.cap, usize::try_from(count).unwrap_or(usize::MAX)));
    }
    Ok(Few::new(counts))
}

/// Steps every branch at once and takes rows in page order until the page
/// and one more are read: each branch is read only as far as it must be.
fn merge(conn: &Connection, plan: &impl Plan) -> Result<Vec<(Key, i64)>, Error> {
    let page = plan.page();
    let sqls = branches(plan);
    let mut stmts = sqls.iter().map(|sql| conn.prepare_cached(&sql.text)).collect::<Result<Vec<_>, _>>()?;
    let mut walks = stmts
        .iter_mut()
        .zip(&sqls)
        .map(|(stmt, sql)| stmt.query(params_from_iter(&sql.params)))
        .collect::<Result<Vec<_>, _>>()?;
    let mut heads = walks.iter_mut().map(|walk| head(walk, page)).collect::<Result<Vec<_>, _>>()?;
    let mut picked: Vec<(Key, i64)> = Vec::new();
    while picked.len() < page.fetch() {
        let next = heads
            .iter()
            .enumerate()
            .filter_map(|(i, head)| head.map(|head| (i, head)))
            .min_by(|(_, a), (_, b)| page.cmp(&a.0, &b.0));
        let Some((i, row)) = next else { break };
        // Branches are disjoint; a row met twice would be a planning bug,
        // and is taken once all the same.
        if picked.last().is_none_or(|last| last.0 != row.0) {
            picked.push(row);
        }
        heads[i] = head(&mut walks[i], page)?;
    }
    Ok(picked)
}

fn branches(plan: &impl Plan) -> Vec<Sql> {
    (0..plan.branches())
        .map(|i| {
            let mut sql = Sql::new(Dialect::Sqlite);
            plan.write(i, &mut sql);
            sql
        })
        .collect()
}

/// The next row of a branch: its key and its row number.
fn head(walk: &mut Rows<'_>, page: &Page) -> Result<Option<(Key, i64)>, Error> {
    let Some(row) = walk.next()? else { return Ok(None) };
    let id: [u8; 16] = row.get(1)?;
    Ok(Some((page.key(id, row.get(2)?), row.get(0)?)))
}

/// The plan of a search: each probe's, each branch's and the row read's.
pub(super) fn explain(
    conn: &Connection,
    plan: &impl Plan,
    probes: &[ProbeSql],
    row: &str,
) -> Result<QueryPlan, Error> {
    let mut statements = Vec::new();
    let mut texts: Vec<(String, Vec<Value>)> =
        probes.iter().map(|p| (p.sql.text.clone(), p.sql.params.clone())).collect();
    texts.extend(branches(plan).into_iter().map(|sql| (sql.text, sql.params)));
    texts.push((row.to_owned(), vec![Value::Int(1)]));
    for (text, params) in texts {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {text}"))?;
        let mut rows = stmt.query(params_from_iter(&params))?;
        let mut depth: Vec<(i64, usize)> = Vec::new();
        let mut lines = Vec::new();
        while let Some(row) = rows.next()? {
            let (id, parent, detail): (i64, i64, String) = (row.get(0)?, row.get(1)?, row.get(3)?);
            while depth.last().is_some_and(|(p, _)| *p != parent) {
                depth.pop();
            }
            let level = depth.last().map_or(0, |(_, level)| level + 1);
            depth.push((id, level));
            lines.push(format!("{}{detail}", "  ".repeat(level)));
        }
        statements.push(PlannedStatement { sql: text, plan: lines.join("\n") });
    }
    Ok(QueryPlan { shape: plan.shape().to_owned(), statements })
}

pub(super) fn explain_runs(conn: &Connection, q: &Runs) -> Result<QueryPlan, Error> {
    let probes = q.probes(Dialect::Sqlite);
    let few = probe(conn, &probes)?;
    explain(conn, &q.plan(&few), &probes, RUN_BY_NO)
}

pub(super) fn explain_tasks(conn: &Connection, q: &Tasks) -> Result<QueryPlan, Error> {
    let probes = q.probes(Dialect::Sqlite);
    let few = probe(conn, &probes)?;
    explain(conn, &q.plan(&few), &probes, TASK_ROW)
}
