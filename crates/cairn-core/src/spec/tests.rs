//! Data-driven tests: small workflows in, a summary of the model or the
//! diagnostics out, compared with inline snapshots. They go through the
//! public entry points only, so they survive refactors of the modules.

use std::fmt::Write as _;
use std::path::Path;

use insta::assert_snapshot;

use super::*;
use crate::vars::{NoCommands, Scope, StepInfo};

/// Parses `yaml` as `flow.yaml` and summarises the model, or lists the errors.
fn check(yaml: &str) -> String {
    match parse(yaml, Some(Path::new("flow.yaml"))) {
        Ok(w) => summary(&w),
        Err(e) => e.to_string(),
    }
}

fn workflow(yaml: &str) -> Workflow {
    parse(yaml, Some(Path::new("/flows/flow.yaml"))).unwrap_or_else(|e| panic!("{e}"))
}

fn action(a: &Action) -> String {
    match a {
        Action::Commands(c) if c.len() == 1 => format!("command {:?}", c[0]),
        Action::Commands(c) => format!("commands {c:?}"),
        Action::Script { body, interpreter: None } => format!("script {body:?}"),
        Action::Script { body, interpreter: Some(i) } => format!("script via {i:?} {body:?}"),
        Action::Exec { program, args } => format!("exec {program:?} {args:?}"),
        Action::Task { task_type } => format!("task {task_type:?}"),
    }
}

fn step_line(w: &Workflow, s: &Step) -> String {
    let mut out = format!("{}: {}", s.name, action(&s.action));
    if let Some(id) = &s.id {
        write!(out, " id={id}").unwrap();
    }
    if !s.depends.is_empty() {
        let names: Vec<&str> = s.depends.iter().map(|d| w.step(*d).name.as_str()).collect();
        write!(out, " after={names:?}").unwrap();
    }
    if let Some(o) = &s.output {
        write!(out, " output={o}").unwrap();
    }
    if let Some(sh) = &s.shell {
        write!(out, " shell={sh:?}").unwrap();
    }
    if let Some(d) = &s.working_dir {
        write!(out, " dir={d}").unwrap();
    }
    if !s.env.is_empty() {
        let env: Vec<String> = s.env.iter().map(|e| format!("{}={}", e.name, e.value)).collect();
        write!(out, " env={env:?}").unwrap();
    }
    if s.retry.limit > 0 {
        let r = &s.retry;
        write!(out, " retry={}x{:?}*{}", r.limit, r.interval, r.backoff).unwrap();
        if let Some(m) = r.max_interval {
            write!(out, "<={m:?}").unwrap();
        }
        if !r.exit_codes.is_empty() {
            write!(out, " on {:?}", r.exit_codes).unwrap();
        }
    }
    let c = &s.continue_on;
    if c.skipped || c.failure || c.mark_success || !c.exit_codes.is_empty() || !c.output.is_empty() {
        let output: Vec<String> = c
            .output
            .iter()
            .map(|o| match o {
                OutputPattern::Contains(s) => s.clone(),
                OutputPattern::Regex(r) => format!("re:{}", r.as_str()),
            })
            .collect();
        write!(
            out,
            " continue_on(skipped={} failure={} exit={:?} output={:?} mark_success={})",
            c.skipped, c.failure, c.exit_codes, output, c.mark_success
        )
        .unwrap();
    }
    for p in &s.preconditions {
        match p {
            Precondition::Match { value, expected, negate } => {
                write!(out, " if({value} == {expected}{})", if *negate { " negated" } else { "" }).unwrap()
            }
            Precondition::Command { command, negate } => {
                write!(out, " if(`{command}`{})", if *negate { " negated" } else { "" }).unwrap()
            }
        }
    }
    if let Some(t) = s.timeout {
        write!(out, " timeout={t:?}").unwrap();
    }
    if let Some(sig) = s.signal_on_stop {
        write!(out, " signal={}", sig.name).unwrap();
    }
    if let Some(q) = &s.queue {
        write!(out, " queue={q}").unwrap();
    }
    if let Some(h) = s.heartbeat_timeout {
        write!(out, " heartbeat={h:?}").unwrap();
    }
    if let Some(p) = s.progress {
        write!(out, " progress={:?}/{}", p.min_interval, p.min_change).unwrap();
    }
    if let Some(f) = &s.stdout {
        write!(out, " stdout={f}").unwrap();
    }
    out
}

fn summary(w: &Workflow) -> String {
    let mut out = format!("{} ({:?})\n", w.name, w.kind);
    for s in &w.steps {
        writeln!(out, "  {}", step_line(w, s)).unwrap();
    }
    for h in w.handlers.iter() {
        writeln!(out, "  {}", step_line(w, h)).unwrap();
    }
    for warning in &w.warnings {
        writeln!(out, "warning: {warning}").unwrap();
    }
    out
}

#[test]
fn chain_runs_steps_in_order_and_groups_in_parallel() {
    assert_snapshot!(check(r#"
steps:
  - echo "step 1"
  -
    - echo "parallel 1"
    - name: p2
      command: echo "parallel 2"
  - script: |
      echo a
      echo b
  - command: |
      echo multi
      echo line
"#), @r#"
    flow (Chain)
      cmd_1: command "echo \"step 1\""
      cmd_2: command "echo \"parallel 1\"" after=["cmd_1"]
      p2: command "echo \"parallel 2\"" after=["cmd_1"]
      script_3: script "echo a\necho b" after=["cmd_2", "p2"]
      script_4: script "echo multi\necho line" after=["script_3"]
    "#);
}

#[test]
fn graph_resolves_depends_by_name_or_id() {
    assert_snapshot!(check(r#"
name: build-and-test
type: graph
steps:
  - command: echo v1
    output: $VERSION
  - id: compile
    command: make
    depends: cmd_1
  - name: test
    command: make test
    depends: [compile, cmd_1]
"#), @r#"
    build-and-test (Graph)
      cmd_1: command "echo v1" output=VERSION
      compile: command "make" id=compile after=["cmd_1"]
      test: command "make test" after=["compile", "cmd_1"]
    "#);
}

#[test]
fn every_step_key_and_its_camel_case_alias() {
    assert_snapshot!(check(r#"
type: graph
steps:
  - name: full
    description: all keys
    command: [echo one, "echo two"]
    shell: bash -e
    dir: /srv/app
    env:
      - A: 1
      - B=two
    output: OUT
    stdout: out.log
    retryPolicy: {limit: 3, intervalSec: 2, backoff: true, maxIntervalSec: 10, exitCode: [1, 2]}
    continueOn: {failed: true, exitCode: 3, output: ["warn", "re:^E[0-9]+"], markSuccess: true}
    preconditions:
      - condition: "$ENV"
        expected: "re:^prod"
      - "test -f ready"
      - condition: "`date +%u`"
        expected: "6"
        negate: true
    timeoutSec: 30
    signalOnStop: TERM
    queue: gpu
    heartbeat_timeout_sec: 15
    progress: {min_interval_ms: 250, min_change: 1}
  - name: interpreted
    command: python3 -u
    script: print("hi")
  - name: direct
    exec:
      command: /usr/bin/env
      args: [printenv, 42]
    continue_on: skipped
"#), @r#"
    flow (Graph)
      full: commands ["echo one", "echo two"] output=OUT shell=Program { program: "bash", args: ["-e"] } dir=/srv/app env=["A=1", "B=two"] retry=3x2s*2<=10s on [1, 2] continue_on(skipped=false failure=true exit=[3] output=["warn", "re:^E[0-9]+"] mark_success=true) if($ENV == "re:^prod") if(`test -f ready`) if(`date +%u` == "6" negated) timeout=30s signal=SIGTERM queue=gpu heartbeat=15s progress=250ms/1 stdout=out.log
      interpreted: script via "python3 -u" "print(\"hi\")"
      direct: exec "/usr/bin/env" ["printenv", "42"] continue_on(skipped=true failure=false exit=[] output=[] mark_success=false)
    "#);
}

#[test]
fn defaults_fill_what_steps_leave_out() {
    assert_snapshot!(check(r#"
defaults:
  retry_policy: {limit: 2, interval_sec: 5}
  continue_on: failed
  timeout_sec: 60
  env: {FROM_DEFAULTS: yes}
  preconditions: "test -d /data"
  queue: batch
steps:
  - name: inherits
    command: "true"
    env: {OWN: 1}
  - name: overrides
    command: "true"
    retry_policy: {limit: 0}
    continue_on: {skipped: true}
    timeout_sec: 0
    queue: fast
handler_on:
  exit: echo done
"#), @r#"
    flow (Chain)
      inherits: command "true" env=["FROM_DEFAULTS=yes", "OWN=1"] retry=2x5s*1 continue_on(skipped=false failure=true exit=[] output=[] mark_success=false) if(`test -d /data`) timeout=60s queue=batch
      overrides: command "true" after=["inherits"] env=["FROM_DEFAULTS=yes"] continue_on(skipped=true failure=false exit=[] output=[] mark_success=false) if(`test -d /data`) queue=fast
      onExit: command "echo done" env=["FROM_DEFAULTS=yes"] retry=2x5s*1 continue_on(skipped=false failure=true exit=[] output=[] mark_success=false) if(`test -d /data`) timeout=60s queue=batch
    "#);
}

#[test]
fn handlers_are_named_as_dagu_names_them() {
    let w = workflow(
        r#"
handlerOn:
  init: echo init
  success: {name: ignored, command: echo ok}
  failure: echo failed
  cancel: echo canceled
  exit: echo bye
steps: ["true"]
"#,
    );
    let names: Vec<(&str, Option<HandlerKind>)> =
        w.handlers.iter().map(|h| (h.name.as_str(), h.handler)).collect();
    assert_eq!(
        names,
        vec![
            ("onInit", Some(HandlerKind::Init)),
            ("onSuccess", Some(HandlerKind::Success)),
            ("onFailure", Some(HandlerKind::Failure)),
            ("onAbort", Some(HandlerKind::Abort)),
            ("onExit", Some(HandlerKind::Exit)),
        ]
    );
    assert!(w.handlers.get(HandlerKind::Exit).is_some());
}

#[test]
fn workflow_keys() {
    let w = workflow(
        r#"
name: nightly
description: the nightly job
group: etl
schedule: ["0 2 * * *", "CRON_TZ=Europe/Paris 30 6 * * 1-5"]
timeout_sec: 3600
delay_sec: 5
max_active_steps: 4
max_active_runs: -1
hist_retention_days: 30
log_dir: /var/log/cairn
working_dir: sub/dir
shell: ["bash", "-e"]
tags: "daily, Team=Data"
dotenv: [.env, .env.local]
retry_policy: {limit: 1}
preconditions:
  - condition: "`date +%d`"
    expected: "re:0[1-7]"
env:
  LEVEL: debug
  COUNT: 3
steps: ["true"]
mail_on: {failure: true}
"#,
    );
    assert_eq!(w.name, "nightly");
    assert_eq!(w.description.as_deref(), Some("the nightly job"));
    assert_eq!(w.group.as_deref(), Some("etl"));
    let schedules: Vec<(&str, Option<&str>)> =
        w.schedule.start.iter().map(|s| (s.expr.as_str(), s.timezone.as_deref())).collect();
    assert_eq!(schedules, vec![("0 2 * * *", None), ("30 6 * * 1-5", Some("Europe/Paris"))]);
    assert_eq!(w.timeout, Some(std::time::Duration::from_secs(3600)));
    assert_eq!(w.delay, Some(std::time::Duration::from_secs(5)));
    assert_eq!(w.max_active_steps, Some(4));
    assert_eq!(w.max_active_runs, None);
    assert_eq!(w.history, Some(Retention::Days(30)));
    assert_eq!(w.log_dir.as_deref(), Some("/var/log/cairn"));
    assert_eq!(w.shell, Some(Shell::Program { program: "bash".into(), args: vec!["-e".into()] }));
    assert_eq!(
        w.labels,
        vec![
            Label { key: "daily".into(), value: None },
            Label { key: "team".into(), value: Some("data".into()) }
        ]
    );
    assert_eq!(w.dotenv, vec![".env", ".env.local"]);
    let retry = w.run_retry.as_ref().unwrap();
    assert_eq!(
        (retry.limit, retry.interval.as_secs(), retry.max_interval.map(|m| m.as_secs())),
        (1, 60, Some(3600))
    );
    assert_eq!(w.preconditions.len(), 1);
    assert_eq!(
        w.env,
        vec![
            EnvVar { name: "LEVEL".into(), value: "debug".into() },
            EnvVar { name: "COUNT".into(), value: "3".into() }
        ]
    );
    assert_eq!(w.working_dir(&Scope::new()), Path::new("/flows/sub/dir"));
    assert_snapshot!(w.warnings.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"), @"/flows/flow.yaml:24:1: mail_on: ignored: Cairn sends no mail; use its alerts instead");
    let defaults = workflow("steps: [\"true\"]");
    assert_eq!(defaults.name, "flow");
    assert_eq!(defaults.max_active_runs, Some(1));
    assert_eq!(defaults.dotenv, vec![".env"]);
}

#[test]
fn unknown_keys_name_the_nearest_valid_one() {
    assert_snapshot!(check(r#"
nmae: x
steps:
  - name: a
    comand: echo hi
    retry_policy: {limt: 2}
"#), @r#"
        flow.yaml:2:1: nmae: unknown key "nmae" in workflow keys (did you mean "name"?)
        flow.yaml:5:5: steps[0].comand: unknown key "comand" in step keys (did you mean "command"?)
        flow.yaml:6:20: steps[0].retry_policy.limt: unknown key "limt" in retry policy keys (did you mean "limit"?)
        "#);
}

#[test]
fn dependency_errors_are_named() {
    assert_snapshot!(check(r#"
type: graph
steps:
  - name: build
    command: make
  - name: test
    command: make test
    depends: biuld
  - name: a
    command: "true"
    depends: [c]
  - name: b
    command: "true"
    depends: a
  - name: c
    command: "true"
    depends: b
  - name: self
    command: "true"
    depends: self
"#), @r#"
        flow.yaml:8:5: steps[1].depends: unknown step "biuld" (did you mean "build"?)
        flow.yaml:11:5: steps[2].depends: dependency cycle: a -> c -> b -> a (each step depends on the next; remove one of these dependencies)
        flow.yaml:20:5: steps[5].depends: dependency cycle: self -> self (each step depends on the next; remove one of these dependencies)
        "#);
}

#[test]
fn names_and_ids_must_be_unique_and_well_formed() {
    assert_snapshot!(check(r#"
type: graph
steps:
  - name: a
    command: "true"
  - name: a
    command: "true"
  - name: b
    id: a
    command: "true"
  - name: c
    id: my-id
    command: "true"
  - name: d
    id: output
    command: "true"
"#), @r#"
        flow.yaml:6:5: steps[1]: duplicate step name "a" (steps[0] has it too; step names must be unique)
        flow.yaml:8:5: steps[2].id: step id "a" is the name of another step (steps[0] is named "a"; `depends` could not tell them apart)
        flow.yaml:12:5: steps[3].id: invalid step id "my-id" (start with a letter and use only letters, digits and `_`)
        flow.yaml:15:5: steps[4].id: step id "output" is a reserved word
        "#);
}

#[test]
fn chain_workflows_refuse_depends() {
    assert_snapshot!(check(r#"
steps:
  - name: one
    command: "true"
  - - name: two
      command: "true"
      depends: [one]
    - name: three
      command: "true"
"#), @"flow.yaml:7:7: steps[1][0].depends: depends is not allowed when the workflow type is chain (the default) (in a chain each step runs after the previous one; set `type: graph` to declare dependencies)");
}

#[test]
fn values_of_the_wrong_kind() {
    assert_snapshot!(check(r#"
type: sequence
timeout_sec: -5
max_active_steps: many
schedule: "61 * * * *"
steps:
  - name: a
    command: "true"
    timeout_sec: -1
    retry_policy: {limit: 2, backoff: 0.5}
    continue_on: sometimes
    signal_on_stop: SIGTREM
    output: my-var
    preconditions:
      - condition: "$X"
        expected: "re:[unclosed"
  - name: b
  - name: c
    command: python
    script: print(1)
    exec: {command: ls}
"#), @r#"
        flow.yaml:2:1: type: unknown workflow type "sequence" (use `chain` or `graph`)
        flow.yaml:3:14: timeout_sec: must be 0 or more, found -5
        flow.yaml:4:19: max_active_steps: expected a whole number, found a string
        flow.yaml:5:11: schedule: invalid cron expression "61 * * * *": number out of bounds (use five fields: minute hour day-of-month month day-of-week, e.g. "30 6 * * 1-5")
        flow.yaml:9:18: steps[0].timeout_sec: must be 0 or more, found -1
        flow.yaml:10:39: steps[0].retry_policy.backoff: backoff must be more than 1.0, found 0.5 (use `true` for 2.0, or leave it out for a constant interval)
        flow.yaml:11:18: steps[0].continue_on: unknown continue_on value "sometimes" (use `skipped`, `failed`, or a map)
        flow.yaml:12:21: steps[0].signal_on_stop: unknown signal "SIGTREM" (did you mean "SIGTERM"?)
        flow.yaml:13:13: steps[0].output: "my-var" is not a variable name (use letters, digits and `_`, not starting with a digit)
        flow.yaml:16:19: steps[0].preconditions[0].expected: invalid regular expression "[unclosed": unclosed character class
        flow.yaml:17:5: steps[1]: the step has nothing to run (add `command:`, `script:` or `exec:`)
        flow.yaml:19:5: steps[2].command: `exec` cannot be used together with `command` (`exec` runs a program directly, without a shell)
        flow.yaml:20:5: steps[2].script: `exec` cannot be used together with `script` (`exec` runs a program directly, without a shell)
        "#);
}

#[test]
fn keys_cairn_cannot_honour_are_refused() {
    assert_snapshot!(check(r#"
container: {image: alpine}
steps:
  - name: a
    call: other-workflow
  - name: b
    command: "true"
    type: http
  - name: c
    command: "true"
    retry_policy: {limit: 1}
    retryPolicy: {limit: 2}
"#), @r#"
        flow.yaml:2:1: container: not supported by Cairn: containers are not supported; run `docker` in a command
        flow.yaml:5:5: steps[0].call: not supported by Cairn: sub-workflow calls are not supported; run the other workflow from a step
        flow.yaml:8:5: steps[1].type: step type "http" is not supported by Cairn (Cairn runs shell commands and scripts; remove `type`)
        flow.yaml:12:5: steps[2].retry_policy: "retryPolicy" repeats "retry_policy" (keep one of them)
        "#);
}

#[test]
fn yaml_errors_have_positions() {
    assert_snapshot!(check("steps:\n  - name: a\n    name: b\n"), @r#"flow.yaml:3:5: duplicate key "name" (each key may appear once in a map)"#);
    assert_snapshot!(check("steps: [\n"), @"flow.yaml:1:8: invalid YAML: unclosed bracket '['");
    assert_snapshot!(check(""), @"flow.yaml:1:1: the workflow file is empty (a workflow needs `steps:`)");
    assert_snapshot!(check("steps: [a]\n---\nsteps: [b]\n"), @"flow.yaml:3:1: the file holds several YAML documents (Cairn reads one workflow per file; Dagu's sub-workflows in one file are not supported)");
    assert_snapshot!(check("name: x\n"), @"flow.yaml:1:1: steps: the workflow has no steps (add `steps:` with at least one command)");
}

#[test]
fn task_type_steps_run_on_sdk_workers_without_a_command() {
    assert_snapshot!(check(r#"
type: graph
defaults:
  queue: images
steps:
  - name: resize
    queue: gpu
    task_type: resize
    env: {WIDTH: 640}
  - taskType: count
    depends: resize
  - name: shell
    command: echo hi
    queue: gpu
handler_on:
  exit: {task_type: notify}
"#), @r#"
    flow (Graph)
      resize: task "resize" env=["WIDTH=640"] queue=gpu
      task_2: task "count" after=["resize"] queue=images
      shell: command "echo hi" queue=gpu
      onExit: task "notify" queue=images
    "#);
    let w = workflow(
        r#"
steps:
  - {name: a, queue: q, task_type: t}
  - {name: b, queue: q, command: "true"}
"#,
    );
    assert_eq!(w.steps[0].task_type(), Some("t"));
    assert_eq!(w.steps[1].task_type(), None);
    // Nothing runs here: the worker's handler is the whole step.
    assert!(w.steps[0].invocation(&w, &scope()).processes.is_empty());
}

#[test]
fn task_type_steps_need_a_queue_and_no_command() {
    assert_snapshot!(check(r#"
steps:
  - name: local
    task_type: resize
  - name: both
    queue: images
    task_type: resize
    command: ./resize.sh
  - name: exec
    queue: images
    task_type: resize
    exec: {command: /bin/true}
  - name: empty
    queue: images
    task_type: "  "
  - name: map
    queue: images
    task_type: {kind: resize}
  - name: nothing
    queue: images
  - name: plain
"#), @r#"
    flow.yaml:4:5: steps[0].task_type: a task_type step runs on workers: give it a queue (add `queue:` naming the queue its SDK worker polls)
    flow.yaml:7:5: steps[1].task_type: `task_type` cannot be used together with `command` (a `task_type` step has no command: an SDK worker's handler runs it; remove one of them)
    flow.yaml:11:5: steps[2].task_type: `task_type` cannot be used together with `exec` (a `task_type` step has no command: an SDK worker's handler runs it; remove one of them)
    flow.yaml:15:5: steps[3].task_type: the task type is empty (name the handler an SDK worker runs this step with, e.g. `task_type: resize`)
    flow.yaml:18:16: steps[4].task_type: expected a string, found a map
    flow.yaml:19:5: steps[5]: the step has nothing to run (add `command:`, `script:` or `exec:`, or `task_type:` for an SDK worker)
    flow.yaml:21:5: steps[6]: the step has nothing to run (add `command:`, `script:` or `exec:`)
    "#);
}

#[test]
fn steps_given_as_a_map_are_sorted_by_name() {
    assert_snapshot!(check(r#"
type: graph
steps:
  second:
    command: echo 2
    depends: first
  first:
    command: echo 1
"#), @r#"
    flow (Graph)
      first: command "echo 1"
      second: command "echo 2" after=["first"]
    "#);
}

#[test]
fn order_puts_dependencies_first_and_keeps_file_order() {
    let w = workflow(
        r#"
type: graph
steps:
  - {name: d, command: "true", depends: [b, c]}
  - {name: a, command: "true"}
  - {name: b, command: "true", depends: a}
  - {name: c, command: "true"}
"#,
    );
    let order: Vec<&str> = w.order.iter().map(|i| w.step(*i).name.as_str()).collect();
    assert_eq!(order, ["a", "b", "c", "d"]);
    assert_eq!(w.find_step("c"), Some(StepIndex(3)));
    let dependents: Vec<StepIndex> = w.dependents(StepIndex(1)).collect();
    assert_eq!(dependents, vec![StepIndex(2)]);
}

fn params_of(yaml: &str, cli: &[&str]) -> String {
    let w = workflow(yaml);
    let cli: Vec<String> = cli.iter().map(|s| (*s).to_owned()).collect();
    match w.resolve_params(&cli) {
        Ok(p) => p.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "),
        Err(e) => e.to_string(),
    }
}

#[test]
fn params_in_every_form() {
    let steps = "\nsteps: [\"true\"]\n";
    assert_eq!(params_of(&format!("params: \"foo bar\"{steps}"), &[]), "1=foo 2=bar");
    assert_eq!(params_of(&format!("params: \"foo bar\"{steps}"), &["p3", "p4"]), "1=p3 2=p4");
    assert_eq!(params_of(&format!("params: KEY=default{steps}"), &["KEY=value"]), "KEY=value");
    assert_eq!(params_of(&format!("params: [A=1, B=\"two words\"]{steps}"), &[]), "A=1 B=two words");
    assert_eq!(
        params_of(&format!("params: {{NAME: Dagu, AGE: 30}}{steps}"), &["AGE=31"]),
        "NAME=Dagu AGE=31"
    );
    assert_eq!(params_of(&format!("params: [{{X: 1}}, \"y\"]{steps}"), &[]), "X=1 2=y");
    assert_eq!(params_of(&format!("params: \"KEY=v pos\"{steps}"), &["first"]), "KEY=first 2=pos");
    assert_eq!(params_of(&format!("params: '{{\"a\": 1, \"b\": true}}'{steps}"), &[]), "a=1 b=true");
    assert_eq!(params_of(steps, &["free", "K=v"]), "1=free K=v");
    assert_eq!(params_of(&format!("params: A=1{steps}"), &[r#"{"A": "json"}"#]), "A=json");
}

#[test]
fn params_refuse_what_the_workflow_does_not_declare() {
    let yaml = "params: \"p1 p2\"\nsteps: [\"true\"]\n";
    assert_snapshot!(params_of(yaml, &["one", "two", "three"]), @"params: too many positional params: expected at most 2, got 3 (pass named values as KEY=value)");
    let yaml = "params: [REGION=eu, COUNT=1]\nsteps: [\"true\"]\n";
    assert_snapshot!(params_of(yaml, &["REGOIN=us", "OTHER=1"]), @r#"
    params: unknown param "REGOIN" (did you mean "REGION"?)
    params: unknown param "OTHER" (accepted params: REGION, COUNT)
    "#);
}

#[test]
fn typed_params_are_checked() {
    let yaml = r#"
params:
  - name: ENVIRONMENT
    type: string
    enum: [dev, staging, prod]
    required: true
  - name: REPLICAS
    type: integer
    minimum: 1
    maximum: 10
    default: 3
  - name: VERBOSE
    type: boolean
    default: false
  - name: TAG
    pattern: "^v[0-9]+$"
    default: v1
steps: ["true"]
"#;
    assert_eq!(params_of(yaml, &["ENVIRONMENT=dev"]), "ENVIRONMENT=dev REPLICAS=3 VERBOSE=false TAG=v1");
    assert_eq!(
        params_of(yaml, &["ENVIRONMENT=prod", "REPLICAS=07", "VERBOSE=TRUE"]),
        "ENVIRONMENT=prod REPLICAS=7 VERBOSE=true TAG=v1"
    );
    assert_snapshot!(params_of(yaml, &[]), @r#"params: param "ENVIRONMENT" is required (pass it with -p ENVIRONMENT=<value>)"#);
    assert_snapshot!(params_of(yaml, &["ENVIRONMENT=qa", "REPLICAS=11", "VERBOSE=maybe", "TAG=latest"]), @r#"
    params: param "ENVIRONMENT": "qa" is not one of dev, staging, prod
    params: param "REPLICAS": 11 is above the maximum 10
    params: param "VERBOSE": "maybe" is not true or false
    params: param "TAG": "latest" does not match the pattern ^v[0-9]+$
    "#);
}

#[test]
fn typed_param_declarations_are_validated() {
    assert_snapshot!(check(r#"
params:
  - name: N
    type: integer
    default: lots
  - name: M
    type: int
  - name: E
    enum: [a, b]
    default: c
  - name: S
    type: boolean
    min_length: 2
  - X: {type: string}
steps: ["true"]
"#), @r#"
        flow.yaml:5:14: params[0].N.default: "lots" is not an integer
        flow.yaml:7:5: params[1].M.type: unknown param type "int" (did you mean "integer"?)
        flow.yaml:10:14: params[2].E.default: the default "c" is not one of a, b
        flow.yaml:11:5: params[3].S: min_length, max_length and pattern need type string
        flow.yaml:14:5: params[4].X: a param definition must be written with `name:` (rewrite `- X: {...}` as `- name: X` with the other fields beside it)
        "#);
}

fn scope() -> Scope {
    let mut s = Scope::with_os_env([("HOME", "/synthetic-user"), ("SHELL", "/bin/zsh"), ("PATH", "/bin")]);
    s.set("1", "first");
    s.set("NAME", "world");
    s
}

fn argvs(inv: &Invocation) -> Vec<String> {
    inv.processes
        .iter()
        .map(|p| match p {
            Process::Exec { argv } => format!("{argv:?}"),
            Process::Script { argv, body } => format!("{argv:?} + script {body:?}"),
        })
        .collect()
}

#[test]
fn how_steps_become_processes() {
    let w = workflow(
        r#"
type: graph
steps:
  - name: default-shell
    command: echo hello $NAME $1 $HOME
  - name: multi
    command: [echo a, "false"]
  - name: own-shell
    shell: bash -o pipefail -c
    command: echo hi | tr h H
  - name: script
    script: |
      echo "$NAME" $1
  - name: shebang
    script: |
      #!/usr/bin/env python3
      print("hi")
  - name: interpreter
    command: perl -w
    script: print "hi";
  - name: exec
    exec: {command: /bin/echo, args: ["$NAME", 2]}
  - name: direct
    shell: direct
    command: /bin/echo "a b" '\$HOME' $NAME
"#,
    );
    let s = scope();
    let all: Vec<String> = w
        .steps
        .iter()
        .map(|st| format!("{}: {}", st.name, argvs(&st.invocation(&w, &s)).join(" then ")))
        .collect();
    assert_snapshot!(all.join("\n"), @r##"
    default-shell: ["/bin/zsh", "-e", "-c", "echo hello world first $HOME"]
    multi: ["/bin/zsh", "-e", "-c", "echo a"] then ["/bin/zsh", "-e", "-c", "false"]
    own-shell: ["bash", "-o", "pipefail", "-c", "echo hi | tr h H"]
    script: ["/bin/zsh", "-e"] + script "echo \"$NAME\" first"
    shebang: ["/usr/bin/env", "python3"] + script "#!/usr/bin/env python3\nprint(\"hi\")"
    interpreter: ["perl", "-w"] + script "print \"hi\";"
    exec: ["/bin/echo", "world", "2"]
    direct: ["/bin/echo", "a b", "$HOME", "world"]
    "##);
}

#[test]
fn workflow_shell_and_directories() {
    let w = workflow(
        r#"
shell: /bin/bash -e
working_dir: ~/jobs
steps:
  - name: a
    command: pwd
    working_dir: sub
    stdout: logs/out.txt
    env: {GREETING: "hello $NAME"}
  - name: b
    script: echo b
    shell: /bin/sh
    working_dir: /abs
"#,
    );
    let mut s = scope();
    let a = &w.steps[0];
    a.resolve_env(&mut s, &mut NoCommands).unwrap();
    let inv = a.invocation(&w, &s);
    assert_eq!(argvs(&inv), [r#"["/bin/bash", "-e", "-c", "pwd"]"#]);
    assert_eq!(inv.working_dir, Path::new("/synthetic-user/jobs/sub"));
    assert_eq!(inv.stdout.as_deref(), Some(Path::new("/synthetic-user/jobs/sub/logs/out.txt")));
    assert!(inv.env.contains(&("GREETING".to_owned(), "hello world".to_owned())));
    assert!(inv.env.contains(&("PWD".to_owned(), "/synthetic-user/jobs/sub".to_owned())));
    assert!(!inv.env.iter().any(|(k, _)| k == "1"));
    let b = w.steps[1].invocation(&w, &s);
    // A step that chooses its shell gets no `-e` from Cairn.
    assert_eq!(argvs(&b), [r#"["/bin/sh"] + script "echo b""#]);
    assert_eq!(b.working_dir, Path::new("/abs"));
    let plain = workflow("steps: [pwd]");
    assert_eq!(plain.steps[0].invocation(&plain, &s).working_dir, Path::new("/flows"));
}

#[test]
fn env_resolves_in_order_with_params_first() {
    let w = workflow(
        r#"
params:
  base: /data
env:
  - DIR: "${base}/subdir"
  - FULL: "${DIR}/file.txt"
  - STAMP: "`date +%Y`"
  - SHORT: "${FULL:0:5}"
steps: ["true"]
"#,
    );
    let mut s = Scope::new();
    for (k, v) in w.resolve_params(&[]).unwrap() {
        s.set(k, v);
    }
    let mut runner =
        |cmd: &str, _: &Scope| if cmd == "date +%Y" { Ok("2026\n".to_owned()) } else { Err("no".to_owned()) };
    w.resolve_env(&mut s, &mut runner).unwrap();
    assert_eq!(s.get("FULL"), Some("/data/subdir/file.txt"));
    assert_eq!(s.get("STAMP"), Some("2026"));
    assert_eq!(s.get("SHORT"), Some("/data"));
}

#[test]
fn preconditions_are_checked_or_handed_to_the_engine() {
    let w = workflow(
        r#"
preconditions:
  - condition: "`echo 1`"
    expected: "0"
steps:
  - name: a
    command: "true"
    preconditions:
      - condition: "${producer.output}"
        expected: "go"
      - "test -f ${NAME}.lock"
"#,
    );
    let mut s = scope();
    s.set_step("producer", StepInfo { output: Some("go".into()), ..StepInfo::default() });
    let mut runner = |_: &str, _: &Scope| Ok("1".to_owned());
    let top = w.check_preconditions(None, &s, &mut runner).unwrap();
    assert_eq!(top, vec![ConditionCheck::NotMet { reason: "expected \"0\", got \"1\"".into() }]);
    let step = w.check_preconditions(Some(&w.steps[0]), &s, &mut runner).unwrap();
    assert_eq!(step[0], ConditionCheck::Met);
    let ConditionCheck::Run(run) = &step[1] else { panic!("{:?}", step[1]) };
    assert_eq!(run.argv, ["/bin/zsh", "-c", "test -f world.lock"]);
    assert_eq!(run.judge(true), ConditionCheck::Met);
}

#[test]
fn load_reads_files_and_reports_missing_ones() {
    let e = load("/nonexistent/dir/flow.yaml").unwrap_err();
    assert!(e.to_string().starts_with("/nonexistent/dir/flow.yaml: cannot read the workflow file"));
}

#[test]
fn schedule_policies() {
    let w = workflow(
        r#"
schedule: "CRON_TZ=UTC 0 * * * *"
overlap_policy: latest
catchupWindow: 2d12h
steps: ["true"]
"#,
    );
    assert_eq!(w.overlap, OverlapPolicy::Latest);
    assert_eq!(w.catchup_window, Some(std::time::Duration::from_secs(60 * 3600)));
    assert!(w.warnings.is_empty(), "{:?}", w.warnings);
    let defaults = workflow("steps: [\"true\"]");
    assert_eq!((defaults.overlap, defaults.catchup_window), (OverlapPolicy::Skip, None));
    assert_eq!(workflow("catchup_window: 0s\nsteps: [\"true\"]").catchup_window, None);
    assert_eq!(workflow("overlap_policy: all\nsteps: [\"true\"]").overlap, OverlapPolicy::All);

    assert_snapshot!(check(r#"
schedule: ["CRON_TZ=Mars/Olympus_Mons 0 * * * *"]
overlap_policy: lastest
catchup_window: 6 hours
steps: ["true"]
"#), @r#"
        flow.yaml:2:12: schedule[0]: invalid cron expression "CRON_TZ=Mars/Olympus_Mons 0 * * * *": unknown time zone "Mars/Olympus_Mons" (use an IANA time zone name, e.g. "CRON_TZ=Europe/Paris 30 6 * * 1-5")
        flow.yaml:3:17: overlap_policy: unknown overlap policy "lastest" (did you mean "latest"?)
        flow.yaml:4:17: catchup_window: invalid duration "6 hours" (use a number with a unit `d`, `h`, `m` or `s`, e.g. "6h" or "2d12h")
    "#);
}
