//! Measures a store's write path: one run of N no-op tasks, each going
//! SUBMITTED -> PENDING -> RUNNING -> COMPLETED (4 transition rows, 3 task
//! updates, an attempt opened and closed), applied in batches of about
//! `--batch` changes by `--callers` concurrent callers. SQLite on a file by
//! default; with `--postgres URL`, PostgreSQL in a scratch database created
//! on that server for the run and dropped after it.
//!
//! ```text
//! cargo run --release -p cairn-store --example apply_throughput -- --tasks 100000
//! cargo run --release -p cairn-store --example apply_throughput -- --tasks 100000 \
//!     --postgres postgres://postgres@127.0.0.1:5432/postgres
//! ```
//!
//! Then two smaller figures on the same store: the latency of one-change
//! batches applied one after another (what a lone dispatch waits for), and
//! heartbeats with progress against 10,000 RUNNING tasks, in batches.
//!
//! Prints one JSON line per figure in the shape of docs/BENCHMARKS.md.
//! Durability stays on: WAL with `synchronous` FULL unless `--sync normal`
//! on SQLite, `synchronous_commit` as the server has it on PostgreSQL, and
//! the setting in effect is printed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use cairn_core::lease::Lease;
use cairn_core::progress::Progress;
use cairn_core::record::{Actor, RunTransition, Transition};
use cairn_core::{Clock, LeaseToken, RunId, RunStatus, SystemClock, TaskId, TaskStatus};
use cairn_store::{
    AttemptResult, Change, Heartbeat, NewRun, NewTask, Outcome, PostgresOptions, PostgresStore,
    SqliteOptions, SqliteStore, Store, Synchronous, TaskChange, TaskUpdate,
};

struct Args {
    tasks: usize,
    batch: usize,
    callers: usize,
    sync: Synchronous,
    dir: Option<std::path::PathBuf>,
    postgres: Option<String>,
}

fn args() -> Result<Args, String> {
    let mut a =
        Args { tasks: 100_000, batch: 1_000, callers: 4, sync: Synchronous::Full, dir: None, postgres: None };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--tasks" => a.tasks = value()?.parse().map_err(|e| format!("--tasks: {e}"))?,
            "--batch" => a.batch = value()?.parse().map_err(|e| format!("--batch: {e}"))?,
            "--callers" => a.callers = value()?.parse().map_err(|e| format!("--callers: {e}"))?,
            "--sync" => {
                a.sync = match value()?.to_ascii_lowercase().as_str() {
                    "full" => Synchronous::Full,
                    "normal" => Synchronous::Normal,
                    other => return Err(format!("--sync {other}: expected full or normal")),
                }
            }
            "--dir" => a.dir = Some(value()?.into()),
            "--postgres" => a.postgres = Some(value()?),
            other => {
                return Err(format!(
                    "unknown flag {other}; flags: --tasks N --batch CHANGES --callers N --sync full|normal --dir PATH \
                     --postgres URL"
                ));
            }
        }
    }
    Ok(a)
}

fn task_change(
    task: TaskId,
    attempt: u32,
    from: TaskStatus,
    to: TaskStatus,
    update: TaskUpdate,
    clock: &SystemClock,
) -> Change {
    Change::Task(TaskChange {
        task,
        transition: Transition {
            attempt,
            from: Some(from),
            to,
            at: clock.now(),
            reason: String::new(),
            actor: Actor::Executor,
        },
        update,
    })
}

/// Which store, and how durable its commits are.
struct Label {
    store: &'static str,
    /// The durability setting in effect, as a JSON member.
    durability: String,
}

async fn drive<S: Store>(
    store: Arc<S>,
    clock: Arc<SystemClock>,
    tasks: Vec<TaskId>,
    per_batch: usize,
    applies: Arc<AtomicU64>,
) {
    for chunk in tasks.chunks(per_batch) {
        let pending = chunk.iter().map(|&t| {
            task_change(t, 0, TaskStatus::Submitted, TaskStatus::Pending, TaskUpdate::Plain, &clock)
        });
        check(store.apply(pending.collect()).await);
        let (starts, tokens): (Vec<_>, Vec<_>) = chunk.iter().map(|&t| start_change(t, &clock)).unzip();
        check(store.apply(starts).await);
        let ends = chunk.iter().zip(tokens).map(|(&t, token)| {
            let update = TaskUpdate::EndAttempt { token, result: AttemptResult::default(), retry_at: None };
            task_change(t, 1, TaskStatus::Running, TaskStatus::Completed, update, &clock)
        });
        check(store.apply(ends.collect()).await);
        applies.fetch_add(3, Ordering::Relaxed);
    }
}

fn check(result: Result<Vec<Outcome>, cairn_store::StoreError>) {
    let outcomes = result.expect("the batch commits");
    if let Some(o) = outcomes.iter().find(|o| !o.is_applied()) {
        panic!("a change did not apply: {o:?}");
    }
}

fn new_run(tasks: usize, clock: &SystemClock) -> NewRun {
    let now = clock.now();
    NewRun {
        schedule_tick: None,
        labels: Vec::new(),
        id: RunId::new(now),
        workflow: "fan-out".into(),
        trigger: "manual".into(),
        spec_source: "name: fan-out\n".into(),
        spec_path: None,
        params: BTreeMap::new(),
        owner: None,
        transition: RunTransition {
            from: None,
            to: RunStatus::Queued,
            at: now,
            reason: "submitted".into(),
            actor: Actor::User("bench".into()),
        },
        tasks: (0..tasks as u32)
            .map(|index| NewTask {
                id: TaskId::new(now),
                index,
                name: format!("t{index}"),
                queue: None,
                max_attempts: 1,
                transition: Transition {
                    attempt: 0,
                    from: None,
                    to: TaskStatus::Submitted,
                    at: now,
                    reason: "created".into(),
                    actor: Actor::Scheduler,
                },
            })
            .collect(),
    }
}

fn start_change(task: TaskId, clock: &SystemClock) -> (Change, LeaseToken) {
    let now = clock.now();
    let lease = Lease {
        token: LeaseToken::random(),
        started_at: now,
        last_heartbeat_at: now,
        expires_at: now.saturating_add(Duration::from_secs(30)),
    };
    let token = lease.token;
    let update = TaskUpdate::Start { lease, worker: "local".to_owned() };
    (task_change(task, 1, TaskStatus::Pending, TaskStatus::Running, update, clock), token)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).map_or(0.0, |d| d.as_secs_f64() * 1000.0)
}

/// One change per batch, one batch at a time: each waits for its own commit.
async fn single_change_latency<S: Store>(store: &S, label: &Label, clock: &SystemClock) {
    const N: usize = 300;
    let run = new_run(N, clock);
    let ids: Vec<TaskId> = run.tasks.iter().map(|t| t.id).collect();
    check(store.apply(vec![Change::CreateRun(run)]).await);
    let mut took = Vec::with_capacity(N);
    for &id in &ids {
        let change = task_change(id, 0, TaskStatus::Submitted, TaskStatus::Pending, TaskUpdate::Plain, clock);
        let t0 = Instant::now();
        check(store.apply(vec![change]).await);
        took.push(t0.elapsed());
    }
    took.sort();
    let total: Duration = took.iter().sum();
    println!(
        "{{\"workload\":\"store_apply_single\",\"store\":\"{}\",{},\"n\":{N},\
         \"seconds\":{:.3},\"p50_ms\":{:.3},\"p99_ms\":{:.3}}}",
        label.store,
        label.durability,
        total.as_secs_f64(),
        percentile(&took, 0.5),
        percentile(&took, 0.99),
    );
}

/// Heartbeats with progress (percent and a 200-byte message) for 10,000
/// RUNNING tasks, in batches of `batch` from `callers` callers.
async fn heartbeats<S: Store>(
    store: Arc<S>,
    label: &Label,
    clock: Arc<SystemClock>,
    batch: usize,
    callers: usize,
) {
    const TASKS: usize = 10_000;
    const ROUNDS: usize = 10;
    let run = new_run(TASKS, &clock);
    let ids: Vec<TaskId> = run.tasks.iter().map(|t| t.id).collect();
    check(store.apply(vec![Change::CreateRun(run)]).await);
    let pending = ids
        .iter()
        .map(|&t| task_change(t, 0, TaskStatus::Submitted, TaskStatus::Pending, TaskUpdate::Plain, &clock));
    check(store.apply(pending.collect()).await);
    let (starts, tokens): (Vec<_>, Vec<_>) = ids.iter().map(|&t| start_change(t, &clock)).unzip();
    check(store.apply(starts).await);
    let leases: Arc<Vec<(TaskId, LeaseToken)>> = Arc::new(ids.into_iter().zip(tokens).collect());

    let message = "x".repeat(200);
    let t0 = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for c in 0..callers.max(1) {
        let (store, clock, leases, message) = (store.clone(), clock.clone(), leases.clone(), message.clone());
        set.spawn(async move {
            let mine: Vec<_> = leases.iter().skip(c).step_by(callers.max(1)).copied().collect();
            let mut took = Vec::new();
            for round in 0..ROUNDS {
                for chunk in mine.chunks(batch.max(1)) {
                    let beats = chunk.iter().map(|&(task, token)| {
                        let at = clock.now();
                        Change::Heartbeat(Heartbeat {
                            task,
                            token,
                            at,
                            lease_expires_at: at.saturating_add(Duration::from_secs(30)),
                            progress: Some(Progress {
                                percent: round as f32 * 10.0,
                                message: Some(message.clone()),
                            }),
                            sample: false,
                            details: None,
                        })
                    });
                    let t = Instant::now();
                    check(store.apply(beats.collect()).await);
                    took.push(t.elapsed());
                }
            }
            took
        });
    }
    let mut took = Vec::new();
    while let Some(done) = set.join_next().await {
        took.extend(done.expect("a heartbeat caller panicked"));
    }
    let seconds = t0.elapsed().as_secs_f64();
    took.sort();
    let n = TASKS * ROUNDS;
    println!(
        "{{\"workload\":\"store_heartbeat\",\"store\":\"{}\",{},\"n\":{n},\"batch\":{batch},\
         \"seconds\":{seconds:.3},\"heartbeats_per_s\":{:.0},\"batch_p50_ms\":{:.3},\"batch_p99_ms\":{:.3}}}",
        label.store,
        label.durability,
        n as f64 / seconds,
        percentile(&took, 0.5),
        percentile(&took, 0.99),
    );
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 =
        status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// The three figures on one store. `transactions` reports what the store
/// committed, when it counts (SQLite's group commit shares transactions);
/// otherwise every `apply` is one.
async fn bench<S: Store>(
    store: Arc<S>,
    label: &Label,
    args: &Args,
    transactions: impl Fn() -> Option<(u64, u64)>,
) {
    let clock = Arc::new(SystemClock::new());
    let run = new_run(args.tasks, &clock);
    let ids: Vec<TaskId> = run.tasks.iter().map(|t| t.id).collect();

    let started = Instant::now();
    check(store.apply(vec![Change::CreateRun(run)]).await);
    let created = started.elapsed();

    // Contiguous slices per caller, as an executor draining one run would take them.
    let per_caller = ids.len().div_ceil(args.callers.max(1)).max(1);
    let per_batch = args.batch.max(1);
    let applies = Arc::new(AtomicU64::new(1));
    let mut callers = tokio::task::JoinSet::new();
    for slice in ids.chunks(per_caller) {
        callers.spawn(drive(store.clone(), clock.clone(), slice.to_vec(), per_batch, applies.clone()));
    }
    while let Some(done) = callers.join_next().await {
        done.expect("a caller panicked");
    }
    let total = started.elapsed();
    let moved = total - created;
    let n = args.tasks as f64;
    let changes = 3.0 * n;
    let (transactions, committed) =
        transactions().unwrap_or((applies.load(Ordering::Relaxed), changes as u64 + 1));
    println!(
        "{{\"workload\":\"store_apply\",\"store\":\"{}\",{},\"n\":{},\"batch\":{},\"callers\":{},\
         \"seconds\":{:.3},\"create_seconds\":{:.3},\"changes_per_s\":{:.0},\"tasks_per_s\":{:.0},\
         \"per_unit_ms\":{:.4},\"transactions\":{},\"changes_per_transaction\":{:.0},\"rss_mb\":{:.1}}}",
        label.store,
        label.durability,
        args.tasks,
        per_batch,
        args.callers,
        total.as_secs_f64(),
        created.as_secs_f64(),
        changes / moved.as_secs_f64(),
        n / total.as_secs_f64(),
        total.as_secs_f64() * 1000.0 / n,
        transactions,
        committed as f64 / transactions.max(1) as f64,
        peak_rss_mb().unwrap_or(0.0),
    );
    single_change_latency(&*store, label, &clock).await;
    heartbeats(store, label, clock, per_batch, args.callers).await;
}

/// `url` pointing at database `name` instead (URL or key=value form).
fn with_dbname(url: &str, name: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let (rest, query) = match rest.split_once('?') {
                Some((rest, query)) => (rest, format!("?{query}")),
                None => (rest, String::new()),
            };
            let authority = rest.split_once('/').map_or(rest, |(authority, _)| authority);
            format!("{scheme}://{authority}/{name}{query}")
        }
        None => format!("{url} dbname={name}"),
    }
}

async fn admin(url: &str, sql: &str) {
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to the PostgreSQL server");
    tokio::spawn(connection);
    client.batch_execute(sql).await.expect(sql);
}

async fn on_postgres(args: &Args, url: &str) {
    let name = format!("cairn_bench_{}", std::process::id());
    admin(url, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
    admin(url, &format!("CREATE DATABASE {name}")).await;
    let store = Arc::new(
        PostgresStore::connect(&with_dbname(url, &name), PostgresOptions::default()).await.expect("connect"),
    );
    let label = Label {
        store: "postgres",
        durability: format!("\"synchronous_commit\":\"{}\"", store.synchronous_commit()),
    };
    bench(store.clone(), &label, args, || None).await;
    store.close().await.expect("close the store");
    drop(store);
    admin(url, &format!("DROP DATABASE {name} WITH (FORCE)")).await;
}

async fn on_sqlite(args: &Args) {
    let tmp = tempfile::tempdir().expect("a temp dir");
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    let path = dir.join(format!("apply-throughput-{}.db", std::process::id()));
    let options = SqliteOptions { synchronous: args.sync, ..Default::default() };
    let store = Arc::new(SqliteStore::open(&path, options).expect("open the store"));
    let label = Label { store: "sqlite", durability: format!("\"synchronous\":\"{}\"", store.synchronous()) };
    let stats = {
        let store = store.clone();
        move || {
            let stats = store.write_stats();
            Some((stats.transactions, stats.changes))
        }
    };
    bench(store.clone(), &label, args, stats).await;
    store.close().await.expect("close the store");
    let _ = std::fs::remove_file(&path);
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    match args.postgres.clone() {
        Some(url) => on_postgres(&args, &url).await,
        None => on_sqlite(&args).await,
    }
}
