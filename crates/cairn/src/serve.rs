//! `cairn serve`: the API, the workflow catalog, the run manager (local
//! executor, remote queues and their reaping), the cron scheduler, and
//! resumption of the runs a previous server left, in one process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use cairn_core::lease::LeaseSettings;
use cairn_engine::owner::LocalOwner;
use cairn_engine::scheduler::Workflows;
use cairn_engine::{EngineClock, Manager, ManagerOptions, ScheduledWorkflow, Scheduler, recover};
use cairn_server::{AppState, Catalog, EngineControl, ServerConfig};
use cairn_store::{PostgresOptions, PostgresStore, Store};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::Exit;
use crate::home::Home;

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
}

pub async fn serve(args: Args, data_dir: Option<PathBuf>) -> Result<Exit> {
    let clock = EngineClock::system();
    let home = Home::resolve(data_dir)?;
    match args.database.clone() {
        Some(url) => {
            let store = PostgresStore::connect(&url, PostgresOptions::default())
                .await
                .with_context(|| format!("connecting to the database {}", redact(&url)))?;
            let store = Arc::new(store);
            recover(store.as_ref(), &clock).await.context("recovering runs of dead executors")?;
            serve_on(store, home, args, clock).await
        }
        None => {
            let store = home.open(&clock).await?;
            serve_on(store, home, args, clock).await
        }
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

async fn serve_on<S: Store>(store: Arc<S>, home: Home, args: Args, clock: EngineClock) -> Result<Exit> {
    let workflows = args.workflows.clone().unwrap_or_else(|| home.dir.join("workflows"));
    std::fs::create_dir_all(&workflows).with_context(|| format!("creating {}", workflows.display()))?;

    let opts = ManagerOptions {
        owner: LocalOwner::current().server_name(),
        log_root: home.log_root(),
        lease: LeaseSettings::with_timeout(Duration::from_secs(args.heartbeat_timeout.max(1))),
    };
    let manager = Manager::new(store.clone(), clock.clone(), opts);
    let resumed = manager.resume().await.context("resuming the runs of a previous server")?;

    let catalog = Catalog::load(&workflows);
    let _watching = catalog.watch(Duration::from_secs(1));
    let (schedules, feeding) = feed_schedules(&catalog);
    let scheduled = schedules.borrow().len();
    let stop_scheduler = CancellationToken::new();
    let scheduler =
        tokio::spawn(Scheduler::new(manager.clone(), schedules, clock).run(stop_scheduler.clone()));
    cairn_server::metrics::install();
    let _observing = cairn_server::metrics::spawn_observer(manager.subscribe());
    let control = Arc::new(EngineControl::new(manager.clone(), catalog.clone()));
    let state = AppState::new(store, control, catalog.clone(), ServerConfig::new(home.log_root()));
    let app = cairn_server::router(state);

    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("listening on {}", args.listen))?;
    let snapshot = catalog.snapshot();
    eprintln!(
        "cairn serving http://{} — data {}, workflows {} ({} loaded, {} broken, {} on a schedule), {} runs resumed",
        listener.local_addr().unwrap_or(args.listen),
        home.dir.display(),
        workflows.display(),
        snapshot.len() - snapshot.broken(),
        snapshot.broken(),
        scheduled,
        resumed
    );

    let grace = Duration::from_secs(args.grace);
    let stopping = manager.clone();
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            wait_for_stop().await;
            // No new scheduled run once stopping has begun.
            stop_scheduler.cancel();
            let _ = scheduler.await;
            feeding.abort();
            eprintln!(
                "stopping: waiting up to {}s for {} active runs",
                grace.as_secs(),
                stopping.active_runs()
            );
            // Local steps still running after the grace are interrupted and
            // recorded as such; the next server resumes the runs (remote
            // attempts keep their leases meanwhile).
            stopping.shutdown(grace).await;
        })
        .await
        .context("serving the API")?;
    Ok(Exit::Success)
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
