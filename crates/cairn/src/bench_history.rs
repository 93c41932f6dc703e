//! W4 of BENCHMARKS.md: history at scale. A realistic history of `n` task
//! records (`history_gen`) is loaded into an empty store through
//! `Store::import_runs`, then each query a history page or dashboard makes
//! is timed, page by page and call by call, on a warm cache: runs and tasks
//! by a set of statuses, runs of one workflow, runs by label, runs finished
//! in a window by finish time — each 20 pages of 100 deep through the
//! cursor — status counts of runs and tasks over a day, a week and all
//! time, and the hourly trend of a week, overall and per workflow. One JSON
//! line for the load, one per query.

use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cairn_core::{Clock, RunStatus, SystemClock, TaskStatus, Timestamp};
use cairn_store::{
    Bucket, CountQuery, FinishedRun, Order, PostgresStore, RunFilter, RunSearch, RunSort, Store, TaskFilter,
    TaskSearch, TimeRange,
};
use serde_json::{Value, json};

use crate::bench::{Workload, percentile, round, rss_mb};
use crate::history_gen::HistoryGen;

const HOUR: i64 = 3_600_000_000;
const DAY: i64 = 24 * HOUR;

/// Pages walked per search, and rows per page (BENCHMARKS.md).
const PAGES: usize = 20;
const PAGE: usize = 100;

/// Runs per import call: a few hundred thousand rows, one transaction.
const BATCH: usize = 10_000;

/// W4 at one size: load `tasks` task records (about a tenth as many runs)
/// over `days` days, then `passes` timed passes over every query after one
/// that warms the cache.
pub(crate) struct W4 {
    pub tasks: usize,
    pub passes: usize,
    pub days: u32,
    pub seed: u64,
}

impl Workload for W4 {
    type Output = Vec<Value>;

    async fn on<S: Store>(self, store: Arc<S>, dir: &Path) -> Result<Vec<Value>> {
        let end = SystemClock::new().now();
        let loaded = load(store.clone(), self.tasks, self.days, self.seed, end).await?;
        // What autovacuum would have done by the time anyone browses a
        // history this size (the bench's own server may have it off).
        let analyzed = Instant::now();
        let analyze = match (store.as_ref() as &dyn std::any::Any).downcast_ref::<PostgresStore>() {
            Some(pg) => {
                pg.analyze().await?;
                Some(round(analyzed.elapsed().as_secs_f64()))
            }
            None => None,
        };
        let mut lines = vec![json!({
            "workload": "W4", "query": "load", "n": loaded.tasks, "history_runs": loaded.runs, "rows": loaded.rows,
            "batch_runs": BATCH, "seconds": round(loaded.seconds), "analyze_seconds": analyze,
            "per_unit_ms": round(loaded.seconds * 1000.0 / loaded.tasks as f64),
            "tasks_per_s": (loaded.tasks as f64 / loaded.seconds).round(),
            "rows_per_s": (loaded.rows as f64 / loaded.seconds).round(),
            "db_mb": db_mb(dir), "rss_mb": rss_mb(),
        })];
        let m =
            Measure { store: &*store, passes: self.passes.max(1), tasks: loaded.tasks, runs: loaded.runs };
        let failed_runs = vec![RunStatus::Failed, RunStatus::Canceled];
        let failed_tasks = vec![TaskStatus::Failed, TaskStatus::Canceled];
        lines.push(
            m.run_pages(
                "runs FAILED+CANCELED",
                RunFilter { statuses: failed_runs, ..Default::default() },
                RunSort::Submitted,
            )
            .await?,
        );
        lines.push(
            m.task_pages(
                "tasks FAILED+CANCELED",
                TaskFilter { statuses: failed_tasks, ..Default::default() },
            )
            .await?,
        );
        let workflow = RunFilter { workflows: vec!["etl-orders".to_owned()], ..Default::default() };
        lines.push(m.run_pages("runs of workflow etl-orders", workflow, RunSort::Submitted).await?);
        let label = RunFilter { labels: vec!["team=ml".to_owned()], ..Default::default() };
        lines.push(m.run_pages("runs with label team=ml", label, RunSort::Submitted).await?);
        let window = TimeRange {
            from: Some(Timestamp::from_micros(end.as_micros() - 10 * DAY)),
            to: Some(Timestamp::from_micros(end.as_micros() - 9 * DAY)),
        };
        let finished = RunFilter { finished: window, ..Default::default() };
        lines.push(m.run_pages("runs finished in one day, by finish", finished, RunSort::Finished).await?);
        for (name, span) in [("24h", Some(DAY)), ("7d", Some(7 * DAY)), ("all", None)] {
            let q = CountQuery {
                submitted: TimeRange {
                    from: span.map(|s| Timestamp::from_micros(end.as_micros() - s)),
                    to: Some(end),
                },
                workflows: Vec::new(),
            };
            lines.push(m.calls(&format!("run counts {name}"), || store.run_counts(q.clone())).await?);
            lines.push(m.calls(&format!("task counts {name}"), || store.task_counts(q.clone())).await?);
        }
        let week = CountQuery {
            submitted: TimeRange {
                from: Some(Timestamp::from_micros(end.as_micros() - 7 * DAY)),
                to: Some(end),
            },
            workflows: Vec::new(),
        };
        lines.push(m.calls("run trend 7d by hour", || store.run_trend(week.clone(), Bucket::Hour)).await?);
        lines.push(
            m.calls("workflow trends 7d by hour", || store.workflow_trends(week.clone(), Bucket::Hour))
                .await?,
        );
        Ok(lines)
    }
}

/// What a load put in the store.
struct Loaded {
    runs: usize,
    tasks: usize,
    /// Rows of every table: runs, specs, labels, tasks, transitions, attempts, samples.
    rows: usize,
    seconds: f64,
}

fn rows_of(run: &FinishedRun) -> usize {
    let d = &run.detail;
    1 + usize::from(run.spec_source.is_some())
        + run.labels.len()
        + d.run_transitions.len()
        + d.tasks.len()
        + d.transitions.values().map(Vec::len).sum::<usize>()
        + d.attempts.values().map(Vec::len).sum::<usize>()
        + run.progress.values().map(Vec::len).sum::<usize>()
}

/// Generates on a thread of its own and imports as it goes, two import
/// calls in flight: one is checked while the other is written.
async fn load<S: Store>(store: Arc<S>, tasks: usize, days: u32, seed: u64, end: Timestamp) -> Result<Loaded> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<FinishedRun>>(2);
    let generator =
        std::thread::Builder::new().name("cairn-history-gen".into()).spawn(move || -> Result<()> {
            let mut g = HistoryGen::new(seed, tasks, end, days);
            loop {
                let batch = g.batch(BATCH)?;
                if batch.is_empty() || tx.blocking_send(batch).is_err() {
                    return Ok(());
                }
            }
        })?;
    let started = Instant::now();
    let mut loaded = Loaded { runs: 0, tasks: 0, rows: 0, seconds: 0.0 };
    let mut inflight = tokio::task::JoinSet::new();
    while let Some(batch) = rx.recv().await {
        loaded.runs += batch.len();
        loaded.tasks += batch.iter().map(|r| r.detail.tasks.len()).sum::<usize>();
        loaded.rows += batch.iter().map(rows_of).sum::<usize>();
        while inflight.len() >= 2 {
            inflight.join_next().await.context("an import task")???;
        }
        let store = store.clone();
        inflight.spawn(async move { store.import_runs(Arc::new(batch)).await });
        tracing::info!(runs = loaded.runs, tasks = loaded.tasks, "history loading");
    }
    while let Some(done) = inflight.join_next().await {
        done.context("an import task")??;
    }
    loaded.seconds = started.elapsed().as_secs_f64();
    match generator.join() {
        Ok(made) => made?,
        Err(_) => bail!("the history generator panicked"),
    }
    Ok(loaded)
}

/// The SQLite file's size with its WAL (no file: PostgreSQL).
fn db_mb(dir: &Path) -> Option<f64> {
    let size = |name: &str| std::fs::metadata(dir.join(name)).map(|m| m.len()).ok();
    let main = size("cairn.db")?;
    let total = main + size("cairn.db-wal").unwrap_or(0);
    Some((total as f64 / 1e6).round())
}

struct Measure<'s, S> {
    store: &'s S,
    passes: usize,
    tasks: usize,
    runs: usize,
}

/// Latencies of one query, ms; `first` and `deep` are those of the first
/// and the last page of each walk.
#[derive(Default)]
struct Samples {
    all: Vec<f64>,
    first: Vec<f64>,
    deep: Vec<f64>,
    rows: usize,
    pages_deep: usize,
}

impl<S: Store> Measure<'_, S> {
    fn line(&self, query: &str, mut s: Samples, per_call: bool) -> Value {
        let total: f64 = s.all.iter().sum();
        let n = s.all.len().max(1);
        s.all.sort_by(f64::total_cmp);
        s.first.sort_by(f64::total_cmp);
        s.deep.sort_by(f64::total_cmp);
        let mut line = json!({
            "workload": "W4", "query": query, "n": self.tasks, "history_runs": self.runs, "samples": s.all.len(),
            "seconds": round(total / 1000.0), "per_unit_ms": round(total / n as f64),
            "p50_ms": round(percentile(&s.all, 0.50)), "p99_ms": round(percentile(&s.all, 0.99)),
            "max_ms": round(s.all.last().copied().unwrap_or(0.0)), "rss_mb": rss_mb(),
        });
        if !per_call && let Value::Object(map) = &mut line {
            map.insert("page_size".into(), PAGE.into());
            map.insert("pages_deep".into(), s.pages_deep.into());
            map.insert("rows_per_walk".into(), (s.rows / self.passes).into());
            map.insert("first_page_p50_ms".into(), round(percentile(&s.first, 0.50)).into());
            map.insert("deep_page_p50_ms".into(), round(percentile(&s.deep, 0.50)).into());
        }
        line
    }

    /// `passes` walks of up to [`PAGES`] pages (after one unmeasured walk).
    async fn run_pages(&self, query: &str, filter: RunFilter, sort: RunSort) -> Result<Value> {
        let mut s = Samples::default();
        for pass in 0..=self.passes {
            let mut q = RunSearch {
                filter: filter.clone(),
                sort,
                order: Order::NewestFirst,
                limit: PAGE,
                cursor: None,
            };
            for page in 0..PAGES {
                let started = Instant::now();
                let found = self.store.search_runs(q.clone()).await?;
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                if pass > 0 {
                    s.record(ms, page, found.runs.len(), found.next.is_none());
                }
                match found.next {
                    Some(next) => q.cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(self.line(query, s, false))
    }

    /// As [`Measure::run_pages`], for tasks, newest first.
    async fn task_pages(&self, query: &str, filter: TaskFilter) -> Result<Value> {
        let mut s = Samples::default();
        for pass in 0..=self.passes {
            let mut q = TaskSearch { filter: filter.clone(), limit: PAGE, ..TaskSearch::default() };
            for page in 0..PAGES {
                let started = Instant::now();
                let found = self.store.search_tasks(q.clone()).await?;
                let ms = started.elapsed().as_secs_f64() * 1000.0;
                if pass > 0 {
                    s.record(ms, page, found.tasks.len(), found.next.is_none());
                }
                match found.next {
                    Some(next) => q.cursor = Some(next),
                    None => break,
                }
            }
        }
        Ok(self.line(query, s, false))
    }

    /// Five calls per pass (they are short), after five unmeasured ones.
    async fn calls<T, F, Fut>(&self, query: &str, call: F) -> Result<Value>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, cairn_store::StoreError>>,
    {
        let mut s = Samples::default();
        for i in 0..(self.passes + 1) * 5 {
            let started = Instant::now();
            call().await?;
            if i >= 5 {
                s.all.push(started.elapsed().as_secs_f64() * 1000.0);
            }
        }
        Ok(self.line(query, s, true))
    }
}

impl Samples {
    fn record(&mut self, ms: f64, page: usize, rows: usize, last: bool) {
        self.all.push(ms);
        self.rows += rows;
        if page == 0 {
            self.first.push(ms);
        }
        if last || page == PAGES - 1 {
            self.deep.push(ms);
            self.pages_deep = self.pages_deep.max(page + 1);
        }
    }
}
