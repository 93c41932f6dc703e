//! The server's notifications: the config file (`--config`, else
//! `DATA_DIR/cairn.yaml` when it exists) read and checked before anything
//! listens; on every server the notifier that routes live events by the
//! alert rules (`cairn_engine::webhooks::Notifier`); and while this server
//! leads, the deliverer of the webhook outbox and the scheduled status
//! report. Beside `lead`, not inside it: like retention it only needs the
//! store, the clock and the leadership.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use cairn_core::event::Event;
use cairn_core::notify::NotifyConfig;
use cairn_engine::EngineClock;
use cairn_engine::webhooks::{Deliverer, Notifier};
use cairn_store::Store;
use tokio::sync::{Notify, broadcast, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::InvalidInput;

/// The config file read when `--config` is not given, in the data directory.
pub(super) const DEFAULT_FILE: &str = "cairn.yaml";

/// The notification config: from `explicit` (an error if it cannot be
/// read), else from the data directory's `cairn.yaml` if there is one;
/// `None` without either. Every problem of the file is refused as invalid
/// input, with its file:line:column and field.
pub(super) fn load(explicit: Option<&Path>, data_dir: &Path) -> Result<Option<Arc<NotifyConfig>>> {
    let (path, required): (PathBuf, bool) = match explicit {
        Some(p) => (p.to_owned(), true),
        None => (data_dir.join(DEFAULT_FILE), false),
    };
    let source = match std::fs::read_to_string(&path) {
        Ok(s) => s,
        Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(InvalidInput(format!("--config: cannot read {}: {e}", path.display())).into());
        }
    };
    let file = path.display().to_string();
    let config = NotifyConfig::parse(&source, &file, |var| std::env::var(var).ok())
        .map_err(|errors| InvalidInput(format!("invalid server config:\n{errors}")))?;
    Ok(Some(Arc::new(config)))
}

/// Routes `events` by the rules on every server, and delivers the outbox
/// and the report whenever this server leads, until `stop`.
pub(super) fn spawn<S: Store>(
    store: Arc<S>,
    clock: EngineClock,
    config: Arc<NotifyConfig>,
    events: broadcast::Receiver<Event>,
    leader: watch::Receiver<bool>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    tracing::info!(
        webhooks = config.webhooks.len(),
        rules = config.alerts.len(),
        report = config.report.is_some(),
        "notifications configured"
    );
    let enqueued = Arc::new(Notify::new());
    let notifier = Notifier::new(store.clone(), config.clone(), enqueued.clone());
    let routing = tokio::spawn(notifier.run(events, stop.clone()));
    tokio::spawn(async move {
        super::while_leading(leader, stop, "webhook delivery", |term| {
            let deliverer = Deliverer::new(store.clone(), clock.clone(), config.clone());
            let report = report(store.clone(), clock.clone(), config.clone(), enqueued.clone(), term.clone());
            let wake = enqueued.clone();
            async move {
                let reporting = tokio::spawn(report);
                deliverer
                    .run(wake, term, |pass| {
                        cairn_server::metrics::record_webhook_deliveries(
                            pass.delivered,
                            pass.retrying,
                            pass.failed,
                        );
                    })
                    .await;
                let _ = reporting.await;
            }
        })
        .await;
        let _ = routing.await;
    })
}

/// Sends the status report at each time the schedule gives, until `term`.
async fn report<S: Store>(
    store: Arc<S>,
    clock: EngineClock,
    config: Arc<NotifyConfig>,
    enqueued: Arc<Notify>,
    term: CancellationToken,
) {
    let Some(schedule) = config.report.clone() else { return };
    let notifier = Notifier::new(store, config, enqueued);
    loop {
        let now = clock.now();
        let due = schedule.next_after(now);
        // Slept in steps: a clock set forward (or a long suspend) is noticed.
        let wait = due.since(now).min(Duration::from_secs(60));
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = term.cancelled() => return,
        }
        if clock.now() < due {
            continue;
        }
        match notifier.send_report(&schedule, due).await {
            Ok(n) => tracing::info!(key = %n.key, "status report sent"),
            Err(error) => tracing::warn!(%error, "could not build or send the status report"),
        }
    }
}
