//! The one conformance suite of the [`Store`] contract: what every backend
//! must do, proven against a real store.
//!
//! Each check is an async function generic over the store;
//! [`store_conformance_suite!`](crate::store_conformance_suite) stamps out one
//! `#[tokio::test]` per check for a backend, given a factory of fresh, empty
//! stores (the way Quickwit's `metastore_test_suite!` does):
//!
//! ```ignore
//! async fn sqlite() -> (SqliteStore, tempfile::TempDir) { /* a store in a temp dir */ }
//! cairn_store::store_conformance_suite!(sqlite);
//! ```
//!
//! The checks are the invariants of DESIGN.md at the storage level: only
//! legal transitions, each with its row; compare-and-set on status and lease
//! token; terminal tasks never change; a RUNNING task always carries its
//! lease; timestamps of a task never go back; group commit keeps each
//! caller's outcomes its own; an offer is claimed once, or withdrawn, never
//! both. Times are fixed, never read from a clock; only notices, which
//! arrive asynchronously on PostgreSQL, are awaited with a bound.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_core::Clock;
use cairn_core::lease::Lease;
use cairn_core::progress::Progress;
use cairn_core::record::{Actor, RunTransition, Transition};
use cairn_core::{LeaseToken, ManualClock, RunId, RunStatus, TaskId, TaskStatus, Timestamp};

mod database;
pub use database::TestDatabase;
mod alerts;
pub use alerts::{
    alerts_open_once_per_key_and_resolve_after_they_were_raised,
    concurrent_raises_of_one_key_record_one_alert,
};
mod audit;
pub use audit::{
    audit_events_read_back_newest_first_by_kind_actor_and_page, token_use_is_audited_when_it_is_recorded,
};
mod webhooks;
pub use webhooks::{
    deliveries_are_enqueued_once_per_webhook_and_key,
    deliveries_read_back_newest_first_by_state_webhook_and_page, due_deliveries_follow_their_attempts,
};
mod reaped;
pub use reaped::reaped_attempts_come_from_the_reapers_transitions_newest_first;
mod tokens;
pub use tokens::{
    sessions_act_as_their_token_and_end_with_sign_out_expiry_or_revocation,
    tokens_are_created_listed_and_revoked_by_name_or_id,
    tokens_are_found_by_hash_with_their_role_queues_scope_and_liveness,
};
mod analytics;
pub use analytics::{
    FinishedTask, LegacyRun, LegacyTask, assert_phase_stats, assert_phases_equal_the_logs, brute_phase_stats,
    expected_durations_come_from_the_latest_completed, finished_tasks, legacy_runs,
    phase_queries_out_of_bounds_are_refused, phase_stats_match_a_brute_force_computation,
    phase_times_follow_every_transition, phase_windows_and_caps_cut_at_their_edges,
};
mod counts;
pub use counts::{
    assert_counts_equal_the_records, counts_and_trends_equal_a_count_of_the_records,
    counts_follow_each_applied_change_and_skip_refused_ones, postgres_at_version, random_runs,
    sqlite_at_version, trends_refuse_unbounded_windows,
};
mod retention;
pub use retention::{
    counts_stay_exact_with_retention_interleaved, deleting_a_run_takes_everything_that_hangs_off_it,
    expired_runs_follow_the_days_and_the_runs_rules, live_work_is_never_deleted_even_when_asked,
};
mod import;
pub use import::{
    Fate, importable_run, importable_runs, imported_runs_are_found_by_every_search,
    imported_runs_read_back_as_applied_ones, imports_count_as_their_changes_would,
    imports_refuse_records_the_store_could_not_have_written, imports_refuse_unfinished_runs_and_taken_ids,
};
mod search;
pub use search::{
    History, PlanCase, RunFacts, TaskFacts, build_history, expected_runs, expected_tasks, plan_cases,
    search_cursors_and_page_sizes_are_checked, search_pages_cover_every_match_once_in_order,
    search_runs_by_each_filter_alone_and_together, search_tasks_by_each_filter_alone_and_together,
    searches_match_a_brute_force_filter, walk_runs, walk_tasks,
};

use crate::{
    AdoptRun, AttemptRecord, AttemptResult, Change, ClaimOutcome, ClaimRequest, Claimed, Heartbeat,
    LeaseState, NewRun, NewTask, Notice, Offer, Outcome, PostedResult, Renewal, RunChange, RunDetail,
    RunQuery, RunRecord, Store, StoreError, StoredLease, TaskChange, TaskDetail, TaskRecord, TaskUpdate,
};

/// Stamps out the conformance suite as `#[tokio::test]`s for one backend.
///
/// `$factory` is a path to (or expression for) an async function returning
/// `(store, guard)`: a fresh, empty store and whatever must outlive it (a temp
/// dir, a database handle). The calling crate needs `tokio` as a dependency.
#[macro_export]
macro_rules! store_conformance_suite {
    ($factory:expr) => {
        $crate::store_conformance_suite!(@each $factory;
            create_and_read_round_trip,
            duplicate_run_is_a_conflict,
            adopting_a_run_needs_its_current_owner,
            every_legal_task_transition_applies_with_its_row,
            every_legal_run_transition_applies_with_its_row,
            invalid_changes_fail_the_whole_batch_and_write_nothing,
            wrong_from_status_is_a_conflict_and_changes_nothing,
            stale_lease_tokens_change_nothing,
            terminal_tasks_never_change_again,
            running_tasks_always_carry_start_heartbeat_and_expiry,
            heartbeats_extend_and_never_shorten_leases,
            heartbeats_keep_details_and_progress_samples,
            retry_keeps_the_failed_attempt_record,
            task_reads_one_task_as_its_run_shows_it,
            expired_leases_and_next_expiry,
            list_runs_filters_and_pages_newest_first,
            runs_by_prefix_finds_runs_by_id_start,
            a_conflict_in_a_batch_still_commits_the_others,
            a_batch_failing_in_storage_writes_nothing,
            concurrent_batches_all_land_with_their_own_outcomes,
            racing_starts_of_one_task_admit_exactly_one,
            timestamps_never_go_backwards,
            offers_are_claimed_oldest_ready_first_with_a_lease,
            a_claim_is_never_dated_before_the_tasks_last_change,
            concurrent_claims_never_take_one_offer_twice,
            withdrawals_and_claims_exclude_each_other,
            offers_live_only_while_their_task_is_pending,
            renewals_extend_claimed_leases_and_carry_cancel,
            posted_results_last_until_the_attempt_ends,
            notices_follow_their_commits,
            a_schedule_tick_starts_one_run,
            a_run_cancel_request_is_recorded_for_its_driver,
            a_joined_server_is_alive_and_a_sole_member_leads,
            // status counts and trends (conformance/counts.rs)
            counts_and_trends_equal_a_count_of_the_records,
            counts_follow_each_applied_change_and_skip_refused_ones,
            trends_refuse_unbounded_windows,
            // history searches (conformance/search.rs)
            search_runs_by_each_filter_alone_and_together,
            search_tasks_by_each_filter_alone_and_together,
            search_pages_cover_every_match_once_in_order,
            search_cursors_and_page_sizes_are_checked,
            searches_match_a_brute_force_filter,
            // phase analytics and expected durations (conformance/analytics.rs)
            phase_times_follow_every_transition,
            phase_stats_match_a_brute_force_computation,
            phase_windows_and_caps_cut_at_their_edges,
            expected_durations_come_from_the_latest_completed,
            phase_queries_out_of_bounds_are_refused,
            // alerts (conformance/alerts.rs)
            alerts_open_once_per_key_and_resolve_after_they_were_raised,
            concurrent_raises_of_one_key_record_one_alert,
            // reaped attempts (conformance/reaped.rs)
            reaped_attempts_come_from_the_reapers_transitions_newest_first,
            // API tokens (conformance/tokens.rs)
            tokens_are_created_listed_and_revoked_by_name_or_id,
            tokens_are_found_by_hash_with_their_role_queues_scope_and_liveness,
            sessions_act_as_their_token_and_end_with_sign_out_expiry_or_revocation,
            // the audit log (conformance/audit.rs)
            audit_events_read_back_newest_first_by_kind_actor_and_page,
            token_use_is_audited_when_it_is_recorded,
            // the webhook outbox (conformance/webhooks.rs)
            deliveries_are_enqueued_once_per_webhook_and_key,
            due_deliveries_follow_their_attempts,
            deliveries_read_back_newest_first_by_state_webhook_and_page,
            // retention (conformance/retention.rs)
            expired_runs_follow_the_days_and_the_runs_rules,
            deleting_a_run_takes_everything_that_hangs_off_it,
            live_work_is_never_deleted_even_when_asked,
            counts_stay_exact_with_retention_interleaved,
            // bulk import of finished runs (conformance/import.rs)
            imported_runs_read_back_as_applied_ones,
            imported_runs_are_found_by_every_search,
            imports_count_as_their_changes_would,
            imports_refuse_unfinished_runs_and_taken_ids,
            imports_refuse_records_the_store_could_not_have_written,
        );
    };
    (@each $factory:expr; $($check:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $check() {
                let (store, guard) = ($factory)().await;
                $crate::conformance::$check(::std::sync::Arc::new(store)).await;
                drop(guard);
            }
        )*
    };
}

// ---------------------------------------------------------------------------
// Random workloads

/// xorshift64*: a fixed seed makes a failing workload replay exactly.
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub(crate) fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize].clone()
    }

    /// Each of `items` with probability `percent`.
    pub(crate) fn some<T: Clone>(&mut self, items: &[T], percent: u64) -> Vec<T> {
        items.iter().filter(|_| self.chance(percent)).cloned().collect()
    }
}

// ---------------------------------------------------------------------------
// Building changes

/// The suite's time zero (2026-01-01T00:00:00Z); `t(ms)` is `ms` later.
pub fn t(ms: i64) -> Timestamp {
    Timestamp::from_micros(ManualClock::at_test_epoch().now().as_micros() + ms * 1000)
}

/// How long a lease granted by [`start`] lasts.
pub const LEASE: Duration = Duration::from_secs(30);

/// A run of `workflow` with `tasks` tasks named `step-<i>`, submitted at `at`.
pub fn new_run(workflow: &str, tasks: u32, at: Timestamp) -> NewRun {
    NewRun {
        schedule_tick: None,
        labels: Vec::new(),
        id: RunId::new(at),
        workflow: workflow.to_owned(),
        trigger: "manual".to_owned(),
        spec_source: format!("name: {workflow}\nsteps: []\n"),
        spec_path: Some(format!("{workflow}.yaml")),
        params: BTreeMap::from([("env".to_owned(), "test".to_owned())]),
        owner: Some("local:test:1".to_owned()),
        transition: RunTransition {
            from: None,
            to: RunStatus::Queued,
            at,
            reason: "submitted".to_owned(),
            actor: Actor::User("alice".to_owned()),
        },
        tasks: (0..tasks)
            .map(|index| NewTask {
                id: TaskId::new(at),
                index,
                name: format!("step-{index}"),
                queue: None,
                max_attempts: 3,
                transition: Transition {
                    attempt: 0,
                    from: None,
                    to: TaskStatus::Submitted,
                    at,
                    reason: "created".to_owned(),
                    actor: Actor::Scheduler,
                },
            })
            .collect(),
    }
}

fn transition(
    attempt: u32,
    from: TaskStatus,
    to: TaskStatus,
    at: Timestamp,
    reason: &str,
    actor: Actor,
) -> Transition {
    Transition { attempt, from: Some(from), to, at, reason: reason.to_owned(), actor }
}

/// A status change outside RUNNING.
pub fn plain(task: TaskId, attempt: u32, from: TaskStatus, to: TaskStatus, at: Timestamp) -> Change {
    Change::Task(TaskChange {
        task,
        transition: transition(attempt, from, to, at, "scheduled", Actor::Scheduler),
        update: TaskUpdate::Plain,
    })
}

/// `PENDING -> RUNNING` as attempt `attempt`, by worker `w1`, leased for [`LEASE`].
pub fn start(task: TaskId, attempt: u32, at: Timestamp) -> (Change, LeaseToken) {
    start_with(task, attempt, at, LeaseToken::random(), at.saturating_add(LEASE))
}

fn start_with(
    task: TaskId,
    attempt: u32,
    at: Timestamp,
    token: LeaseToken,
    expires_at: Timestamp,
) -> (Change, LeaseToken) {
    let lease = Lease { token, started_at: at, last_heartbeat_at: at, expires_at };
    let change = Change::Task(TaskChange {
        task,
        transition: transition(
            attempt,
            TaskStatus::Pending,
            TaskStatus::Running,
            at,
            "leased",
            Actor::Worker("w1".to_owned()),
        ),
        update: TaskUpdate::Start { lease, worker: "w1".to_owned() },
    });
    (change, token)
}

/// `RUNNING -> to`, ending attempt `attempt` held under `token`.
pub fn end(
    task: TaskId,
    token: LeaseToken,
    attempt: u32,
    to: TaskStatus,
    at: Timestamp,
    result: AttemptResult,
) -> Change {
    let retry_at = (to == TaskStatus::Pending).then(|| at.saturating_add(Duration::from_secs(5)));
    Change::Task(TaskChange {
        task,
        transition: transition(attempt, TaskStatus::Running, to, at, "ended", Actor::Worker("w1".to_owned())),
        update: TaskUpdate::EndAttempt { token, result, retry_at },
    })
}

pub fn heartbeat(
    task: TaskId,
    token: LeaseToken,
    at: Timestamp,
    expires: Timestamp,
    progress: Option<Progress>,
) -> Change {
    Change::Heartbeat(Heartbeat {
        task,
        token,
        at,
        lease_expires_at: expires,
        progress,
        sample: false,
        details: None,
    })
}

pub fn run_change(run: RunId, from: RunStatus, to: RunStatus, at: Timestamp, error: Option<&str>) -> Change {
    Change::Run(RunChange {
        run,
        transition: RunTransition {
            from: Some(from),
            to,
            at,
            reason: format!("run {}", to.as_str().to_lowercase()),
            actor: Actor::Scheduler,
        },
        error: error.map(str::to_owned),
    })
}

/// An offer of `task` to `queue`, ready at `ready_at`, leased for [`LEASE`]
/// when claimed, with a payload naming the task.
pub fn offer(task: TaskId, run: RunId, queue: &str, ready_at: Timestamp) -> Change {
    Change::Offer(Offer {
        task,
        run,
        queue: queue.to_owned(),
        ready_at,
        lease_ms: LEASE.as_millis() as u64,
        payload: format!(r#"{{"task":"{task}"}}"#),
    })
}

/// A lease call of worker `w2` on server `server`.
pub fn claim_request(queues: &[&str], max: usize, now: Timestamp, server: &str) -> ClaimRequest {
    ClaimRequest {
        queues: queues.iter().map(|q| (*q).to_owned()).collect(),
        worker: "w2".to_owned(),
        max,
        now,
        server: server.to_owned(),
    }
}

/// A renewal at `at` without progress.
pub fn renewal(task: TaskId, token: LeaseToken, at: Timestamp) -> Renewal {
    Renewal { task, token, at, progress: None, details: None }
}

// ---------------------------------------------------------------------------
// Reading and asserting

async fn apply<S: Store>(store: &S, changes: Vec<Change>) -> Vec<Outcome> {
    let n = changes.len();
    let outcomes = store.apply(changes).await.expect("the batch should commit");
    assert_eq!(outcomes.len(), n, "one outcome per change");
    outcomes
}

async fn apply_ok<S: Store>(store: &S, changes: Vec<Change>) {
    let outcomes = apply(store, changes).await;
    for (i, o) in outcomes.iter().enumerate() {
        assert_eq!(o, &Outcome::Applied, "change #{i} should apply");
    }
}

async fn conflict<S: Store>(store: &S, change: Change) -> String {
    match apply(store, vec![change]).await.pop() {
        Some(Outcome::Conflict(why)) => why,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn detail<S: Store>(store: &S, run: RunId) -> RunDetail {
    store.run_detail(run).await.expect("run_detail").expect("the run exists")
}

fn task(detail: &RunDetail, id: TaskId) -> &TaskRecord {
    detail.tasks.iter().find(|t| t.id == id).expect("the task is in its run")
}

fn log(detail: &RunDetail, id: TaskId) -> &[Transition] {
    detail.transitions.get(&id).map_or(&[], Vec::as_slice)
}

fn attempts(detail: &RunDetail, id: TaskId) -> &[AttemptRecord] {
    detail.attempts.get(&id).map_or(&[], Vec::as_slice)
}

/// `id`'s record as every read that returns run records returns it — `run`,
/// `run_detail`, `task` (of its first task), `runs_by_prefix`, `list_runs`
/// unfiltered and by workflow, status and both, and `active_runs` while it
/// is not finished — asserting that they all agree.
async fn run_everywhere<S: Store>(store: &S, id: RunId) -> RunRecord {
    let run = store.run(id).await.expect("run").expect("the run exists");
    let d = detail(store, id).await;
    let mut reads = vec![("run_detail", Some(d.run.clone()))];
    if let Some(first) = d.tasks.first() {
        reads.push(("task", store.task(first.id).await.expect("task").map(|t| t.run)));
    }
    let find = |runs: Vec<RunRecord>| runs.into_iter().find(|r| r.id == id);
    reads.push((
        "runs_by_prefix",
        find(store.runs_by_prefix(&id.to_string(), 1).await.expect("runs_by_prefix")),
    ));
    let workflow = Some(run.workflow.clone());
    for (name, query) in [
        ("list_runs", RunQuery::default()),
        ("list_runs by workflow", RunQuery { workflow: workflow.clone(), ..Default::default() }),
        ("list_runs by status", RunQuery { statuses: vec![run.status], ..Default::default() }),
        ("list_runs by both", RunQuery { statuses: vec![run.status], workflow, ..Default::default() }),
    ] {
        reads.push((name, find(store.list_runs(query).await.expect("list_runs"))));
    }
    if !run.status.is_terminal() {
        reads.push(("active_runs", find(store.active_runs().await.expect("active_runs"))));
    }
    for (name, read) in reads {
        assert_eq!(read.as_ref(), Some(&run), "{name} reads the run as run() does");
    }
    run
}

async fn create<S: Store>(store: &S, run: NewRun) -> (RunId, Vec<TaskId>) {
    let mut tasks: Vec<_> = run.tasks.iter().map(|t| (t.index, t.id)).collect();
    tasks.sort();
    let id = run.id;
    apply_ok(store, vec![Change::CreateRun(run)]).await;
    (id, tasks.into_iter().map(|(_, id)| id).collect())
}

/// Drives a SUBMITTED task to `status` along the shortest legal path, from
/// time `at`; returns the lease token if it ends RUNNING.
async fn drive<S: Store>(store: &S, task: TaskId, status: TaskStatus, at: Timestamp) -> Option<LeaseToken> {
    use TaskStatus::*;
    let (path, token): (Vec<Change>, Option<LeaseToken>) = match status {
        Submitted => (vec![], None),
        Blocked => (vec![plain(task, 0, Submitted, Blocked, at)], None),
        Pending => (vec![plain(task, 0, Submitted, Pending, at)], None),
        Running => {
            let (s, token) = start(task, 1, at);
            (vec![plain(task, 0, Submitted, Pending, at), s], Some(token))
        }
        Completed | Failed | Canceled => {
            let (s, token) = start(task, 1, at);
            let e = end(task, token, 1, status, at, AttemptResult::default());
            (vec![plain(task, 0, Submitted, Pending, at), s, e], None)
        }
        Skipped | Abandoned => {
            (vec![plain(task, 0, Submitted, Blocked, at), plain(task, 0, Blocked, status, at)], None)
        }
    };
    apply_ok(store, path).await;
    token
}

/// The change that moves a task in `from` to `to`, with the update that fits.
fn change_for(
    task: TaskId,
    from: TaskStatus,
    to: TaskStatus,
    token: Option<LeaseToken>,
    at: Timestamp,
) -> Change {
    if to == TaskStatus::Running {
        start(task, 9, at).0
    } else if from == TaskStatus::Running {
        let result =
            AttemptResult { exit_code: Some(3), error: Some("boom".into()), outputs: BTreeMap::new() };
        end(task, token.unwrap_or_else(LeaseToken::random), 1, to, at, result)
    } else {
        plain(task, 1, from, to, at)
    }
}

fn legal_task_pairs() -> Vec<(TaskStatus, TaskStatus)> {
    let mut pairs = Vec::new();
    for from in TaskStatus::ALL {
        for to in TaskStatus::ALL {
            if from.can_become(to) {
                pairs.push((from, to));
            }
        }
    }
    pairs
}

// ---------------------------------------------------------------------------
// The checks

/// A created run reads back whole: run, tasks by index, creation transitions,
/// the spec source; nothing for unknown ids.
pub async fn create_and_read_round_trip<S: Store>(store: Arc<S>) {
    let at = t(0);
    let mut run = new_run("etl", 3, at);
    run.tasks[1].queue = Some("gpu".into());
    run.tasks.reverse(); // the store orders by index, not by arrival
    let expected_tasks: BTreeMap<u32, NewTask> = run.tasks.iter().map(|t| (t.index, t.clone())).collect();
    let created = run.clone();
    let (id, ids) = create(&*store, run).await;

    let expected = RunRecord {
        id,
        workflow: "etl".into(),
        status: RunStatus::Queued,
        trigger: "manual".into(),
        params: created.params.clone(),
        owner: created.owner.clone(),
        spec_path: created.spec_path.clone(),
        submitted_at: at,
        started_at: None,
        finished_at: None,
        error: None,
        cancel_requested_by: None,
        schedule_tick: None,
    };
    assert_eq!(store.run(id).await.unwrap(), Some(expected.clone()));
    assert_eq!(store.spec_source(id).await.unwrap().as_deref(), Some(created.spec_source.as_str()));

    let d = detail(&*store, id).await;
    assert_eq!(d.run, expected);
    assert_eq!(d.run_transitions, vec![created.transition.clone()]);
    assert_eq!(d.tasks.iter().map(|t| t.index).collect::<Vec<_>>(), vec![0, 1, 2], "tasks by index");
    assert_eq!(d.tasks.iter().map(|t| t.id).collect::<Vec<_>>(), ids);
    for record in &d.tasks {
        let new = &expected_tasks[&record.index];
        let want = TaskRecord {
            id: new.id,
            run: id,
            index: new.index,
            name: new.name.clone(),
            status: TaskStatus::Submitted,
            attempt: 0,
            max_attempts: 3,
            queue: new.queue.clone(),
            submitted_at: at,
            started_at: None,
            finished_at: None,
            not_before: None,
            lease: None,
            progress: None,
            progress_at: None,
            exit_code: None,
            error: None,
            outputs: BTreeMap::new(),
            details: None,
        };
        assert_eq!(record, &want);
        assert_eq!(log(&d, new.id), std::slice::from_ref(&new.transition));
    }
    assert!(d.attempts.is_empty());

    let unknown = RunId::new(t(1));
    assert_eq!(store.run(unknown).await.unwrap(), None);
    assert_eq!(store.run_detail(unknown).await.unwrap(), None);
    assert_eq!(store.spec_source(unknown).await.unwrap(), None);
    assert_eq!(store.apply(vec![]).await.unwrap(), vec![], "an empty batch is fine");
}

/// Creating a run whose id exists is refused, and the existing run stays.
pub async fn duplicate_run_is_a_conflict<S: Store>(store: Arc<S>) {
    let run = new_run("etl", 2, t(0));
    let mut again = new_run("other", 1, t(5));
    again.id = run.id;
    let (id, _) = create(&*store, run).await;
    let before = detail(&*store, id).await;
    let why = conflict(&*store, Change::CreateRun(again)).await;
    assert!(why.contains("already exists"), "{why}");
    assert_eq!(detail(&*store, id).await, before);
}

/// A run changes owner only from the owner the adopter saw, and never once
/// it is finished: two servers can never both take one over.
pub async fn adopting_a_run_needs_its_current_owner<S: Store>(store: Arc<S>) {
    let (id, _) = create(&*store, new_run("etl", 1, t(0))).await;
    let adopt = |from: Option<&str>, to: &str| {
        Change::AdoptRun(AdoptRun { run: id, from: from.map(str::to_owned), to: to.to_owned() })
    };
    let why = conflict(&*store, adopt(Some("someone-else"), "server:b")).await;
    assert!(why.contains("no longer owned"), "{why}");
    apply_ok(&*store, vec![adopt(Some("local:test:1"), "server:a")]).await;
    assert_eq!(detail(&*store, id).await.run.owner.as_deref(), Some("server:a"));
    // The second adopter saw the old owner too late.
    conflict(&*store, adopt(Some("local:test:1"), "server:b")).await;
    let finished = RunChange {
        run: id,
        transition: RunTransition {
            from: Some(RunStatus::Queued),
            to: RunStatus::Canceled,
            at: t(10),
            reason: "canceled".to_owned(),
            actor: Actor::User("alice".to_owned()),
        },
        error: None,
    };
    apply_ok(&*store, vec![Change::Run(finished)]).await;
    conflict(&*store, adopt(Some("server:a"), "server:b")).await;
    assert_eq!(detail(&*store, id).await.run.owner.as_deref(), Some("server:a"));
}

/// Every pair of the transition table applies, writes its transition row and
/// the columns that go with the new status.
pub async fn every_legal_task_transition_applies_with_its_row<S: Store>(store: Arc<S>) {
    let pairs = legal_task_pairs();
    let (run, ids) = create(&*store, new_run("table", pairs.len() as u32, t(0))).await;
    for (&(from, to), &id) in pairs.iter().zip(&ids) {
        let token = drive(&*store, id, from, t(10)).await;
        let before = detail(&*store, run).await;
        let change = change_for(id, from, to, token, t(20));
        let Change::Task(TaskChange { transition: want, .. }) = &change else { unreachable!() };
        let want = want.clone();
        assert_eq!(apply(&*store, vec![change]).await, vec![Outcome::Applied], "{from} -> {to}");

        let after = detail(&*store, run).await;
        let rec = task(&after, id);
        assert_eq!(rec.status, to, "{from} -> {to}");
        let mut want_log = log(&before, id).to_vec();
        want_log.push(want);
        assert_eq!(log(&after, id), want_log, "{from} -> {to} appends exactly its row");
        assert_eq!(rec.finished_at.is_some(), to.is_terminal(), "{from} -> {to}: finished_at iff terminal");
        assert_eq!(rec.lease.is_some(), to == TaskStatus::Running, "{from} -> {to}: lease iff RUNNING");
        if to == TaskStatus::Running {
            assert_eq!(rec.attempt, 9);
            let last = attempts(&after, id).last().expect("a start opens an attempt");
            assert_eq!((last.attempt, last.ended_at, last.outcome), (9, None, None));
        }
        if from == TaskStatus::Running {
            let last = attempts(&after, id).last().expect("the attempt record");
            assert_eq!(last.ended_at, Some(t(20)), "{from} -> {to} closes the attempt");
            let outcome = if to == TaskStatus::Pending { TaskStatus::Failed } else { to };
            assert_eq!(last.outcome, Some(outcome), "a retried attempt failed");
            assert_eq!((last.exit_code, last.error.as_deref()), (Some(3), Some("boom")));
            assert_eq!((rec.exit_code, rec.error.as_deref()), (Some(3), Some("boom")));
            assert_eq!(
                rec.not_before,
                (to == TaskStatus::Pending).then(|| t(20).saturating_add(Duration::from_secs(5)))
            );
        }
        // Other tasks are untouched.
        for other in before.tasks.iter().filter(|t| t.id != id) {
            assert_eq!(task(&after, other.id), other);
        }
    }
}

/// Every pair of the run table applies with its row; RUNNING sets
/// `started_at`, a terminal status `finished_at` and the error.
pub async fn every_legal_run_transition_applies_with_its_row<S: Store>(store: Arc<S>) {
    for from in RunStatus::ALL {
        for to in RunStatus::ALL.into_iter().filter(|to| from.can_become(*to)) {
            let (run, _) = create(&*store, new_run("runs", 0, t(0))).await;
            if from == RunStatus::Running {
                apply_ok(&*store, vec![run_change(run, RunStatus::Queued, RunStatus::Running, t(5), None)])
                    .await;
            }
            let before = detail(&*store, run).await;
            let error = (to == RunStatus::Failed).then_some("step-3 failed");
            let change = run_change(run, from, to, t(10), error);
            let Change::Run(RunChange { transition: want, .. }) = &change else { unreachable!() };
            let want = want.clone();
            assert_eq!(apply(&*store, vec![change]).await, vec![Outcome::Applied], "{from} -> {to}");
            let after = detail(&*store, run).await;
            assert_eq!(after.run.status, to);
            let mut want_log = before.run_transitions.clone();
            want_log.push(want);
            assert_eq!(after.run_transitions, want_log, "{from} -> {to}");
            let started = match (from, to) {
                (RunStatus::Running, _) => Some(t(5)),
                (_, RunStatus::Running) => Some(t(10)),
                _ => None,
            };
            assert_eq!(after.run.started_at, started, "{from} -> {to}");
            assert_eq!(after.run.finished_at, to.is_terminal().then_some(t(10)), "{from} -> {to}");
            assert_eq!(after.run.error.as_deref(), error);
            assert_eq!(store.run(run).await.unwrap().as_ref(), Some(&after.run));
        }
    }
}

/// A change that breaks the table, or pairs a transition with the wrong
/// update, is a bug in the caller: the batch fails whole, writing nothing.
pub async fn invalid_changes_fail_the_whole_batch_and_write_nothing<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let (run, ids) = create(&*store, new_run("bad", 3, t(0))).await;
    let (a, b) = (ids[0], ids[1]);
    drive(&*store, b, Pending, t(1)).await;
    let before = detail(&*store, run).await;

    let token = LeaseToken::random();
    let lease = Lease { token, started_at: t(2), last_heartbeat_at: t(2), expires_at: t(3) };
    let task_change = |from: Option<TaskStatus>, to, attempt, update| {
        Change::Task(TaskChange {
            task: b,
            transition: Transition {
                attempt,
                from,
                to,
                at: t(2),
                reason: "x".into(),
                actor: Actor::Scheduler,
            },
            update,
        })
    };
    let bad = [
        ("not in the table", plain(b, 0, Pending, Completed, t(2))),
        ("from a terminal status", plain(b, 0, Completed, Pending, t(2))),
        ("Plain for a start", plain(b, 1, Pending, Running, t(2))),
        (
            "Start for a plain change",
            task_change(Some(Pending), Canceled, 1, TaskUpdate::Start { lease, worker: "w".into() }),
        ),
        (
            "EndAttempt outside RUNNING",
            end(b, token, 1, Pending, t(2), AttemptResult::default()).retarget(Pending, Canceled),
        ),
        ("Plain out of RUNNING", plain(b, 1, Running, Completed, t(2))),
        ("no from-status", task_change(None, Pending, 0, TaskUpdate::Plain)),
        (
            "a start of attempt 0",
            task_change(Some(Pending), Running, 0, TaskUpdate::Start { lease, worker: "w".into() }),
        ),
        (
            "retry_at on a completion",
            task_change(
                Some(Running),
                Completed,
                1,
                TaskUpdate::EndAttempt { token, result: AttemptResult::default(), retry_at: Some(t(9)) },
            ),
        ),
        (
            "a run change out of the table",
            run_change(run, RunStatus::Completed, RunStatus::Running, t(2), None),
        ),
        ("a run created RUNNING", {
            let mut r = new_run("bad", 0, t(2));
            r.transition.to = RunStatus::Running;
            Change::CreateRun(r)
        }),
        ("a task created PENDING", {
            let mut r = new_run("bad", 1, t(2));
            r.tasks[0].transition.to = Pending;
            Change::CreateRun(r)
        }),
    ];
    for (what, change) in bad {
        // A valid change first: it must not be written either.
        let batch = vec![plain(a, 0, Submitted, Pending, t(2)), change];
        match store.apply(batch).await {
            Err(StoreError::InvalidChange(msg)) => {
                assert!(msg.contains("#1"), "{what}: names the change: {msg}")
            }
            other => panic!("{what}: expected InvalidChange, got {other:?}"),
        }
        assert_eq!(detail(&*store, run).await, before, "{what}: nothing written");
    }
}

/// A change expecting another status than the stored one is refused and
/// writes nothing.
pub async fn wrong_from_status_is_a_conflict_and_changes_nothing<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let (run, ids) = create(&*store, new_run("cas", 2, t(0))).await;
    let before = detail(&*store, run).await;
    let why = conflict(&*store, plain(ids[0], 0, Pending, Canceled, t(1))).await;
    assert_eq!(why, format!("task {} is SUBMITTED, not PENDING", ids[0]));
    let why = conflict(&*store, start(ids[0], 1, t(1)).0).await;
    assert!(why.contains("is SUBMITTED, not PENDING"), "{why}");
    let why = conflict(&*store, plain(TaskId::new(t(0)), 0, Submitted, Pending, t(1))).await;
    assert!(why.contains("does not exist"), "{why}");
    let why = conflict(&*store, run_change(run, RunStatus::Running, RunStatus::Completed, t(1), None)).await;
    assert_eq!(why, format!("run {run} is QUEUED, not RUNNING"));
    let why =
        conflict(&*store, run_change(RunId::new(t(0)), RunStatus::Queued, RunStatus::Running, t(1), None))
            .await;
    assert!(why.contains("does not exist"), "{why}");
    assert_eq!(detail(&*store, run).await, before);
}

/// Only the current lease token may heartbeat or end the attempt, including
/// after a retry handed the task a new lease.
pub async fn stale_lease_tokens_change_nothing<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let (run, ids) = create(&*store, new_run("fence", 1, t(0))).await;
    let id = ids[0];
    let first = drive(&*store, id, Running, t(1)).await.unwrap();
    let before = detail(&*store, run).await;
    let stranger = LeaseToken::random();
    let why = conflict(&*store, end(id, stranger, 1, Completed, t(2), AttemptResult::default())).await;
    assert_eq!(why, format!("stale lease token for task {id}"));
    let why = conflict(&*store, heartbeat(id, stranger, t(2), t(99_000), None)).await;
    assert_eq!(why, format!("stale lease token for task {id}"));
    assert_eq!(detail(&*store, run).await, before);

    // Retried and started again: the first lease is dead.
    apply_ok(&*store, vec![end(id, first, 1, Pending, t(3), AttemptResult::default())]).await;
    let (s, second) = start(id, 2, t(4));
    apply_ok(&*store, vec![s]).await;
    let before = detail(&*store, run).await;
    let why = conflict(&*store, end(id, first, 1, Completed, t(5), AttemptResult::default())).await;
    assert_eq!(why, format!("stale lease token for task {id}"));
    let why = conflict(&*store, heartbeat(id, first, t(5), t(99_000), None)).await;
    assert_eq!(why, format!("stale lease token for task {id}"));
    assert_eq!(detail(&*store, run).await, before);
    assert_eq!(task(&before, id).lease.as_ref().map(|l| l.token), Some(second));
}

/// Whatever is tried on a task in a terminal status — a second completion
/// with its old token, any change from any status, a heartbeat — is refused,
/// and its record and log stay as they were.
pub async fn terminal_tasks_never_change_again<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let terminal = [Completed, Failed, Canceled, Skipped, Abandoned];
    let (run, ids) = create(&*store, new_run("done", terminal.len() as u32, t(0))).await;
    for (&status, &id) in terminal.iter().zip(&ids) {
        drive(&*store, id, status, t(1)).await;
    }
    let before = detail(&*store, run).await;
    for (&status, &id) in terminal.iter().zip(&ids) {
        assert_eq!(task(&before, id).status, status);
        for (from, to) in legal_task_pairs() {
            let why = conflict(&*store, change_for(id, from, to, None, t(2))).await;
            assert_eq!(why, format!("task {id} is {status}, not {from}"), "{status}: {from} -> {to}");
        }
        let why = conflict(&*store, heartbeat(id, LeaseToken::random(), t(2), t(99_000), None)).await;
        assert_eq!(why, format!("task {id} is {status}, not RUNNING"));
    }
    assert_eq!(detail(&*store, run).await, before);

    // The holder of the lease that completed a task cannot complete it twice.
    let (run, ids) = create(&*store, new_run("twice", 1, t(0))).await;
    let id = ids[0];
    let token = drive(&*store, id, Running, t(1)).await.unwrap();
    apply_ok(&*store, vec![end(id, token, 1, Completed, t(2), AttemptResult::default())]).await;
    let before = detail(&*store, run).await;
    for to in [Completed, Failed, Canceled, Pending] {
        let why = conflict(&*store, end(id, token, 1, to, t(3), AttemptResult::default())).await;
        assert_eq!(why, format!("task {id} is COMPLETED, not RUNNING"));
    }
    assert_eq!(detail(&*store, run).await, before);
}

/// A start writes the status, start time, heartbeat, expiry, worker and
/// attempt record together; an end clears the lease and keeps the start.
pub async fn running_tasks_always_carry_start_heartbeat_and_expiry<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let (run, ids) = create(&*store, new_run("lease", 1, t(0))).await;
    let id = ids[0];
    drive(&*store, id, Pending, t(1)).await;
    let token = LeaseToken::random();
    apply_ok(&*store, vec![start_with(id, 1, t(2), token, t(32_000)).0]).await;
    let d = detail(&*store, run).await;
    let rec = task(&d, id);
    assert_eq!(rec.status, Running);
    assert_eq!(rec.attempt, 1);
    assert_eq!(rec.started_at, Some(t(2)));
    assert_eq!(
        rec.lease,
        Some(StoredLease { token, worker: "w1".into(), last_heartbeat_at: t(2), expires_at: t(32_000) })
    );
    assert_eq!(
        attempts(&d, id),
        [AttemptRecord {
            task: id,
            attempt: 1,
            worker: "w1".into(),
            started_at: t(2),
            ended_at: None,
            outcome: None,
            exit_code: None,
            error: None
        }]
    );
    let outputs = BTreeMap::from([("rows".to_owned(), "42".to_owned())]);
    let result = AttemptResult { exit_code: Some(0), error: None, outputs: outputs.clone() };
    apply_ok(&*store, vec![end(id, token, 1, Completed, t(3), result)]).await;
    let d = detail(&*store, run).await;
    let rec = task(&d, id);
    assert_eq!(
        (rec.status, rec.lease.as_ref(), rec.started_at, rec.finished_at),
        (Completed, None, Some(t(2)), Some(t(3)))
    );
    assert_eq!((rec.exit_code, &rec.outputs), (Some(0), &outputs));
}

/// Heartbeats move the expiry forward only, record progress when they carry
/// it, and are refused for stale tokens and tasks not RUNNING.
pub async fn heartbeats_extend_and_never_shorten_leases<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let (run, ids) = create(&*store, new_run("beat", 2, t(0))).await;
    let (id, idle) = (ids[0], ids[1]);
    drive(&*store, idle, Pending, t(0)).await;
    drive(&*store, id, Pending, t(0)).await;
    let token = LeaseToken::random();
    apply_ok(&*store, vec![start_with(id, 1, t(10), token, t(40_000)).0]).await;
    let lease = |d: &RunDetail| task(d, id).lease.clone().unwrap();

    let progress = Progress { percent: 42.5, message: Some("copying part 3".into()) };
    apply_ok(&*store, vec![heartbeat(id, token, t(20_000), t(50_000), Some(progress.clone()))]).await;
    let d = detail(&*store, run).await;
    assert_eq!((lease(&d).last_heartbeat_at, lease(&d).expires_at), (t(20_000), t(50_000)));
    assert_eq!(task(&d, id).progress.as_ref(), Some(&progress));
    assert_eq!(task(&d, id).progress_at, Some(t(20_000)));

    // A late, reordered heartbeat shortens nothing; one without progress keeps it.
    apply_ok(&*store, vec![heartbeat(id, token, t(15_000), t(45_000), None)]).await;
    let d = detail(&*store, run).await;
    assert_eq!((lease(&d).last_heartbeat_at, lease(&d).expires_at), (t(20_000), t(50_000)));
    assert_eq!(task(&d, id).progress.as_ref(), Some(&progress));

    let before = detail(&*store, run).await;
    let why = conflict(&*store, heartbeat(id, LeaseToken::random(), t(30_000), t(60_000), None)).await;
    assert!(why.contains("stale lease token"), "{why}");
    let why = conflict(&*store, heartbeat(idle, token, t(30_000), t(60_000), None)).await;
    assert_eq!(why, format!("task {idle} is PENDING, not RUNNING"));
    let why = conflict(&*store, heartbeat(TaskId::new(t(0)), token, t(30_000), t(60_000), None)).await;
    assert!(why.contains("does not exist"), "{why}");
    assert_eq!(detail(&*store, run).await, before);
    assert_eq!(task(&before, id).status, Running, "heartbeats are not transitions");
    assert_eq!(log(&before, id).len(), 3);

    // A new start clears the previous attempt's progress.
    apply_ok(&*store, vec![end(id, token, 1, Pending, t(31_000), AttemptResult::default())]).await;
    apply_ok(&*store, vec![start(id, 2, t(32_000)).0]).await;
    assert_eq!(task(&detail(&*store, run).await, id).progress, None);
}

/// Heartbeats keep the latest details (only when they carry some, across
/// attempts) and, when asked, a sample of the progress history.
pub async fn heartbeats_keep_details_and_progress_samples<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let (run, ids) = create(&*store, new_run("beat", 1, t(0))).await;
    let id = ids[0];
    drive(&*store, id, Pending, t(0)).await;
    let token = LeaseToken::random();
    apply_ok(&*store, vec![start_with(id, 1, t(10), token, t(40_000)).0]).await;
    let beat = |at: i64, pct: f32, sample: bool, details: Option<serde_json::Value>| {
        let progress = Some(Progress { percent: pct, message: Some(format!("at {pct}")) });
        let Change::Heartbeat(mut hb) = heartbeat(id, token, t(at), t(at + 30_000), progress) else {
            unreachable!()
        };
        hb.sample = sample;
        hb.details = details;
        Change::Heartbeat(hb)
    };
    let checkpoint = serde_json::json!({"offset": 1200});
    apply_ok(&*store, vec![beat(1_000, 10.0, true, Some(checkpoint.clone()))]).await;
    apply_ok(&*store, vec![beat(2_000, 12.0, false, None)]).await;
    apply_ok(&*store, vec![beat(3_000, 30.0, true, None)]).await;
    let d = detail(&*store, run).await;
    assert_eq!(task(&d, id).details.as_ref(), Some(&checkpoint), "a heartbeat without details keeps them");
    let samples = store.progress_samples(id).await.unwrap();
    let points: Vec<(u32, Timestamp, f32)> = samples.iter().map(|s| (s.attempt, s.at, s.percent)).collect();
    assert_eq!(points, vec![(1, t(1_000), 10.0), (1, t(3_000), 30.0)]);
    assert_eq!(samples[1].message.as_deref(), Some("at 30"));
    // The checkpoint outlives the attempt, for the next one to resume from.
    apply_ok(&*store, vec![end(id, token, 1, Pending, t(4_000), AttemptResult::default())]).await;
    apply_ok(&*store, vec![start(id, 2, t(5_000)).0]).await;
    assert_eq!(task(&detail(&*store, run).await, id).details.as_ref(), Some(&checkpoint));
    assert!(store.progress_samples(TaskId::new(t(0))).await.unwrap().is_empty());
}

/// RUNNING -> PENDING ends the attempt with its error and exit code, sets the
/// retry time, and the next start is a new attempt; both records stay.
pub async fn retry_keeps_the_failed_attempt_record<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let (run, ids) = create(&*store, new_run("retry", 1, t(0))).await;
    let id = ids[0];
    let first = drive(&*store, id, Running, t(1)).await.unwrap();
    let failed =
        AttemptResult { exit_code: Some(1), error: Some("exit code 1".into()), outputs: BTreeMap::new() };
    let mut retry = end(id, first, 1, Pending, t(2), failed);
    if let Change::Task(tc) = &mut retry {
        tc.transition.reason = "attempt 1 failed: exit code 1".into();
    }
    apply_ok(&*store, vec![retry]).await;
    let d = detail(&*store, run).await;
    let rec = task(&d, id);
    assert_eq!((rec.status, rec.attempt, rec.lease.as_ref()), (Pending, 1, None));
    assert_eq!(rec.not_before, Some(t(2).saturating_add(Duration::from_secs(5))));
    assert_eq!(rec.finished_at, None, "a retry is not the end");
    assert_eq!((rec.exit_code, rec.error.as_deref()), (Some(1), Some("exit code 1")));
    assert_eq!(log(&d, id).last().unwrap().reason, "attempt 1 failed: exit code 1");

    let why = conflict(&*store, start(id, 1, t(3)).0).await;
    assert!(why.contains("attempt 1 does not follow its current attempt 1"), "{why}");

    let (s, second) = start(id, 2, t(8_000));
    apply_ok(&*store, vec![s]).await;
    let rec = task(&detail(&*store, run).await, id).clone();
    assert_eq!((rec.attempt, rec.not_before, rec.exit_code, rec.error), (2, None, None, None));
    let outputs = BTreeMap::from([("x".to_owned(), "1".to_owned())]);
    let ok = AttemptResult { exit_code: Some(0), error: None, outputs: outputs.clone() };
    apply_ok(&*store, vec![end(id, second, 2, Completed, t(9_000), ok)]).await;

    let d = detail(&*store, run).await;
    let rec = task(&d, id);
    assert_eq!((rec.status, rec.attempt, rec.exit_code, &rec.outputs), (Completed, 2, Some(0), &outputs));
    let tries = attempts(&d, id);
    assert_eq!(tries.len(), 2);
    assert_eq!(
        tries[0],
        AttemptRecord {
            task: id,
            attempt: 1,
            worker: "w1".into(),
            started_at: t(1),
            ended_at: Some(t(2)),
            outcome: Some(Failed),
            exit_code: Some(1),
            error: Some("exit code 1".into()),
        }
    );
    assert_eq!((tries[1].attempt, tries[1].outcome, tries[1].ended_at), (2, Some(Completed), Some(t(9_000))));
    let steps: Vec<_> = log(&d, id).iter().map(|t| (t.attempt, t.from, t.to)).collect();
    assert_eq!(
        steps,
        [
            (0, None, Submitted),
            (0, Some(Submitted), Pending),
            (1, Some(Pending), Running),
            (1, Some(Running), Pending),
            (2, Some(Pending), Running),
            (2, Some(Running), Completed),
        ]
    );
}

/// `task` reads one task whole — record, run, log, attempts — exactly as
/// `run_detail` shows it, in every phase: fresh, running with progress,
/// retried, finished; and nothing for an unknown id.
pub async fn task_reads_one_task_as_its_run_shows_it<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let (run, ids) = create(&*store, new_run("one", 3, t(0))).await;
    let (other_run, _) = create(&*store, new_run("two", 2, t(1))).await;
    let id = ids[1];
    let check = |d: RunDetail, got: Option<TaskDetail>| {
        let got = got.expect("the task exists");
        assert_eq!(got.run, d.run);
        assert_eq!(&got.task, task(&d, id));
        assert_eq!(got.transitions, log(&d, id));
        assert_eq!(got.attempts, attempts(&d, id));
    };
    check(detail(&*store, run).await, store.task(id).await.unwrap());

    let first = drive(&*store, id, Running, t(2)).await.unwrap();
    let p = Progress::new(40.0, Some("half way".into())).unwrap();
    apply_ok(&*store, vec![heartbeat(id, first, t(3), t(3).saturating_add(LEASE), Some(p))]).await;
    let got = store.task(id).await.unwrap();
    assert_eq!(got.as_ref().map(|g| g.task.lease.is_some()), Some(true), "running: with its lease");
    check(detail(&*store, run).await, got);

    let failed = AttemptResult { exit_code: Some(2), error: Some("boom".into()), outputs: BTreeMap::new() };
    apply_ok(&*store, vec![end(id, first, 1, Pending, t(4), failed)]).await;
    let (s, second) = start(id, 2, t(6_000));
    apply_ok(&*store, vec![s, end(id, second, 2, Completed, t(7_000), AttemptResult::default())]).await;
    let got = store.task(id).await.unwrap();
    assert_eq!(got.as_ref().map(|g| (g.task.status, g.attempts.len())), Some((Completed, 2)));
    check(detail(&*store, run).await, got);

    assert_eq!(store.task(TaskId::new(t(5))).await.unwrap(), None);
    assert!(detail(&*store, other_run).await.tasks.iter().all(|t| t.id != id));
}

/// The reaper's reads: RUNNING tasks whose lease ran out before `now`,
/// oldest expiry first, and the next expiry to wake at.
pub async fn expired_leases_and_next_expiry<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    assert_eq!(store.next_lease_expiry().await.unwrap(), None);
    let (run, ids) = create(&*store, new_run("reap", 4, t(0))).await;
    let mut tokens = Vec::new();
    // Started out of expiry order; the fourth stays PENDING.
    for (&id, expires) in ids.iter().zip([20_000, 10_000, 30_000]) {
        drive(&*store, id, Pending, t(0)).await;
        let (s, token) = start_with(id, 1, t(1), LeaseToken::random(), t(expires));
        apply_ok(&*store, vec![s]).await;
        tokens.push(token);
    }
    assert_eq!(store.next_lease_expiry().await.unwrap(), Some(t(10_000)));
    assert_eq!(store.expired_leases(t(10_000), 10).await.unwrap(), vec![], "expired means before now");

    let expired = store.expired_leases(t(25_000), 10).await.unwrap();
    assert_eq!(
        expired.iter().map(|e| e.task).collect::<Vec<_>>(),
        vec![ids[1], ids[0]],
        "oldest expiry first"
    );
    let e = &expired[0];
    assert_eq!((e.run, e.name.as_str(), e.attempt, e.max_attempts), (run, "step-1", 1, 3));
    assert_eq!(
        e.lease,
        StoredLease { token: tokens[1], worker: "w1".into(), last_heartbeat_at: t(1), expires_at: t(10_000) }
    );
    assert_eq!(store.expired_leases(t(25_000), 1).await.unwrap().len(), 1, "limit");

    apply_ok(&*store, vec![end(ids[1], tokens[1], 1, Failed, t(26_000), AttemptResult::default())]).await;
    assert_eq!(store.next_lease_expiry().await.unwrap(), Some(t(20_000)));
    apply_ok(&*store, vec![heartbeat(ids[0], tokens[0], t(26_000), t(40_000), None)]).await;
    assert_eq!(store.next_lease_expiry().await.unwrap(), Some(t(30_000)));
    assert_eq!(
        store.expired_leases(t(35_000), 10).await.unwrap().iter().map(|e| e.task).collect::<Vec<_>>(),
        vec![ids[2]]
    );
    for (i, to) in [(0, Completed), (2, Canceled)] {
        apply_ok(&*store, vec![end(ids[i], tokens[i], 1, to, t(41_000), AttemptResult::default())]).await;
    }
    assert_eq!(store.next_lease_expiry().await.unwrap(), None);
    assert_eq!(store.expired_leases(t(99_000), 10).await.unwrap(), vec![]);
}

/// History: filters by status set and workflow, newest first, and a keyset
/// cursor that pages through without gaps or repeats.
pub async fn list_runs_filters_and_pages_newest_first<S: Store>(store: Arc<S>) {
    use RunStatus::*;
    let plan = [
        ("etl", Queued),
        ("report", Running),
        ("etl", Completed),
        ("etl", Failed),
        ("report", Canceled),
        ("etl", Running),
        ("report", Failed),
    ];
    let mut runs = Vec::new(); // oldest first
    for (i, (workflow, status)) in plan.iter().enumerate() {
        let at = t(1_000 * (i as i64 + 1));
        let (id, _) = create(&*store, new_run(workflow, 0, at)).await;
        let mut path = vec![];
        match status {
            Queued => {}
            Running => path.push(run_change(id, Queued, Running, at, None)),
            Canceled => path.push(run_change(id, Queued, Canceled, at, None)),
            done => {
                path.push(run_change(id, Queued, Running, at, None));
                path.push(run_change(id, Running, *done, at, None));
            }
        }
        apply_ok(&*store, path).await;
        runs.push((id, *workflow, *status));
    }
    let newest_first = |keep: &dyn Fn(&str, RunStatus) -> bool| -> Vec<RunId> {
        runs.iter().rev().filter(|(_, w, s)| keep(w, *s)).map(|(id, _, _)| *id).collect()
    };
    let list = |statuses: Vec<RunStatus>, workflow: Option<&str>, limit: usize, before: Option<RunId>| {
        let store = store.clone();
        let query = RunQuery { statuses, workflow: workflow.map(str::to_owned), limit, before };
        async move { store.list_runs(query).await.unwrap().into_iter().map(|r| r.id).collect::<Vec<_>>() }
    };

    assert_eq!(list(vec![], None, 100, None).await, newest_first(&|_, _| true));
    assert_eq!(
        list(vec![Failed, Canceled], None, 100, None).await,
        newest_first(&|_, s| matches!(s, Failed | Canceled))
    );
    assert_eq!(list(vec![], Some("etl"), 100, None).await, newest_first(&|w, _| w == "etl"));
    assert_eq!(
        list(vec![Failed, Running], Some("report"), 100, None).await,
        newest_first(&|w, s| w == "report" && matches!(s, Failed | Running))
    );
    assert_eq!(list(vec![Completed], Some("nope"), 100, None).await, vec![]);
    assert_eq!(
        list(vec![Failed, Canceled, Running], None, 2, None).await,
        newest_first(&|_, s| s != Queued && s != Completed)[..2]
    );

    // Page through everything, two at a time, and through one filter.
    for statuses in [vec![], vec![Failed, Running]] {
        let want = newest_first(&|_, s| statuses.is_empty() || statuses.contains(&s));
        let mut seen = Vec::new();
        let mut before = None;
        loop {
            let page = list(statuses.clone(), None, 2, before).await;
            assert!(page.len() <= 2);
            if page.is_empty() {
                break;
            }
            before = page.last().copied();
            seen.extend(page);
        }
        assert_eq!(seen, want, "pages of {statuses:?}");
    }

    let active: Vec<RunId> = store.active_runs().await.unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(active, newest_first(&|_, s| matches!(s, Queued | Running)));
    let all = store.list_runs(RunQuery::default()).await.unwrap();
    assert_eq!(all.len(), runs.len(), "limit 0 means a default page");
    assert!(all.iter().all(|r| r.status == runs.iter().find(|(id, _, _)| *id == r.id).unwrap().2));
}

/// Runs are found by any leading part of their id, in either case.
pub async fn runs_by_prefix_finds_runs_by_id_start<S: Store>(store: Arc<S>) {
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(create(&*store, new_run("p", 0, t(1_000 * (i + 1)))).await.0);
    }
    let found = |prefix: String, limit| {
        let store = store.clone();
        async move {
            store.runs_by_prefix(&prefix, limit).await.unwrap().into_iter().map(|r| r.id).collect::<Vec<_>>()
        }
    };
    for &id in &ids {
        let text = id.to_string();
        assert_eq!(found(text.clone(), 10).await, vec![id]);
        assert_eq!(found(text.to_lowercase(), 10).await, vec![id], "case-insensitive");
        // The first 10 characters are the millisecond, distinct per run here.
        assert_eq!(found(text[..10].to_owned(), 10).await, vec![id]);
    }
    let newest_first: Vec<RunId> = ids.iter().rev().copied().collect();
    assert_eq!(found(String::new(), 10).await, newest_first);
    assert_eq!(found(String::new(), 2).await, newest_first[..2]);
    assert_eq!(found(ids[0].to_string()[..4].to_owned(), 10).await, newest_first, "a shared prefix");
    assert_eq!(found("ZZZZ".into(), 10).await, vec![]);
    assert_eq!(found("not-an-id".into(), 10).await, vec![]);
}

/// A conflicting change refuses only itself; the rest of the batch commits.
pub async fn a_conflict_in_a_batch_still_commits_the_others<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let (run, ids) = create(&*store, new_run("mixed", 3, t(0))).await;
    let outcomes = apply(
        &*store,
        vec![
            plain(ids[0], 0, Submitted, Pending, t(1)),
            plain(ids[1], 0, Pending, Canceled, t(1)),
            plain(ids[2], 0, Submitted, Pending, t(1)),
            // Depends on the first change of the same batch.
            start(ids[0], 1, t(2)).0,
        ],
    )
    .await;
    assert!(matches!(&outcomes[1], Outcome::Conflict(why) if why.contains("is SUBMITTED, not PENDING")));
    assert_eq!([&outcomes[0], &outcomes[2], &outcomes[3]], [&Outcome::Applied; 3]);
    let d = detail(&*store, run).await;
    let statuses: Vec<_> = ids.iter().map(|id| task(&d, *id).status).collect();
    assert_eq!(statuses, [Running, Submitted, Pending]);
    assert_eq!(log(&d, ids[1]).len(), 1);
}

/// A batch the database itself rejects (here: a task id used twice) fails
/// whole, and nothing of it is written, not even its earlier changes.
pub async fn a_batch_failing_in_storage_writes_nothing<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let (run, ids) = create(&*store, new_run("dup", 1, t(0))).await;
    let before = detail(&*store, run).await;
    let mut clash = new_run("dup", 2, t(1));
    clash.tasks[1].id = ids[0];
    let clash_id = clash.id;
    let result =
        store.apply(vec![plain(ids[0], 0, Submitted, Pending, t(1)), Change::CreateRun(clash)]).await;
    let err = result.expect_err("a task id used twice must fail the batch");
    assert!(err.is_certainly_not_applied(), "{err}");
    assert_eq!(detail(&*store, run).await, before);
    assert_eq!(store.run(clash_id).await.unwrap(), None);
}

/// Many callers at once: every batch lands, and each caller gets exactly its
/// own outcomes, in its own order.
pub async fn concurrent_batches_all_land_with_their_own_outcomes<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    const CALLERS: usize = 16;
    const EACH: usize = 8;
    let (run, ids) = create(&*store, new_run("fan", (CALLERS * EACH) as u32, t(0))).await;
    let mut callers = tokio::task::JoinSet::new();
    for (c, mine) in ids.chunks(EACH).map(<[TaskId]>::to_vec).enumerate() {
        let store = store.clone();
        callers.spawn(async move {
            let pending: Vec<_> = mine.iter().map(|&id| plain(id, 0, Submitted, Pending, t(1))).collect();
            apply_ok(&*store, pending).await;
            let (starts, tokens): (Vec<_>, Vec<_>) = mine.iter().map(|&id| start(id, 1, t(2))).unzip();
            apply_ok(&*store, starts).await;
            // Each caller's batch ends with a change that must conflict, at a
            // position of its own: the outcomes must not be mixed up.
            let mut ends: Vec<_> = mine
                .iter()
                .zip(&tokens)
                .map(|(&id, &token)| end(id, token, 1, Completed, t(3), AttemptResult::default()))
                .collect();
            let k = c % EACH;
            ends.insert(k + 1, end(mine[k], tokens[k], 1, Completed, t(3), AttemptResult::default()));
            let outcomes = apply(&*store, ends).await;
            for (i, o) in outcomes.iter().enumerate() {
                if i == k + 1 {
                    assert_eq!(o, &Outcome::Conflict(format!("task {} is COMPLETED, not RUNNING", mine[k])));
                } else {
                    assert_eq!(o, &Outcome::Applied, "caller {c}, change {i}");
                }
            }
        });
    }
    while let Some(done) = callers.join_next().await {
        done.expect("a caller panicked");
    }
    let d = detail(&*store, run).await;
    for &id in &ids {
        assert_eq!(task(&d, id).status, Completed);
        assert_eq!(log(&d, id).len(), 4, "SUBMITTED, PENDING, RUNNING, COMPLETED");
        assert_eq!(attempts(&d, id).len(), 1);
    }
}

/// Two executors racing to lease the same tasks: each task goes to exactly
/// one, and the stored lease is the winner's.
pub async fn racing_starts_of_one_task_admit_exactly_one<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let (run, ids) = create(&*store, new_run("race", 40, t(0))).await;
    apply_ok(&*store, ids.iter().map(|&id| plain(id, 0, Submitted, Pending, t(1))).collect()).await;
    let mut racers = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let store = store.clone();
        let ids = ids.clone();
        racers.spawn(async move {
            let mut won = Vec::new();
            // Small batches, so the racers interleave.
            for chunk in ids.chunks(5) {
                let (starts, tokens): (Vec<_>, Vec<_>) = chunk.iter().map(|&id| start(id, 1, t(2))).unzip();
                let outcomes = apply(&*store, starts).await;
                for ((o, &id), token) in outcomes.iter().zip(chunk).zip(tokens) {
                    if o.is_applied() {
                        won.push((id, token));
                    } else {
                        assert_eq!(o, &Outcome::Conflict(format!("task {id} is RUNNING, not PENDING")));
                    }
                }
            }
            won
        });
    }
    let mut winners = BTreeMap::new();
    while let Some(won) = racers.join_next().await {
        for (id, token) in won.expect("a racer panicked") {
            assert!(winners.insert(id, token).is_none(), "task {id} was started twice");
        }
    }
    assert_eq!(winners.len(), ids.len());
    let d = detail(&*store, run).await;
    for (id, token) in winners {
        assert_eq!(task(&d, id).lease.as_ref().map(|l| l.token), Some(token));
        assert_eq!(attempts(&d, id).len(), 1);
        assert_eq!(log(&d, id).len(), 3);
    }
}

/// A change dated before the task's (or run's) last change is refused; the
/// same instant is fine.
pub async fn timestamps_never_go_backwards<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let (run, ids) = create(&*store, new_run("clock", 1, t(100))).await;
    let id = ids[0];
    let before = detail(&*store, run).await;
    let why = conflict(&*store, plain(id, 0, Submitted, Pending, t(50))).await;
    assert!(why.contains("never go backwards"), "{why}");
    assert_eq!(detail(&*store, run).await, before);
    apply_ok(&*store, vec![plain(id, 0, Submitted, Pending, t(100))]).await;
    let why = conflict(&*store, start(id, 1, t(99)).0).await;
    assert!(why.contains("never go backwards"), "{why}");
    let (s, token) = start(id, 1, t(200));
    apply_ok(&*store, vec![s]).await;
    let why = conflict(&*store, end(id, token, 1, Completed, t(150), AttemptResult::default())).await;
    assert!(why.contains("never go backwards"), "{why}");
    apply_ok(&*store, vec![end(id, token, 1, Completed, t(200), AttemptResult::default())]).await;

    let why = conflict(&*store, run_change(run, RunStatus::Queued, RunStatus::Running, t(50), None)).await;
    assert!(why.contains("never go backwards"), "{why}");
    apply_ok(&*store, vec![run_change(run, RunStatus::Queued, RunStatus::Running, t(100), None)]).await;

    let d = detail(&*store, run).await;
    let times: Vec<_> = log(&d, id).iter().map(|t| t.at).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    assert_eq!(times.len(), 4);
}

/// Helper for building a change whose transition is then retargeted, to
/// produce shapes a correct caller never would.
trait Retarget {
    fn retarget(self, from: TaskStatus, to: TaskStatus) -> Change;
}

impl Retarget for Change {
    fn retarget(mut self, from: TaskStatus, to: TaskStatus) -> Change {
        if let Change::Task(tc) = &mut self {
            tc.transition.from = Some(from);
            tc.transition.to = to;
        }
        self
    }
}

// ---------------------------------------------------------------------------
// Dispatch across servers

/// The server id the dispatch checks claim as; runs of [`new_run`] belong to
/// another owner (`local:test:1`).
const SERVER: &str = "server:b";

async fn claim<S: Store>(store: &S, req: ClaimRequest) -> ClaimOutcome {
    store.claim(req).await.expect("the claim should commit")
}

fn claimed_ids(outcome: &ClaimOutcome) -> Vec<TaskId> {
    outcome.tasks.iter().map(|c| c.task).collect()
}

/// [`new_run`] with remote steps: every task has a queue (`remote`), so it
/// may be offered.
pub fn remote_run(workflow: &str, tasks: u32, at: Timestamp) -> NewRun {
    let mut run = new_run(workflow, tasks, at);
    for task in &mut run.tasks {
        task.queue = Some("remote".to_owned());
    }
    run
}

/// A run of `tasks` PENDING remote tasks (at `at`).
async fn pending_run<S: Store>(store: &S, workflow: &str, tasks: u32, at: Timestamp) -> (RunId, Vec<TaskId>) {
    let (run, ids) = create(store, remote_run(workflow, tasks, at)).await;
    let promote =
        ids.iter().map(|&id| plain(id, 0, TaskStatus::Submitted, TaskStatus::Pending, at)).collect();
    apply_ok(store, promote).await;
    (run, ids)
}

/// The payload [`offer`] gives `task`.
fn payload(task: TaskId) -> String {
    format!(r#"{{"task":"{task}"}}"#)
}

/// A claim takes the ready offers of its queues, oldest `ready_at` first and
/// then in the order offered, at most `max`; each task moves PENDING ->
/// RUNNING under a fresh lease, with its transition row (`attempt N started`
/// by `worker:W`) and attempt record, and the claim hands back the offer's
/// payload. Offers not ready yet stay, and tell when to look again.
pub async fn offers_are_claimed_oldest_ready_first_with_a_lease<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let (run, ids) = pending_run(&*store, "dispatch", 6, t(0)).await;
    apply_ok(
        &*store,
        vec![
            offer(ids[0], run, "cpu", t(10)),
            offer(ids[1], run, "cpu", t(5)),
            offer(ids[2], run, "cpu", t(10)),
            offer(ids[3], run, "gpu", t(1)),
            offer(ids[4], run, "cpu", t(50_000)),
            offer(ids[5], run, "cpu", t(7)),
        ],
    )
    .await;
    let before = detail(&*store, run).await;
    assert!(before.tasks.iter().all(|t| t.status == Pending), "an offer is not a transition");

    let first = claim(&*store, claim_request(&["cpu"], 2, t(20), SERVER)).await;
    assert_eq!(claimed_ids(&first), [ids[1], ids[5]], "oldest ready_at first, at most max");
    assert_eq!(first.next_ready_at, Some(t(50_000)), "the offer not ready yet");

    let second = claim(&*store, claim_request(&["gpu", "cpu", "gpu"], 10, t(20), SERVER)).await;
    assert_eq!(
        claimed_ids(&second),
        [ids[3], ids[0], ids[2]],
        "across queues; equal ready_at in offer order"
    );
    assert_eq!(second.next_ready_at, Some(t(50_000)));

    let none = claim(&*store, claim_request(&["cpu", "gpu"], 10, t(20), SERVER)).await;
    assert!(none.tasks.is_empty());
    assert_eq!(none.next_ready_at, Some(t(50_000)));
    let other = claim(&*store, claim_request(&["io"], 10, t(60_000), SERVER)).await;
    assert!(other.tasks.is_empty() && other.next_ready_at.is_none(), "other queues are not touched");
    assert!(claim(&*store, claim_request(&["cpu"], 0, t(60_000), SERVER)).await.tasks.is_empty(), "max 0");
    let last = claim(&*store, claim_request(&["cpu"], 10, t(50_000), SERVER)).await;
    assert_eq!(claimed_ids(&last), [ids[4]], "ready at its ready_at");
    assert_eq!(last.next_ready_at, None);

    let d = detail(&*store, run).await;
    for c in first.tasks.iter().chain(&second.tasks) {
        assert_eq!((c.run, c.attempt, c.payload.clone()), (run, 1, payload(c.task)));
        let expires = t(20).saturating_add(LEASE);
        assert_eq!(
            (c.lease.started_at, c.lease.last_heartbeat_at, c.lease.expires_at),
            (t(20), t(20), expires)
        );
        let rec = task(&d, c.task);
        assert_eq!((rec.status, rec.attempt, rec.started_at), (Running, 1, Some(t(20))));
        assert_eq!(
            rec.lease,
            Some(StoredLease {
                token: c.lease.token,
                worker: "w2".into(),
                last_heartbeat_at: t(20),
                expires_at: expires
            })
        );
        assert_eq!(
            log(&d, c.task).last(),
            Some(&transition(1, Pending, Running, t(20), "attempt 1 started", Actor::Worker("w2".into())))
        );
        assert_eq!(log(&d, c.task).len(), 3);
        assert_eq!(
            attempts(&d, c.task),
            [AttemptRecord {
                task: c.task,
                attempt: 1,
                worker: "w2".into(),
                started_at: t(20),
                ended_at: None,
                outcome: None,
                exit_code: None,
                error: None
            }]
        );
    }
    let tokens: std::collections::BTreeSet<_> =
        first.tasks.iter().chain(&second.tasks).map(|c| c.lease.token.to_bytes()).collect();
    assert_eq!(tokens.len(), 5, "a fresh token per lease");

    // A claimed lease is an ordinary one: its holder ends the attempt.
    let c = &first.tasks[0];
    apply_ok(&*store, vec![end(c.task, c.lease.token, 1, Completed, t(30), AttemptResult::default())]).await;
    assert_eq!(task(&detail(&*store, run).await, c.task).status, Completed);
}

/// Another server's clock may lag: a claim is dated no earlier than the
/// task's last change, so its log never goes back.
pub async fn a_claim_is_never_dated_before_the_tasks_last_change<S: Store>(store: Arc<S>) {
    let (run, ids) = pending_run(&*store, "skew", 1, t(100)).await;
    let id = ids[0];
    apply_ok(&*store, vec![offer(id, run, "q", t(0))]).await;
    let claimed = claim(&*store, claim_request(&["q"], 1, t(50), SERVER)).await;
    assert_eq!(claimed_ids(&claimed), [id]);
    let lease = claimed.tasks[0].lease;
    assert_eq!((lease.started_at, lease.expires_at), (t(100), t(100).saturating_add(LEASE)));
    let d = detail(&*store, run).await;
    let times: Vec<_> = log(&d, id).iter().map(|t| t.at).collect();
    assert_eq!(times, [t(100), t(100), t(100)]);
    assert_eq!(task(&d, id).started_at, Some(t(100)));
}

/// Two lease calls at once over one queue: no task goes to both, and
/// together they take every offer.
pub async fn concurrent_claims_never_take_one_offer_twice<S: Store>(store: Arc<S>) {
    const TASKS: u32 = 100;
    let (run, ids) = pending_run(&*store, "rush", TASKS, t(0)).await;
    apply_ok(&*store, ids.iter().map(|&id| offer(id, run, "q", t(1))).collect()).await;
    let (a, b) = tokio::join!(
        store.claim(claim_request(&["q"], 60, t(2), SERVER)),
        store.claim(claim_request(&["q"], 60, t(2), "server:c")),
    );
    let (a, b) = (a.expect("claim a"), b.expect("claim b"));
    assert!(a.tasks.len() <= 60 && b.tasks.len() <= 60);
    let mut won = BTreeMap::new();
    for c in a.tasks.iter().chain(&b.tasks) {
        assert!(won.insert(c.task, c.lease.token.to_bytes()).is_none(), "task {} was claimed twice", c.task);
    }
    assert_eq!(won.len(), TASKS as usize, "every offer was taken");
    let d = detail(&*store, run).await;
    for (id, token) in won {
        let rec = task(&d, id);
        assert_eq!(rec.lease.as_ref().map(|l| l.token.to_bytes()), Some(token));
        assert_eq!((log(&d, id).len(), attempts(&d, id).len()), (3, 1));
    }
    assert!(claim(&*store, claim_request(&["q"], 60, t(3), SERVER)).await.tasks.is_empty());
}

/// The offer is what a withdrawal and a claim both take: whichever comes
/// second finds nothing.
pub async fn withdrawals_and_claims_exclude_each_other<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let (run, ids) = pending_run(&*store, "take-back", 2, t(0)).await;
    let (a, b) = (ids[0], ids[1]);
    apply_ok(&*store, vec![offer(a, run, "q", t(1)), offer(b, run, "q", t(1))]).await;

    assert_eq!(claimed_ids(&claim(&*store, claim_request(&["q"], 1, t(2), SERVER)).await), [a]);
    let why = conflict(&*store, Change::Withdraw { task: a }).await;
    assert!(why.contains("was claimed"), "{why}");
    assert_eq!(task(&detail(&*store, run).await, a).status, Running);

    apply_ok(&*store, vec![Change::Withdraw { task: b }]).await;
    assert!(claim(&*store, claim_request(&["q"], 10, t(3), SERVER)).await.tasks.is_empty());
    let why = conflict(&*store, Change::Withdraw { task: b }).await;
    assert!(why.contains("no waiting offer"), "{why}");
    // Withdrawn, the task is its driver's again: it may cancel it.
    apply_ok(&*store, vec![plain(b, 0, Pending, Canceled, t(4))]).await;
    let why = conflict(&*store, Change::Withdraw { task: TaskId::new(t(0)) }).await;
    assert!(why.contains("no waiting offer"), "{why}");
}

/// Only a PENDING task is offered; an offer of it again replaces the one
/// waiting; and when its driver moves it on (skips, cancels or starts it
/// itself) the offer goes with that change.
pub async fn offers_live_only_while_their_task_is_pending<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let (run, ids) = create(&*store, remote_run("offers", 5, t(0))).await;
    let why = conflict(&*store, offer(ids[0], run, "q", t(0))).await;
    assert_eq!(why, format!("task {} is SUBMITTED, not PENDING", ids[0]));
    let why = conflict(&*store, offer(TaskId::new(t(0)), run, "q", t(0))).await;
    assert!(why.contains("does not exist"), "{why}");
    // A step without a queue runs where its run is driven: never offered.
    let (local_run, local) = create(&*store, new_run("local", 1, t(0))).await;
    drive(&*store, local[0], Pending, t(1)).await;
    let why = conflict(&*store, offer(local[0], local_run, "q", t(1))).await;
    assert_eq!(
        why,
        format!(
            "task {} has no queue: it runs where its run is driven, is never offered and gets no posted result",
            local[0]
        )
    );
    for &id in &ids {
        drive(&*store, id, Pending, t(1)).await;
    }

    // Offered again (a resumed driver), with another queue and payload.
    apply_ok(&*store, vec![offer(ids[0], run, "old", t(2))]).await;
    let Change::Offer(mut again) = offer(ids[0], run, "new", t(2)) else { unreachable!() };
    again.payload = r#"{"again":true}"#.to_owned();
    apply_ok(&*store, vec![Change::Offer(again)]).await;
    assert!(claim(&*store, claim_request(&["old"], 10, t(3), SERVER)).await.tasks.is_empty());
    let took = claim(&*store, claim_request(&["new"], 10, t(3), SERVER)).await;
    assert_eq!(claimed_ids(&took), [ids[0]]);
    assert_eq!(took.tasks[0].payload, r#"{"again":true}"#);
    let why = conflict(&*store, offer(ids[0], run, "new", t(4))).await;
    assert_eq!(why, format!("task {} is RUNNING, not PENDING", ids[0]));

    // The driver moves offered tasks on itself: no offer is left behind.
    let rest = &ids[1..];
    apply_ok(&*store, rest.iter().map(|&id| offer(id, run, "q", t(2))).collect()).await;
    let (s, _) = start(rest[2], 1, t(5));
    apply_ok(
        &*store,
        vec![plain(rest[0], 0, Pending, Canceled, t(5)), plain(rest[1], 0, Pending, Skipped, t(5)), s],
    )
    .await;
    assert_eq!(claimed_ids(&claim(&*store, claim_request(&["q"], 10, t(6), SERVER)).await), [rest[3]]);
    for &id in &rest[..3] {
        let why = conflict(&*store, Change::Withdraw { task: id }).await;
        assert!(why.contains("no waiting offer"), "{why}");
    }
}

/// A server that does not drive the run renews a claimed lease by the
/// offer's lease: the new expiry and whether the driver asked to cancel.
/// A stale token or an expired lease is `Stale` and writes nothing.
pub async fn renewals_extend_claimed_leases_and_carry_cancel<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let (run, ids) = pending_run(&*store, "renew", 3, t(0)).await;
    let (id, local, idle) = (ids[0], ids[1], ids[2]);
    apply_ok(&*store, vec![offer(id, run, "q", t(0))]).await;
    let c = claim(&*store, claim_request(&["q"], 1, t(0), SERVER)).await.tasks.remove(0);
    let token = c.lease.token;
    assert_eq!(c.lease.expires_at, t(30_000));
    let renew = |renewals: Vec<Renewal>| {
        let store = store.clone();
        async move { store.renew(renewals).await.expect("renewals commit") }
    };

    let progress = Progress { percent: 25.0, message: Some("a quarter".into()) };
    let checkpoint = serde_json::json!({"page": 7});
    let beat = Renewal {
        progress: Some(progress.clone()),
        details: Some(checkpoint.clone()),
        ..renewal(id, token, t(10_000))
    };
    assert_eq!(
        renew(vec![beat]).await,
        [LeaseState::Held { expires_at: t(40_000), cancel_requested: false }]
    );
    let rec = task(&detail(&*store, run).await, id).clone();
    assert_eq!(rec.lease.as_ref().map(|l| (l.last_heartbeat_at, l.expires_at)), Some((t(10_000), t(40_000))));
    assert_eq!((rec.progress.as_ref(), rec.progress_at), (Some(&progress), Some(t(10_000))));
    assert_eq!(rec.details.as_ref(), Some(&checkpoint));

    let stranger = LeaseToken::random();
    let why = conflict(&*store, Change::RequestCancel { task: id, token: stranger }).await;
    assert_eq!(why, format!("stale lease token for task {id}"));
    let why = conflict(&*store, Change::RequestCancel { task: idle, token }).await;
    assert_eq!(why, format!("task {idle} is PENDING, not RUNNING"));
    apply_ok(&*store, vec![Change::RequestCancel { task: id, token }]).await;
    apply_ok(&*store, vec![Change::RequestCancel { task: id, token }]).await;
    // Several at once, one task twice: each answered in order.
    assert_eq!(
        renew(vec![
            renewal(id, token, t(20_000)),
            renewal(id, stranger, t(20_000)),
            renewal(idle, token, t(20_000)),
            renewal(id, token, t(21_000)),
        ])
        .await,
        [
            LeaseState::Held { expires_at: t(50_000), cancel_requested: true },
            LeaseState::Stale,
            LeaseState::Stale,
            LeaseState::Held { expires_at: t(51_000), cancel_requested: true },
        ]
    );
    let before = detail(&*store, run).await;
    assert_eq!(renew(vec![renewal(id, token, t(51_001))]).await, [LeaseState::Stale], "expired");
    assert_eq!(detail(&*store, run).await, before, "a stale renewal writes nothing");
    assert_eq!(renew(vec![]).await, []);

    // A lease its driver granted is not a claim's: renewals never extend it.
    let (s, local_token) = start(local, 1, t(1));
    apply_ok(&*store, vec![s]).await;
    assert_eq!(renew(vec![renewal(local, local_token, t(2))]).await, [LeaseState::Stale]);

    // The cancel asked of one attempt is not the next one's.
    apply_ok(&*store, vec![end(id, token, 1, Pending, t(52_000), AttemptResult::default())]).await;
    apply_ok(&*store, vec![offer(id, run, "q", t(52_000))]).await;
    let next = claim(&*store, claim_request(&["q"], 1, t(53_000), SERVER)).await.tasks.remove(0);
    assert_eq!(next.attempt, 2);
    assert_eq!(
        renew(vec![renewal(id, next.lease.token, t(54_000))]).await,
        [LeaseState::Held { expires_at: t(84_000), cancel_requested: false }]
    );
    assert_eq!(renew(vec![renewal(id, token, t(54_000))]).await, [LeaseState::Stale], "the old lease");
}

/// A worker's result waits for the run's driver under the lease it was
/// posted with: once, whatever the retries, and only until the attempt ends.
pub async fn posted_results_last_until_the_attempt_ends<S: Store>(store: Arc<S>) {
    use TaskStatus::*;
    let (run, ids) = pending_run(&*store, "results", 1, t(0)).await;
    let id = ids[0];
    apply_ok(&*store, vec![offer(id, run, "q", t(0))]).await;
    let token = claim(&*store, claim_request(&["q"], 1, t(1), SERVER)).await.tasks[0].lease.token;
    let result = PostedResult { task: id, run, token, at: t(5), body: r#"{"exit_code":0}"#.to_owned() };
    assert_eq!(store.posted_result(id).await.unwrap(), None);

    apply_ok(&*store, vec![Change::PostResult(result.clone())]).await;
    assert_eq!(store.posted_result(id).await.unwrap().as_ref(), Some(&result));
    // Posted again (a retry after a lost answer): applied, changes nothing.
    let retry = PostedResult { at: t(6), body: r#"{"exit_code":1}"#.to_owned(), ..result.clone() };
    apply_ok(&*store, vec![Change::PostResult(retry)]).await;
    assert_eq!(store.posted_result(id).await.unwrap().as_ref(), Some(&result));
    let stale = PostedResult { token: LeaseToken::random(), ..result.clone() };
    let why = conflict(&*store, Change::PostResult(stale)).await;
    assert_eq!(why, format!("stale lease token for task {id}"));
    let unknown = PostedResult { task: TaskId::new(t(0)), ..result.clone() };
    let why = conflict(&*store, Change::PostResult(unknown.clone())).await;
    assert!(why.contains("does not exist"), "{why}");
    assert_eq!(store.posted_result(unknown.task).await.unwrap(), None);
    // A step without a queue meets no worker: nothing is posted for it.
    let (local_run, local) = create(&*store, new_run("local", 1, t(0))).await;
    let local_token = drive(&*store, local[0], Running, t(1)).await.unwrap();
    let local_result = PostedResult { task: local[0], run: local_run, token: local_token, ..result.clone() };
    let why = conflict(&*store, Change::PostResult(local_result)).await;
    assert!(why.contains("has no queue"), "{why}");
    assert_eq!(store.posted_result(local[0]).await.unwrap(), None);

    // The driver applies it: ending the attempt deletes it.
    apply_ok(&*store, vec![end(id, token, 1, Completed, t(7), AttemptResult::default())]).await;
    assert_eq!(store.posted_result(id).await.unwrap(), None);
    let why = conflict(&*store, Change::PostResult(result)).await;
    assert_eq!(why, format!("task {id} is COMPLETED, not RUNNING"));
}

/// The next notice, skipping `Resync`s (none is expected here), within a
/// bound: on PostgreSQL notices travel through the server asynchronously.
async fn next_notice(rx: &mut tokio::sync::broadcast::Receiver<Notice>) -> Notice {
    loop {
        match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
            Ok(Ok(Notice::Resync)) => continue,
            Ok(Ok(notice)) => return notice,
            Ok(Err(e)) => panic!("the notice channel failed: {e}"),
            Err(_) => panic!("no notice within 10 s"),
        }
    }
}

/// Notices are published once their transaction commits, one per kind
/// and subject (repeats merged), and only for what was written: offers,
/// claims of runs another server owns, posted results.
pub async fn notices_follow_their_commits<S: Store>(store: Arc<S>) {
    use std::collections::HashSet;
    let mut rx = store.notices();
    let (theirs, their_ids) = pending_run(&*store, "theirs", 2, t(0)).await;
    let mut mine = remote_run("mine", 2, t(0));
    mine.owner = Some(SERVER.to_owned());
    let (mine, my_ids) = create(&*store, mine).await;
    apply_ok(
        &*store,
        my_ids.iter().map(|&id| plain(id, 0, TaskStatus::Submitted, TaskStatus::Pending, t(0))).collect(),
    )
    .await;

    // Refused (the task is not PENDING): no notice. Then two offers to "q"
    // (one notice) and one to "r".
    let (submitted_run, submitted) = create(&*store, remote_run("submitted", 1, t(0))).await;
    conflict(&*store, offer(submitted[0], submitted_run, "never", t(0))).await;
    apply_ok(
        &*store,
        vec![
            offer(their_ids[0], theirs, "q", t(0)),
            offer(my_ids[0], mine, "q", t(0)),
            offer(their_ids[1], theirs, "r", t(0)),
        ],
    )
    .await;
    let offered: HashSet<Notice> = [next_notice(&mut rx).await, next_notice(&mut rx).await].into();
    assert_eq!(
        offered,
        [Notice::Offered { queue: "q".into() }, Notice::Offered { queue: "r".into() }].into(),
        "one per queue, for offers written"
    );

    // Claimed as SERVER: the claimer tells its own drivers; others hear of theirs.
    let claimed = claim(&*store, claim_request(&["q", "r"], 10, t(1), SERVER)).await;
    assert_eq!(claimed.tasks.len(), 3);
    let heard: HashSet<Notice> = [next_notice(&mut rx).await, next_notice(&mut rx).await].into();
    assert_eq!(
        heard,
        [
            Notice::Claimed { run: theirs, task: their_ids[0] },
            Notice::Claimed { run: theirs, task: their_ids[1] }
        ]
        .into()
    );

    // A result for my run, posted twice: heard once. Commits are heard in
    // order, so nothing else (no Claimed of my own task) came before it.
    let mine_claimed: &Claimed = claimed.tasks.iter().find(|c| c.task == my_ids[0]).unwrap();
    let result = PostedResult {
        task: my_ids[0],
        run: mine,
        token: mine_claimed.lease.token,
        at: t(2),
        body: "{}".to_owned(),
    };
    apply_ok(&*store, vec![Change::PostResult(result.clone())]).await;
    apply_ok(&*store, vec![Change::PostResult(result)]).await;
    assert_eq!(next_notice(&mut rx).await, Notice::Posted { run: mine, task: my_ids[0] });
    // The repeat wrote nothing: the next notice is the next commit's.
    apply_ok(&*store, vec![offer(my_ids[1], mine, "z", t(3))]).await;
    assert_eq!(next_notice(&mut rx).await, Notice::Offered { queue: "z".into() });
}

/// One run per workflow and cron tick, whoever submits it: a second is a
/// conflict and writes nothing.
pub async fn a_schedule_tick_starts_one_run<S: Store>(store: Arc<S>) {
    let tick = t(60_000);
    let scheduled = |workflow: &str, tick: Option<Timestamp>| {
        let mut run = new_run(workflow, 1, t(60_001));
        run.trigger = "schedule".to_owned();
        run.schedule_tick = tick;
        run
    };
    let first = scheduled("nightly", Some(tick));
    let (first_id, _) = create(&*store, first.clone()).await;
    assert_eq!(run_everywhere(&*store, first_id).await.schedule_tick, Some(tick), "the tick reads back");
    let twin = scheduled("nightly", Some(tick));
    let twin_id = twin.id;
    let why = conflict(&*store, Change::CreateRun(twin)).await;
    assert_eq!(why, format!("run of nightly for tick {tick} already exists"));
    assert_eq!(store.run(twin_id).await.unwrap(), None, "nothing written");
    assert_eq!(
        store
            .list_runs(RunQuery { workflow: Some("nightly".into()), ..Default::default() })
            .await
            .unwrap()
            .len(),
        1
    );

    // Another workflow's tick, another tick, and unscheduled runs are apart.
    create(&*store, scheduled("weekly", Some(tick))).await;
    create(&*store, scheduled("nightly", Some(t(120_000)))).await;
    let (unscheduled, _) = create(&*store, scheduled("nightly", None)).await;
    assert_eq!(run_everywhere(&*store, unscheduled).await.schedule_tick, None);
    create(&*store, scheduled("nightly", None)).await;
    // A taken id is said as such, tick or not.
    let mut same_id = scheduled("nightly", Some(t(180_000)));
    same_id.id = first_id;
    let why = conflict(&*store, Change::CreateRun(same_id)).await;
    assert_eq!(why, format!("run {first_id} already exists"));
    let mut both = first;
    both.tasks = vec![];
    let why = conflict(&*store, Change::CreateRun(both)).await;
    assert_eq!(why, format!("run {first_id} already exists"));
}

/// A cancel of a run may be asked of any server: the run records who asked
/// first, and its driver, wherever it runs, hears of it after the commit.
/// A request is not a status change; a missing or finished run refuses it.
pub async fn a_run_cancel_request_is_recorded_for_its_driver<S: Store>(store: Arc<S>) {
    use RunStatus::*;
    let ask = |run: RunId, actor: Actor| Change::RequestRunCancel { run, actor };
    let alice = Actor::User("alice".to_owned());
    let mut rx = store.notices();
    let (running, _) = create(&*store, new_run("cancel", 1, t(0))).await;
    apply_ok(&*store, vec![run_change(running, Queued, Running, t(1), None)]).await;
    let (failed, _) = create(&*store, new_run("cancel", 1, t(0))).await;
    apply_ok(
        &*store,
        vec![
            run_change(failed, Queued, Running, t(1), None),
            run_change(failed, Running, Failed, t(2), Some("boom")),
        ],
    )
    .await;

    // Refused: nothing written, no notice.
    let unknown = RunId::new(t(3));
    assert_eq!(conflict(&*store, ask(unknown, alice.clone())).await, format!("run {unknown} does not exist"));
    let before = detail(&*store, failed).await;
    let why = conflict(&*store, ask(failed, alice.clone())).await;
    assert_eq!(why, format!("run {failed} is FAILED: a finished run is never canceled"));
    assert_eq!(detail(&*store, failed).await, before);
    assert_eq!(run_everywhere(&*store, failed).await.cancel_requested_by, None);

    // Asked on a task of its own while this one listens: the notice is the
    // first (the refusals published nothing), and whoever hears it can read
    // the request already.
    let asking = tokio::spawn({
        let (store, change) = (store.clone(), ask(running, alice.clone()));
        async move { store.apply(vec![change]).await }
    });
    assert_eq!(next_notice(&mut rx).await, Notice::CancelRequested { run: running });
    let asked = store.run(running).await.unwrap().expect("the run exists");
    assert_eq!(asked.cancel_requested_by, Some(alice.clone()), "heard only once committed");
    assert_eq!(asking.await.expect("the request's task").expect("the batch commits"), vec![Outcome::Applied]);
    let record = run_everywhere(&*store, running).await;
    assert_eq!(record.cancel_requested_by, Some(alice.clone()));
    assert_eq!(record.status, Running, "a request is not a status change");
    assert_eq!(detail(&*store, running).await.run_transitions.len(), 2, "and logs no transition");

    // Asked again, by another: applied, the first asker kept, heard again.
    apply_ok(&*store, vec![ask(running, Actor::User("bob".to_owned()))]).await;
    assert_eq!(next_notice(&mut rx).await, Notice::CancelRequested { run: running });
    assert_eq!(run_everywhere(&*store, running).await.cancel_requested_by, Some(alice.clone()));

    // A queued run may be canceled too, by any actor.
    let (queued, _) = create(&*store, new_run("cancel", 0, t(4))).await;
    apply_ok(&*store, vec![ask(queued, Actor::Scheduler)]).await;
    assert_eq!(next_notice(&mut rx).await, Notice::CancelRequested { run: queued });
    assert_eq!(run_everywhere(&*store, queued).await.cancel_requested_by, Some(Actor::Scheduler));

    // The driver cancels the run; the request stays on the record, and a
    // request now is refused.
    apply_ok(&*store, vec![run_change(running, Running, Canceled, t(5), None)]).await;
    assert_eq!(run_everywhere(&*store, running).await.cancel_requested_by, Some(alice.clone()));
    let why = conflict(&*store, ask(running, alice)).await;
    assert_eq!(why, format!("run {running} is CANCELED: a finished run is never canceled"));
}

/// A server that joined counts as alive where the store can tell, one that
/// never joined does not, and a sole member leads.
pub async fn a_joined_server_is_alive_and_a_sole_member_leads<S: Store>(store: Arc<S>) {
    let member = store.join("server:conformance").await.expect("join");
    assert!(*member.leader.borrow(), "the only member leads");
    let alive = store.server_alive("server:conformance").await.unwrap();
    assert!(matches!(alive, Some(true) | None), "{alive:?}");
    let never = store.server_alive("server:never-joined").await.unwrap();
    assert!(matches!(never, Some(false) | None), "{never:?}");
    assert_eq!(alive.is_none(), never.is_none(), "a store can tell, or it cannot");
    drop(member);
}
