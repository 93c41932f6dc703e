//! Retention on PostgreSQL (`crate::retention`): the reads that find
//! expired runs, and the deletion of finished runs in a transaction of its
//! own: one statement deletes the runs and their rows (`delete_runs.sql`,
//! which checks that each run and all its tasks are finished) and gives
//! back what the status counts must lose, a second subtracts it
//! (`counts_add.sql`), and the commit follows. The logs of the deleted
//! tasks stay in their partitions until the leader drops those
//! (`partitions`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use cairn_core::retention::Expiry;
use cairn_core::{RunId, TaskId, Timestamp};
use deadpool_postgres::{Object, Pool};
use tokio_postgres::error::SqlState;

use super::{Error, Uuid, describe};
use crate::counts::{self, Deltas, Grain, Kind};
use crate::error::StoreError;
use crate::model::ProgressSample;
use crate::retention::{Deleted, FINISHED_RUNS};

const RETENTION_WORKFLOWS: &str = include_str!("sql/retention_workflows.sql");
const RUN_PROGRESS_SAMPLES: &str = include_str!("sql/run_progress_samples.sql");
const EXPIRED_FINISHED: &str = include_str!("sql/expired_finished.sql");
const EXPIRED_BEYOND: &str = include_str!("sql/expired_beyond.sql");
const DELETE_RUNS: &str = include_str!("sql/delete_runs.sql");
const COUNTS_ADD: &str = include_str!("sql/counts_add.sql");

/// Every statement of retention, prepared when the store connects.
pub(super) const STATEMENTS: &[&str] =
    &[RETENTION_WORKFLOWS, RUN_PROGRESS_SAMPLES, EXPIRED_FINISHED, EXPIRED_BEYOND, DELETE_RUNS, COUNTS_ADD];

/// Tries of a deletion rolled back by a deadlock or a serialization failure.
const TRIES: u32 = 3;

pub(super) async fn run_workflows(pool: &Pool, after: &str, limit: usize) -> Result<Vec<String>, Error> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(RETENTION_WORKFLOWS).await?;
    let rows = client.query(&stmt, &[&after, &(limit as i64)]).await?;
    Ok(rows.iter().map(|row| row.try_get(0)).collect::<Result<_, _>>()?)
}

pub(super) async fn run_progress_samples(
    pool: &Pool,
    run: RunId,
) -> Result<BTreeMap<TaskId, Vec<ProgressSample>>, Error> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(RUN_PROGRESS_SAMPLES).await?;
    let mut all: BTreeMap<TaskId, Vec<ProgressSample>> = BTreeMap::new();
    for row in client.query(&stmt, &[&Uuid(run.to_bytes())]).await? {
        let attempt: i32 = row.try_get(1)?;
        all.entry(TaskId::from_bytes(row.try_get::<_, Uuid>(0)?.0)).or_default().push(ProgressSample {
            attempt: u32::try_from(attempt).map_err(|_| {
                Error::Store(StoreError::Corrupt(format!("a progress sample of attempt {attempt}")))
            })?,
            at: Timestamp::from_micros(row.try_get(2)?),
            percent: row.try_get(3)?,
            message: row.try_get(4)?,
        });
    }
    Ok(all)
}

pub(super) async fn expired_runs(
    pool: &Pool,
    workflow: &str,
    expiry: Expiry,
    limit: usize,
) -> Result<Vec<RunId>, Error> {
    let client = pool.get().await?;
    let limit = limit as i64;
    match expiry {
        Expiry::FinishedBefore(cutoff) => {
            let stmt = client.prepare_cached(EXPIRED_FINISHED).await?;
            // One range per finished status, sent together, merged by finish time.
            let cutoff = cutoff.as_micros();
            let statuses: Vec<i16> = FINISHED_RUNS.iter().map(|&s| i16::from(s)).collect();
            let (client, stmt) = (&client, &stmt);
            let reads = statuses
                .iter()
                .map(|status| async move { client.query(stmt, &[&workflow, status, &cutoff, &limit]).await });
            let mut found: Vec<(i64, [u8; 16])> = Vec::new();
            for rows in futures_util::future::try_join_all(reads).await? {
                for row in rows {
                    found.push((row.try_get(1)?, row.try_get::<_, Uuid>(0)?.0));
                }
            }
            found.sort_unstable();
            Ok(found.into_iter().take(limit as usize).map(|(_, id)| RunId::from_bytes(id)).collect())
        }
        Expiry::BeyondNewest(keep) => {
            let stmt = client.prepare_cached(EXPIRED_BEYOND).await?;
            let rows = client.query(&stmt, &[&workflow, &i64::from(keep), &limit]).await?;
            rows.iter().map(|row| Ok(RunId::from_bytes(row.try_get::<_, Uuid>(0)?.0))).collect()
        }
    }
}

pub(super) async fn delete_runs(pool: &Pool, ids: &[RunId]) -> Result<Deleted, StoreError> {
    let mut tries = 0;
    loop {
        tries += 1;
        let mut client = pool.get().await.map_err(Error::from)?;
        match delete_once(&mut client, ids).await {
            Err(Error::Pg(e)) if tries < TRIES && rolled_back(&e) => {
                tracing::debug!(error = %describe(&e), tries, "a deletion was rolled back; trying it again");
                tokio::time::sleep(Duration::from_millis(10 * u64::from(tries))).await;
            }
            done => return done.map_err(StoreError::from),
        }
    }
}

fn rolled_back(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|code| {
        *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

async fn delete_once(client: &mut Object, ids: &[RunId]) -> Result<Deleted, Error> {
    let delete = client.prepare_cached(DELETE_RUNS).await?;
    let add = client.prepare_cached(COUNTS_ADD).await?;
    let tx = client.transaction().await?;
    let asked: Vec<Uuid> = ids.iter().map(|id| Uuid(id.to_bytes())).collect();
    let rows = tx.query(&delete, &[&asked]).await?;

    let mut deltas = Deltas::default();
    let mut workflows: HashMap<i64, String> = HashMap::new();
    let mut gone: HashSet<[u8; 16]> = HashSet::new();
    let mut tasks = 0u64;
    for row in &rows {
        let kind: i16 = row.try_get(0)?;
        let run_no: i64 = row.try_get(1)?;
        let status = code(row.try_get(4)?)?;
        let submitted_at: i64 = row.try_get(5)?;
        let n: i64 = row.try_get(6)?;
        if kind == 0 {
            gone.insert(row.try_get::<_, Uuid>(2)?.0);
            workflows.insert(run_no, row.try_get(3)?);
            deltas.removed(Kind::Runs, submitted_at, run_no, status, n);
        } else {
            tasks += u64::try_from(n).unwrap_or(0);
            deltas.removed(Kind::Tasks, submitted_at, run_no, status, n);
        }
    }
    if !deltas.is_empty() {
        let rows = counts::rows(deltas.into_nonzero(), |run_no| {
            workflows.get(&run_no).cloned().ok_or_else(|| {
                Error::Store(StoreError::Corrupt(format!(
                    "a deleted task of run number {run_no} without its run"
                )))
            })
        })?;
        let n = rows.len();
        let (mut kinds, mut grains, mut buckets, mut names, mut statuses, mut ns) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for (key, n) in rows {
            kinds.push(key.kind.code());
            grains.push(match key.grain {
                Grain::Minute => 0i16,
                Grain::Hour => 1,
                Grain::Day => 2,
            });
            buckets.push(key.bucket);
            names.push(key.workflow);
            statuses.push(i16::from(key.status));
            ns.push(n);
        }
        tx.query_one(&add, &[&kinds, &grains, &buckets, &names, &statuses, &ns]).await?;
    }
    tx.commit().await.map_err(|e| match e.code() {
        Some(_) => Error::Pg(e),
        None => Error::Store(StoreError::CommitUnknown(describe(&e))),
    })?;
    // In the order asked, each once.
    let runs = ids.iter().copied().filter(|id| gone.remove(&id.to_bytes())).collect();
    Ok(Deleted { runs, tasks })
}

fn code(status: i16) -> Result<u8, Error> {
    u8::try_from(status)
        .map_err(|_| Error::Store(StoreError::Corrupt(format!("status code {status} of a deleted record"))))
}
