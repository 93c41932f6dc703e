//! The conformance check of reaped attempts ([`Store::reaped_attempts`]):
//! every transition of the reaper out of RUNNING, and nothing else, newest
//! first, with the run, step and workflow it belongs to; filtered by
//! workflow and paged by cursor, attempts reaped at one instant included.

use std::sync::Arc;

use cairn_core::record::Actor;
use cairn_core::{LeaseToken, TaskId, TaskStatus, Timestamp};

use super::{AttemptResult, apply_ok, create, drive, new_run, plain, start, t};
use crate::{Change, ReapedQuery, Store, TaskChange, TaskUpdate};

/// The reaper's end of attempt `attempt`: retried (`to` PENDING) or failed.
fn reap(task: TaskId, token: LeaseToken, attempt: u32, to: TaskStatus, at: Timestamp) -> Change {
    Change::Task(TaskChange {
        task,
        transition: cairn_core::record::Transition {
            attempt,
            from: Some(TaskStatus::Running),
            to,
            at,
            reason: format!("heartbeat lost (attempt {attempt})"),
            actor: Actor::Reaper,
        },
        update: TaskUpdate::EndAttempt {
            token,
            result: AttemptResult { error: Some("heartbeat lost".into()), ..Default::default() },
            retry_at: None,
        },
    })
}

async fn read<S: Store>(store: &S, q: ReapedQuery) -> Vec<(String, String, u32, TaskStatus, Timestamp)> {
    let page = store.reaped_attempts(q).await.expect("reaped attempts");
    page.into_iter().map(|r| (r.workflow, r.step, r.attempt, r.to, r.at)).collect()
}

pub async fn reaped_attempts_come_from_the_reapers_transitions_newest_first<S: Store>(store: Arc<S>) {
    let s = &*store;
    let (etl, etl_tasks) = create(s, new_run("etl", 3, t(0))).await;
    let (report, report_tasks) = create(s, new_run("report", 2, t(0))).await;

    // etl step-0: reaped and retried at 10 s, then reaped for good at 20 s.
    let token = drive(s, etl_tasks[0], TaskStatus::Running, t(1_000)).await.expect("running");
    apply_ok(s, vec![reap(etl_tasks[0], token, 1, TaskStatus::Pending, t(10_000))]).await;
    let (again, token) = start(etl_tasks[0], 2, t(11_000));
    apply_ok(s, vec![again, reap(etl_tasks[0], token, 2, TaskStatus::Failed, t(20_000))]).await;
    // etl step-1 and report step-0: reaped at the same instant, 30 s.
    let a = drive(s, etl_tasks[1], TaskStatus::Running, t(1_000)).await.expect("running");
    let b = drive(s, report_tasks[0], TaskStatus::Running, t(1_000)).await.expect("running");
    apply_ok(
        s,
        vec![
            reap(etl_tasks[1], a, 1, TaskStatus::Failed, t(30_000)),
            reap(report_tasks[0], b, 1, TaskStatus::Failed, t(30_000)),
        ],
    )
    .await;
    // Not reaped: a worker's own failure, and the reaper abandoning a task
    // that never ran.
    let token = drive(s, report_tasks[1], TaskStatus::Running, t(1_000)).await.expect("running");
    apply_ok(
        s,
        vec![super::end(report_tasks[1], token, 1, TaskStatus::Failed, t(40_000), Default::default())],
    )
    .await;
    apply_ok(
        s,
        vec![
            plain(etl_tasks[2], 0, TaskStatus::Submitted, TaskStatus::Pending, t(1_000)),
            Change::Task(TaskChange {
                task: etl_tasks[2],
                transition: cairn_core::record::Transition {
                    attempt: 0,
                    from: Some(TaskStatus::Pending),
                    to: TaskStatus::Abandoned,
                    at: t(50_000),
                    reason: "the run's executor died".into(),
                    actor: Actor::Reaper,
                },
                update: TaskUpdate::Plain,
            }),
        ],
    )
    .await;

    let all = s.reaped_attempts(ReapedQuery::default()).await.expect("reaped attempts");
    let mut seen: Vec<_> =
        all.iter().map(|r| (r.workflow.as_str(), r.step.as_str(), r.attempt, r.to, r.at)).collect();
    // Two attempts reaped at one instant come in the order the store wrote
    // them, which one batch does not fix.
    seen[..2].sort();
    assert_eq!(
        seen,
        [
            ("etl", "step-1", 1, TaskStatus::Failed, t(30_000)),
            ("report", "step-0", 1, TaskStatus::Failed, t(30_000)),
            ("etl", "step-0", 2, TaskStatus::Failed, t(20_000)),
            ("etl", "step-0", 1, TaskStatus::Pending, t(10_000)),
        ],
        "the reaper's ends of attempts, newest first"
    );
    let first = &all[3];
    assert_eq!((first.run_id, first.task_id), (etl, etl_tasks[0]));
    assert_eq!(first.reason, "heartbeat lost (attempt 1)");
    assert!(all[..2].iter().any(|r| r.run_id == report));

    let only_etl = read(s, ReapedQuery { workflows: vec!["etl".into()], ..Default::default() }).await;
    assert_eq!(only_etl.len(), 3);
    assert!(only_etl.iter().all(|r| r.0 == "etl"));
    let none = read(s, ReapedQuery { workflows: vec!["nightly".into()], ..Default::default() }).await;
    assert!(none.is_empty());

    // Pages of one, each starting after the last one's cursor, cover the
    // list once, the two attempts of one instant included.
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = s.reaped_attempts(ReapedQuery { before, limit: 1, ..Default::default() }).await.unwrap();
        let Some(last) = page.last() else { break };
        before = Some(last.cursor);
        paged.extend(page);
    }
    assert_eq!(paged, all);
    let cursor: crate::ReapedCursor = all[1].cursor.to_string().parse().expect("a cursor reads back");
    assert_eq!(cursor, all[1].cursor);
    assert!("12".parse::<crate::ReapedCursor>().is_err());
}
