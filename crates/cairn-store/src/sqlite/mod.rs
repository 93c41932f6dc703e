//! The embedded SQLite backend: [`SqliteStore`] and its [`SqliteOptions`].
//!
//! One file in WAL mode. All writes go through one OS thread that owns the
//! only write connection (`writer`); it commits whatever batches are queued
//! together in one transaction (group commit), so the cost of an fsync is
//! shared by every caller waiting at that moment. Reads run on a small pool of
//! query-only connections on tokio's blocking threads (`read`), in parallel
//! with the writer. The schema is versioned by refinery (`schema`).
//!
//! Dispatch (`crate::dispatch`) needs nothing more: claims and renewals are
//! jobs of the one writer, notices are published by the writer after each
//! commit, and the one server that uses a file is its sole member and leader.
//!
//! Architecture invariant: no connection but the writer's ever writes, so a
//! change's compare-and-set (an `UPDATE` whose `WHERE` names the expected
//! status and lease token) inside the writer's `BEGIN IMMEDIATE` transaction
//! cannot race with another write.

mod alerts;
mod analytics;
mod audit;
mod counts;
mod import;
mod read;
mod reaped;
mod retention;
mod schema;
mod search;
mod tokens;
mod webhooks;
mod writer;

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_core::{RunId, TaskId, Timestamp};

use tokio::sync::broadcast;

use crate::Store;
use crate::change::{Change, Outcome};
use crate::dispatch::{ClaimOutcome, ClaimRequest, LeaseState, Membership, Notice, PostedResult, Renewal};
use crate::error::StoreError;
use crate::model::{ExpiredLease, ProgressSample, RunDetail, RunQuery, RunRecord, TaskDetail};
use crate::validate::validate_batch;
use writer::{Done, Work};

/// Notices a receiver may fall behind by before it lags (and must resync).
const NOTICE_BACKLOG: usize = 4096;

pub use writer::WriteStats;

#[cfg(any(test, feature = "conformance"))]
pub(crate) use schema::migrate_to;

/// SQLite's `synchronous` setting for the store's file. Either keeps every
/// committed change through a crash of the process; they differ on power loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Synchronous {
    /// fsync at every commit: a commit that returned survives power loss.
    #[default]
    Full,
    /// fsync at checkpoints only: faster; after a power loss the last commits
    /// may be missing, but the database stays consistent.
    Normal,
}

impl Synchronous {
    pub const fn as_str(self) -> &'static str {
        match self {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        }
    }
}

impl fmt::Display for Synchronous {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How [`SqliteStore::open`] sets up the file and its connections.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    pub synchronous: Synchronous,
    /// How long a write waits for another process holding the file's write lock.
    pub busy_timeout: Duration,
    /// Query-only connections for reads (at least 1).
    pub readers: usize,
    /// Page cache of the write connection, in KiB. The writer updates tasks all
    /// over the hot table; it should fit here.
    pub writer_cache_kib: u32,
    /// Page cache of each read connection, in KiB.
    pub reader_cache_kib: u32,
    /// Group commit stops taking queued batches into a transaction once it
    /// holds this many changes (a single larger batch still goes in whole).
    pub max_group_changes: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            synchronous: Synchronous::Full,
            busy_timeout: Duration::from_secs(5),
            readers: 4,
            writer_cache_kib: 32 * 1024,
            reader_cache_kib: 8 * 1024,
            max_group_changes: 20_000,
        }
    }
}

/// Cairn's embedded store: one SQLite file, one writer thread, a few readers.
///
/// Dropping it stops the writer after the queued batches; [`SqliteStore::close`]
/// does the same and also waits for the writer to finish and checkpoint.
pub struct SqliteStore {
    path: PathBuf,
    synchronous: Synchronous,
    schema_version: i64,
    writer: writer::WriterHandle,
    readers: Arc<read::ReadPool>,
    notices: broadcast::Sender<Notice>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .field("synchronous", &self.synchronous)
            .field("schema_version", &self.schema_version)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens (creating it and its parent directories if needed) the store at
    /// `path` and brings its schema up to date.
    ///
    /// Fails with [`StoreError::Open`] when the file cannot be opened or is not
    /// a SQLite database, [`StoreError::TooNew`] when a newer Cairn wrote it,
    /// and [`StoreError::Migration`] when upgrading it failed.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|e| StoreError::Open {
                path: path.display().to_string(),
                reason: format!("cannot create its directory {}: {e}", parent.display()),
            })?;
        }
        let schema::Writer { conn, schema_version, synchronous } = schema::open_writer(path, &options)?;
        let mut readers = Vec::with_capacity(options.readers.max(1));
        for _ in 0..options.readers.max(1) {
            readers.push(schema::open_reader(path, &options)?);
        }
        let (notices, _) = broadcast::channel(NOTICE_BACKLOG);
        let writer = writer::spawn(conn, options.max_group_changes, notices.clone()).map_err(|e| {
            StoreError::Open {
                path: path.display().to_string(),
                reason: format!("cannot start the writer thread: {e}"),
            }
        })?;
        tracing::debug!(path = %path.display(), %synchronous, schema_version, "sqlite store open");
        Ok(SqliteStore {
            path: path.to_owned(),
            synchronous,
            schema_version,
            writer,
            readers: Arc::new(read::ReadPool::new(readers)),
            notices,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `synchronous` setting in effect on the write connection, as SQLite
    /// reports it, for benchmark output.
    pub fn synchronous(&self) -> Synchronous {
        self.synchronous
    }

    /// The schema version of the open file (equal to
    /// [`SqliteStore::latest_schema_version`] once open succeeded).
    pub fn schema_version(&self) -> i64 {
        self.schema_version
    }

    /// The newest schema version this build knows.
    pub fn latest_schema_version() -> i64 {
        schema::latest_version()
    }

    /// How [`Store::search_runs`] would serve `q`: its drive and the plan
    /// SQLite makes of each statement (for tests and diagnosis).
    pub async fn explain_search_runs(&self, q: crate::RunSearch) -> Result<crate::QueryPlan, StoreError> {
        let q = crate::search::Runs::new(&q)?;
        read::with_reader(self.readers.clone(), move |c| search::explain_runs(c, &q)).await
    }

    /// How [`Store::search_tasks`] would serve `q` (see [`SqliteStore::explain_search_runs`]).
    pub async fn explain_search_tasks(&self, q: crate::TaskSearch) -> Result<crate::QueryPlan, StoreError> {
        let q = crate::search::Tasks::new(&q)?;
        read::with_reader(self.readers.clone(), move |c| search::explain_tasks(c, &q)).await
    }

    /// The plans SQLite makes of the statements of [`Store::phase_stats`]
    /// and [`Store::expected_durations`], for `workflow` and its `step`.
    pub async fn explain_analytics(
        &self,
        workflow: &str,
        step: &str,
    ) -> Result<crate::QueryPlan, StoreError> {
        let (workflow, step) = (workflow.to_owned(), step.to_owned());
        read::with_reader(self.readers.clone(), move |c| analytics::explain(c, &workflow, &step)).await
    }

    /// Counters of the writer: transactions, batches and changes committed.
    pub fn write_stats(&self) -> WriteStats {
        self.writer.stats()
    }

    /// Stops the store: the writer commits what is queued, checkpoints the WAL
    /// into the main file and closes. Later calls fail with [`StoreError::Closed`].
    pub async fn close(&self) -> Result<(), StoreError> {
        self.readers.close();
        match self.writer.stop() {
            None => Ok(()),
            Some(thread) => tokio::task::spawn_blocking(move || writer::join(thread))
                .await
                .map_err(|e| StoreError::Database(format!("waiting for the writer thread failed: {e}")))?,
        }
    }

    /// Records a token's use at `now` if the last one recorded is a minute
    /// old or more (`crate::tokens::use_is_news`), and says so in `token`.
    async fn note_use(&self, token: &mut crate::TokenRecord, now: Timestamp) -> Result<(), StoreError> {
        if crate::tokens::use_is_news(token.last_used_at, now) {
            let queued = self.writer.submit(Work::Token(crate::tokens::TokenWrite::Used {
                id: token.id,
                name: token.name.clone(),
                at: now,
            }));
            answer(queued).await?;
            token.last_used_at = Some(now);
        }
        Ok(())
    }
}

/// The writer's answer to queued work, once committed.
async fn answer(queued: Result<writer::Answer, StoreError>) -> Result<Done, StoreError> {
    // A dropped reply means the writer died holding the work: whether it
    // committed is unknown, which `Closed` says.
    queued?.await.map_err(|_| StoreError::Closed)?
}

fn unexpected(what: &str) -> StoreError {
    StoreError::Database(format!("the writer answered a {what} with something else"))
}

impl Store for SqliteStore {
    fn apply_shared(
        &self,
        changes: Arc<Vec<Change>>,
    ) -> impl Future<Output = Result<Vec<Outcome>, StoreError>> + Send {
        let queued = if changes.is_empty() {
            Ok(None)
        } else {
            validate_batch(&changes).and_then(|()| self.writer.submit(Work::Apply(changes)).map(Some))
        };
        async move {
            match queued? {
                None => Ok(Vec::new()),
                Some(queued) => match answer(Ok(queued)).await? {
                    Done::Applied(outcomes) => Ok(outcomes),
                    _ => Err(unexpected("batch")),
                },
            }
        }
    }

    fn run(&self, id: RunId) -> impl Future<Output = Result<Option<RunRecord>, StoreError>> + Send {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, move |c| read::run(c, id)).await }
    }

    fn run_detail(&self, id: RunId) -> impl Future<Output = Result<Option<RunDetail>, StoreError>> + Send {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, move |c| read::run_detail(c, id)).await }
    }

    fn task(&self, id: TaskId) -> impl Future<Output = Result<Option<TaskDetail>, StoreError>> + Send {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, move |c| read::task_detail(c, id)).await }
    }

    fn runs_by_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RunRecord>, StoreError>> + Send {
        let pool = self.readers.clone();
        let prefix = prefix.to_owned();
        async move { read::with_reader(pool, move |c| read::runs_by_prefix(c, &prefix, limit)).await }
    }

    fn list_runs(&self, query: RunQuery) -> impl Future<Output = Result<Vec<RunRecord>, StoreError>> + Send {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, move |c| read::list_runs(c, &query)).await }
    }

    fn active_runs(&self) -> impl Future<Output = Result<Vec<RunRecord>, StoreError>> + Send {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, read::active_runs).await }
    }

    fn expired_leases(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ExpiredLease>, StoreError>> + Send {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, move |c| read::expired_leases(c, now, limit)).await }
    }

    fn next_lease_expiry(&self) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, read::next_lease_expiry).await }
    }

    fn spec_source(&self, run: RunId) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, move |c| read::spec_source(c, run)).await }
    }

    fn progress_samples(
        &self,
        task: TaskId,
    ) -> impl Future<Output = Result<Vec<ProgressSample>, StoreError>> + Send {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, move |c| read::progress_samples(c, task)).await }
    }

    /// Runs on the writer thread, in the group's transaction: nothing else
    /// writes meanwhile, so the offers it reads are its to take.
    fn claim(&self, req: ClaimRequest) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send {
        let queued = self.writer.submit(Work::Claim(req));
        async move {
            match answer(queued).await? {
                Done::Claimed(outcome) => Ok(outcome),
                _ => Err(unexpected("claim")),
            }
        }
    }

    fn renew(
        &self,
        renewals: Vec<Renewal>,
    ) -> impl Future<Output = Result<Vec<LeaseState>, StoreError>> + Send {
        let queued =
            if renewals.is_empty() { Ok(None) } else { self.writer.submit(Work::Renew(renewals)).map(Some) };
        async move {
            match queued? {
                None => Ok(Vec::new()),
                Some(queued) => match answer(Ok(queued)).await? {
                    Done::Renewed(states) => Ok(states),
                    _ => Err(unexpected("renewal")),
                },
            }
        }
    }

    fn posted_result(
        &self,
        task: TaskId,
    ) -> impl Future<Output = Result<Option<PostedResult>, StoreError>> + Send {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, move |c| read::posted_result(c, task)).await }
    }

    fn notices(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    /// One server uses a file: it is the sole member, and leads.
    fn join(&self, _server: &str) -> impl Future<Output = Result<Membership, StoreError>> + Send {
        std::future::ready(Ok(Membership::sole()))
    }

    /// Unknown here: the engine checks the owner's process instead.
    fn server_alive(&self, _owner: &str) -> impl Future<Output = Result<Option<bool>, StoreError>> + Send {
        std::future::ready(Ok(None))
    }

    fn write_alert(
        &self,
        write: crate::AlertWrite,
    ) -> impl Future<Output = Result<Option<cairn_core::AlertId>, StoreError>> + Send {
        let queued = self.writer.submit(Work::Alert(write));
        async move {
            match answer(queued).await? {
                Done::Alert(id) => Ok(id),
                _ => Err(unexpected("alert")),
            }
        }
    }

    fn alerts(
        &self,
        q: crate::AlertQuery,
    ) -> impl Future<Output = Result<Vec<cairn_core::alert::Alert>, StoreError>> + Send {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, move |c| alerts::list(c, &q)).await }
    }

    fn alert(
        &self,
        id: cairn_core::AlertId,
    ) -> impl Future<Output = Result<Option<cairn_core::alert::Alert>, StoreError>> + Send {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, move |c| alerts::get(c, id)).await }
    }

    fn create_token(&self, token: crate::NewToken) -> impl Future<Output = Result<(), StoreError>> + Send {
        let queued = self.writer.submit(Work::Token(crate::tokens::TokenWrite::Create(token)));
        async move {
            match answer(queued).await? {
                Done::Token(_) => Ok(()),
                _ => Err(unexpected("token")),
            }
        }
    }

    fn tokens(&self) -> impl Future<Output = Result<Vec<crate::TokenRecord>, StoreError>> + Send {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, tokens::list).await }
    }

    fn revoke_token(
        &self,
        name_or_id: String,
        at: Timestamp,
    ) -> impl Future<Output = Result<Option<crate::TokenRecord>, StoreError>> + Send {
        let queued = self.writer.submit(Work::Token(crate::tokens::TokenWrite::Revoke { name_or_id, at }));
        async move {
            match answer(queued).await? {
                Done::Token(revoked) => Ok(revoked),
                _ => Err(unexpected("token")),
            }
        }
    }

    fn token_by_hash(
        &self,
        hash: [u8; 32],
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<crate::TokenRecord>, StoreError>> + Send {
        let pool = self.readers.clone();
        async move {
            let Some(mut token) = read::with_reader(pool, move |c| tokens::by_hash(c, hash)).await? else {
                return Ok(None);
            };
            self.note_use(&mut token, now).await?;
            Ok(Some(token))
        }
    }

    fn any_live_token(&self, now: Timestamp) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, move |c| tokens::any_live(c, now)).await }
    }

    fn start_session(
        &self,
        session: crate::NewSession,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let queued = self.writer.submit(Work::Token(crate::tokens::TokenWrite::StartSession(session)));
        async move {
            match answer(queued).await? {
                Done::Token(_) => Ok(()),
                _ => Err(unexpected("session")),
            }
        }
    }

    fn session_by_hash(
        &self,
        hash: [u8; 32],
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<crate::SessionRecord>, StoreError>> + Send {
        let pool = self.readers.clone();
        async move {
            let Some(mut session) = read::with_reader(pool, move |c| tokens::session(c, hash)).await? else {
                return Ok(None);
            };
            self.note_use(&mut session.token, now).await?;
            Ok(Some(session))
        }
    }

    fn end_session(
        &self,
        hash: [u8; 32],
        at: Timestamp,
    ) -> impl Future<Output = Result<Option<crate::TokenRecord>, StoreError>> + Send {
        let queued = self.writer.submit(Work::Token(crate::tokens::TokenWrite::EndSession { hash, at }));
        async move {
            match answer(queued).await? {
                Done::Token(token) => Ok(token),
                _ => Err(unexpected("session")),
            }
        }
    }

    fn record_audit(
        &self,
        event: crate::NewAuditEvent,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let queued = self.writer.submit(Work::Audit(event));
        async move {
            match answer(queued).await? {
                Done::Audit => Ok(()),
                _ => Err(unexpected("audit event")),
            }
        }
    }

    fn audit_events(
        &self,
        q: crate::AuditQuery,
    ) -> impl Future<Output = Result<Vec<crate::AuditEvent>, StoreError>> + Send {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, move |c| audit::list(c, &q)).await }
    }

    fn enqueue_delivery(
        &self,
        d: crate::NewDelivery,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send {
        let queued = self.writer.submit(Work::Webhook(webhooks::WebhookWrite::Enqueue(d)));
        async move {
            match answer(queued).await? {
                Done::Webhook(id) => Ok(id),
                _ => Err(unexpected("webhook delivery")),
            }
        }
    }

    fn due_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<crate::Delivery>, StoreError>> + Send {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, move |c| webhooks::due(c, now, limit)).await }
    }

    fn record_delivery_attempt(
        &self,
        a: crate::DeliveryAttempt,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let queued = self.writer.submit(Work::Webhook(webhooks::WebhookWrite::Attempt(a)));
        async move {
            match answer(queued).await? {
                Done::Webhook(id) => Ok(id.is_some()),
                _ => Err(unexpected("webhook delivery")),
            }
        }
    }

    fn webhook_deliveries(
        &self,
        q: crate::DeliveryQuery,
    ) -> impl Future<Output = Result<Vec<crate::Delivery>, StoreError>> + Send {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, move |c| webhooks::list(c, &q)).await }
    }

    fn reaped_attempts(
        &self,
        q: crate::ReapedQuery,
    ) -> impl Future<Output = Result<Vec<crate::ReapedAttempt>, StoreError>> + Send {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, move |c| reaped::list(c, &q)).await }
    }

    fn search_runs(
        &self,
        q: crate::RunSearch,
    ) -> impl Future<Output = Result<crate::RunPage, StoreError>> + Send {
        let pool = self.readers.clone();
        async move {
            let q = crate::search::Runs::new(&q)?;
            read::with_reader(pool, move |c| search::search_runs(c, &q)).await
        }
    }

    fn search_tasks(
        &self,
        q: crate::TaskSearch,
    ) -> impl Future<Output = Result<crate::TaskPage, StoreError>> + Send {
        let pool = self.readers.clone();
        async move {
            let q = crate::search::Tasks::new(&q)?;
            read::with_reader(pool, move |c| search::search_tasks(c, &q)).await
        }
    }

    fn run_counts(
        &self,
        q: crate::CountQuery,
    ) -> impl Future<Output = Result<std::collections::BTreeMap<cairn_core::RunStatus, u64>, StoreError>> + Send
    {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, move |c| counts::run_counts(c, &q)).await }
    }

    fn task_counts(
        &self,
        q: crate::CountQuery,
    ) -> impl Future<Output = Result<std::collections::BTreeMap<cairn_core::TaskStatus, u64>, StoreError>> + Send
    {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, move |c| counts::task_counts(c, &q)).await }
    }

    fn run_trend(
        &self,
        q: crate::CountQuery,
        bucket: crate::Bucket,
    ) -> impl Future<Output = Result<Vec<crate::TrendPoint<cairn_core::RunStatus>>, StoreError>> + Send {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, move |c| counts::run_trend(c, &q, bucket)).await }
    }

    fn workflow_trends(
        &self,
        q: crate::CountQuery,
        bucket: crate::Bucket,
    ) -> impl Future<Output = Result<crate::WorkflowTrends, StoreError>> + Send {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, move |c| counts::workflow_trends(c, &q, bucket)).await }
    }

    fn phase_stats(
        &self,
        q: crate::PhaseQuery,
    ) -> impl Future<Output = Result<crate::PhaseStats, StoreError>> + Send {
        let pool = self.readers.clone();
        async move {
            let q = crate::analytics::PhaseRead::new(&q)?;
            read::with_reader(pool, move |c| analytics::phase_stats(c, &q)).await
        }
    }

    fn expected_durations(
        &self,
        workflow: &str,
    ) -> impl Future<Output = Result<crate::ExpectedDurations, StoreError>> + Send {
        let pool = self.readers.clone();
        let workflow = crate::analytics::expected_workflow(workflow);
        async move {
            let workflow = workflow?;
            read::with_reader(pool, move |c| analytics::expected_durations(c, workflow)).await
        }
    }

    /// Checked here, written by the writer in a transaction of its group.
    fn import_runs(
        &self,
        runs: Arc<Vec<crate::FinishedRun>>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let queued = if runs.is_empty() {
            Ok(None)
        } else {
            crate::import::check(&runs).and_then(|()| self.writer.submit(Work::Import(runs)).map(Some))
        };
        async move {
            match queued? {
                None => Ok(()),
                Some(queued) => match answer(Ok(queued)).await? {
                    Done::Imported => Ok(()),
                    _ => Err(unexpected("import")),
                },
            }
        }
    }

    fn run_workflows(
        &self,
        after: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send {
        let pool = self.readers.clone();
        let after = after.to_owned();
        async move { read::with_reader(pool, move |c| retention::run_workflows(c, &after, limit)).await }
    }

    fn expired_runs(
        &self,
        workflow: &str,
        expiry: cairn_core::retention::Expiry,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RunId>, StoreError>> + Send {
        let pool = self.readers.clone();
        let workflow = workflow.to_owned();
        async move { read::with_reader(pool, move |c| retention::expired_runs(c, &workflow, expiry, limit)).await }
    }

    /// A job of the writer, in a transaction of its group.
    fn delete_runs(
        &self,
        ids: Vec<RunId>,
    ) -> impl Future<Output = Result<crate::Deleted, StoreError>> + Send {
        let queued =
            if ids.is_empty() { Ok(None) } else { self.writer.submit(Work::DeleteRuns(ids)).map(Some) };
        async move {
            match queued? {
                None => Ok(crate::Deleted::default()),
                Some(queued) => match answer(Ok(queued)).await? {
                    Done::Deleted(deleted) => Ok(deleted),
                    _ => Err(unexpected("deletion")),
                },
            }
        }
    }

    /// SQLite keeps its logs in plain tables: nothing to keep up.
    fn maintain_partitions(
        &self,
        _policy: crate::PartitionPolicy,
        _now: Timestamp,
    ) -> impl Future<Output = Result<crate::PartitionChanges, StoreError>> + Send {
        std::future::ready(Ok(crate::PartitionChanges::default()))
    }

    fn log_partitions(&self) -> impl Future<Output = Result<Vec<crate::LogPartition>, StoreError>> + Send {
        std::future::ready(Ok(Vec::new()))
    }

    fn run_progress_samples(
        &self,
        run: RunId,
    ) -> impl Future<Output = Result<std::collections::BTreeMap<TaskId, Vec<ProgressSample>>, StoreError>> + Send
    {
        let pool = self.readers.clone();
        async move { read::with_reader(pool, move |c| retention::run_progress_samples(c, run)).await }
    }
}

/// What the backend's internals fail with: SQLite's own errors, converted to
/// [`StoreError`] at the boundary, or an already classified store error.
#[derive(Debug)]
enum Error {
    Sql(rusqlite::Error),
    Store(StoreError),
}

impl From<rusqlite::Error> for Error {
    fn from(e: rusqlite::Error) -> Self {
        Error::Sql(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(e) => e,
            Error::Sql(e) => match e.sqlite_error_code() {
                Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                    StoreError::Database(format!(
                        "{e}: another process holds the database's write lock; stop it or raise busy_timeout"
                    ))
                }
                Some(rusqlite::ErrorCode::DiskFull) => {
                    StoreError::Database(format!("{e}: free disk space where the store lives"))
                }
                _ => StoreError::Database(e.to_string()),
            },
        }
    }
}
