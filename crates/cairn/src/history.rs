//! `cairn history`: runs (or tasks) with any set of filters, a page at a
//! time, and with `--stats` the status mix of a window and how its tasks
//! spent their time.

use std::path::PathBuf;

use anyhow::Result;
use cairn_core::{RunStatus, TaskStatus, Timestamp};
use cairn_engine::{EngineClock, human};
use cairn_server::analytics::{PhaseStatsView, SpreadView};
use cairn_server::model::{TaskSummary, TrendPoint};
use cairn_store::analytics::DEFAULT_SAMPLE_CAP;
use cairn_store::{
    Bucket, CountQuery, Cursor, Order, PhaseQuery, RunFilter, RunSearch, RunSort, Store, StoreError,
    TaskFilter, TaskSearch, TimeRange,
};

use crate::home::on_store;
use crate::out::outln;
use crate::report::RunSummary;
use crate::{Exit, InvalidInput};

#[derive(clap::Args)]
pub struct Args {
    /// Only these statuses (comma-separated, e.g. FAILED,CANCELED)
    #[arg(long, value_delimiter = ',')]
    status: Vec<String>,
    /// Only these workflows (comma-separated)
    #[arg(long, value_delimiter = ',')]
    workflow: Vec<String>,
    /// Only runs started this way: manual, schedule, api, retry (comma-separated)
    #[arg(long, value_delimiter = ',')]
    trigger: Vec<String>,
    /// Only runs with every one of these labels, each KEY or KEY=VALUE (comma-separated)
    #[arg(long, value_delimiter = ',')]
    label: Vec<String>,
    /// Submitted at or after this time (RFC 3339, or an age like 24h, 7d, 30m)
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Submitted before this time (RFC 3339, or an age)
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Finished at or after this time; lists by finish time
    #[arg(long, value_name = "TIME")]
    finished_since: Option<String>,
    /// Finished before this time; lists by finish time
    #[arg(long, value_name = "TIME")]
    finished_until: Option<String>,
    /// Only runs whose id starts with this
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<String>,
    /// Oldest first
    #[arg(long)]
    oldest_first: bool,
    /// Tasks instead of runs (--queue, --worker and --step apply then)
    #[arg(long)]
    tasks: bool,
    /// Only tasks of these queues
    #[arg(long, value_delimiter = ',', requires = "tasks")]
    queue: Vec<String>,
    /// Only tasks run by these workers
    #[arg(long, value_delimiter = ',', requires = "tasks")]
    worker: Vec<String>,
    /// Only these steps
    #[arg(long, value_delimiter = ',', requires = "tasks")]
    step: Vec<String>,
    /// How many to show (1 to 1000)
    #[arg(long, default_value_t = 20)]
    limit: usize,
    /// Where the previous page ended (printed under it)
    #[arg(long)]
    cursor: Option<String>,
    /// The status mix of the window (--since, --until, --workflow) and its trend per bucket,
    /// then the phases of the tasks that finished in it: per step p50/p95/max of the time
    /// blocked, pending and running, the slowest tasks and the step that fails most
    #[arg(long, conflicts_with_all = ["tasks", "cursor"])]
    stats: bool,
    /// Bucket of the --stats trend: minute, hour or day
    #[arg(long, default_value = "hour", requires = "stats")]
    bucket: String,
    /// How many of the slowest tasks --stats lists (1 to 100)
    #[arg(long, default_value_t = 10, requires = "stats")]
    slowest: usize,
    /// Print JSON lines instead of a table
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    database: crate::home::Database,
}

/// The window and order a listing asks for, read from the flags.
struct Listing {
    now: Timestamp,
    submitted: TimeRange,
    finished: TimeRange,
    sort: RunSort,
    order: Order,
}

pub async fn history(args: Args, data_dir: Option<PathBuf>) -> Result<Exit> {
    let clock = EngineClock::system();
    let now = clock.now();
    let submitted =
        TimeRange { from: time(&args.since, "--since", now)?, to: time(&args.until, "--until", now)? };
    let finished = TimeRange {
        from: time(&args.finished_since, "--finished-since", now)?,
        to: time(&args.finished_until, "--finished-until", now)?,
    };
    let sort =
        if finished.from.is_some() || finished.to.is_some() { RunSort::Finished } else { RunSort::Submitted };
    let order = if args.oldest_first { Order::OldestFirst } else { Order::NewestFirst };
    if !(1..=1000).contains(&args.limit) {
        return Err(InvalidInput(format!("--limit: expected 1 to 1000, got {}", args.limit)).into());
    }
    let listing = Listing { now, submitted, finished, sort, order };
    on_store!(&args.database.url, data_dir, |store| list(store, &args, &listing).await)
}

/// The runs, tasks or statistics the flags ask for, from `store`.
async fn list<S: Store>(store: &S, args: &Args, listing: &Listing) -> Result<Exit> {
    let Listing { now, submitted, finished, sort, order } = *listing;
    if args.stats {
        return stats(store, args, submitted, now).await;
    }
    let cursor = args.cursor.clone().map(Cursor);
    if args.tasks {
        let filter = TaskFilter {
            statuses: parse_all(&args.status, "--status", |s| {
                s.parse::<TaskStatus>().map_err(|e| e.to_string())
            })?,
            workflows: args.workflow.clone(),
            steps: args.step.clone(),
            queues: args.queue.clone(),
            workers: args.worker.clone(),
            submitted,
            finished,
            run_id_prefix: args.prefix.clone(),
        };
        let page = store
            .search_tasks(TaskSearch { filter, sort, order, cursor, limit: args.limit })
            .await
            .map_err(refused)?;
        let rows: Vec<TaskSummary> = cairn_server::model::task_summaries(store, &page.tasks).await;
        print_tasks(&rows, args.json)?;
        more(page.next, args.json);
        return Ok(Exit::Success);
    }
    let filter = RunFilter {
        statuses: parse_all(&args.status, "--status", |s| s.parse::<RunStatus>().map_err(|e| e.to_string()))?,
        workflows: args.workflow.clone(),
        triggers: args.trigger.clone(),
        labels: args.label.clone(),
        submitted,
        finished,
        id_prefix: args.prefix.clone(),
    };
    let page = store
        .search_runs(RunSearch { filter, sort, order, cursor, limit: args.limit })
        .await
        .map_err(refused)?;
    if args.json {
        for r in &page.runs {
            outln!("{}", serde_json::to_string(&RunSummary::new(r, now))?);
        }
    } else if page.runs.is_empty() {
        outln!("no runs match");
    } else {
        outln!("{:<26}  {:<20}  {:<19}  {:<20}  {:>9}", "RUN", "WORKFLOW", "STATUS", "SUBMITTED", "DURATION");
        for r in &page.runs {
            let line = RunSummary::new(r, now);
            let took = human(std::time::Duration::from_secs_f64(line.duration));
            outln!(
                "{:<26}  {:<20}  {:<19}  {:<20}  {:>9}",
                r.id,
                r.workflow,
                r.status.as_str(),
                utc(r.submitted_at),
                took
            );
        }
    }
    more(page.next, args.json);
    Ok(Exit::Success)
}

async fn stats<S: Store>(store: &S, args: &Args, submitted: TimeRange, now: Timestamp) -> Result<Exit> {
    let bucket = match args.bucket.as_str() {
        "minute" => Bucket::Minute,
        "hour" => Bucket::Hour,
        "day" => Bucket::Day,
        other => {
            return Err(InvalidInput(format!("--bucket: expected minute, hour or day, got {other:?}")).into());
        }
    };
    if !(1..=cairn_store::analytics::MAX_SLOWEST).contains(&args.slowest) {
        let max = cairn_store::analytics::MAX_SLOWEST;
        return Err(InvalidInput(format!("--slowest: expected 1 to {max}, got {}", args.slowest)).into());
    }
    // A trend needs a start: the last day unless told.
    let day_ago = Timestamp::from_micros(now.as_micros() - 86_400_000_000);
    let window = TimeRange { from: submitted.from.or(Some(day_ago)), to: submitted.to };
    let query = CountQuery { submitted: window, workflows: args.workflow.clone() };
    let runs = store.run_counts(query.clone()).await?;
    let tasks = store.task_counts(query.clone()).await?;
    let trend: Vec<TrendPoint> =
        store.run_trend(query, bucket).await?.into_iter().map(TrendPoint::new).collect();
    let phase_query = PhaseQuery {
        finished: window,
        workflows: args.workflow.clone(),
        slowest: args.slowest,
        sample_cap: DEFAULT_SAMPLE_CAP,
    };
    let phases = store.phase_stats(phase_query).await.map_err(refused)?;
    let phases = PhaseStatsView::new(&phases, window.from, window.to, DEFAULT_SAMPLE_CAP);
    if args.json {
        let counts = serde_json::json!({ "runs": runs, "tasks": tasks });
        outln!("{}", serde_json::to_string(&counts)?);
        for p in &trend {
            outln!("{}", serde_json::to_string(p)?);
        }
        outln!("{}", serde_json::to_string(&phases)?);
        return Ok(Exit::Success);
    }
    let since = window.from.map(utc).unwrap_or_default();
    outln!("runs submitted since {since}:");
    let total: u64 = runs.values().sum();
    for (status, n) in &runs {
        let share = if total > 0 { 100.0 * *n as f64 / total as f64 } else { 0.0 };
        outln!("  {:<20} {:>9}  {:>5.1}%", status.as_str(), n, share);
    }
    outln!("  {:<20} {:>9}", "total", total);
    outln!("tasks:");
    for (status, n) in &tasks {
        outln!("  {:<20} {:>9}", status.as_str(), n);
    }
    outln!("trend ({}):", args.bucket);
    for p in trend.iter().filter(|p| !p.counts.is_empty()) {
        let counts: Vec<String> = p.counts.iter().map(|(s, n)| format!("{}={n}", s.as_str())).collect();
        let rate = p.failure_rate.map(|r| format!("  failure rate {:.1}%", 100.0 * r)).unwrap_or_default();
        outln!("  {}  {}{rate}", utc(p.at), counts.join(" "));
    }
    print_phases(&phases, &since);
    Ok(Exit::Success)
}

/// p50/p95/max of a phase, or a dash when no task completed or failed.
fn spread(s: &Option<SpreadView>) -> String {
    let took = |secs: f64| human(std::time::Duration::from_secs_f64(secs));
    s.map_or_else(|| "-".to_owned(), |s| format!("{}/{}/{}", took(s.p50), took(s.p95), took(s.max)))
}

fn print_phases(phases: &PhaseStatsView, since: &str) {
    let took = |secs: f64| human(std::time::Duration::from_secs_f64(secs));
    outln!("phases of the tasks finished since {since} (p50/p95/max of those that completed or failed):");
    if phases.steps.is_empty() {
        outln!("  no task finished");
        return;
    }
    outln!(
        "  {:<20}  {:<16}  {:>7}  {:>6}  {:<20}  {:<20}  {}",
        "WORKFLOW",
        "STEP",
        "TASKS",
        "FAILED",
        "BLOCKED",
        "PENDING",
        "EXECUTION"
    );
    for s in &phases.steps {
        outln!(
            "  {:<20}  {:<16}  {:>7}  {:>6}  {:<20}  {:<20}  {}",
            s.workflow,
            s.step,
            s.tasks,
            s.failed,
            spread(&s.blocked),
            spread(&s.pending),
            spread(&s.execution)
        );
        if let Some(from) = s.sampled_from {
            outln!("  {:<20}  (the newest {} only: finished since {})", "", phases.sample_cap, utc(from));
        }
    }
    outln!("slowest tasks:");
    outln!(
        "  {:<26}  {:<20}  {:<16}  {:<10}  {:>9}  {:>9}  {:>9}",
        "RUN",
        "WORKFLOW",
        "STEP",
        "STATUS",
        "EXECUTION",
        "PENDING",
        "BLOCKED"
    );
    for t in &phases.slowest {
        outln!(
            "  {:<26}  {:<20}  {:<16}  {:<10}  {:>9}  {:>9}  {:>9}",
            t.run_id,
            t.workflow,
            t.step,
            t.status.as_str(),
            took(t.execution_duration),
            took(t.pending_duration),
            took(t.blocked_duration)
        );
    }
    if !phases.most_failing.is_empty() {
        outln!("most failing step:");
    }
    for f in &phases.most_failing {
        outln!(
            "  {}: {}, {} failed ({:.0}% of the workflow's failed tasks, {:.0}% of the step's tasks)",
            f.workflow,
            f.step,
            f.failed,
            100.0 * f.share,
            100.0 * f.rate
        );
    }
}

fn print_tasks(rows: &[TaskSummary], json: bool) -> Result<()> {
    if json {
        for t in rows {
            outln!("{}", serde_json::to_string(t)?);
        }
        return Ok(());
    }
    if rows.is_empty() {
        outln!("no tasks match");
        return Ok(());
    }
    outln!(
        "{:<26}  {:<20}  {:<16}  {:<10}  {:<20}  {:>8}",
        "RUN",
        "WORKFLOW",
        "STEP",
        "STATUS",
        "SUBMITTED",
        "ATTEMPTS"
    );
    for t in rows {
        outln!(
            "{:<26}  {:<20}  {:<16}  {:<10}  {:<20}  {:>8}",
            t.run_id,
            t.workflow,
            t.name,
            t.status.as_str(),
            utc(t.submitted_at),
            t.attempts
        );
    }
    Ok(())
}

/// How to ask for the next page (on stderr under `--json`, so the lines stay JSON).
fn more(next: Option<Cursor>, json: bool) {
    if let Some(c) = next {
        if json {
            eprintln!("more: --cursor {}", c.0);
        } else {
            outln!("more: add --cursor {}", c.0);
        }
    }
}

/// A query the store refuses (a cursor of other filters) is bad input.
fn refused(e: StoreError) -> anyhow::Error {
    match e {
        StoreError::InvalidQuery(m) => InvalidInput(m).into(),
        other => other.into(),
    }
}

/// A time as the tables show it: UTC, to the second.
pub(crate) fn utc(t: Timestamp) -> String {
    t.to_jiff().strftime("%Y-%m-%d %H:%M:%S").to_string()
}

fn parse_all<T>(items: &[String], flag: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Vec<T>> {
    items
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| parse(s).map_err(|e| InvalidInput(format!("{flag}: {e}")).into()))
        .collect()
}

/// An RFC 3339 time, or an age before `now` (`90s`, `30m`, `24h`, `7d`).
fn time(text: &Option<String>, flag: &str, now: Timestamp) -> Result<Option<Timestamp>> {
    let Some(text) = text.as_deref().map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    if let Ok(t) = text.parse::<jiff::Timestamp>() {
        return Ok(Some(Timestamp::from_jiff(t)));
    }
    match crate::span::parse(text) {
        Ok(age) => Ok(Some(now.saturating_sub(age))),
        Err(_) => Err(InvalidInput(format!(
            "{flag}: expected an RFC 3339 time (2026-11-20T08:00:00Z) or an age (30m, 24h, 7d), got {text:?}"
        ))
        .into()),
    }
}
