//! `cairn bench`: the workloads of BENCHMARKS.md, one JSON line per result,
//! on SQLite, PostgreSQL or both (`--database`).
//!
//! Durability stays on (SQLite WAL with `synchronous` printed in every line,
//! PostgreSQL with its `synchronous_commit` printed likewise) and every
//! transition of every task is recorded, as in production. Each workload,
//! and each repetition of it, starts on an empty store of its own: a new
//! SQLite file, or a new PostgreSQL database that is dropped afterwards.
//! The workloads are written once, generic over the store ([`Workload`]);
//! [`Target`] is the one place that knows which backend it opens.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use cairn_core::record::Actor;
use cairn_core::{LeaseToken, RunId, RunStatus, TaskStatus};
use cairn_engine::{Driver, EngineClock, NoopRunner, PlannedTask, RunOptions, RunPlan, TaskRunner};
use cairn_store::sqlite::{SqliteOptions, Synchronous};
use cairn_store::{PostgresOptions, PostgresStore, Store};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::bench_remote::{W1r, W5, W6, W7};
use crate::out::outln;
use crate::{Exit, InvalidInput};

const KNOWN: [&str; 9] = ["W1", "W2", "W3", "W1r", "W4", "W5", "W6", "W7", "all"];

#[derive(clap::Args)]
pub struct Args {
    /// Workloads to run: W1, W2, W3, W1r, W4, W5, W6, W7 or all (every one but W4, which loads
    /// millions of records and takes minutes; name it to run it)
    #[arg(default_value = "all", value_delimiter = ',')]
    workloads: Vec<String>,
    /// Stores to measure on: sqlite (a new file per workload) or a postgres://… URL (a new
    /// database on that server per workload); repeat or comma-separate for several, SQLite runs first
    #[arg(long, value_name = "sqlite|postgres://…", default_value = "sqlite")]
    database: Vec<String>,
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
    /// SQLite synchronous mode: full or normal (WAL either way; SQLite only)
    #[arg(long, default_value = "full")]
    synchronous: String,
    /// Task records of the history W4 loads before it measures (comma-separated sizes, each
    /// loaded into a new store; about ten tasks per run)
    #[arg(long, value_delimiter = ',', default_value = "100000,1000000")]
    history_n: Vec<usize>,
    /// Days the W4 history spans, ending now
    #[arg(long, default_value_t = 30)]
    history_days: u32,
    /// Timed passes over each W4 query, after one that warms the cache
    #[arg(long, default_value_t = 20)]
    history_passes: usize,
    /// Directory for the SQLite databases and the logs [default: a temporary directory]
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Keep the PostgreSQL database of each workload instead of dropping it, and print its URL
    /// (e.g. to serve a W4 history: `cairn serve --database URL`)
    #[arg(long)]
    keep_databases: bool,
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
    // Every server is checked (and its durability setting read) before the
    // first figure, so an unreachable one fails at once, not after the SQLite figures.
    let mut targets = Vec::new();
    for spec in database_specs(&args.database) {
        targets.push(Target::new(&spec, sync, args.keep_databases).await?);
    }
    if targets.is_empty() {
        return Err(InvalidInput("--database: expected sqlite or a postgres://… URL".into()).into());
    }
    targets.sort_by_key(|t| !matches!(t, Target::Sqlite(_)));
    let tmp = tempfile::tempdir().context("creating a temporary directory")?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_owned());
    for (i, target) in targets.iter().enumerate() {
        measure_all(target, &args, &dir.join(format!("{}-{i}", target.kind()))).await?;
    }
    Ok(Exit::Success)
}

/// The `--database` values, each split at the commas that start another
/// store (a URL may hold commas of its own: several hosts).
fn database_specs(values: &[String]) -> Vec<String> {
    let starts_store = |s: &str| s.eq_ignore_ascii_case("sqlite") || s.contains("://");
    let mut specs: Vec<String> = Vec::new();
    for piece in values.iter().flat_map(|v| v.split(',')).map(str::trim).filter(|p| !p.is_empty()) {
        match specs.last_mut() {
            Some(url) if url.contains("://") && !starts_store(piece) => {
                url.push(',');
                url.push_str(piece);
            }
            _ => specs.push(piece.to_owned()),
        }
    }
    specs
}

/// Every workload asked for, on one store, one JSON line per figure.
async fn measure_all(target: &Target, args: &Args, dir: &Path) -> Result<()> {
    let all = args.workloads.iter().any(|w| w.eq_ignore_ascii_case("all"));
    let wants = |w: &str| all || args.workloads.iter().any(|x| x.eq_ignore_ascii_case(w));
    let runs = args.runs.max(1);
    if wants("W1") {
        for &n in &args.n {
            let mut secs = Vec::new();
            for i in 0..runs {
                secs.push(target.measure(&dir.join(format!("w1-{n}-{i}")), W1 { n }).await?);
            }
            let s = median(&mut secs);
            print_line(target.line(json!({
                "workload": "W1", "n": n, "runs": runs,
                "seconds": round(s), "per_unit_ms": round(s * 1000.0 / n as f64),
                "tasks_per_s": (n as f64 / s).round(), "rss_mb": rss_mb(),
            })));
        }
    }
    if wants("W2") {
        let mut totals = Vec::new();
        let mut handoffs = Vec::new();
        for i in 0..runs.max(5) {
            let (total, mut h) = target.measure(&dir.join(format!("w2-{i}")), W2 { n: 40 }).await?;
            totals.push(total);
            handoffs.append(&mut h);
        }
        let s = median(&mut totals);
        handoffs.sort_by(f64::total_cmp);
        print_line(target.line(json!({
            "workload": "W2", "n": 40, "runs": runs.max(5),
            "seconds": round(s), "per_unit_ms": round(s * 1000.0 / 40.0),
            "record_handoff_p50_ms": round(percentile(&handoffs, 0.50)), "record_handoff_p99_ms": round(percentile(&handoffs, 0.99)),
            "rss_mb": rss_mb(),
        })));
    }
    if wants("W1r") {
        let (n, workers) = (args.remote_n, args.workers);
        let mut secs = Vec::new();
        for i in 0..runs {
            secs.push(target.measure(&dir.join(format!("w1r-{i}")), W1r { n, workers }).await?);
        }
        let s = median(&mut secs);
        print_line(target.line(json!({
            "workload": "W1r", "n": n, "runs": runs,
            "workers": workers, "transport": "http loopback, SDK workers in this process",
            "seconds": round(s), "per_unit_ms": round(s * 1000.0 / n as f64),
            "tasks_per_s": (n as f64 / s).round(), "rss_mb": rss_mb(),
        })));
    }
    if wants("W5") {
        let (n, clients, batch) = (10_000, 8, 100);
        let (rate, p50, p99) = target.measure(&dir.join("w5"), W5 { n, clients, batch }).await?;
        print_line(target.line(json!({
            "workload": "W5", "n": n, "clients": clients,
            "batch": batch, "heartbeats_per_s": rate.round(), "p50_ms": round(p50), "p99_ms": round(p99),
            "rss_mb": rss_mb(),
        })));
    }
    if wants("W6") {
        let (local, remote) = target.measure(&dir.join("w6"), W6 { samples: 200 }).await?;
        use crate::bench_remote::pct;
        print_line(target.line(json!({
            "workload": "W6", "n": local.len(),
            "p50_ms": round(pct(&local, 0.5)), "p99_ms": round(pct(&local, 0.99)),
            "remote_p50_ms": round(pct(&remote, 0.5)), "remote_p99_ms": round(pct(&remote, 0.99)),
            "rss_mb": rss_mb(),
        })));
    }
    if wants("W7") {
        let timeout = Duration::from_millis(args.w7_timeout_ms);
        let s = target.measure(&dir.join("w7"), W7 { n: 1000, timeout }).await?;
        print_line(target.line(json!({
            "workload": "W7", "n": 1000,
            "heartbeat_timeout_s": timeout.as_secs_f64(), "seconds": round(s),
            "over_timeout_s": round(s - timeout.as_secs_f64()), "rss_mb": rss_mb(),
        })));
    }
    // Not part of `all`: loading the history takes minutes.
    if args.workloads.iter().any(|w| w.eq_ignore_ascii_case("W4")) {
        for &tasks in &args.history_n {
            let w4 = crate::bench_history::W4 {
                tasks,
                passes: args.history_passes,
                days: args.history_days,
                seed: 4,
            };
            for line in target.measure(&dir.join(format!("w4-{tasks}")), w4).await? {
                print_line(target.line(line));
            }
        }
    }
    if wants("W3") {
        let mut cairn = Vec::new();
        let mut plain = Vec::new();
        for i in 0..runs {
            plain.push(w3_plain_loop(20, 10).await?);
            cairn.push(target.measure(&dir.join(format!("w3-{i}")), W3).await?);
        }
        let (c, p) = (median(&mut cairn), median(&mut plain));
        print_line(target.line(json!({
            "workload": "W3", "n": 200, "runs": runs,
            "seconds": round(c), "per_unit_ms": round(c * 1000.0 / 200.0),
            "plain_loop_seconds": round(p), "ratio_to_plain_loop": round(c / p), "rss_mb": rss_mb(),
        })));
    }
    Ok(())
}

/// One measurement, written once for every store: [`Target::measure`] runs
/// it on an empty store of its own and an empty directory (for logs and
/// workflow files).
pub(crate) trait Workload {
    type Output;
    async fn on<S: Store>(self, store: Arc<S>, dir: &Path) -> Result<Self::Output>;
}

/// A store to measure on.
enum Target {
    /// A new SQLite file per workload, in the workload's directory.
    Sqlite(Synchronous),
    /// A new database per workload on the server of a `postgres://` URL
    /// (whose own database is used only to create and drop them).
    Postgres { server: PgServer, synchronous_commit: String },
}

impl Target {
    /// `sqlite` or a `postgres://…` URL, whose server is asked for its
    /// `synchronous_commit` (and so known to be reachable).
    async fn new(spec: &str, sync: Synchronous, keep: bool) -> Result<Target> {
        if spec.eq_ignore_ascii_case("sqlite") {
            return Ok(Target::Sqlite(sync));
        }
        let server = PgServer::parse(spec, keep).ok_or_else(|| {
            InvalidInput(format!(
                "--database {spec:?}: expected sqlite or a postgres://USER@HOST:PORT/DBNAME URL"
            ))
        })?;
        let row = server.session().await?.query_one("SHOW synchronous_commit", &[]).await?;
        Ok(Target::Postgres { synchronous_commit: row.try_get(0)?, server })
    }

    fn kind(&self) -> &'static str {
        match self {
            Target::Sqlite(_) => "sqlite",
            Target::Postgres { .. } => "postgres",
        }
    }

    /// A result line: `fields` with the store and its durability setting.
    fn line(&self, mut fields: Value) -> Value {
        if let Value::Object(map) = &mut fields {
            map.insert("store".into(), self.kind().into());
            match self {
                Target::Sqlite(sync) => map.insert("synchronous".into(), sync.as_str().into()),
                Target::Postgres { synchronous_commit, .. } => {
                    map.insert("synchronous_commit".into(), synchronous_commit.as_str().into())
                }
            };
        }
        fields
    }

    /// Runs `workload` on a new, empty store in (or for) `dir`.
    async fn measure<W: Workload>(&self, dir: &Path, workload: W) -> Result<W::Output> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        match self {
            Target::Sqlite(sync) => {
                let opts = SqliteOptions { synchronous: *sync, ..SqliteOptions::default() };
                let store = Arc::new(crate::home::open_store(&dir.join("cairn.db"), opts)?);
                workload.on(store, dir).await
            }
            Target::Postgres { server, .. } => {
                let db = server.create_database().await?;
                let store = PostgresStore::connect(&db.url, PostgresOptions::default())
                    .await
                    .with_context(|| format!("connecting to the benchmark database {}", db.name))?;
                let store = Arc::new(store);
                let out = workload.on(store.clone(), dir).await;
                store.close().await?;
                out
                // `db` goes here: the database is dropped, whatever the outcome.
            }
        }
    }
}

/// A PostgreSQL server, from a `postgres://` URL split around its database name.
struct PgServer {
    /// The URL as given: a session on it creates and drops the benchmark databases.
    url: String,
    /// `postgres://USER:PASSWORD@HOST:PORT`, without the database.
    base: String,
    /// `?…` or empty.
    query: String,
    /// Keep the databases made on it (`--keep-databases`).
    keep: bool,
}

impl PgServer {
    fn parse(url: &str, keep: bool) -> Option<PgServer> {
        let (scheme, rest) = url.split_once("://")?;
        if !scheme.eq_ignore_ascii_case("postgres") && !scheme.eq_ignore_ascii_case("postgresql") {
            return None;
        }
        let (rest, query) = rest.split_once('?').map_or((rest, ""), |(r, q)| (r, q));
        let authority = rest.split_once('/').map_or(rest, |(a, _)| a);
        let query = if query.is_empty() { String::new() } else { format!("?{query}") };
        Some(PgServer { url: url.to_owned(), base: format!("{scheme}://{authority}"), query, keep })
    }

    /// The URL without its password, for messages.
    fn shown(&self) -> String {
        match self.base.split_once("://").and_then(|(s, a)| Some((s, a.rsplit_once('@')?))) {
            Some((scheme, (userinfo, host))) => {
                format!("{scheme}://{}@{host}", userinfo.split(':').next().unwrap_or(""))
            }
            None => self.base.clone(),
        }
    }

    async fn session(&self) -> Result<tokio_postgres::Client> {
        session(&self.url).await.with_context(|| format!("connecting to PostgreSQL at {}", self.shown()))
    }

    async fn create_database(&self) -> Result<BenchDatabase> {
        let name = format!("cairn_bench_{}", LeaseToken::random());
        self.session()
            .await?
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .with_context(|| format!("creating the database {name} on {}", self.shown()))?;
        Ok(BenchDatabase {
            url: format!("{}/{name}{}", self.base, self.query),
            server: self.url.clone(),
            name,
            keep: self.keep,
        })
    }
}

async fn session(url: &str) -> Result<tokio_postgres::Client> {
    let connecting = tokio_postgres::connect(url, tokio_postgres::NoTls);
    let (client, connection) = tokio::time::timeout(Duration::from_secs(10), connecting)
        .await
        .map_err(|_| anyhow!("no answer within 10 s"))??;
    tokio::spawn(connection);
    Ok(client)
}

/// A database made for one workload, dropped (with any session still on it)
/// when this goes — after an error or a panic too — unless it is kept.
struct BenchDatabase {
    name: String,
    url: String,
    server: String,
    keep: bool,
}

impl Drop for BenchDatabase {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("kept the benchmark database {}: {}", self.name, self.url);
            return;
        }
        let (server, sql) =
            (self.server.clone(), format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name));
        // Drop cannot await: a thread with a runtime of its own, which works
        // inside any runtime and while unwinding.
        let dropped = std::thread::spawn(move || -> Result<()> {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async { Ok(session(&server).await?.batch_execute(&sql).await?) })
        })
        .join();
        match dropped {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(database = %self.name, "could not drop the benchmark database: {e:#}")
            }
            Err(_) => tracing::warn!(database = %self.name, "could not drop the benchmark database"),
        }
    }
}

fn options(dir: &Path) -> RunOptions {
    RunOptions {
        run_id: RunId::new(EngineClock::system().now()),
        owner: cairn_engine::owner::LocalOwner::current().to_string(),
        lease: Default::default(),
        log_root: dir.join("logs"),
        prechecks: false,
        remote: false,
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
        requested_by: Actor::Scheduler,
        schedule_tick: None,
        labels: Vec::new(),
        preconditions: false,
        keep_details: false,
        carried: Vec::new(),
    }
}

async fn drive<S: Store, R: TaskRunner>(
    store: Arc<S>,
    runner: R,
    plan: RunPlan,
    opts: RunOptions,
) -> Result<RunStatus> {
    let driver = Driver::new(store, Arc::new(runner), EngineClock::system(), plan, opts)?;
    Ok(driver.drive(CancellationToken::new(), Actor::User("bench".into())).await?)
}

/// W1: `n` independent no-op tasks, submit to the last COMPLETED in the store.
/// Seconds.
struct W1 {
    n: usize,
}

impl Workload for W1 {
    type Output = f64;

    async fn on<S: Store>(self, store: Arc<S>, dir: &Path) -> Result<f64> {
        let tasks = (0..self.n).map(|i| PlannedTask::step(format!("t{i}"), vec![])).collect();
        let started = Instant::now();
        let status = drive(store, NoopRunner, plan("w1", tasks), options(dir)).await?;
        let secs = started.elapsed().as_secs_f64();
        if status != RunStatus::Completed {
            bail!("W1 run ended {status}");
        }
        Ok(secs)
    }
}

/// W2: a chain of `n` no-op steps. The total seconds and each handoff (ms
/// from one step's COMPLETED to the next one's RUNNING, from the records).
struct W2 {
    n: usize,
}

impl Workload for W2 {
    type Output = (f64, Vec<f64>);

    async fn on<S: Store>(self, store: Arc<S>, dir: &Path) -> Result<(f64, Vec<f64>)> {
        let n = self.n;
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
}

/// W3: 200 `true` steps in 10 layers of 20, each layer after the previous,
/// from YAML. Seconds.
struct W3;

impl Workload for W3 {
    type Output = f64;

    async fn on<S: Store>(self, store: Arc<S>, dir: &Path) -> Result<f64> {
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
        std::fs::write(&file, &yaml)?;
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

pub(crate) fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i]
}

pub(crate) fn round(x: f64) -> f64 {
    (x * 10_000.0).round() / 10_000.0
}

/// Peak resident set size of this process, in MB.
pub(crate) fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 =
        status.lines().find(|l| l.starts_with("VmHWM:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some((kb / 1024.0 * 10.0).round() / 10.0)
}

fn print_line(v: serde_json::Value) {
    outln!("{v}");
}
