//! The PostgreSQL backend: [`PostgresStore`] and its [`PostgresOptions`],
//! for several Cairn servers sharing one database.
//!
//! A pool of connections (deadpool) serves reads and writes alike; every
//! connection keeps the statements of `sql/` prepared (deadpool's statement
//! cache), and all of them are prepared once when the store connects, so a
//! schema mismatch fails at start. The schema is versioned by refinery
//! (`migrations/postgres/`), migrated under an advisory lock so servers
//! starting together take turns (`schema`).
//!
//! Each [`Store::apply`] is one transaction on one connection (`write`):
//! concurrent callers take their own connections and PostgreSQL's row locks
//! order them, so there is no writer thread to queue behind. Within a
//! batch, changes to distinct tasks go set-wise, one statement per kind
//! over arrays (a compare-and-set `UPDATE` with the inserts that go with
//! it), a new run with all its tasks is one statement, and the statements
//! are pipelined: all are sent before the first answer is awaited. Reads
//! that take several queries run in one read-only snapshot (`read`).
//!
//! Dispatch across servers (`crate::dispatch`): a claim is one statement
//! taking offers `FOR UPDATE SKIP LOCKED` (`write::claim`); notices travel as
//! `pg_notify` inside the writing transaction and reach every store through
//! its LISTEN session (`notify`); liveness and the one leader are session
//! advisory locks (`members`).
//!
//! Architecture invariant: a change's status update and its transition row
//! are one statement, so they commit or vanish together, and the `UPDATE`'s
//! `WHERE` re-checks the expected status (and lease token) on the row it
//! locked, so concurrent writers cannot both win a compare-and-set.

mod alerts;
mod analytics;
mod audit;
mod counts;
mod import;
mod members;
mod notify;
mod partitions;
mod read;
mod reaped;
mod retention;
mod schema;
mod search;
mod session;
mod tokens;
mod webhooks;
mod write;

#[cfg(any(test, feature = "conformance"))]
pub(crate) use schema::migrate_to;

use std::fmt;
use std::future::Future;
use std::time::Duration;

use cairn_core::{RunId, TaskId, Timestamp};
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, accepts, to_sql_checked};

use crate::Store;
use crate::change::{Change, Outcome};
use crate::dispatch::{ClaimOutcome, ClaimRequest, LeaseState, Membership, Notice, PostedResult, Renewal};
use crate::error::StoreError;
use crate::model::{ExpiredLease, ProgressSample, RunDetail, RunQuery, RunRecord, TaskDetail};
use crate::validate::validate_batch;

/// How [`PostgresStore::connect`] sets up its pool.
#[derive(Clone, Debug)]
pub struct PostgresOptions {
    /// Connections in the pool (at least 1). Each concurrent `apply` or read
    /// holds one while it runs; more callers wait for a free one.
    pub max_connections: usize,
    /// How long opening one connection may take, when the URL sets no
    /// `connect_timeout` of its own.
    pub connect_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions { max_connections: 10, connect_timeout: Duration::from_secs(10) }
    }
}

/// Cairn's shared store: one PostgreSQL database, any number of servers.
///
/// [`PostgresStore::close`] closes the pool; later calls fail with
/// [`StoreError::Closed`]. Besides the pool, a store keeps one session that
/// listens for notices, and one per [`Store::join`] while its membership lives.
pub struct PostgresStore {
    pool: Pool,
    /// For the sessions outside the pool.
    config: tokio_postgres::Config,
    listener: notify::Listener,
    target: String,
    schema_version: i64,
    synchronous_commit: String,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .field("schema_version", &self.schema_version)
            .field("synchronous_commit", &self.synchronous_commit)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/dbname`
    /// or the key=value form) and brings its schema up to date.
    ///
    /// Fails with [`StoreError::Open`] when the URL is not one or the database
    /// cannot be reached (naming the host, never the password),
    /// [`StoreError::TooNew`] when a newer Cairn migrated it, and
    /// [`StoreError::Migration`] when upgrading it failed.
    pub async fn connect(url: &str, options: PostgresOptions) -> Result<PostgresStore, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| StoreError::Open {
            path: "(the PostgreSQL URL)".to_owned(),
            reason: format!(
                "it is not a PostgreSQL connection string ({}); expected postgres://USER@HOST:PORT/DBNAME",
                describe(&e)
            ),
        })?;
        let target = target(&config);
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(options.connect_timeout);
        }
        if config.get_application_name().is_none() {
            config.application_name("cairn");
        }
        // The store's statements are short index walks; compiling them
        // (PostgreSQL's JIT, which a big batch's row estimates can trigger)
        // costs more than it saves.
        let startup = config.get_options().unwrap_or_default();
        if !startup.contains("jit") {
            config.options(format!("{startup} -c jit=off").trim_start());
        }
        let schema_version = schema::migrate(&config, &target).await?;

        let timeout = config.get_connect_timeout().copied().unwrap_or(options.connect_timeout);
        let manager = Manager::from_config(
            config.clone(),
            tokio_postgres::NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let open_err = |reason: String| StoreError::Open { path: target.clone(), reason };
        let pool = Pool::builder(manager)
            .max_size(options.max_connections.max(1))
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(timeout))
            .recycle_timeout(Some(timeout))
            .build()
            .map_err(|e| open_err(format!("cannot build the connection pool: {e}")))?;
        let client = pool.get().await.map_err(|e| open_err(Error::from(e).describe()))?;
        // Every statement prepared now: a schema mismatch fails at start (and
        // in every test), not at the first write of that kind.
        for sql in write::STATEMENTS
            .iter()
            .chain(read::STATEMENTS)
            .chain(members::STATEMENTS)
            .chain(counts::STATEMENTS)
            .chain(analytics::STATEMENTS)
            .chain(import::STATEMENTS)
            .chain(retention::STATEMENTS)
            .chain(partitions::STATEMENTS)
        {
            client
                .prepare_cached(sql)
                .await
                .map_err(|e| open_err(format!("preparing statements: {}\n{sql}", describe(&e))))?;
        }
        let synchronous_commit: String = client
            .query_one("SHOW synchronous_commit", &[])
            .await
            .and_then(|row| row.try_get(0))
            .map_err(|e| open_err(describe(&e)))?;
        drop(client);
        let listener = notify::Listener::start(config.clone())
            .await
            .map_err(|e| open_err(format!("cannot listen for notices: {}", describe(&e))))?;
        tracing::debug!(database = %target, schema_version, %synchronous_commit, "postgres store open");
        Ok(PostgresStore { pool, config, listener, target, schema_version, synchronous_commit })
    }

    /// Where the store lives, as `postgres://user@host:port/dbname` (no password).
    pub fn target(&self) -> &str {
        &self.target
    }

    /// The schema version of the database (equal to
    /// [`PostgresStore::latest_schema_version`] once connect succeeded).
    pub fn schema_version(&self) -> i64 {
        self.schema_version
    }

    /// The newest schema version this build knows.
    pub fn latest_schema_version() -> i64 {
        schema::latest_version()
    }

    /// PostgreSQL's `synchronous_commit` for the store's sessions, as the
    /// server reports it, for benchmark output. Cairn never lowers it.
    pub fn synchronous_commit(&self) -> &str {
        &self.synchronous_commit
    }

    /// How [`Store::search_runs`] would serve `q`: its drive and the plan
    /// PostgreSQL makes of each statement, as `EXPLAIN (FORMAT JSON)` (for
    /// tests and diagnosis).
    pub async fn explain_search_runs(&self, q: crate::RunSearch) -> Result<crate::QueryPlan, StoreError> {
        let q = crate::search::Runs::new(&q)?;
        Ok(search::explain_runs(&self.pool, &q).await?)
    }

    /// How [`Store::search_tasks`] would serve `q` (see [`PostgresStore::explain_search_runs`]).
    pub async fn explain_search_tasks(&self, q: crate::TaskSearch) -> Result<crate::QueryPlan, StoreError> {
        let q = crate::search::Tasks::new(&q)?;
        Ok(search::explain_tasks(&self.pool, &q).await?)
    }

    /// The plans PostgreSQL makes of the statements of [`Store::phase_stats`]
    /// and [`Store::expected_durations`] for `workflow`, as `EXPLAIN (FORMAT JSON)`.
    pub async fn explain_analytics(&self, workflow: &str) -> Result<crate::QueryPlan, StoreError> {
        Ok(analytics::explain(&self.pool, workflow).await?)
    }

    /// Closes the pool: connections close as their current call ends, and
    /// later calls fail with [`StoreError::Closed`]. Stops listening for
    /// notices; memberships end when they are dropped.
    pub async fn close(&self) -> Result<(), StoreError> {
        self.pool.close();
        self.listener.stop();
        Ok(())
    }
}

impl Store for PostgresStore {
    fn apply_shared(
        &self,
        changes: std::sync::Arc<Vec<Change>>,
    ) -> impl Future<Output = Result<Vec<Outcome>, StoreError>> + Send {
        let checked = validate_batch(&changes);
        let pool = self.pool.clone();
        async move {
            checked?;
            if changes.is_empty() {
                return Ok(Vec::new());
            }
            // On a task of its own, so a caller that stops waiting never cuts
            // a transaction midway: the batch commits or rolls back whole.
            let applied = tokio::spawn(write::apply(pool.clone(), changes))
                .await
                .map_err(|e| StoreError::Database(format!("applying a batch failed on its task: {e}")))?;
            if applied.is_err() {
                // Connections that died with the failure are not handed out again.
                pool.retain(|client, _| !client.is_closed());
            }
            applied
        }
    }

    fn run(&self, id: RunId) -> impl Future<Output = Result<Option<RunRecord>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, |pool| read::run(pool, id)).await }
    }

    fn spec_source(&self, run: RunId) -> impl Future<Output = Result<Option<String>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, |pool| read::spec_source(pool, run)).await }
    }

    fn progress_samples(
        &self,
        task: TaskId,
    ) -> impl Future<Output = Result<Vec<ProgressSample>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, |pool| read::progress_samples(pool, task)).await }
    }

    fn run_detail(&self, id: RunId) -> impl Future<Output = Result<Option<RunDetail>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, |pool| read::run_detail(pool, id)).await }
    }

    fn task(&self, id: TaskId) -> impl Future<Output = Result<Option<TaskDetail>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, |pool| read::task_detail(pool, id)).await }
    }

    fn runs_by_prefix(
        &self,
        prefix: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RunRecord>, StoreError>> + Send {
        let pool = self.pool.clone();
        let prefix = prefix.to_owned();
        async move { read_again(&pool, |pool| read::runs_by_prefix(pool, &prefix, limit)).await }
    }

    fn list_runs(&self, query: RunQuery) -> impl Future<Output = Result<Vec<RunRecord>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, |pool| read::list_runs(pool, &query)).await }
    }

    fn active_runs(&self) -> impl Future<Output = Result<Vec<RunRecord>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, read::active_runs).await }
    }

    fn expired_leases(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<ExpiredLease>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, |pool| read::expired_leases(pool, now, limit)).await }
    }

    fn next_lease_expiry(&self) -> impl Future<Output = Result<Option<Timestamp>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, read::next_lease_expiry).await }
    }

    /// One statement, one round trip (`sql/claim.sql`).
    fn claim(&self, req: ClaimRequest) -> impl Future<Output = Result<ClaimOutcome, StoreError>> + Send {
        let pool = self.pool.clone();
        async move {
            if req.queues.is_empty() {
                return Ok(ClaimOutcome::default());
            }
            write::claim(&pool, &req).await
        }
    }

    fn renew(
        &self,
        renewals: Vec<Renewal>,
    ) -> impl Future<Output = Result<Vec<LeaseState>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move {
            if renewals.is_empty() {
                return Ok(Vec::new());
            }
            write::renew(&pool, &renewals).await
        }
    }

    fn posted_result(
        &self,
        task: TaskId,
    ) -> impl Future<Output = Result<Option<PostedResult>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, |pool| read::posted_result(pool, task)).await }
    }

    fn notices(&self) -> tokio::sync::broadcast::Receiver<Notice> {
        self.listener.subscribe()
    }

    /// Opens a session of the server's own (outside the pool) holding its
    /// liveness lock; see `members`.
    fn join(&self, server: &str) -> impl Future<Output = Result<Membership, StoreError>> + Send {
        let config = self.config.clone();
        let server = server.to_owned();
        async move { members::join(&config, &server).await }
    }

    /// Whether `owner`'s session holds its liveness lock; a server that
    /// never joined is not alive.
    fn server_alive(&self, owner: &str) -> impl Future<Output = Result<Option<bool>, StoreError>> + Send {
        let pool = self.pool.clone();
        let owner = owner.to_owned();
        async move { members::server_alive(&pool, &owner).await.map(Some).map_err(StoreError::from) }
    }

    fn write_alert(
        &self,
        write: crate::AlertWrite,
    ) -> impl Future<Output = Result<Option<cairn_core::AlertId>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { Ok(alerts::write(&pool, &write).await?) }
    }

    fn alerts(
        &self,
        q: crate::AlertQuery,
    ) -> impl Future<Output = Result<Vec<cairn_core::alert::Alert>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, |pool| alerts::list(pool, &q)).await }
    }

    fn alert(
        &self,
        id: cairn_core::AlertId,
    ) -> impl Future<Output = Result<Option<cairn_core::alert::Alert>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, |pool| alerts::get(pool, id)).await }
    }

    fn create_token(&self, token: crate::NewToken) -> impl Future<Output = Result<(), StoreError>> + Send {
        let pool = self.pool.clone();
        async move { Ok(tokens::create(&pool, &token).await?) }
    }

    fn tokens(&self) -> impl Future<Output = Result<Vec<crate::TokenRecord>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, tokens::list).await }
    }

    fn revoke_token(
        &self,
        name_or_id: String,
        at: Timestamp,
    ) -> impl Future<Output = Result<Option<crate::TokenRecord>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { Ok(tokens::write(&pool, &crate::tokens::TokenWrite::Revoke { name_or_id, at }).await?) }
    }

    fn token_by_hash(
        &self,
        hash: [u8; 32],
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<crate::TokenRecord>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move {
            let Some(mut token) = read_again(&pool, |pool| tokens::by_hash(pool, hash)).await? else {
                return Ok(None);
            };
            tokens::note_use(&pool, &mut token, now).await?;
            Ok(Some(token))
        }
    }

    fn any_live_token(&self, now: Timestamp) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, |pool| tokens::any_live(pool, now)).await }
    }

    fn start_session(
        &self,
        session: crate::NewSession,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let pool = self.pool.clone();
        async move {
            tokens::write(&pool, &crate::tokens::TokenWrite::StartSession(session)).await?;
            Ok(())
        }
    }

    fn session_by_hash(
        &self,
        hash: [u8; 32],
        now: Timestamp,
    ) -> impl Future<Output = Result<Option<crate::SessionRecord>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move {
            let Some(mut session) = read_again(&pool, |pool| tokens::session(pool, hash)).await? else {
                return Ok(None);
            };
            tokens::note_use(&pool, &mut session.token, now).await?;
            Ok(Some(session))
        }
    }

    fn end_session(
        &self,
        hash: [u8; 32],
        at: Timestamp,
    ) -> impl Future<Output = Result<Option<crate::TokenRecord>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { Ok(tokens::write(&pool, &crate::tokens::TokenWrite::EndSession { hash, at }).await?) }
    }

    fn record_audit(
        &self,
        event: crate::NewAuditEvent,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let pool = self.pool.clone();
        async move { Ok(audit::record(&pool, &event).await?) }
    }

    fn audit_events(
        &self,
        q: crate::AuditQuery,
    ) -> impl Future<Output = Result<Vec<crate::AuditEvent>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, |pool| audit::list(pool, &q)).await }
    }

    fn enqueue_delivery(
        &self,
        d: crate::NewDelivery,
    ) -> impl Future<Output = Result<Option<i64>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { Ok(webhooks::enqueue(&pool, &d).await?) }
    }

    fn due_deliveries(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<crate::Delivery>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, |pool| webhooks::due(pool, now, limit)).await }
    }

    fn record_delivery_attempt(
        &self,
        a: crate::DeliveryAttempt,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { Ok(webhooks::attempt(&pool, &a).await?.is_some()) }
    }

    fn webhook_deliveries(
        &self,
        q: crate::DeliveryQuery,
    ) -> impl Future<Output = Result<Vec<crate::Delivery>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, |pool| webhooks::list(pool, &q)).await }
    }

    fn reaped_attempts(
        &self,
        q: crate::ReapedQuery,
    ) -> impl Future<Output = Result<Vec<crate::ReapedAttempt>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, |pool| reaped::list(pool, &q)).await }
    }

    fn search_runs(
        &self,
        q: crate::RunSearch,
    ) -> impl Future<Output = Result<crate::RunPage, StoreError>> + Send {
        let pool = self.pool.clone();
        async move {
            let q = crate::search::Runs::new(&q)?;
            read_again(&pool, |pool| search::search_runs(pool, &q)).await
        }
    }

    fn search_tasks(
        &self,
        q: crate::TaskSearch,
    ) -> impl Future<Output = Result<crate::TaskPage, StoreError>> + Send {
        let pool = self.pool.clone();
        async move {
            let q = crate::search::Tasks::new(&q)?;
            read_again(&pool, |pool| search::search_tasks(pool, &q)).await
        }
    }

    fn run_counts(
        &self,
        q: crate::CountQuery,
    ) -> impl Future<Output = Result<std::collections::BTreeMap<cairn_core::RunStatus, u64>, StoreError>> + Send
    {
        let pool = self.pool.clone();
        async move { read_again(&pool, |pool| counts::run_counts(pool, &q)).await }
    }

    fn task_counts(
        &self,
        q: crate::CountQuery,
    ) -> impl Future<Output = Result<std::collections::BTreeMap<cairn_core::TaskStatus, u64>, StoreError>> + Send
    {
        let pool = self.pool.clone();
        async move { read_again(&pool, |pool| counts::task_counts(pool, &q)).await }
    }

    fn run_trend(
        &self,
        q: crate::CountQuery,
        bucket: crate::Bucket,
    ) -> impl Future<Output = Result<Vec<crate::TrendPoint<cairn_core::RunStatus>>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, |pool| counts::run_trend(pool, &q, bucket)).await }
    }

    fn workflow_trends(
        &self,
        q: crate::CountQuery,
        bucket: crate::Bucket,
    ) -> impl Future<Output = Result<crate::WorkflowTrends, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, |pool| counts::workflow_trends(pool, &q, bucket)).await }
    }

    fn phase_stats(
        &self,
        q: crate::PhaseQuery,
    ) -> impl Future<Output = Result<crate::PhaseStats, StoreError>> + Send {
        let pool = self.pool.clone();
        async move {
            let q = crate::analytics::PhaseRead::new(&q)?;
            read_again(&pool, |pool| analytics::phase_stats(pool, &q)).await
        }
    }

    fn expected_durations(
        &self,
        workflow: &str,
    ) -> impl Future<Output = Result<crate::ExpectedDurations, StoreError>> + Send {
        let pool = self.pool.clone();
        let workflow = crate::analytics::expected_workflow(workflow);
        async move {
            let workflow = workflow?;
            read_again(&pool, |pool| analytics::expected_durations(pool, workflow.clone())).await
        }
    }

    fn import_runs(
        &self,
        runs: std::sync::Arc<Vec<crate::FinishedRun>>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send {
        let pool = self.pool.clone();
        async move {
            if runs.is_empty() {
                return Ok(());
            }
            crate::import::check(&runs)?;
            import::import(&pool, &runs).await
        }
    }

    fn run_workflows(
        &self,
        after: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send {
        let pool = self.pool.clone();
        let after = after.to_owned();
        async move { read_again(&pool, |pool| retention::run_workflows(pool, &after, limit)).await }
    }

    fn expired_runs(
        &self,
        workflow: &str,
        expiry: cairn_core::retention::Expiry,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RunId>, StoreError>> + Send {
        let pool = self.pool.clone();
        let workflow = workflow.to_owned();
        async move { read_again(&pool, |pool| retention::expired_runs(pool, &workflow, expiry, limit)).await }
    }

    /// One transaction of its own (`retention`).
    fn delete_runs(
        &self,
        ids: Vec<RunId>,
    ) -> impl Future<Output = Result<crate::Deleted, StoreError>> + Send {
        let pool = self.pool.clone();
        async move {
            if ids.is_empty() {
                return Ok(crate::Deleted::default());
            }
            // On a task of its own, so a caller that stops waiting never cuts
            // the transaction midway.
            tokio::spawn(async move { retention::delete_runs(&pool, &ids).await })
                .await
                .map_err(|e| StoreError::Database(format!("deleting runs failed on its task: {e}")))?
        }
    }

    fn maintain_partitions(
        &self,
        policy: crate::PartitionPolicy,
        now: Timestamp,
    ) -> impl Future<Output = Result<crate::PartitionChanges, StoreError>> + Send {
        let pool = self.pool.clone();
        async move {
            tokio::spawn(async move { partitions::maintain(&pool, &policy, now).await })
                .await
                .map_err(|e| {
                    StoreError::Database(format!("keeping the log partitions failed on its task: {e}"))
                })?
                .map_err(StoreError::from)
        }
    }

    fn log_partitions(&self) -> impl Future<Output = Result<Vec<crate::LogPartition>, StoreError>> + Send {
        let pool = self.pool.clone();
        async move { read_again(&pool, partitions::list).await }
    }

    fn run_progress_samples(
        &self,
        run: RunId,
    ) -> impl Future<Output = Result<std::collections::BTreeMap<TaskId, Vec<ProgressSample>>, StoreError>> + Send
    {
        let pool = self.pool.clone();
        async move { read_again(&pool, |pool| retention::run_progress_samples(pool, run)).await }
    }
}

/// `postgres://user@host:port/dbname`: where a config points, without the
/// password, for messages.
fn target(config: &tokio_postgres::Config) -> String {
    use tokio_postgres::config::Host;
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = config.get_ports().get(i).or(config.get_ports().first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(dir) => format!("{}:{port}", dir.display()),
            }
        })
        .collect();
    let user = config.get_user().map(|u| format!("{u}@")).unwrap_or_default();
    let dbname = config.get_dbname().or(config.get_user()).unwrap_or("");
    format!("postgres://{user}{}/{dbname}", hosts.join(","))
}

/// A 128-bit id (a ULID or a lease token) as PostgreSQL's `uuid`: the same 16
/// bytes, compared bytewise, so ids keep their creation order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Uuid([u8; 16]);

impl ToSql for Uuid {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }

    accepts!(UUID);
    to_sql_checked!();
}

impl<'a> FromSql<'a> for Uuid {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        let bytes: [u8; 16] = raw.try_into().map_err(|_| format!("a uuid of {} bytes, not 16", raw.len()))?;
        Ok(Uuid(bytes))
    }

    accepts!(UUID);
}

/// What the backend's internals fail with: the driver's and the pool's
/// errors, converted to [`StoreError`] at the boundary, or an already
/// classified store error.
#[derive(Debug)]
enum Error {
    Pg(tokio_postgres::Error),
    Pool(PoolError),
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Error::Pg(e)
    }
}

impl From<PoolError> for Error {
    fn from(e: PoolError) -> Self {
        Error::Pool(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Error::Store(e)
    }
}

impl Error {
    fn describe(&self) -> String {
        match self {
            Error::Pg(e) => describe(e),
            Error::Pool(PoolError::Backend(e)) => describe(e),
            Error::Pool(PoolError::Timeout(_)) => {
                "no connection to the database within the timeout; is PostgreSQL up and reachable?".to_owned()
            }
            Error::Pool(e) => e.to_string(),
            Error::Store(e) => e.to_string(),
        }
    }

    /// The SQLSTATE of a database error.
    /// The connection was gone: closed by the server (a restart, an
    /// administrator) or by the network. A read may be tried again.
    fn lost_connection(&self) -> bool {
        let closed = |e: &tokio_postgres::Error| {
            e.is_closed()
                || e.code().is_some_and(|c| c.code().starts_with("57P") || c.code().starts_with("08"))
        };
        match self {
            Error::Pg(e) | Error::Pool(PoolError::Backend(e)) => closed(e),
            _ => false,
        }
    }

    fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            Error::Pg(e) | Error::Pool(PoolError::Backend(e)) => e.code(),
            _ => None,
        }
    }
}

/// Runs a read, and once more if it met a connection that was gone (the
/// database restarted, or cut its connections): the idle connections of the
/// pool may all be dead alike, so they are dropped first and the second try
/// opens a fresh one.
async fn read_again<'p, T, Fut>(pool: &'p Pool, read: impl Fn(&'p Pool) -> Fut) -> Result<T, StoreError>
where
    Fut: Future<Output = Result<T, Error>>,
{
    match read(pool).await {
        Err(e) if e.lost_connection() => {
            pool.retain(|_, _| false);
            read(pool).await.map_err(StoreError::from)
        }
        done => done.map_err(StoreError::from),
    }
}

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(e) => e,
            Error::Pool(PoolError::Closed) => StoreError::Closed,
            other => StoreError::Database(other.describe()),
        }
    }
}

/// A driver error with everything PostgreSQL said about it: the message, its
/// SQLSTATE, detail and hint, or the cause of a connection failure.
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        let mut text = format!("{} ({})", db.message(), db.code().code());
        if let Some(detail) = db.detail() {
            text.push_str(&format!("; {detail}"));
        }
        if let Some(hint) = db.hint() {
            text.push_str(&format!("; hint: {hint}"));
        }
        return text;
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}
