//! `cairn serve`: the API, the workflow catalog, the run manager (local
//! executor, remote queues and their reaping), and — while this server
//! leads the servers sharing its store — the cron scheduler and the
//! adoption of the runs of servers that are gone, in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use cairn_core::Timestamp;
use cairn_core::anomaly::{AnomalyRule, BadRule};
use cairn_core::lease::LeaseSettings;
use cairn_engine::owner::LocalOwner;
use cairn_engine::scheduler::Workflows;
use cairn_engine::{EngineClock, Manager, ManagerOptions, ScheduledWorkflow, Scheduler, recover};
use cairn_server::{AppState, AuthMode, Catalog, EngineControl, ServerConfig};
use cairn_store::{PostgresOptions, PostgresStore, Store, StoreError};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::home::Home;
use crate::{Exit, InvalidInput};

mod alerts;
mod anomalies;
mod gate;
mod retention;
mod tls;

use gate::Gate;

#[derive(clap::Args)]
pub struct Args {
    /// Address to serve the API on
    #[arg(long, default_value = "127.0.0.1:8080", env = "CAIRN_LISTEN")]
    listen: SocketAddr,
    /// Directory of workflow files (reloaded on change) [default: DATA_DIR/workflows]
    #[arg(long, value_name = "DIR")]
    workflows: Option<PathBuf>,
    /// A running attempt whose lease is not extended for this long is lost
    #[arg(long, default_value_t = 30, value_name = "SECONDS")]
    heartbeat_timeout: u64,
    /// Keep everything in this PostgreSQL database instead of the data directory's SQLite file
    /// (logs stay in the data directory)
    #[arg(long, env = "CAIRN_DATABASE_URL", value_name = "postgres://…")]
    database: Option<String>,
    /// On SIGTERM, how long active runs may take to finish before their local steps are interrupted
    #[arg(long, default_value_t = 10, value_name = "SECONDS")]
    grace: u64,
    /// Serve without API tokens on an address other than loopback: anyone who reaches it may run
    /// commands. Without tokens, a loopback address is open to local users anyway
    #[arg(long)]
    insecure: bool,
    /// Anomaly alerts: the recent window whose finished runs are compared with the baseline
    #[arg(long, default_value = "1h", value_parser = crate::span::parse, value_name = "SPAN")]
    anomaly_window: Duration,
    /// Anomaly alerts: the baseline, just before the recent window
    #[arg(long, default_value = "7d", value_parser = crate::span::parse, value_name = "SPAN")]
    anomaly_baseline: Duration,
    /// Anomaly alerts: how far a watched status's share must rise above its baseline share
    /// (0.25 = 25 points)
    #[arg(long, default_value_t = 0.25, value_name = "SHARE")]
    anomaly_threshold: f64,
    /// Anomaly alerts: the fewest finished runs in each window to judge a workflow by
    #[arg(long, default_value_t = 10, value_name = "RUNS")]
    anomaly_min_runs: u64,
    /// Anomaly alerts: the run statuses whose share is watched
    #[arg(long, default_value = "FAILED", value_delimiter = ',', value_name = "STATUS,…")]
    anomaly_statuses: Vec<cairn_core::RunStatus>,
    /// Retention: keep finished runs this many days, for workflows without a rule of their own
    /// (none: keep them all); runs are archived under DATA_DIR/archive before they are deleted
    #[arg(
        long,
        env = "CAIRN_HIST_RETENTION_DAYS",
        value_name = "DAYS",
        conflicts_with = "hist_retention_runs"
    )]
    hist_retention_days: Option<u32>,
    /// Retention: keep the newest this many runs of each workflow without a rule of its own
    #[arg(long, env = "CAIRN_HIST_RETENTION_RUNS", value_name = "RUNS")]
    hist_retention_runs: Option<u32>,
    /// Serve HTTPS with this PEM certificate chain (the server's certificate first)
    #[arg(long, env = "CAIRN_TLS_CERT", value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert
    #[arg(long, env = "CAIRN_TLS_KEY", value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Requests a second one caller (token, or address without tokens) may send to the API,
    /// in bursts of twice that (0: no limit)
    #[arg(long, default_value_t = cairn_server::limits::DEFAULT_API_RATE, value_name = "N")]
    rate_limit_api: u32,
    /// Requests a second one caller may send to the worker protocol, in bursts of twice that
    /// (0: no limit)
    #[arg(long, default_value_t = cairn_server::limits::DEFAULT_WORKER_RATE, value_name = "N")]
    rate_limit_worker: u32,
    /// Live event subscriptions (`/api/v1/events`) this server takes in all
    #[arg(long, default_value_t = 1000, value_name = "N")]
    max_subscribers: usize,
    /// Live event subscriptions one caller may hold
    #[arg(long, default_value_t = 20, value_name = "N")]
    max_subscribers_per_token: usize,
    /// The server config: alert rules, webhooks, the status report (docs/alerts.md). Without it,
    /// DATA_DIR/cairn.yaml is read if it exists
    #[arg(long, env = "CAIRN_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// The notification part of the config, once read (serve/alerts.rs).
    #[arg(skip)]
    notify: Option<Arc<cairn_core::notify::NotifyConfig>>,
}

impl Args {
    fn anomaly_rule(&self) -> Result<AnomalyRule> {
        let rule = AnomalyRule {
            recent: self.anomaly_window,
            baseline: self.anomaly_baseline,
            threshold: self.anomaly_threshold,
            min_runs: self.anomaly_min_runs,
            statuses: self.anomaly_statuses.clone(),
        };
        rule.validate().map_err(|e| {
            let flag = match e {
                BadRule::RecentTooShort(_) => "--anomaly-window",
                BadRule::BaselineTooShort { .. } => "--anomaly-baseline",
                BadRule::Threshold(_) => "--anomaly-threshold",
                BadRule::MinRuns => "--anomaly-min-runs",
                BadRule::NotFinished(_) | BadRule::NoStatus => "--anomaly-statuses",
            };
            InvalidInput(format!("{flag}: {e}"))
        })?;
        Ok(rule)
    }
}

pub async fn serve(args: Args, data_dir: Option<PathBuf>) -> Result<Exit> {
    let clock = EngineClock::system();
    // A bad rule is refused before anything listens.
    args.anomaly_rule()?;
    // So is a certificate or key that cannot be served with.
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(tls::load(cert, key).map_err(|e| InvalidInput(e.to_string()))?),
        _ => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let home = Home::resolve(data_dir)?;
    // A bad config file is refused before anything listens, too.
    let mut args = args;
    args.notify = alerts::load(args.config.as_deref(), &home.dir)?;
    // Listening before the store is open: a load balancer or an operator
    // sees "not ready, waiting for …" instead of a refused connection.
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let addr = listener.local_addr().context("reading the address listened on")?;
    let gate = Gate::new("opening the store");
    let http_stop = CancellationToken::new();
    // With the peer's address, for the rate limits of a server without tokens.
    let app = gate.router().into_make_service_with_connect_info::<SocketAddr>();
    let shutdown = http_stop.clone().cancelled_owned();
    let http = match tls {
        None => tokio::spawn(axum::serve(listener, app).with_graceful_shutdown(shutdown).into_future()),
        Some(config) => {
            use axum::serve::ListenerExt;
            let listener = tls::TlsListener::new(listener, config).context("serving TLS")?;
            // `tap_io` only for axum's `ConnectInfo` of a custom listener's address.
            let listener = listener.tap_io(|_| ());
            tokio::spawn(axum::serve(listener, app).with_graceful_shutdown(shutdown).into_future())
        }
    };
    if args.database.is_some() {
        eprintln!("cairn listening on {scheme}://{addr}; not ready until the database answers");
    }
    let stopping = tokio::spawn(wait_for_stop());
    let serving = async {
        match args.database.clone() {
            Some(url) => {
                let Some(store) = connect(&url, &gate, &stopping).await? else { return Ok(Exit::Success) };
                let store = Arc::new(store);
                recover(store.as_ref(), &clock).await.context("recovering runs of dead executors")?;
                serve_on(store, home, args, clock, (addr, &gate), stopping).await
            }
            None => {
                let store = home.open(&clock).await?;
                serve_on(store, home, args, clock, (addr, &gate), stopping).await
            }
        }
    };
    let result = serving.await;
    http_stop.cancel();
    http.await.context("serving the API")?.context("serving the API")?;
    result
}

/// Connects to PostgreSQL, trying again (every second, then up to every ten)
/// while the database cannot be reached; `None` when told to stop meanwhile.
/// A URL that is not one, or a schema newer than this build, ends it at once.
async fn connect(
    url: &str,
    gate: &Gate,
    stopping: &tokio::task::JoinHandle<()>,
) -> Result<Option<PostgresStore>> {
    let mut pause = Duration::from_secs(1);
    loop {
        let err = match PostgresStore::connect(url, PostgresOptions::default()).await {
            Ok(store) => return Ok(Some(store)),
            Err(e @ (StoreError::TooNew { .. } | StoreError::InvalidChange(_))) => e,
            Err(StoreError::Open { path, reason }) if path.starts_with('(') => {
                return Err(StoreError::Open { path, reason }).context("reading --database");
            }
            Err(e) => {
                let what = format!("waiting for the database {}: {e}", redact(url));
                tracing::warn!("{what}; trying again in {}s", pause.as_secs());
                gate.waiting_for(what);
                tokio::time::sleep(pause).await;
                if stopping.is_finished() {
                    return Ok(None);
                }
                pause = (pause * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        return Err(err).with_context(|| format!("connecting to the database {}", redact(url)));
    }
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

/// Whether the API asks for tokens: always once any live token exists;
/// without one, open on loopback (local users only), and elsewhere only
/// when told `--insecure`.
async fn auth_mode<S: Store>(
    store: &S,
    addr: SocketAddr,
    insecure: bool,
    now: Timestamp,
) -> Result<AuthMode> {
    if store.any_live_token(now).await.context("reading the API tokens")? {
        eprintln!("cairn: API tokens required (`Authorization: Bearer cairn_…`)");
        return Ok(AuthMode::Tokens);
    }
    if addr.ip().is_loopback() {
        eprintln!(
            "cairn: no API tokens: the API is open to every user of this machine; `cairn token create` makes \
             one, and the server asks for tokens from then on"
        );
        return Ok(AuthMode::Open);
    }
    if insecure {
        eprintln!("cairn: WARNING: --insecure: the API on {addr} is open to anyone who can reach it");
        return Ok(AuthMode::Open);
    }
    Err(InvalidInput(format!(
        "refusing to serve {addr} without API tokens: anyone who reaches it could run commands. Create one \
         (`cairn token create admin --role admin`), listen on 127.0.0.1, or pass --insecure"
    ))
    .into())
}

async fn serve_on<S: Store>(
    store: Arc<S>,
    home: Home,
    args: Args,
    clock: EngineClock,
    (addr, gate): (SocketAddr, &Gate),
    stopping: tokio::task::JoinHandle<()>,
) -> Result<Exit> {
    let auth = auth_mode(store.as_ref(), addr, args.insecure, clock.now()).await?;
    let workflows = args.workflows.clone().unwrap_or_else(|| home.dir.join("workflows"));
    std::fs::create_dir_all(&workflows).with_context(|| format!("creating {}", workflows.display()))?;

    let opts = ManagerOptions {
        owner: LocalOwner::current().server_name(),
        log_root: home.log_root(),
        lease: LeaseSettings::with_timeout(Duration::from_secs(args.heartbeat_timeout.max(1))),
    };
    let manager = Manager::new(store.clone(), clock.clone(), opts);
    // A member before it drives anything, so no other server takes its runs
    // for those of a dead one.
    let membership = store.join(manager.owner()).await.context("joining the servers of the store")?;
    let resumed = manager.resume().await.context("resuming the runs of a previous server")?;

    let catalog = Catalog::load(&workflows);
    let _watching = catalog.watch(Duration::from_secs(1));
    let (schedules, feeding) = feed_schedules(&catalog);
    let scheduled = schedules.borrow().len();
    let stop_scheduler = CancellationToken::new();
    // Before anything records a metric.
    cairn_server::metrics::install();
    cairn_server::metrics::set_leader(false);
    // Notifications by the alert rules (serve/alerts.rs).
    let alerting = args.notify.clone().map(|config| {
        let (events, leader) = (manager.subscribe(), membership.leader.clone());
        alerts::spawn(store.clone(), clock.clone(), config, events, leader, stop_scheduler.clone())
    });
    // Retention, while this server leads (serve/retention.rs).
    let retaining = retention::spawn(
        store.clone(),
        clock.clone(),
        &catalog,
        retention::global_rule(args.hist_retention_days, args.hist_retention_runs),
        home.dir.join("archive"),
        membership.leader.clone(),
        stop_scheduler.clone(),
    );
    let scheduler = tokio::spawn(lead(
        manager.clone(),
        schedules,
        clock.clone(),
        membership.leader.clone(),
        stop_scheduler.clone(),
        args.anomaly_rule()?,
    ));
    let _observing = cairn_server::metrics::spawn_observer(manager.subscribe());
    let control = Arc::new(EngineControl::new(manager.clone(), catalog.clone()));
    let tokens_made = Arc::new(AtomicBool::new(false));
    if auth == AuthMode::Open {
        tokio::spawn(watch_for_tokens(store.clone(), clock.clone(), tokens_made.clone()));
    }
    let config = ServerConfig {
        auth,
        tokens_made,
        tls: args.tls_cert.is_some(),
        loopback: addr.ip().is_loopback(),
        rate_limit_api: args.rate_limit_api,
        rate_limit_worker: args.rate_limit_worker,
        max_subscribers: args.max_subscribers,
        max_subscribers_per_token: args.max_subscribers_per_token,
        ..ServerConfig::new(home.log_root())
    };
    let state = AppState::new(store, control, catalog.clone(), config);
    gate.open(cairn_server::router(state));

    let snapshot = catalog.snapshot();
    eprintln!(
        "cairn serving {}://{} — data {}, workflows {} ({} loaded, {} broken, {} on a schedule), {} runs resumed",
        if args.tls_cert.is_some() { "https" } else { "http" },
        addr,
        home.dir.display(),
        workflows.display(),
        snapshot.len() - snapshot.broken(),
        snapshot.broken(),
        scheduled,
        resumed
    );

    let grace = Duration::from_secs(args.grace);
    let _ = stopping.await;
    // No new scheduled run once stopping has begun.
    stop_scheduler.cancel();
    let _ = scheduler.await;
    let _ = retaining.await;
    if let Some(alerting) = alerting {
        let _ = alerting.await;
    }
    feeding.abort();
    eprintln!("stopping: waiting up to {}s for {} active runs", grace.as_secs(), manager.active_runs());
    // Local steps still running after the grace are interrupted and
    // recorded as such; the next server resumes the runs (remote attempts
    // keep their leases meanwhile). The API serves until then.
    manager.shutdown(grace).await;
    drop(membership);
    Ok(Exit::Success)
}

/// What only the leader does, for as long as it leads: the cron scheduler,
/// and taking over the unfinished runs of servers that are gone.
async fn lead<S: Store>(
    manager: Arc<Manager<S>>,
    schedules: watch::Receiver<Workflows>,
    clock: EngineClock,
    leader: watch::Receiver<bool>,
    stop: CancellationToken,
    anomaly_rule: AnomalyRule,
) {
    // A tick due while no server led (the leader died, or the only server
    // restarted) fires late if it is this recent; each tick runs once all
    // the same, as the store refuses a second run for it.
    const TAKEOVER_WINDOW: Duration = Duration::from_secs(15);
    while_leading(leader, stop, "the cron scheduler, adoption and the anomaly watch", |term| {
        let scheduler =
            Scheduler::new(manager.clone(), schedules.clone(), clock.clone()).with_takeover(TAKEOVER_WINDOW);
        let (manager, clock, rule) = (manager.clone(), clock.clone(), anomaly_rule.clone());
        async move {
            tracing::info!(
                "leading: running the cron scheduler, adopting the runs of servers that are gone, watching the status mix"
            );
            cairn_server::metrics::set_leader(true);
            let scheduling = tokio::spawn(scheduler.run(term.clone()));
            let adopting = tokio::spawn(adopt_orphans(manager.clone(), term.clone()));
            let watching = anomalies::spawn(manager.store().clone(), clock, rule, term);
            let _ = tokio::join!(scheduling, adopting, watching);
            cairn_server::metrics::set_leader(false);
        }
    })
    .await;
}

/// While the API is open, looks every couple of seconds for an API token
/// made meanwhile (`cairn token create`, maybe by another process or
/// server), and asks for tokens from then on: a token made to lock the
/// server does so without a restart.
async fn watch_for_tokens<S: Store>(store: Arc<S>, clock: EngineClock, tokens_made: Arc<AtomicBool>) {
    let mut every = tokio::time::interval(Duration::from_secs(2));
    while !tokens_made.load(Ordering::Relaxed) {
        every.tick().await;
        match store.any_live_token(clock.now()).await {
            Ok(true) => {
                tokens_made.store(true, Ordering::Relaxed);
                eprintln!("cairn: an API token exists now: the API asks for tokens from now on");
            }
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "could not look for API tokens"),
        }
    }
}

/// Runs `work` through each stretch of this server's leadership, until
/// `stop`: started with a fresh token when the server becomes the leader,
/// and that token canceled — the work then awaited — when it stops leading
/// or the server stops. For the leader's jobs that need no more than the
/// store, the clock and the leadership (retention, webhook delivery), and
/// for `lead` itself; `job` names the work in the log when leadership ends.
async fn while_leading<F, Fut>(
    mut leader: watch::Receiver<bool>,
    stop: CancellationToken,
    job: &'static str,
    mut work: F,
) where
    F: FnMut(CancellationToken) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        tokio::select! {
            led = leader.wait_for(|&l| l) => if led.is_err() { return },
            () = stop.cancelled() => return,
        }
        let term = stop.child_token();
        let working = tokio::spawn(work(term.clone()));
        tokio::select! {
            _ = leader.wait_for(|&l| !l) => tracing::warn!("no longer the leader: {job} stops"),
            () = stop.cancelled() => {}
        }
        term.cancel();
        let _ = working.await;
    }
}

/// Adopts, every couple of seconds, the unfinished runs of servers that are gone.
async fn adopt_orphans<S: Store>(manager: Arc<Manager<S>>, term: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = every.tick() => match manager.resume().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(runs = n, "adopted the runs of servers that are gone"),
                Err(e) => tracing::warn!(error = %e, "could not look for the runs of servers that are gone"),
            },
            () = term.cancelled() => return,
        }
    }
}

/// The catalog's workflows that have a schedule, republished at every reload.
fn feed_schedules(catalog: &Catalog) -> (watch::Receiver<Workflows>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(scheduled_workflows(catalog));
    let catalog = catalog.clone();
    let mut changes = catalog.subscribe();
    let feeding = tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            tx.send_replace(scheduled_workflows(&catalog));
        }
    });
    (rx, feeding)
}

fn scheduled_workflows(catalog: &Catalog) -> Workflows {
    let snapshot = catalog.snapshot();
    let list = snapshot
        .entries()
        .filter_map(|e| {
            let workflow = e.workflow().filter(|w| !w.schedule.start.is_empty())?;
            Some(ScheduledWorkflow { workflow: workflow.clone(), source: e.source.clone() })
        })
        .collect();
    Arc::new(list)
}

async fn wait_for_stop() {
    let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate()))
    else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = int.recv() => {}
        _ = term.recv() => {}
    }
}
