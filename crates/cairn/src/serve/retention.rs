//! Retention while this server leads: the engine's retention job
//! (`cairn_engine::retention`), fed the rules of the catalog's workflows and
//! the server's global rule, archiving into this server's data directory,
//! its passes counted in `/metrics`. Beside `lead`, not inside it: it only
//! needs the store, the clock and the leadership.

use std::path::PathBuf;
use std::sync::Arc;

use cairn_core::retention::Policy;
use cairn_core::spec::Retention;
use cairn_engine::archive::Archive;
use cairn_engine::retention::Report;
use cairn_engine::{EngineClock, RetentionJob};
use cairn_server::Catalog;
use cairn_store::Store;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The global rule of `--hist-retention-days` / `--hist-retention-runs`
/// (clap lets at most one through).
pub(super) fn global_rule(days: Option<u32>, runs: Option<u32>) -> Option<Retention> {
    days.map(Retention::Days).or(runs.map(Retention::Runs))
}

/// Runs the retention job whenever this server leads, until `stop`.
pub(super) fn spawn<S: Store>(
    store: Arc<S>,
    clock: EngineClock,
    catalog: &Catalog,
    global: Option<Retention>,
    archive: PathBuf,
    leader: watch::Receiver<bool>,
    stop: CancellationToken,
) -> JoinHandle<()> {
    let (policy, feeding) = feed_policy(catalog, global);
    tokio::spawn(async move {
        super::while_leading(leader, stop, "retention", |term| {
            let (reports_tx, mut reports) = mpsc::unbounded_channel();
            let job = RetentionJob::new(store.clone(), clock.clone(), policy.clone(), Archive::new(&archive))
                .with_reports(reports_tx);
            async move {
                let counting = tokio::spawn(async move {
                    while let Some(report) = reports.recv().await {
                        if let Report::Pass(pass) = report {
                            cairn_server::metrics::record_retention_deleted(pass.deleted);
                        }
                    }
                });
                job.run(term).await;
                let _ = counting.await;
            }
        })
        .await;
        feeding.abort();
    })
}

/// The rules in force, republished at every reload of the catalog.
fn feed_policy(
    catalog: &Catalog,
    global: Option<Retention>,
) -> (watch::Receiver<Arc<Policy>>, JoinHandle<()>) {
    let (tx, rx) = watch::channel(Arc::new(policy(catalog, global)));
    let catalog = catalog.clone();
    let mut changes = catalog.subscribe();
    let feeding = tokio::spawn(async move {
        while changes.changed().await.is_ok() {
            tx.send_replace(Arc::new(policy(&catalog, global)));
        }
    });
    (rx, feeding)
}

/// Each workflow's own rule, the global one for the rest; a workflow whose
/// file does not load keeps its runs, and so does every workflow while the
/// directory itself cannot be read (no file says what to keep then).
fn policy(catalog: &Catalog, global: Option<Retention>) -> Policy {
    let snapshot = catalog.snapshot();
    if let Some(problem) = &snapshot.problem {
        tracing::warn!(%problem, "the workflow directory cannot be read; retention keeps every run meanwhile");
        return Policy::default();
    }
    let mut policy = Policy::global(global);
    for entry in snapshot.entries() {
        match entry.workflow() {
            Some(workflow) => {
                if let Some(rule) = workflow.history {
                    policy.own.insert(entry.name.clone(), rule);
                }
            }
            None => {
                policy.unknown.insert(entry.name.clone());
            }
        }
    }
    policy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalog_gives_each_workflow_its_rule() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("etl.yaml", "hist_retention_runs: 5\nsteps:\n  - command: echo hi\n");
        write("plain.yaml", "steps:\n  - command: echo hi\n");
        write("broken.yaml", "steps: [\n");
        let catalog = Catalog::load(dir.path());
        let policy = policy(&catalog, Some(Retention::Days(30)));
        assert_eq!(policy.rule("etl"), Some(Retention::Runs(5)));
        assert_eq!(policy.rule("plain"), Some(Retention::Days(30)));
        assert_eq!(
            policy.rule("gone"),
            Some(Retention::Days(30)),
            "no longer in the catalog: the global rule"
        );
        assert_eq!(policy.rule("broken"), None, "a file that does not load keeps its runs");
        assert_eq!(global_rule(None, Some(3)), Some(Retention::Runs(3)));
        assert_eq!(global_rule(None, None), None);

        let missing = Catalog::load(dir.path().join("nowhere"));
        assert!(missing.snapshot().problem.is_some());
        assert!(
            super::policy(&missing, Some(Retention::Days(1))).keeps_everything(),
            "an unreadable directory"
        );
    }
}
