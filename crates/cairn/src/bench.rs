//! `cairn bench`: the workloads of BENCHMARKS.md, one JSON line per result.
//!
//! Durability stays on (SQLite WAL, `synchronous` printed in every line) and
//! every transition of every task is recorded, as in production.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cairn_core::record::Actor;
use cairn_core::{RunId, RunStatus, TaskStatus};
use cairn_engine::{Driver, EngineClock, NoopRunner, PlannedTask, RunOptions, RunPlan, TaskRunner};
use cairn_store::sqlite::{SqliteOptions, Synchronous};
use cairn_store::{SqliteStore, Store};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::{Exit, InvalidInput};

const KNOWN: [&str; 8] = ["W1", "W2", "W3", "W1r", "W5", "W6", "W7", "all"];
use crate::out::outln;

#[derive(clap::Args)]
pub struct Args {
    /// Workloads to run: W1, W2, W3, W1r, W5, W6, W7 or all
    #[arg(default_value = "all", value_delimiter = ',')]
    workloads: Vec<String>,
    /// Task counts for W1 (comma-separated; several show how cost grows with size)
    #[arg(long, value_delimiter = ',', default_value = "10000,100000")]
    n: Vec<usize>,
    /// Task count for W1r (remote no-op tasks over HTTP)
    #[arg(long, default_value_t = 20_000)]
    remote_n: usize,
    /// SDK workers for W1r
    #[arg(long, default_value_t = 4)]
    workers: usize,
    /// Heartbeat timeout for W7, in milliseconds
    #[arg(long, default_value_t = 2_000)]
    w7_timeout_ms: u64,
    /// Repetitions per figure; the median is reported
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// SQLite synchronous mode: full or normal (WAL either way)
    #[arg(long, default_value = "full")]
    synchronous: String,
    /// Directory for the benchmark databases [default: a temporary directory]
    #[arg(long)]
    dir: Option<PathBuf>,
}

pub async fn bench(args: Args) -> Result<Exit> {
    let sync = match args.synchronous.to_ascii_lowercase().as_str() {
        "full" => Synchronous::Full,
        "normal" => Synchronous::Normal,
        other => return Err(InvalidInput(format!("--synchronous {other:?}: expected full or normal")).into()),
    };
    if let Some(unknown) = args.workloads.iter().find(|w| !KNOWN.iter().any(|k| w.eq_ignore_ascii_case(k))) {
        return Err(
            InvalidInput(format!("unknown workload {unknown:?}: expected {}", KNOWN.join(", "))).into()
        );
    }
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    std::fs::create_dir_all(&dir)?;
    let all = args.workloads.iter().any(|w| w.eq_ignore_ascii_case("all"));
    let wants = |w: &str| all || args.workloads.iter().any(|x| x.eq_ignore_ascii_case(w));
    let runs = args.runs.max(1);
    if wants("W1") {
        for &n in &args.n {
            let mut secs = Vec::new();
            for i in 0..runs {
                secs.push(w1(&dir.join(format!("w1-{n}-{i}")), n, sync).await?);
            }
            let s = median(&mut secs);
            print_line(json!({
                "workload": "W1", "store": "sqlite", "synchronous": sync.as_str(), "n": n, "runs": runs,
                "seconds": round(s), "per_unit_ms": round(s * 1000.0 / n as f64),
                "tasks_per_s": (n as f64 / s).round(), "rss_mb": rss_mb(),
            }));
        }
    }
    if wants("W2") {
        let mut totals = Vec::new();
        let mut handoffs = Vec::new();
        for i in 0..runs.max(5) {
            let (total, mut h) = w2(&dir.join(format!("w2-{i}")), 40, sync).await?;
            totals.push(total);
            handoffs.append(&mut h);
        }
        let s = median(&mut totals);
        handoffs.sort_by(f64::total_cmp);
        print_line(json!({
            "workload": "W2", "store": "sqlite", "synchronous": sync.as_str(), "n": 40, "runs": runs.max(5),
            "seconds": round(s), "per_unit_ms": round(s * 1000.0 / 40.0),
            "record_handoff_p50_ms": round(percentile(&handoffs, 0.50)), "record_handoff_p99_ms": round(percentile(&handoffs, 0.99)),
            "rss_mb": rss_mb(),
        }));
    }
    if wants("W1r") {
        let n = args.remote_n;
        let mut secs = Vec::new();
        for i in 0..runs {
            secs.push(crate::bench_remote::w1r(&dir.join(format!("w1r-{i}")), n, args.workers, sync).await?);
        }
        let s = median(&mut secs);
        print_line(json!({
            "workload": "W1r", "store": "sqlite", "synchronous": sync.as_str(), "n": n, "runs": runs,
            "workers": args.workers, "transport": "http loopback, SDK workers in this process",
            "seconds": round(s), "per_unit_ms": round(s * 1000.0 / n as f64),
            "tasks_per_s": (n as f64 / s).round(), "rss_mb": rss_mb(),
        }));
    }
    if wants("W5") {
        let (n, clients, batch) = (10_000, 8, 100);
        let (rate, p50, p99) = crate::bench_remote::w5(&dir.join("w5"), n, clients, batch, sync).await?;
        print_line(json!({
            "workload": "W5", "store": "sqlite", "synchronous": sync.as_str(), "n": n, "clients": clients,
            "batch": batch, "heartbeats_per_s": rate.round(), "p50_ms": round(p50), "p99_ms": round(p99),
            "rss_mb": rss_mb(),
        }));
    }
    if wants("W6") {
        let (local, remote) = crate::bench_remote::w6(&dir.join("w6"), 200, sync).await?;
        use crate::bench_remote::pct;
        print_line(json!({
            "workload": "W6", "store": "sqlite", "synchronous": sync.as_str(), "n": local.len(),
            "p50_ms": round(pct(&local, 0.5)), "p99_ms": round(pct(&local, 0.99)),
            "remote_p50_ms": round(pct(&remote, 0.5)), "remote_p99_ms": round(pct(&remote, 0.99)),
            "rss_mb": rss_mb(),
        }));
    }
    if wants("W7") {
        let timeout = std::time::Duration::from_millis(args.w7_timeout_ms);
        let s = crate::bench_remote::w7(&dir.join("w7"), 1000, timeout, sync).await?;
        print_line(json!({
            "workload": "W7", "store": "sqlite", "synchronous": sync.as_str(), "n": 1000,
            "heartbeat_timeout_s": timeout.as_secs_f64(), "seconds": round(s),
            "over_timeout_s": round(s - timeout.as_secs_f64()), "rss_mb": rss_mb(),
        }));
    }
    if wants("W3") {
        let mut cairn = Vec::new();
        let mut plain = Vec::new();
        for i in 0..runs {
            plain.push(w3_plain_loop(20, 10).await?);
            cairn.push(w3(&dir.join(format!("w3-{i}")), sync).await?);
        }
        let (c, p) = (median(&mut cairn), median(&mut plain));
        print_line(json!({
            "workload": "W3", "store": "sqlite", "synchronous": sync.as_str(), "n": 200, "runs": runs,
            "seconds": round(c), "per_unit_ms": round(c * 1000.0 / 200.0),
            "plain_loop_seconds": round(p), "ratio_to_plain_loop": round(c / p), "rss_mb": rss_mb(),
        }));
    }
    Ok(Exit::Success)
}

fn open(dir: &Path, sync: Synchronous) -> Result<Arc<SqliteStore>> {
    std::fs::create_dir_all(dir)?;
    let opts = SqliteOptions { synchronous: sync, ..SqliteOptions::default() };
    Ok(Arc::new(crate::home::open_store(&dir.join("cairn.db"), opts)?))
}

fn options(dir: &Path) -> RunOptions {
    RunOptions {
        run_id: RunId::new(EngineClock::system().now()),
        owner: cairn_engine::owner::LocalOwner::current().to_string(),
        lease: Default::default(),
        log_root: dir.join("logs"),
        prechecks: false,
        queues: None,
    }
}

fn plan(name: &str, tasks: Vec<PlannedTask>) -> RunPlan {
    RunPlan {
        workflow: name.to_owned(),
        tasks,
        max_active: None,
        timeout: None,
        delay: None,
        params: BTreeMap::new(),
        spec_source: String::new(),
        spec_path: None,
        trigger: "bench".to_owned(),
        preconditions: false,
        keep_details: false,
        carried: Vec::new(),
    }
}

async fn drive<R: TaskRunner>(
    store: Arc<SqliteStore>,
    runner: R,
    plan: RunPlan,
    opts: RunOptions,
) -> Result<RunStatus> {
    let driver = Driver::new(store, Arc::new(runner), EngineClock::system(), plan, opts)?;
    Ok(driver.drive(CancellationToken::new(), Actor::User("bench".into())).await?)
}

/// W1: `n` independent no-op tasks, submit to the last COMPLETED in the store.
async fn w1(dir: &Path, n: usize, sync: Synchronous) -> Result<f64> {
    let store = open(dir, sync)?;
    let tasks = (0..n).map(|i| PlannedTask::step(format!("t{i}"), vec![])).collect();
    let started = Instant::now();
    let status = drive(store.clone(), NoopRunner, plan("w1", tasks), options(dir)).await?;
    let secs = started.elapsed().as_secs_f64();
    if status != RunStatus::Completed {
        bail!("W1 run ended {status}");
    }
    Ok(secs)
}

/// W2: a chain of `n` no-op steps. Returns the total and each handoff (ms
/// from one step's COMPLETED to the next one's RUNNING, from the records).
async fn w2(dir: &Path, n: usize, sync: Synchronous) -> Result<(f64, Vec<f64>)> {
    let store = open(dir, sync)?;
    let tasks = (0..n)
        .map(|i| PlannedTask::step(format!("s{i}"), if i == 0 { vec![] } else { vec![i - 1] }))
        .collect();
    let opts = options(dir);
    let run = opts.run_id;
    let started = Instant::now();
    let status = drive(store.clone(), NoopRunner, plan("w2", tasks), opts).await?;
    let secs = started.elapsed().as_secs_f64();
    if status != RunStatus::Completed {
        bail!("W2 run ended {status}");
    }
    let detail = store.run_detail(run).await?.context("W2 run not found")?;
    let at = |i: usize, to: TaskStatus| {
        detail.transitions[&detail.tasks[i].id].iter().find(|t| t.to == to).map(|t| t.at)
    };
    let handoffs = (1..n)
        .filter_map(|i| {
            Some(at(i, TaskStatus::Running)?.since(at(i - 1, TaskStatus::Completed)?).as_secs_f64() * 1e3)
        })
        .collect();
    Ok((secs, handoffs))
}

/// W3: 200 `true` steps in 10 layers of 20, each layer after the previous, from YAML.
async fn w3(dir: &Path, sync: Synchronous) -> Result<f64> {
    let mut yaml = String::from("name: w3\ntype: graph\nsteps:\n");
    for layer in 0..10 {
        for i in 0..20 {
            yaml.push_str(&format!("  - name: s{layer}_{i}\n    command: \"true\"\n"));
            if layer > 0 {
                let deps: Vec<String> = (0..20).map(|j| format!("s{}_{j}", layer - 1)).collect();
                yaml.push_str(&format!("    depends: [{}]\n", deps.join(", ")));
            }
        }
    }
    let file = dir.join("w3.yaml");
    std::fs::create_dir_all(dir)?;
    std::fs::write(&file, &yaml)?;
    let store = open(dir, sync)?;
    let loaded = crate::workflow::load(&file, &[])?;
    let mut opts = options(dir);
    opts.prechecks = loaded.needs_prechecks();
    let started = Instant::now();
    let status = drive(store, loaded.runner()?, loaded.plan("bench"), opts).await?;
    let secs = started.elapsed().as_secs_f64();
    if status != RunStatus::Completed {
        bail!("W3 run ended {status}");
    }
    Ok(secs)
}

/// The W3 baseline: the same processes spawned by a plain loop, `width` at a
/// time — through the same shell Cairn runs a `command:` with (Dagu's rule:
/// `$SHELL`, else `sh`).
async fn w3_plain_loop(width: usize, layers: usize) -> Result<f64> {
    let shell = std::env::var("SHELL").ok().filter(|s| !s.trim().is_empty()).unwrap_or_else(|| "sh".into());
    let started = Instant::now();
    for _ in 0..layers {
        let mut children = Vec::with_capacity(width);
        for _ in 0..width {
            children.push(tokio::process::Command::new(&shell).args(["-c", "true"]).spawn()?);
        }
        for mut c in children {
            c.wait().await?;
        }
    }
    Ok(started.elapsed().as_secs_f64())
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Peak resident set size of this process, in MB.
fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 =
        status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
}

fn print_line(v: serde_json::Value) {
    outln!("{v}");
}
