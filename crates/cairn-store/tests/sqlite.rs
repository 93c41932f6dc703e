//! The SQLite store on real files: the conformance suite, then what only
//! SQLite has — durability across reopen, versioned migrations, refusing
//! files it must not touch, and the connection settings in effect.

use std::path::Path;

use cairn_core::TaskStatus;
use cairn_store::conformance::{new_run, plain, start, t};
use cairn_store::{Change, SqliteOptions, SqliteStore, Store, StoreError, Synchronous};
use tempfile::TempDir;

async fn sqlite() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("cairn.db"), SqliteOptions::default()).unwrap();
    (store, dir)
}

cairn_store::store_conformance_suite!(sqlite);

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, SqliteOptions::default()).unwrap()
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

#[tokio::test]
async fn reopening_keeps_everything_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dirs/cairn.db");
    let run = new_run("etl", 3, t(0));
    let (id, task) = (run.id, run.tasks[0].id);
    let store = open(&path);
    store.apply(vec![Change::CreateRun(run)]).await.unwrap();
    let (s, _) = start(task, 1, t(2));
    let outcomes =
        store.apply(vec![plain(task, 0, TaskStatus::Submitted, TaskStatus::Pending, t(1)), s]).await.unwrap();
    assert!(outcomes.iter().all(|o| o.is_applied()));
    let before = store.run_detail(id).await.unwrap().unwrap();
    store.close().await.unwrap();
    assert!(matches!(
        store.apply(vec![plain(task, 0, TaskStatus::Submitted, TaskStatus::Pending, t(3))]).await,
        Err(StoreError::Closed)
    ));
    assert!(matches!(store.run(id).await, Err(StoreError::Closed)));
    store.close().await.unwrap(); // twice is fine
    drop(store);

    let store = open(&path);
    assert_eq!(store.run_detail(id).await.unwrap().unwrap(), before);
    assert_eq!(
        store.next_lease_expiry().await.unwrap(),
        before.tasks.iter().find_map(|t| t.lease.as_ref().map(|l| l.expires_at))
    );
    store.close().await.unwrap();
}

#[tokio::test]
async fn dropping_without_close_loses_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.db");
    let run = new_run("etl", 2, t(0));
    let id = run.id;
    {
        let store = open(&path);
        store.apply(vec![Change::CreateRun(run)]).await.unwrap();
    }
    let store = open(&path);
    assert_eq!(store.run_detail(id).await.unwrap().unwrap().tasks.len(), 2);
}

#[tokio::test]
async fn migrations_are_versioned() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.db");
    let store = open(&path);
    let latest = SqliteStore::latest_schema_version();
    assert!(latest >= 1);
    assert_eq!(store.schema_version(), latest);
    store.close().await.unwrap();

    let conn = raw(&path);
    let user_version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
    assert_eq!(user_version, latest, "the version any SQLite tool sees");
    let applied: Vec<(i64, String)> = conn
        .prepare("SELECT version, name FROM refinery_schema_history ORDER BY version")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(applied.first(), Some(&(1, "initial".to_owned())));
    assert_eq!(applied.len() as i64, latest);
    drop(conn);

    // Opening an up-to-date file again applies nothing and keeps the version.
    let store = open(&path);
    assert_eq!(store.schema_version(), latest);
}

#[tokio::test]
async fn a_database_from_a_newer_cairn_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.db");
    open(&path).close().await.unwrap();
    let newer = SqliteStore::latest_schema_version() + 1;
    raw(&path).execute_batch(&format!("PRAGMA user_version = {newer}")).unwrap();
    match SqliteStore::open(&path, SqliteOptions::default()) {
        Err(StoreError::TooNew { found, known, path: p }) => {
            assert_eq!((found, known), (newer, newer - 1));
            assert!(p.ends_with("cairn.db"));
        }
        other => panic!("expected TooNew, got {other:?}"),
    }

    // The same when only refinery's history knows of the newer migration.
    let path = dir.path().join("other.db");
    open(&path).close().await.unwrap();
    raw(&path)
        .execute(
            "INSERT INTO refinery_schema_history (version, name, applied_on, checksum) VALUES (?1, 'future', '2030-01-01T00:00:00Z', '0')",
            [newer],
        )
        .unwrap();
    let err = SqliteStore::open(&path, SqliteOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { .. }), "{err:?}");
    assert!(err.to_string().contains("upgrade cairn"), "{err}");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(&path, "these are my notes, not a database\n".repeat(200)).unwrap();
    let err = SqliteStore::open(&path, SqliteOptions::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
    assert!(msg.contains(&path.display().to_string()), "names the path: {msg}");
    assert!(msg.contains("not a SQLite database"), "{msg}");
    assert_eq!(std::fs::read_to_string(&path).unwrap().len(), 35 * 200, "the file is untouched");

    let err = SqliteStore::open(dir.path(), SqliteOptions::default()).unwrap_err();
    assert!(matches!(err, StoreError::Open { .. }), "a directory: {err:?}");
}

#[tokio::test]
async fn wal_and_the_synchronous_setting_are_in_effect() {
    for (sync, code) in [(Synchronous::Full, 2), (Synchronous::Normal, 1)] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cairn.db");
        let store =
            SqliteStore::open(&path, SqliteOptions { synchronous: sync, ..Default::default() }).unwrap();
        // Read back from the write connection at open, not echoed from the options.
        assert_eq!(store.synchronous(), sync);
        assert_eq!(store.synchronous().to_string(), if code == 2 { "FULL" } else { "NORMAL" });
        // journal_mode=WAL is a property of the file, so any connection sees it.
        let mode: String = raw(&path).query_row("PRAGMA journal_mode", [], |r| r.get(0)).unwrap();
        assert_eq!(mode, "wal");
        store.close().await.unwrap();
    }
    assert_eq!(SqliteOptions::default().synchronous, Synchronous::Full, "durable by default");
}

#[tokio::test]
async fn next_lease_expiry_and_expired_leases_use_the_partial_index() {
    let (store, dir) = sqlite().await;
    drop(store);
    let conn = raw(&dir.path().join("cairn.db"));
    let expired = include_str!("../src/sqlite/sql/expired_leases.sql").replace("?1", "0").replace("?2", "10");
    for sql in [include_str!("../src/sqlite/sql/next_lease_expiry.sql"), expired.as_str()] {
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(plan.iter().any(|step| step.contains("tasks_lease_expiry")), "{sql}\n{plan:#?}");
        assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "no sort: {plan:#?}");
    }
}

#[tokio::test]
async fn claims_walk_the_offer_index_in_order() {
    let (store, dir) = sqlite().await;
    drop(store);
    let conn = raw(&dir.path().join("cairn.db"));
    let claim = include_str!("../src/sqlite/sql/claim_offers.sql")
        .replace("?1", "'q'")
        .replace("?2", "0")
        .replace("?3", "10");
    let next = include_str!("../src/sqlite/sql/next_ready.sql").replace("?1", "'q'").replace("?2", "0");
    for sql in [claim.as_str(), next.as_str()] {
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .unwrap()
            .query_map([], |r| r.get::<_, String>(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(plan.iter().any(|step| step.contains("task_offers_claim")), "{sql}\n{plan:#?}");
        assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "no sort: {plan:#?}");
        assert!(!plan.iter().any(|step| step.starts_with("SCAN")), "no scan: {plan:#?}");
    }
}

/// Holds the file's write lock from another connection, so the store's writer
/// stalls on its next transaction while batches queue up behind it.
fn hold_write_lock(path: &Path) -> rusqlite::Connection {
    let conn = raw(path);
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn
}

#[tokio::test]
async fn queued_batches_share_one_transaction() {
    let (store, dir) = sqlite().await;
    let blocker = hold_write_lock(&dir.path().join("cairn.db"));
    let before = store.write_stats();
    // `apply` queues its batch when called, so all of these are queued
    // before the lock is released; the writer takes the first alone at most.
    let runs: Vec<_> = (0..20).map(|_| new_run("group", 5, t(0))).collect();
    let pending: Vec<_> = runs.iter().map(|r| store.apply(vec![Change::CreateRun(r.clone())])).collect();
    blocker.execute_batch("COMMIT").unwrap();
    for reply in pending {
        assert_eq!(reply.await.unwrap(), vec![cairn_store::Outcome::Applied]);
    }
    let after = store.write_stats();
    assert_eq!(after.batches - before.batches, 20);
    assert_eq!(after.changes - before.changes, 20);
    assert!(after.transactions - before.transactions <= 2, "{before:?} -> {after:?}");
    for run in &runs {
        assert_eq!(store.run_detail(run.id).await.unwrap().unwrap().tasks.len(), 5);
    }
}

#[tokio::test]
async fn a_failing_batch_fails_only_its_own_caller() {
    let (store, dir) = sqlite().await;
    let existing = new_run("group", 1, t(0));
    let taken = existing.tasks[0].id;
    store.apply(vec![Change::CreateRun(existing)]).await.unwrap();

    let blocker = hold_write_lock(&dir.path().join("cairn.db"));
    let before = store.write_stats();
    let good: Vec<_> = (0..10).map(|_| new_run("group", 3, t(1))).collect();
    let mut bad = new_run("bad", 2, t(1));
    bad.tasks[1].id = taken;
    let bad_id = bad.id;
    let (first, rest) = good.split_at(5);
    let mut replies: Vec<_> = first.iter().map(|r| store.apply(vec![Change::CreateRun(r.clone())])).collect();
    let bad_reply = store.apply(vec![Change::CreateRun(bad)]);
    replies.extend(rest.iter().map(|r| store.apply(vec![Change::CreateRun(r.clone())])));
    blocker.execute_batch("COMMIT").unwrap();

    match bad_reply.await {
        Err(StoreError::Database(msg)) => assert!(msg.contains("UNIQUE"), "{msg}"),
        other => panic!("expected a database error, got {other:?}"),
    }
    for reply in replies {
        assert_eq!(reply.await.unwrap(), vec![cairn_store::Outcome::Applied]);
    }
    assert_eq!(store.run(bad_id).await.unwrap(), None);
    for run in &good {
        assert!(store.run(run.id).await.unwrap().is_some());
    }
    let after = store.write_stats();
    assert_eq!(after.batches - before.batches, 10);
    assert!(after.transactions - before.transactions <= 2, "{before:?} -> {after:?}");
}

/// A file written before the status counts (schema 4) is counted by the
/// migration that adds them: its runs and tasks, whatever their status, and
/// changes made after the upgrade keep the counts exact.
#[tokio::test]
async fn the_status_counts_migration_counts_what_an_older_cairn_wrote() {
    use cairn_core::{RunId, RunStatus, TaskId};
    use cairn_store::conformance::{
        assert_counts_equal_the_records, random_runs, run_change, sqlite_at_version,
    };

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.db");
    sqlite_at_version(&path, 4).unwrap();
    let conn = raw(&path);
    let workflows = ["etl", "backup", "report"];
    let mut queued = Vec::new();
    for i in 0..40_i64 {
        let at = t(0).as_micros() - 7_200_000_000 + i * 47 * 60_000_000 + (i * 7919 % 60) * 1_000_000 + i;
        let status = RunStatus::ALL[(i % 6) as usize];
        let id = RunId::new(cairn_core::Timestamp::from_micros(at));
        conn.execute(
            "INSERT INTO runs (id, workflow, status, trigger_kind, submitted_at, last_at) VALUES (?1, ?2, ?3, 'manual', ?4, ?4)",
            rusqlite::params![id.to_bytes(), workflows[(i % 3) as usize], status.code(), at],
        )
        .unwrap();
        let run_no = conn.last_insert_rowid();
        conn.execute("INSERT INTO run_specs (run_no, source) VALUES (?1, 'steps: []')", [run_no]).unwrap();
        let mut tasks = Vec::new();
        for j in 0..i % 4 {
            // Queued runs' tasks wait SUBMITTED; the others' have any status
            // but RUNNING (which would need a lease).
            let status = match TaskStatus::ALL[((i + j) % 9) as usize] {
                _ if status == RunStatus::Queued => TaskStatus::Submitted,
                TaskStatus::Running => TaskStatus::Pending,
                other => other,
            };
            let task = TaskId::new(cairn_core::Timestamp::from_micros(at));
            let task_at = at + j * 50_000_000;
            conn.execute(
                "INSERT INTO tasks (id, status, last_at, run_no, idx, max_attempts, submitted_at, name)
                 VALUES (?1, ?2, ?3, ?4, ?5, 1, ?3, ?6)",
                rusqlite::params![task.to_bytes(), status.code(), task_at, run_no, j, format!("step-{j}")],
            )
            .unwrap();
            tasks.push(task);
        }
        if status == RunStatus::Queued {
            queued.push((id, tasks));
        }
    }
    drop(conn);

    let store = open(&path);
    assert_eq!(store.schema_version(), SqliteStore::latest_schema_version());
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

/// Every shape of history search walks an index — no step scans a table
/// without one, and only the bounded drives (named `…, sorted`) sort — and
/// returns what a brute-force filter does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_plans_walk_indexes() {
    use cairn_store::conformance::{
        PlanCase, build_history, expected_runs, expected_tasks, plan_cases, walk_runs, walk_tasks,
    };
    let (store, _dir) = sqlite().await;
    let history = build_history(&store, 3_000, 21).await;
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
            let shown = format!("{name}:\n{}\n{}", statement.sql, statement.plan);
            for step in statement.plan.lines().map(str::trim) {
                // `x` is a probe's count over its own bounded subquery.
                if step.starts_with("SCAN ") && !step.starts_with("SCAN x") {
                    assert!(
                        step.contains(" USING INDEX ") || step.contains(" USING COVERING INDEX "),
                        "a table scan in {shown}"
                    );
                }
                if step.contains("TEMP B-TREE") {
                    assert!(name.ends_with(", sorted"), "a sort in {shown}");
                }
            }
        }
    }
}

/// The counts are written in the transaction of the changes they count: when
/// their upsert fails, nothing of the transaction is committed.
#[tokio::test]
async fn a_failing_count_upsert_commits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.db");
    open(&path).close().await.unwrap();
    raw(&path)
        .execute_batch(
            "CREATE TRIGGER no_boom BEFORE INSERT ON run_counts_minute WHEN NEW.workflow = 'boom'
             BEGIN SELECT RAISE(ABORT, 'no_boom'); END;",
        )
        .unwrap();
    let store = open(&path);
    let run = new_run("boom", 2, t(0));
    let id = run.id;
    let err = store.apply(vec![Change::CreateRun(run)]).await.unwrap_err();
    assert!(err.to_string().contains("no_boom"), "{err}");
    assert_eq!(store.run(id).await.unwrap(), None, "nothing of the batch stays");
    assert!(store.apply(vec![Change::CreateRun(new_run("etl", 2, t(0)))]).await.unwrap()[0].is_applied());
    let counts = store.run_counts(cairn_store::CountQuery::default()).await.unwrap();
    assert_eq!(counts, std::collections::BTreeMap::from([(cairn_core::RunStatus::Queued, 1)]));
}

/// Schema version 7 fills in the phase times of the tasks an older Cairn
/// wrote, from their logs, and they go on accumulating from there.
#[tokio::test]
async fn the_phases_migration_fills_in_what_an_older_cairn_wrote() {
    use cairn_store::conformance::{assert_phases_equal_the_logs, legacy_runs, sqlite_at_version};

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cairn.db");
    sqlite_at_version(&path, 6).unwrap();
    let conn = raw(&path);
    let runs = legacy_runs(30);
    for run in &runs {
        conn.execute(
            "INSERT INTO runs (id, workflow, status, trigger_kind, submitted_at, last_at) VALUES (?1, ?2, 1, 'manual', ?3, ?3)",
            rusqlite::params![run.id.to_bytes(), run.workflow, run.submitted_at.as_micros()],
        )
        .unwrap();
        let run_no = conn.last_insert_rowid();
        conn.execute("INSERT INTO run_specs (run_no, source) VALUES (?1, 'steps: []')", [run_no]).unwrap();
        for (j, task) in run.tasks.iter().enumerate() {
            conn.execute(
                "INSERT INTO tasks (id, status, attempt, last_at, run_no, idx, max_attempts, submitted_at, finished_at, name, workflow)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, 3, ?7, ?8, ?9, ?10)",
                rusqlite::params![
                    task.id.to_bytes(),
                    task.status().code(),
                    task.attempt(),
                    task.last_at().as_micros(),
                    run_no,
                    j as i64,
                    task.submitted_at().as_micros(),
                    task.finished_at().map(|t| t.as_micros()),
                    task.name,
                    run.workflow
                ],
            )
            .unwrap();
            let task_no = conn.last_insert_rowid();
            for tr in &task.log {
                conn.execute(
                    "INSERT INTO task_transitions (task_no, attempt, from_status, to_status, at, reason, actor)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'scheduler')",
                    rusqlite::params![task_no, tr.attempt, tr.from.map(|s| s.code()), tr.to.code(), tr.at.as_micros(), tr.reason],
                )
                .unwrap();
            }
        }
    }
    drop(conn);

    let store = open(&path);
    assert_phases_equal_the_logs(&store).await;
    // The tasks still waiting move on from the phases filled in.
    let waiting: Vec<_> = runs.iter().flat_map(|r| &r.tasks).filter(|t| !t.status().is_terminal()).collect();
    assert!(!waiting.is_empty());
    for task in waiting {
        let at = cairn_core::Timestamp::from_micros(task.last_at().as_micros() + 7_000_000);
        let (s, token) = start(task.id, task.attempt() + 1, at);
        let done = at.saturating_add(std::time::Duration::from_secs(11));
        let e = cairn_store::conformance::end(
            task.id,
            token,
            task.attempt() + 1,
            TaskStatus::Completed,
            done,
            Default::default(),
        );
        assert!(store.apply(vec![s, e]).await.unwrap().iter().all(|o| o.is_applied()));
    }
    assert_phases_equal_the_logs(&store).await;
    store.close().await.unwrap();
}

/// Every statement of the phase analytics walks its index: the skips and
/// the per-step ranges read `tasks_done_step` alone, the runs'
/// `runs_workflow_finished`, with no sort and no table scan.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analytics_plans_walk_their_indexes() {
    let (store, _dir) = sqlite().await;
    cairn_store::conformance::random_runs(&store, 5, 60).await;
    let plan = store.explain_analytics("etl", "step-0").await.unwrap();
    assert_eq!(plan.statements.len(), 6);
    for (i, statement) in plan.statements.iter().enumerate() {
        let shown = format!("{}\n{}", statement.sql, statement.plan);
        for step in statement.plan.lines().map(str::trim) {
            assert!(!step.contains("TEMP B-TREE"), "a sort in {shown}");
            // The skips' first seek is an ordered walk of the index
            // stopped by its LIMIT 1; the CTE's own rows are not a table.
            if step.starts_with("SCAN ") {
                let cte = ["SCAN done", "SCAN d", "SCAN CONSTANT ROW"].contains(&step);
                assert!(cte || step.contains("INDEX tasks_done_step"), "a scan in {shown}");
            }
            if step.starts_with("SEARCH tasks") || step.starts_with("SEARCH t ") {
                let index = if i == 5 { "INTEGER PRIMARY KEY" } else { "tasks_done_step" };
                assert!(step.contains(index), "{index} in {shown}");
            }
        }
        let index = [
            "tasks_done_step",
            "tasks_done_step",
            "COVERING INDEX tasks_done_step",
            "tasks_done_step",
            "runs_workflow_finished",
            "INTEGER PRIMARY KEY",
        ][i];
        assert!(statement.plan.contains(index), "{index} in {shown}");
    }
}
