//! The PostgreSQL store on a real server: the conformance suite, then what
//! only PostgreSQL has — migrations under concurrent starts, refusing a
//! newer schema, clear errors for a database it cannot reach, data kept
//! across reconnects, and writers on several connections at once.
//!
//! Each test gets a database of its own, created fresh on the server named
//! by `CAIRN_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/postgres`)
//! and dropped when the test ends. When that server cannot be reached the
//! tests fail, saying so: they never skip (`.ci/run` starts PostgreSQL).

use std::time::{Duration, Instant};

use cairn_core::{LeaseToken, TaskId, TaskStatus};
use cairn_store::conformance::{TestDatabase as TestDb, new_run, plain, start, t};
use cairn_store::{Change, Outcome, PostgresOptions, PostgresStore, Store, StoreError};
use tokio_postgres::{Client, NoTls};

const DEFAULT_SERVER: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn server_url() -> String {
    std::env::var("CAIRN_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_SERVER.to_owned())
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

/// A session on the test server, or a failure that says how to get one.
async fn session(url: &str) -> Client {
    let connected = tokio::time::timeout(Duration::from_secs(10), tokio_postgres::connect(url, NoTls)).await;
    let (client, connection) = match connected {
        Ok(Ok(pair)) => pair,
        Ok(Err(e)) => panic!(
            "PostgreSQL is not reachable at {url} ({e}: {}). These tests need a server: start one \
             (.ci/run does) or set CAIRN_TEST_POSTGRES to its URL. They never skip.",
            std::error::Error::source(&e).map(ToString::to_string).unwrap_or_default()
        ),
        Err(_) => {
            panic!("PostgreSQL at {url} did not answer within 10 s; set CAIRN_TEST_POSTGRES to a live server")
        }
    };
    tokio::spawn(connection);
    client
}

/// A session on the test database `db`.
async fn session_on(db: &TestDb) -> Client {
    session(&db.url()).await
}

async fn postgres() -> (PostgresStore, TestDb) {
    let db = TestDb::create().await;
    let store = PostgresStore::connect(&db.url(), PostgresOptions::default())
        .await
        .expect("connect to the test database");
    (store, db)
}

cairn_store::store_conformance_suite!(postgres);

#[tokio::test]
async fn concurrent_starts_on_a_fresh_database_migrate_it_once() {
    let db = TestDb::create().await;
    let url = db.url();
    let starts = (0..4).map(|_| PostgresStore::connect(&url, PostgresOptions::default()));
    let stores = futures_util::future::join_all(starts).await;
    let latest = PostgresStore::latest_schema_version();
    assert!(latest >= 3);
    for store in &stores {
        let store = store.as_ref().expect("every concurrent start succeeds");
        assert_eq!(store.schema_version(), latest);
    }
    let applied: Vec<(i32, String)> = session_on(&db)
        .await
        .query("SELECT version, name FROM refinery_schema_history ORDER BY version", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert_eq!(
        applied,
        vec![
            (1, "initial".to_owned()),
            (2, "details_and_progress_samples".to_owned()),
            (3, "dispatch".to_owned()),
            (4, "run_cancel_requests".to_owned()),
            (5, "status_counts".to_owned()),
            (6, "history_search".to_owned()),
            (7, "phase_durations".to_owned()),
            (8, "retention".to_owned()),
            (9, "alerts".to_owned()),
            (10, "day_counts".to_owned()),
            (11, "api_tokens".to_owned()),
            (12, "audit_events".to_owned()),
            (13, "web_sessions".to_owned()),
            (14, "webhook_deliveries".to_owned()),
            (15, "reaped_index".to_owned()),
        ],
        "each migration applied once"
    );
    for store in stores.into_iter().flatten() {
        store.close().await.unwrap();
    }

    // Connecting to an up-to-date database applies nothing and keeps the version.
    let again = PostgresStore::connect(&url, PostgresOptions::default()).await.unwrap();
    assert_eq!(again.schema_version(), latest);
}

#[tokio::test]
async fn a_database_from_a_newer_cairn_is_refused() {
    let db = TestDb::create().await;
    PostgresStore::connect(&db.url(), PostgresOptions::default()).await.unwrap().close().await.unwrap();
    let newer = PostgresStore::latest_schema_version() + 1;
    session_on(&db)
        .await
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) \
             VALUES ($1, 'future', '2030-01-01T00:00:00Z', '0')",
            &[&i32::try_from(newer).unwrap()],
        )
        .await
        .unwrap();
    let err = PostgresStore::connect(&db.url(), PostgresOptions::default()).await.unwrap_err();
    match &err {
        StoreError::TooNew { found, known, path } => {
            assert_eq!((*found, *known), (newer, newer - 1));
            assert!(path.ends_with(&format!("/{}", db.name())), "names the database: {path}");
        }
        other => panic!("expected TooNew, got {other:?}"),
    }
    assert!(err.to_string().contains("upgrade cairn"), "{err}");
}

#[tokio::test]
async fn an_unreachable_database_is_a_clear_open_error() {
    // Nothing listens on port 1.
    let err = PostgresStore::connect("postgres://cairn:s3cret@127.0.0.1:1/cairn", PostgresOptions::default())
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(msg.contains("127.0.0.1:1"), "names the host and port: {msg}");
    assert!(msg.contains("reachable"), "says what to check: {msg}");
    assert!(!msg.contains("s3cret"), "never shows the password: {msg}");

    let err = PostgresStore::connect("not a url at all ://", PostgresOptions::default()).await.unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");

    let missing = with_dbname(&server_url(), &format!("cairn_missing_{}", LeaseToken::random()));
    let err = PostgresStore::connect(&missing, PostgresOptions::default()).await.unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(err.to_string().contains("create the database"), "{err}");
}

#[tokio::test]
async fn reconnecting_keeps_everything_committed() {
    let db = TestDb::create().await;
    let run = new_run("etl", 3, t(0));
    let (id, task) = (run.id, run.tasks[0].id);
    let store = PostgresStore::connect(&db.url(), PostgresOptions::default()).await.unwrap();
    store.apply(vec![Change::CreateRun(run)]).await.unwrap();
    let (s, _) = start(task, 1, t(2));
    let outcomes =
        store.apply(vec![plain(task, 0, TaskStatus::Submitted, TaskStatus::Pending, t(1)), s]).await.unwrap();
    assert!(outcomes.iter().all(Outcome::is_applied), "{outcomes:?}");
    let before = store.run_detail(id).await.unwrap().unwrap();
    store.close().await.unwrap();
    assert!(matches!(
        store.apply(vec![plain(task, 0, TaskStatus::Submitted, TaskStatus::Pending, t(3))]).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(store.run(id).await, Err(StoreError::Closed)));
    store.close().await.unwrap(); // twice is fine
    drop(store);

    let store = PostgresStore::connect(&db.url(), PostgresOptions::default()).await.unwrap();
    assert_eq!(store.run_detail(id).await.unwrap().unwrap(), before);
    assert_eq!(
        store.next_lease_expiry().await.unwrap(),
        before.tasks.iter().find_map(|t| t.lease.as_ref().map(|l| l.expires_at))
    );
}

#[tokio::test]
async fn commits_are_synchronous() {
    let (store, _db) = postgres().await;
    assert_eq!(store.synchronous_commit(), "on");
    assert!(store.target().starts_with("postgres://"), "{}", store.target());
}

/// One batch creates a run and takes each of its many tasks through its
/// whole life, each change depending on the one before it: the batch is
/// cut into many statements, pipelined, and they apply in order.
#[tokio::test]
async fn a_long_batch_applies_in_order() {
    use cairn_store::AttemptResult;
    use cairn_store::conformance::end;
    let (store, _db) = postgres().await;
    let run = new_run("long", 3_000, t(0));
    let ids: Vec<_> = run.tasks.iter().map(|t| t.id).collect();
    let run_id = run.id;
    let mut batch = vec![Change::CreateRun(run)];
    for &id in &ids {
        batch.push(plain(id, 0, TaskStatus::Submitted, TaskStatus::Pending, t(1)));
        let (s, token) = start(id, 1, t(2));
        batch.push(s);
        batch.push(end(id, token, 1, TaskStatus::Completed, t(3), AttemptResult::default()));
    }
    let outcomes = store.apply(batch).await.unwrap();
    assert_eq!(outcomes.len(), 1 + 3 * ids.len());
    assert!(outcomes.iter().all(Outcome::is_applied), "{:?}", outcomes.iter().find(|o| !o.is_applied()));
    let detail = store.run_detail(run_id).await.unwrap().unwrap();
    assert_eq!(detail.tasks.len(), ids.len());
    assert!(detail.tasks.iter().all(|t| t.status == TaskStatus::Completed && t.lease.is_none()));
    assert!(detail.transitions.values().all(|log| log.len() == 4));
    assert!(detail.attempts.values().all(|a| a.len() == 1 && a[0].outcome == Some(TaskStatus::Completed)));
}

/// An id as PostgreSQL writes a `uuid`.
fn uuid(bytes: [u8; 16]) -> String {
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// Waits until some session on `db` waits for a lock.
async fn until_a_session_waits_for_a_lock(admin: &Client, db: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event_type = 'Lock'",
                &[&db],
            )
            .await
            .unwrap()
            .get(0);
        if waiting > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "no session of {db} ever waited for a lock");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Another server changed the task between the statement's snapshot and its
/// row lock: the refusal names the status the task has now.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_lost_to_a_concurrent_writer_says_what_won() {
    let (store, db) = postgres().await;
    let run = new_run("race", 1, t(0));
    let id = run.tasks[0].id;
    store.apply(vec![Change::CreateRun(run)]).await.unwrap();
    store.apply(vec![plain(id, 0, TaskStatus::Submitted, TaskStatus::Pending, t(1))]).await.unwrap();

    let other = session_on(&db).await;
    other.batch_execute("BEGIN").await.unwrap();
    let canceled = other
        .execute(
            &format!(
                "UPDATE tasks SET status = {}, finished_at = last_at WHERE id = '{}' AND status = {}",
                TaskStatus::Canceled.code(),
                uuid(id.to_bytes()),
                TaskStatus::Pending.code()
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(canceled, 1);
    let store = std::sync::Arc::new(store);
    let racing = {
        let store = store.clone();
        tokio::spawn(async move {
            store.apply(vec![plain(id, 0, TaskStatus::Pending, TaskStatus::Skipped, t(2))]).await
        })
    };
    until_a_session_waits_for_a_lock(&other, db.name()).await;
    other.batch_execute("COMMIT").await.unwrap();
    let outcomes = racing.await.unwrap().unwrap();
    assert_eq!(outcomes, vec![Outcome::Conflict(format!("task {id} is CANCELED, not PENDING"))]);
}

/// A batch chosen as a deadlock's victim rolls back whole and runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_rolled_back_by_a_deadlock_is_tried_again() {
    let db = TestDb::create().await;
    // The store's sessions detect the deadlock first; the other waits longer.
    session_on(&db)
        .await
        .batch_execute(&format!("ALTER DATABASE {} SET deadlock_timeout = '50ms'", db.name()))
        .await
        .unwrap();
    let store =
        std::sync::Arc::new(PostgresStore::connect(&db.url(), PostgresOptions::default()).await.unwrap());
    let run = new_run("deadlock", 2, t(0));
    let (a, b) = (run.tasks[0].id, run.tasks[1].id);
    store.apply(vec![Change::CreateRun(run)]).await.unwrap();

    let other = session_on(&db).await;
    other.batch_execute("SET deadlock_timeout = '5s'; BEGIN").await.unwrap();
    let lock = |id: TaskId| format!("SELECT 1 FROM tasks WHERE id = '{}' FOR UPDATE", uuid(id.to_bytes()));
    other.batch_execute(&lock(b)).await.unwrap();
    let batch = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .apply(vec![
                    plain(a, 0, TaskStatus::Submitted, TaskStatus::Pending, t(1)),
                    plain(b, 0, TaskStatus::Submitted, TaskStatus::Pending, t(1)),
                ])
                .await
        })
    };
    // The batch holds A and waits for B; taking A closes the cycle.
    until_a_session_waits_for_a_lock(&other, db.name()).await;
    other.batch_execute(&lock(a)).await.unwrap();
    other.batch_execute("ROLLBACK").await.unwrap();
    assert_eq!(batch.await.unwrap().unwrap(), vec![Outcome::Applied, Outcome::Applied]);
    let detail = store.task(a).await.unwrap().unwrap();
    assert_eq!(detail.transitions.len(), 2, "applied once, not once per try");
}

/// The reads the reaper and the task page make walk their indexes (the
/// history searches: `search_plans_walk_indexes`).
#[tokio::test]
async fn reads_use_their_indexes() {
    let (store, db) = postgres().await;
    // Enough rows that a sequential scan is not the cheaper plan, and
    // RUNNING tasks enough that walking them all (by `tasks_status`) to find
    // the earliest expiry is not either.
    let runs: Vec<_> = (0..2_000).map(|i| new_run("idx", if i % 100 == 0 { 500 } else { 0 }, t(i))).collect();
    let running: Vec<TaskId> = runs.iter().flat_map(|r| r.tasks.iter().take(50).map(|t| t.id)).collect();
    let outcomes = store.apply(runs.into_iter().map(Change::CreateRun).collect()).await.unwrap();
    assert!(outcomes.iter().all(Outcome::is_applied));
    let starts = running.iter().flat_map(|&task| {
        [plain(task, 0, TaskStatus::Submitted, TaskStatus::Pending, t(3_000)), start(task, 1, t(3_001)).0]
    });
    let outcomes = store.apply(starts.collect()).await.unwrap();
    assert!(outcomes.iter().all(Outcome::is_applied));
    let client = session_on(&db).await;
    client.batch_execute("ANALYZE").await.unwrap();
    let plan = |sql: String| {
        let client = &client;
        async move {
            client
                .query(&format!("EXPLAIN {sql}"), &[])
                .await
                .unwrap()
                .iter()
                .map(|row| row.get::<_, String>(0))
                .collect::<Vec<_>>()
                .join("\n")
        }
    };
    let sql = |file: &str| std::fs::read_to_string(format!("src/postgres/sql/{file}")).unwrap();
    let max = "'ffffffff-ffff-ffff-ffff-ffffffffffff'::uuid";
    for (query, index) in [
        (sql("next_lease_expiry.sql"), "tasks_lease_expiry"),
        (sql("expired_leases.sql").replace("$1", "0").replace("$2", "10"), "tasks_lease_expiry"),
        (sql("task_by_id.sql").replace("$1", max), "tasks_id"),
    ] {
        let plan = plan(query.clone()).await;
        assert!(plan.contains(index), "{query}\n{plan}");
        assert!(!plan.contains("Seq Scan on tasks"), "{plan}");
    }
}

/// Polls `check` (real PostgreSQL session teardown, not a timeout under
/// test) every 50 ms until it holds, for at most `within`.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + within;
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two servers on one database: each is alive for the other while its
/// membership lives, exactly one leads, and when the leader leaves the
/// other takes over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_see_each_other_and_one_leads() {
    let db = TestDb::create().await;
    let a = PostgresStore::connect(&db.url(), PostgresOptions::default()).await.unwrap();
    let b = PostgresStore::connect(&db.url(), PostgresOptions::default()).await.unwrap();
    assert_eq!(b.server_alive("server:a").await.unwrap(), Some(false), "never joined");

    let member_a = a.join("server:a").await.unwrap();
    assert_eq!(b.server_alive("server:a").await.unwrap(), Some(true));
    assert_eq!(a.server_alive("server:a").await.unwrap(), Some(true), "asked on its own store too");
    let mut member_b = b.join("server:b").await.unwrap();
    assert_eq!(a.server_alive("server:b").await.unwrap(), Some(true));
    assert!(*member_a.leader.borrow(), "the first to join leads");
    assert!(!*member_b.leader.borrow(), "exactly one leads");
    // Asking takes nothing: still alive, and the same id cannot join twice.
    assert_eq!(b.server_alive("server:a").await.unwrap(), Some(true));
    let err = b.join("server:a").await.unwrap_err();
    assert!(err.to_string().contains("already holds that server id"), "{err}");

    drop(member_a);
    eventually(Duration::from_secs(5), "server:a is gone", || async {
        b.server_alive("server:a").await.unwrap() == Some(false)
    })
    .await;
    tokio::time::timeout(Duration::from_secs(3), member_b.leader.wait_for(|leads| *leads))
        .await
        .expect("server:b leads within a couple of seconds")
        .unwrap();
    assert_eq!(a.server_alive("server:b").await.unwrap(), Some(true));

    // server:a may come back under its id once its session is gone.
    let again = a.join("server:a").await.unwrap();
    assert!(!*again.leader.borrow(), "server:b keeps the lead");
}

/// The backend PIDs of `db`'s sessions whose last statement was `query`.
async fn backends(admin: &Client, db: &str, query: &str) -> Vec<i32> {
    admin
        .query("SELECT pid FROM pg_stat_activity WHERE datname = $1 AND query = $2", &[&db, &query])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// A member whose session is killed stops leading at once, joins again by
/// itself and leads again when the lock is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_whose_session_is_lost_rejoins() {
    let (store, db) = postgres().await;
    let mut member = store.join("server:a").await.unwrap();
    assert!(*member.leader.borrow());
    let admin = session_on(&db).await;
    // Its session's last statement is the leader's probe (every 500 ms).
    let deadline = Instant::now() + Duration::from_secs(5);
    let killed = loop {
        let found = backends(&admin, db.name(), "SELECT 1").await;
        if !found.is_empty() {
            break found;
        }
        assert!(Instant::now() < deadline, "the member's session was not found");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    for pid in &killed {
        admin.execute("SELECT pg_terminate_backend($1)", &[pid]).await.unwrap();
    }
    tokio::time::timeout(Duration::from_secs(5), member.leader.wait_for(|leads| !*leads))
        .await
        .expect("a lost session stops leading")
        .unwrap();
    tokio::time::timeout(Duration::from_secs(10), member.leader.wait_for(|leads| *leads))
        .await
        .expect("it rejoins and leads again")
        .unwrap();
    assert_eq!(store.server_alive("server:a").await.unwrap(), Some(true));
}

/// What one server commits, another hears; when a store's listening
/// connection is lost it says Resync once back, and hears again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notices_cross_servers_and_resync_after_a_lost_connection() {
    use cairn_store::Notice;
    use cairn_store::conformance::offer;
    let (writer, db) = postgres().await;
    let reader = PostgresStore::connect(&db.url(), PostgresOptions::default()).await.unwrap();
    let mut heard = reader.notices();
    async fn next(rx: &mut tokio::sync::broadcast::Receiver<Notice>) -> Notice {
        tokio::time::timeout(Duration::from_secs(10), rx.recv()).await.expect("a notice").unwrap()
    }

    let run = cairn_store::conformance::remote_run("cross", 2, t(0));
    let (run_id, a, b) = (run.id, run.tasks[0].id, run.tasks[1].id);
    writer.apply(vec![Change::CreateRun(run)]).await.unwrap();
    writer
        .apply(vec![
            plain(a, 0, TaskStatus::Submitted, TaskStatus::Pending, t(1)),
            plain(b, 0, TaskStatus::Submitted, TaskStatus::Pending, t(1)),
            offer(a, run_id, "q", t(1)),
        ])
        .await
        .unwrap();
    assert_eq!(next(&mut heard).await, Notice::Offered { queue: "q".into() });
    // A cancel asked of one server reaches the other, whichever drives the run.
    let alice = cairn_core::record::Actor::User("alice".into());
    let asked = writer.apply(vec![Change::RequestRunCancel { run: run_id, actor: alice.clone() }]).await;
    assert_eq!(asked.unwrap(), vec![Outcome::Applied]);
    assert_eq!(next(&mut heard).await, Notice::CancelRequested { run: run_id });
    assert_eq!(reader.run(run_id).await.unwrap().unwrap().cancel_requested_by, Some(alice));

    let admin = session_on(&db).await;
    let listening = backends(&admin, db.name(), "LISTEN cairn").await;
    assert_eq!(listening.len(), 2, "one listening session per store");
    for pid in &listening {
        admin.execute("SELECT pg_terminate_backend($1)", &[pid]).await.unwrap();
    }
    assert_eq!(next(&mut heard).await, Notice::Resync, "the reader missed what committed meanwhile");
    writer.apply(vec![offer(b, run_id, "r", t(2))]).await.unwrap();
    assert_eq!(next(&mut heard).await, Notice::Offered { queue: "r".into() });

    // Closing a store ends its listening session.
    reader.close().await.unwrap();
    eventually(Duration::from_secs(5), "the closed store stops listening", || async {
        backends(&admin, db.name(), "LISTEN cairn").await.len() == 1
    })
    .await;
}

/// The claim walks the queue's index to the few offers it takes and the
/// tasks' primary key, whatever the backlog: no scan of either table, in
/// the generic plan the prepared statement runs with.
#[tokio::test]
async fn the_claim_walks_its_index() {
    use cairn_store::conformance::offer;
    let (store, db) = postgres().await;
    let run = cairn_store::conformance::remote_run("backlog", 5_000, t(0));
    let (run_id, ids): (_, Vec<_>) = (run.id, run.tasks.iter().map(|t| t.id).collect());
    store.apply(vec![Change::CreateRun(run)]).await.unwrap();
    let mut batch: Vec<_> =
        ids.iter().map(|&id| plain(id, 0, TaskStatus::Submitted, TaskStatus::Pending, t(1))).collect();
    batch.extend(ids.iter().enumerate().map(|(i, &id)| offer(id, run_id, ["a", "b"][i % 2], t(i as i64))));
    let outcomes = store.apply(batch).await.unwrap();
    assert!(outcomes.iter().all(Outcome::is_applied));
    let client = session_on(&db).await;
    client.batch_execute("ANALYZE").await.unwrap();
    let claim = std::fs::read_to_string("src/postgres/sql/claim.sql").unwrap();
    client
        .batch_execute(&format!(
            "SET plan_cache_mode = force_generic_plan; PREPARE claim (text[], bigint, bigint, text, text, text) AS {claim}"
        ))
        .await
        .unwrap();
    let plan: Vec<String> = client
        .query("EXPLAIN EXECUTE claim('{a}', 100, 10, 'w', 'worker:w', 's')", &[])
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let plan = plan.join("\n");
    assert!(plan.contains("task_offers_claim"), "{plan}");
    assert!(plan.contains("tasks_pkey"), "{plan}");
    assert!(!plan.contains("Seq Scan on task"), "{plan}");
}

/// A database written before the status counts (schema 4) is counted by the
/// migration that adds them: its runs and tasks, whatever their status, and
/// changes made after the upgrade keep the counts exact.
#[tokio::test]
async fn the_status_counts_migration_counts_what_an_older_cairn_wrote() {
    use cairn_core::{RunId, RunStatus, Timestamp};
    use cairn_store::conformance::{
        assert_counts_equal_the_records, postgres_at_version, random_runs, run_change,
    };

    let db = TestDb::create().await;
    postgres_at_version(&db.url(), 4).await.unwrap();
    let session = session_on(&db).await;
    let workflows = ["etl", "backup", "report"];
    let mut queued = Vec::new();
    for i in 0..40_i64 {
        let at = t(0).as_micros() - 7_200_000_000 + i * 47 * 60_000_000 + (i * 7919 % 60) * 1_000_000 + i;
        let status = RunStatus::ALL[(i % 6) as usize];
        let id = RunId::new(Timestamp::from_micros(at));
        let run_no: i64 = session
            .query_one(
                &format!(
                    "INSERT INTO runs (id, workflow, status, trigger_kind, submitted_at, last_at)
                     VALUES ('{}', $1, $2, 'manual', $3, $3) RETURNING run_no",
                    uuid(id.to_bytes())
                ),
                &[&workflows[(i % 3) as usize], &i16::from(status.code()), &at],
            )
            .await
            .unwrap()
            .get(0);
        session
            .execute("INSERT INTO run_specs (run_no, source) VALUES ($1, 'steps: []')", &[&run_no])
            .await
            .unwrap();
        let mut tasks = Vec::new();
        for j in 0..i % 4 {
            // Queued runs' tasks wait SUBMITTED; the others' have any status
            // but RUNNING (which would need a lease).
            let status = match TaskStatus::ALL[((i + j) % 9) as usize] {
                _ if status == RunStatus::Queued => TaskStatus::Submitted,
                TaskStatus::Running => TaskStatus::Pending,
                other => other,
            };
            let task = TaskId::new(Timestamp::from_micros(at));
            let task_at = at + j * 50_000_000;
            session
                .execute(
                    &format!(
                        "INSERT INTO tasks (id, status, last_at, run_no, idx, max_attempts, submitted_at, name)
                         VALUES ('{}', $1, $2, $3, $4, 1, $2, $5)",
                        uuid(task.to_bytes())
                    ),
                    &[&i16::from(status.code()), &task_at, &run_no, &(j as i32), &format!("step-{j}")],
                )
                .await
                .unwrap();
            tasks.push(task);
        }
        if status == RunStatus::Queued {
            queued.push((id, tasks));
        }
    }
    drop(session);

    let store = PostgresStore::connect(&db.url(), PostgresOptions::default()).await.unwrap();
    assert_eq!(store.schema_version(), PostgresStore::latest_schema_version());
    let all = cairn_store::CountQuery::default();
    assert_eq!(store.run_counts(all.clone()).await.unwrap().values().sum::<u64>(), 40);
    assert_counts_equal_the_records(&store).await;

    // The old runs move on after the upgrade, and new ones come.
    let later = t(10 * 24 * 3_600_000);
    let mut changes = Vec::new();
    for (run, tasks) in &queued {
        changes.push(run_change(*run, RunStatus::Queued, RunStatus::Running, later, None));
        changes.extend(
            tasks.iter().map(|task| plain(*task, 0, TaskStatus::Submitted, TaskStatus::Pending, later)),
        );
    }
    assert!(store.apply(changes).await.unwrap().iter().all(|o| o.is_applied()));
    random_runs(&store, 7, 30).await;
    assert_counts_equal_the_records(&store).await;
    store.close().await.unwrap();
}

/// Every shape of history search walks an index on a history of a few
/// thousand runs, analyzed, so the planner's choices are its own — no
/// sequential scan anywhere — and returns what a brute-force filter does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_plans_walk_indexes() {
    use cairn_store::conformance::{
        PlanCase, build_history, expected_runs, expected_tasks, plan_cases, walk_runs, walk_tasks,
    };
    fn nodes<'a>(plan: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
        match plan {
            serde_json::Value::Array(items) => items.iter().for_each(|item| nodes(item, out)),
            serde_json::Value::Object(map) => {
                if map.contains_key("Node Type") {
                    out.push(plan);
                }
                map.values().for_each(|value| nodes(value, out));
            }
            _ => {}
        }
    }
    let (store, db) = postgres().await;
    let history = build_history(&store, 3_000, 21).await;
    // As autovacuum leaves a database: statistics, and the visibility map
    // that makes index-only scans worth their name.
    session_on(&db).await.batch_execute("VACUUM ANALYZE").await.unwrap();
    for case in plan_cases(&history) {
        let (name, plan) = match case {
            PlanCase::Runs(name, q) => {
                assert_eq!(walk_runs(&store, q.clone()).await, expected_runs(&history, &q), "{name}: {q:?}");
                (name, store.explain_search_runs(q).await.unwrap())
            }
            PlanCase::Tasks(name, q) => {
                assert_eq!(
                    walk_tasks(&store, q.clone()).await,
                    expected_tasks(&history, &q),
                    "{name}: {q:?}"
                );
                (name, store.explain_search_tasks(q).await.unwrap())
            }
        };
        assert_eq!(plan.shape, name, "{plan:#?}");
        for statement in &plan.statements {
            let json: serde_json::Value = serde_json::from_str(&statement.plan).unwrap();
            let mut all = Vec::new();
            nodes(&json, &mut all);
            assert!(!all.is_empty());
            for node in all {
                // The DEFAULT partition of a log (V8) is empty while the
                // leader keeps ranges ahead: scanning it reads nothing, and
                // runtime pruning skips it for a task number it cannot hold.
                if node["Relation Name"].as_str().is_some_and(|name| name.ends_with("_default")) {
                    continue;
                }
                assert_ne!(
                    node["Node Type"], "Seq Scan",
                    "{name}: a sequential scan of {}\n{}\n{:#}",
                    node["Relation Name"], statement.sql, json
                );
            }
        }
    }
}

/// The count upsert goes out with the COMMIT: when it fails, the COMMIT
/// behind it rolls the batch back, the caller hears of it, and the
/// connection serves the next batch.
#[tokio::test]
async fn a_failing_count_upsert_commits_nothing() {
    let (store, db) = postgres().await;
    store.close().await.unwrap();
    session_on(&db)
        .await
        .batch_execute("ALTER TABLE run_counts_minute ADD CONSTRAINT no_boom CHECK (workflow <> 'boom')")
        .await
        .unwrap();
    // One connection: the batch after the failure runs on the same one.
    let one = PostgresOptions { max_connections: 1, ..Default::default() };
    let store = PostgresStore::connect(&db.url(), one).await.unwrap();
    let run = new_run("boom", 2, t(0));
    let id = run.id;
    let err = store.apply(vec![Change::CreateRun(run)]).await.unwrap_err();
    assert!(err.to_string().contains("no_boom"), "{err}");
    assert_eq!(store.run(id).await.unwrap(), None, "nothing of the batch stays");
    let fine = new_run("etl", 2, t(0));
    assert!(store.apply(vec![Change::CreateRun(fine)]).await.unwrap()[0].is_applied());
    let all = cairn_store::CountQuery::default();
    let counts = store.run_counts(all).await.unwrap();
    assert_eq!(counts, std::collections::BTreeMap::from([(cairn_core::RunStatus::Queued, 1)]));
}

// ---------------------------------------------------------------------------
// Retention: the partitions of the logs (V8)

/// A run of `tasks` tasks, each moved SUBMITTED -> PENDING -> CANCELED, and
/// the run CANCELED: finished, with three log rows per task.
async fn canceled_run(store: &PostgresStore, tasks: u32, at_ms: i64) -> cairn_core::RunId {
    use cairn_core::RunStatus;
    use cairn_store::conformance::run_change;
    let run = new_run("etl", tasks, t(at_ms));
    let id = run.id;
    let ids: Vec<TaskId> = run.tasks.iter().map(|task| task.id).collect();
    let mut changes = vec![Change::CreateRun(run)];
    for task in ids {
        changes.push(plain(task, 0, TaskStatus::Submitted, TaskStatus::Pending, t(at_ms + 1)));
        changes.push(plain(task, 0, TaskStatus::Pending, TaskStatus::Canceled, t(at_ms + 2)));
    }
    changes.push(run_change(id, RunStatus::Queued, RunStatus::Canceled, t(at_ms + 3), None));
    assert!(store.apply(changes).await.unwrap().iter().all(Outcome::is_applied));
    id
}

async fn rows(client: &Client, table: &str) -> i64 {
    client.query_one(&format!("SELECT count(*) FROM {table}"), &[]).await.unwrap().get(0)
}

async fn table_exists(client: &Client, table: &str) -> bool {
    client.query_one("SELECT to_regclass($1) IS NOT NULL", &[&table]).await.unwrap().get(0)
}

/// Ranges are made ahead of the newest task and take in what went to the
/// DEFAULT partitions; a range is dropped once its numbers are all handed
/// out and no task of it is left, not before, and never under a writer of
/// the logs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_partitions_are_kept_ahead_and_dropped_once_empty() {
    use cairn_store::conformance::assert_counts_equal_the_records;
    use cairn_store::{LogPartition, PartitionPolicy};

    let (store, db) = postgres().await;
    let client = session_on(&db).await;
    let ranges = |parts: Vec<LogPartition>| parts.iter().map(|p| (p.lo, p.hi)).collect::<Vec<_>>();
    const M: i64 = 1_000_000;
    assert_eq!(ranges(store.log_partitions().await.unwrap()), [(0, M)], "the migration's first range");
    let policy = PartitionPolicy { min_width: 10, max_width: 10, ..Default::default() };
    let now = t(86_400_000);

    let a = canceled_run(&store, 2, 0).await;
    // Task numbers jump past every range: the rows go to DEFAULT, and
    // writing and reading them works as anywhere.
    client.batch_execute(&format!("ALTER SEQUENCE tasks_task_no_seq RESTART WITH {M}")).await.unwrap();
    let b = canceled_run(&store, 3, 10).await;
    assert_eq!(
        store.run_detail(b).await.unwrap().unwrap().transitions.values().map(Vec::len).sum::<usize>(),
        9
    );
    assert_eq!(rows(&client, "task_transitions_default").await, 9);

    let made = store.maintain_partitions(policy, now).await.unwrap();
    assert_eq!(
        made.created.iter().map(|p| (p.lo, p.hi, p.created_at)).collect::<Vec<_>>(),
        [(M, M + 10, now), (M + 10, M + 20, now)],
        "the range that takes in DEFAULT's rows, then a spare"
    );
    assert!(made.dropped.is_empty(), "the first range still has run {a}'s tasks");
    assert_eq!(rows(&client, "task_transitions_default").await, 0);
    assert_eq!(rows(&client, &format!("task_transitions_{M}")).await, 9);
    assert_eq!(rows(&client, &format!("attempts_{M}")).await, 0);
    let again = store.maintain_partitions(policy, now).await.unwrap();
    assert_eq!((again.created.len(), again.dropped.len()), (0, 0), "nothing to do twice");

    // The first range empties: dropped, its tables gone, the rest intact.
    let before_b = store.run_detail(b).await.unwrap();
    assert_eq!(store.delete_runs(vec![a]).await.unwrap().runs, [a]);
    assert_eq!(rows(&client, "task_transitions_0").await, 6, "log rows wait for their partition");
    let done = store.maintain_partitions(policy, now).await.unwrap();
    assert_eq!(ranges(done.dropped), [(0, M)]);
    for table in ["task_transitions_0", "attempts_0", "progress_samples_0"] {
        assert!(!table_exists(&client, table).await, "{table}");
    }
    assert_eq!(store.run_detail(b).await.unwrap(), before_b);

    // A range whose numbers are not all handed out stays, empty or not.
    assert_eq!(store.delete_runs(vec![b]).await.unwrap().runs, [b]);
    assert!(store.maintain_partitions(policy, now).await.unwrap().dropped.is_empty());

    // A run across two ranges reads whole; the spare in use, another is made.
    let c = canceled_run(&store, 10, 20).await;
    let detail = store.run_detail(c).await.unwrap().unwrap();
    assert!(detail.transitions.values().all(|log| log.len() == 3));
    let made = store.maintain_partitions(policy, now).await.unwrap();
    assert_eq!(ranges(made.created), [(M + 20, M + 30)]);
    assert!(made.dropped.is_empty(), "run {c} has tasks in both ranges");
    let listed = store.log_partitions().await.unwrap();
    assert_eq!(ranges(listed.clone()), [(M, M + 10), (M + 10, M + 20), (M + 20, M + 30)]);
    assert_eq!((listed[0].first_submitted, listed[0].last_submitted), (Some(t(20)), Some(t(20))));
    assert_eq!((listed[2].first_submitted, listed[2].last_submitted), (None, None));

    // A writer of the logs holds the drop off; once it is done, the drop goes.
    store.delete_runs(vec![c]).await.unwrap();
    client
        .batch_execute(
            "BEGIN; INSERT INTO task_transitions (task_no, attempt, to_status, at, reason, actor)
             VALUES (1, 0, 0, 0, 'held', 'scheduler')",
        )
        .await
        .unwrap();
    let held = store.maintain_partitions(policy, now).await.unwrap();
    assert!(held.deferred && held.dropped.is_empty(), "{held:?}");
    client.batch_execute("ROLLBACK").await.unwrap();
    let done = store.maintain_partitions(policy, now).await.unwrap();
    assert_eq!(ranges(done.dropped), [(M, M + 10)]);
    assert!(!done.deferred);
    assert_counts_equal_the_records(&store).await;
}

/// A database an older Cairn wrote: its logs become the first range as
/// they are, read back whole, and the log order continues after them.
#[tokio::test]
async fn the_retention_migration_keeps_the_logs_an_older_cairn_wrote() {
    use cairn_core::{RunId, Timestamp};
    use cairn_store::conformance::postgres_at_version;

    let db = TestDb::create().await;
    postgres_at_version(&db.url(), 6).await.unwrap();
    let session = session_on(&db).await;
    let id = RunId::new(t(0));
    let task = TaskId::new(t(0));
    let run_no: i64 = session
        .query_one(
            &format!(
                "INSERT INTO runs (id, workflow, status, trigger_kind, submitted_at, last_at)
                 VALUES ('{}', 'etl', 1, 'manual', 0, 0) RETURNING run_no",
                uuid(id.to_bytes())
            ),
            &[],
        )
        .await
        .unwrap()
        .get(0);
    session
        .execute("INSERT INTO run_specs (run_no, source) VALUES ($1, 'steps: []')", &[&run_no])
        .await
        .unwrap();
    let task_no: i64 = session
        .query_one(
            &format!(
                "INSERT INTO tasks (id, status, last_at, run_no, idx, max_attempts, submitted_at, name, workflow)
                 VALUES ('{}', 2, 2, $1, 0, 1, 0, 'step-0', 'etl') RETURNING task_no",
                uuid(task.to_bytes())
            ),
            &[&run_no],
        )
        .await
        .unwrap()
        .get(0);
    for (from, to, at) in [(None, 0_i16, 0_i64), (Some(0_i16), 2, 2)] {
        session
            .execute(
                "INSERT INTO task_transitions (task_no, attempt, from_status, to_status, at, reason, actor)
                 VALUES ($1, 0, $2, $3, $4, 'old', 'scheduler')",
                &[&task_no, &from, &to, &at],
            )
            .await
            .unwrap();
    }
    drop(session);

    let store = PostgresStore::connect(&db.url(), PostgresOptions::default()).await.unwrap();
    let parts = store.log_partitions().await.unwrap();
    assert_eq!(parts.iter().map(|p| (p.lo, p.hi)).collect::<Vec<_>>(), [(0, task_no + 1_000_000)]);
    assert_eq!(parts[0].first_submitted, Some(Timestamp::from_micros(0)));
    let (s, _) = start(task, 1, t(5));
    assert!(store.apply(vec![s]).await.unwrap()[0].is_applied());
    let log = store.task(task).await.unwrap().unwrap().transitions;
    assert_eq!(
        log.iter().map(|tr| (tr.to, tr.reason.as_str())).collect::<Vec<_>>(),
        [(TaskStatus::Submitted, "old"), (TaskStatus::Pending, "old"), (TaskStatus::Running, "leased")],
        "the new row comes after the old ones"
    );
    let client = session_on(&db).await;
    assert_eq!(rows(&client, "task_transitions_0").await, 3);
    assert_eq!(rows(&client, "attempts_0").await, 1);
    store.close().await.unwrap();
}

/// Schema version 7 fills in the phase times of the tasks an older Cairn
/// wrote, from their logs, and they go on accumulating from there.
#[tokio::test]
async fn the_phases_migration_fills_in_what_an_older_cairn_wrote() {
    use cairn_store::conformance::{assert_phases_equal_the_logs, end, legacy_runs, postgres_at_version};

    let db = TestDb::create().await;
    postgres_at_version(&db.url(), 6).await.unwrap();
    let session = session_on(&db).await;
    let runs = legacy_runs(30);
    for run in &runs {
        let run_no: i64 = session
            .query_one(
                &format!(
                    "INSERT INTO runs (id, workflow, status, trigger_kind, submitted_at, last_at)
                     VALUES ('{}', $1, 1, 'manual', $2, $2) RETURNING run_no",
                    uuid(run.id.to_bytes())
                ),
                &[&run.workflow, &run.submitted_at.as_micros()],
            )
            .await
            .unwrap()
            .get(0);
        session
            .execute("INSERT INTO run_specs (run_no, source) VALUES ($1, 'steps: []')", &[&run_no])
            .await
            .unwrap();
        for (j, task) in run.tasks.iter().enumerate() {
            let task_no: i64 = session
                .query_one(
                    &format!(
                        "INSERT INTO tasks (id, status, attempt, last_at, run_no, idx, max_attempts, submitted_at,
                                            finished_at, name, workflow)
                         VALUES ('{}', $1, $2, $3, $4, $5, 3, $6, $7, $8, $9) RETURNING task_no",
                        uuid(task.id.to_bytes())
                    ),
                    &[
                        &i16::from(task.status().code()),
                        &(task.attempt() as i32),
                        &task.last_at().as_micros(),
                        &run_no,
                        &(j as i32),
                        &task.submitted_at().as_micros(),
                        &task.finished_at().map(|t| t.as_micros()),
                        &task.name,
                        &run.workflow,
                    ],
                )
                .await
                .unwrap()
                .get(0);
            for tr in &task.log {
                session
                    .execute(
                        "INSERT INTO task_transitions (task_no, attempt, from_status, to_status, at, reason, actor)
                         VALUES ($1, $2, $3, $4, $5, $6, 'scheduler')",
                        &[
                            &task_no,
                            &(tr.attempt as i32),
                            &tr.from.map(|s| i16::from(s.code())),
                            &i16::from(tr.to.code()),
                            &tr.at.as_micros(),
                            &tr.reason,
                        ],
                    )
                    .await
                    .unwrap();
            }
        }
    }
    drop(session);

    let store = PostgresStore::connect(&db.url(), PostgresOptions::default()).await.unwrap();
    assert_phases_equal_the_logs(&store).await;
    // The tasks still waiting move on from the phases filled in.
    let waiting: Vec<_> = runs.iter().flat_map(|r| &r.tasks).filter(|t| !t.status().is_terminal()).collect();
    assert!(!waiting.is_empty());
    for task in waiting {
        let at = cairn_core::Timestamp::from_micros(task.last_at().as_micros() + 7_000_000);
        let (s, token) = start(task.id, task.attempt() + 1, at);
        let done = at.saturating_add(Duration::from_secs(11));
        let e = end(task.id, token, task.attempt() + 1, TaskStatus::Completed, done, Default::default());
        assert!(store.apply(vec![s, e]).await.unwrap().iter().all(|o| o.is_applied()));
    }
    assert_phases_equal_the_logs(&store).await;
    store.close().await.unwrap();
}

/// Every statement of the phase analytics walks its index on a history of
/// a few thousand runs, analyzed and vacuumed as autovacuum leaves it: the
/// skips and the per-step ranges are index-only scans of
/// `tasks_done_step`, with no sequential scan and no sort anywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_plans_walk_their_indexes() {
    fn nodes<'a>(plan: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
        match plan {
            serde_json::Value::Array(items) => items.iter().for_each(|item| nodes(item, out)),
            serde_json::Value::Object(map) => {
                if map.contains_key("Node Type") {
                    out.push(plan);
                }
                map.values().for_each(|value| nodes(value, out));
            }
            _ => {}
        }
    }
    let (store, db) = postgres().await;
    cairn_store::conformance::build_history(&store, 3_000, 21).await;
    session_on(&db).await.batch_execute("VACUUM ANALYZE").await.unwrap();
    let plan = store.explain_analytics("etl").await.unwrap();
    // done_workflows (a skip along either index that starts with the
    // workflow), step_phases, step_expected, run_expected, slow_task_ids.
    let wanted: [(&str, &[&str]); 5] = [
        ("Index Only Scan", &["tasks_done_step", "tasks_done_workflow"]),
        ("Index Only Scan", &["tasks_done_step"]),
        ("Index Scan", &["tasks_done_step"]),
        ("Index Scan", &["runs_workflow_finished"]),
        ("Index Scan", &["tasks_pkey"]),
    ];
    assert_eq!(plan.statements.len(), wanted.len());
    for (statement, (kind, indexes)) in plan.statements.iter().zip(wanted) {
        let json: serde_json::Value = serde_json::from_str(&statement.plan).unwrap();
        let mut all = Vec::new();
        nodes(&json, &mut all);
        let shown = format!("{}\n{json:#}", statement.sql);
        for node in &all {
            assert_ne!(node["Node Type"], "Seq Scan", "a sequential scan in {shown}");
            assert_ne!(node["Node Type"], "Sort", "a sort in {shown}");
        }
        assert!(
            all.iter().any(|n| n["Node Type"] == kind && indexes.iter().any(|i| n["Index Name"] == *i)),
            "{kind} of {indexes:?} in {shown}"
        );
    }
}

/// Retention finds and deletes runs from indexes alone: no sequential scan
/// of runs or tasks in any of its statements, on a history the planner
/// knows (analyzed).
#[tokio::test]
async fn retention_walks_indexes() {
    use cairn_core::RunStatus;
    use cairn_store::conformance::run_change;

    let (store, db) = postgres().await;
    let workflows = ["backup", "deploy", "etl", "report", "train"];
    let mut changes = Vec::new();
    for i in 0..3_000_i64 {
        let run = new_run(workflows[(i % 5) as usize], if i % 50 == 0 { 20 } else { 1 }, t(i));
        let id = run.id;
        changes.push(Change::CreateRun(run));
        changes.push(run_change(id, RunStatus::Queued, RunStatus::Canceled, t(i + 5_000), None));
    }
    assert!(store.apply(changes).await.unwrap().iter().all(Outcome::is_applied));
    let client = session_on(&db).await;
    client.batch_execute("ANALYZE").await.unwrap();
    let sql = |file: &str| std::fs::read_to_string(format!("src/postgres/sql/{file}")).unwrap();
    let any_id = format!("ARRAY['{}']::uuid[]", uuid(cairn_core::RunId::new(t(7)).to_bytes()));
    for query in [
        sql("retention_workflows.sql").replace("$1", "''").replace("$2", "100"),
        sql("expired_finished.sql")
            .replace("$1", "'etl'")
            .replace("$2", "5")
            .replace("$3", "6000000")
            .replace("$4", "100"),
        sql("expired_beyond.sql").replace("$1", "'etl'").replace("$2", "10").replace("$3", "100"),
        sql("delete_runs.sql").replace("$1::uuid[]", &any_id),
        sql("run_progress_samples.sql").replace("$1", &format!("({any_id})[1]")),
    ] {
        let plan: Vec<String> = client
            .query(&format!("EXPLAIN {query}"), &[])
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        let plan = plan.join("\n");
        assert!(!plan.contains("Seq Scan on runs") && !plan.contains("Seq Scan on tasks"), "{query}\n{plan}");
    }
}

/// `analyze` refreshes the statistics a large import leaves stale (the
/// planner would otherwise plan from an empty database's counts).
#[tokio::test]
async fn analyze_after_an_import_gives_the_planner_statistics() {
    let (store, db) = postgres().await;
    let runs = cairn_store::conformance::importable_runs(41, 400, t(0));
    let stored = runs.len() as f64;
    store.import_runs(std::sync::Arc::new(runs)).await.unwrap();
    let admin = session_on(&db).await;
    let estimate = "SELECT reltuples::float8 FROM pg_class WHERE relname = 'runs'";
    let before: f64 = admin.query_one(estimate, &[]).await.unwrap().get(0);
    assert!(before <= 0.0, "a fresh import has no statistics yet: {before}");
    store.analyze().await.unwrap();
    let after: f64 = admin.query_one(estimate, &[]).await.unwrap().get(0);
    assert_eq!(after, stored);
    let analyzed: i64 = admin
        .query_one(
            "SELECT count(*) FROM pg_stat_user_tables WHERE relname IN ('runs', 'tasks') AND last_analyze IS NOT NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(analyzed, 2);
}
