//! The notification config parsed and validated from YAML (every problem
//! with its place and field), and the notifications live events make.

use super::*;
use crate::{RunId, TaskId};

fn env(var: &str) -> Option<String> {
    (var == "OPS_SECRET").then(|| "s3cret".to_owned())
}

fn errors(source: &str) -> Vec<String> {
    match NotifyConfig::parse(source, "cairn.yaml", env) {
        Ok(c) => panic!("accepted: {c:?}"),
        Err(e) => e.0.iter().map(ToString::to_string).collect(),
    }
}

const GOOD: &str = r#"
webhooks:
  - name: ops
    url: https://hooks.example.com/cairn
    secret_env: OPS_SECRET
  - name: pager
    url: http://127.0.0.1:9000/hook
    secret: "literal"
    max_attempts: 3
alerts:
  - name: failures
    on: [run_failed, task_reaped, anomaly]
    workflows: "etl-*"
    to: [ops, log]
  - name: everything
    on: [run_failed, run_recovered, overrun_predicted]
    to: [pager, ops]
report:
  every: weekly
  at: "07:30"
  to: [ops]
"#;

#[test]
fn a_config_parses_with_every_key() {
    let c = NotifyConfig::parse(GOOD, "cairn.yaml", env).unwrap();
    assert_eq!(c.webhooks.len(), 2);
    let ops = c.webhook("ops").unwrap();
    assert_eq!(
        (ops.url.as_str(), ops.secret.expose(), ops.max_attempts),
        ("https://hooks.example.com/cairn", &b"s3cret"[..], DEFAULT_MAX_ATTEMPTS)
    );
    assert_eq!(c.webhook("pager").unwrap().max_attempts, 3);
    assert!(!format!("{ops:?}").contains("s3cret"), "secrets are never printed");
    assert_eq!(c.alerts[0].on, [NotifyKind::RunFailed, NotifyKind::TaskReaped, NotifyKind::Anomaly]);
    let report = c.report.as_ref().unwrap();
    assert_eq!(
        (report.every, report.at, report.to.clone()),
        (ReportEvery::Weekly, (7, 30), vec![Target::Webhook("ops".into())])
    );

    let names = |kind, w| c.targets(kind, w).into_iter().map(ToString::to_string).collect::<Vec<_>>();
    assert_eq!(names(NotifyKind::RunFailed, Some("etl-daily")), ["log", "ops", "pager"], "each target once");
    assert_eq!(names(NotifyKind::RunFailed, Some("backup")), ["ops", "pager"]);
    assert_eq!(names(NotifyKind::TaskReaped, Some("backup")), Vec::<String>::new());
    assert_eq!(names(NotifyKind::Anomaly, Some("etl-x")), ["log", "ops"]);
    assert!(c.wants(NotifyKind::RunRecovered) && !c.wants(NotifyKind::Report));
}

#[test]
fn an_empty_file_notifies_nothing() {
    assert_eq!(NotifyConfig::parse("# nothing yet\n\n", "cairn.yaml", env).unwrap(), NotifyConfig::default());
}

#[test]
fn unknown_keys_are_refused_with_their_place() {
    let e = errors("webhooks:\n  - name: ops\n    url: https://x.example\n    secret: s\n    retries: 3\n");
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(e[0].starts_with("cairn.yaml:5:5: webhooks[0].retries: unknown field `retries`"), "{e:?}");
    let e = errors("hooks: []\n");
    assert!(e[0].starts_with("cairn.yaml:1:1: hooks: unknown field `hooks`"), "{e:?}");
    let e = errors("- just a list\n");
    assert!(e[0].starts_with("cairn.yaml:1:1: (document): "), "{e:?}");
    let e = errors("alerts:\n  - name: x\n    on: run_failed\n    to: [log]\n");
    assert!(e[0].starts_with("cairn.yaml:3:9: alerts[0].on: "), "{e:?}");
}

#[test]
fn every_problem_is_reported_with_file_line_and_field() {
    let source = r#"webhooks:
  - name: ops
    url: ftp://hooks.example.com
    secret_env: MISSING_SECRET
  - name: ops
    url: https://ok.example.com
  - name: big
    url: https://ok.example.com
    secret: s
    max_attempts: 0
alerts:
  - name: a
    on: [run_failed, run_exploded]
    to: [ops, nowhere]
  - name: a
    on: []
    workflows: "etl *"
    to: []
report:
  every: hourly
  at: "25:00"
  to: [log]
"#;
    let e = errors(source);
    let expect = [
        "cairn.yaml:3:10: webhooks[0].url: \"ftp://hooks.example.com\" is not a URL",
        "cairn.yaml:4:17: webhooks[0].secret_env: the environment variable MISSING_SECRET is not set",
        "cairn.yaml:5:11: webhooks[1].name: the webhook name \"ops\" is used twice",
        "cairn.yaml:10:19: webhooks[2].max_attempts: 0 is out of range",
        "cairn.yaml:13:22: alerts[0].on[1]: \"run_exploded\" is not an event kind: expected run_failed, task_reaped, overrun_predicted, anomaly or run_recovered",
        "cairn.yaml:14:15: alerts[0].to[1]: \"nowhere\" is not a webhook of this config",
        "cairn.yaml:15:11: alerts[1].name: the alert rule name \"a\" is used twice",
        "cairn.yaml:15:11: alerts[1].on: list at least one event kind",
        "cairn.yaml:17:16: alerts[1].workflows:",
        "cairn.yaml:15:11: alerts[1].to: list at least one target",
        "cairn.yaml:20:10: report.every: \"hourly\" is not a period",
        "cairn.yaml:21:7: report.at: \"25:00\" is not a time",
    ];
    for (got, want) in e.iter().zip(expect) {
        assert!(got.starts_with(want), "{got}\n  does not start with\n{want}");
    }
    assert_eq!(e.len(), expect.len(), "{e:#?}");
}

#[test]
fn duplicate_webhook_names_are_refused() {
    let e = errors(
        "webhooks:\n  - name: ops\n    url: https://a.example\n    secret: s\n  - name: ops\n    url: https://b.example\n    secret: s\n",
    );
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("cairn.yaml:5:11: webhooks[1].name: the webhook name \"ops\" is used twice"),
        "{e:?}"
    );
}

#[test]
fn reports_fall_due_daily_or_on_mondays() {
    let at = |s: &str| Timestamp::from_jiff(s.parse().unwrap());
    let daily = ReportSchedule { every: ReportEvery::Daily, at: (7, 0), to: vec![] };
    // 2026-11-21 is a Saturday.
    assert_eq!(daily.next_after(at("2026-11-21T06:59:59Z")), at("2026-11-21T07:00:00Z"));
    assert_eq!(daily.next_after(at("2026-11-21T07:00:00Z")), at("2026-11-22T07:00:00Z"));
    let weekly = ReportSchedule { every: ReportEvery::Weekly, ..daily };
    assert_eq!(weekly.next_after(at("2026-11-21T08:00:00Z")), at("2026-11-23T07:00:00Z"));
    assert_eq!(weekly.next_after(at("2026-11-23T07:00:00Z")), at("2026-11-30T07:00:00Z"));
}

#[test]
fn events_make_notifications_with_stable_keys() {
    let at = Timestamp::from_micros(1_767_225_600_000_000);
    let run = RunId::new(at);
    let task = TaskId::new(at);
    let failed = Event::Run(RunEvent {
        run_id: run,
        workflow: "etl".into(),
        from: Some(RunStatus::Running),
        to: RunStatus::Failed,
        at,
        reason: "step load failed".into(),
        actor: Actor::Scheduler,
    });
    let n = Notification::from_event(&failed).unwrap();
    assert_eq!(
        (n.kind, n.key.clone(), n.workflow.as_deref()),
        (NotifyKind::RunFailed, format!("run_failed:{run}"), Some("etl"))
    );
    let body: serde_json::Value = serde_json::from_str(&n.body()).unwrap();
    assert_eq!(body["kind"], "run_failed");
    assert_eq!(body["data"]["to"], "FAILED");
    assert_eq!(body["data"]["run_id"], run.to_string());

    let reaped = Event::Transition(crate::event::TransitionEvent {
        run_id: run,
        workflow: "etl".into(),
        task_id: task,
        step: "load".into(),
        queue: Some("gpu".into()),
        attempt: 2,
        from: Some(TaskStatus::Running),
        to: TaskStatus::Failed,
        from_at: Some(at),
        at,
        reason: "heartbeat lost".into(),
        actor: Actor::Reaper,
    });
    assert_eq!(Notification::from_event(&reaped).unwrap().key, format!("task_reaped:{task}:2"));
    let completed = Event::Run(RunEvent {
        run_id: run,
        workflow: "etl".into(),
        from: Some(RunStatus::Running),
        to: RunStatus::Completed,
        at,
        reason: "done".into(),
        actor: Actor::Scheduler,
    });
    assert_eq!(Notification::from_event(&completed), None);
    assert_eq!(Notification::from_event(&Event::Lagged { missed: 1 }), None);
}

#[test]
fn a_report_time_may_be_written_unquoted() {
    let c = NotifyConfig::parse("report:\n  every: daily\n  at: 07:05\n  to: [log]\n", "cairn.yaml", env)
        .unwrap();
    assert_eq!(c.report.unwrap().at, (7, 5));
}
