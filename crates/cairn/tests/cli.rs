//! End to end: the real `cairn` binary, real shell steps, a real SQLite file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Env {
        Env { dir: tempfile::tempdir().unwrap() }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn write(&self, name: &str, yaml: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        path
    }

    fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.arg("--data-dir").arg(self.data()).current_dir(self.dir.path()).env("USER", "tester");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().unwrap()
    }

    /// The JSON objects a successful command prints, one per line.
    fn json_lines(&self, args: &[&str]) -> Vec<Value> {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        out.stdout
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect()
    }

    fn run_json(&self, file: &Path, extra: &[&str]) -> (i32, Value) {
        let out = self.cmd().arg("run").arg(file).arg("--json").args(extra).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let json = serde_json::from_str(stdout.trim())
            .unwrap_or_else(|e| panic!("{e}: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code().unwrap_or(-1), json)
    }
}

fn task<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no task {name}"))
}

fn statuses(task: &Value) -> Vec<String> {
    task["transitions"].as_array().unwrap().iter().map(|t| t["to"].as_str().unwrap().to_owned()).collect()
}

fn last_reason(task: &Value) -> String {
    task["transitions"].as_array().unwrap().last().unwrap()["reason"].as_str().unwrap().to_owned()
}

/// Waits for a file a step writes when it is running (a state, not a timeout).
fn wait_for_file(path: &Path) {
    let start = Instant::now();
    while !path.exists() {
        assert!(start.elapsed() < Duration::from_secs(30), "{} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_run_records_every_transition_and_prints_stable_json() {
    let env = Env::new();
    let file = env.write(
        "flow.yaml",
        r#"
name: tour
type: graph
params:
  - WHO: world
steps:
  - name: greet
    command: echo "hello ${WHO}"
    output: GREETING
  - name: shout
    command: echo "${GREETING}!"
    output: SHOUT
    depends: [greet]
  - name: report
    script: |
      echo "::progress 50 halfway"
      echo done
    depends: [greet]
"#,
    );
    let (code, run) = env.run_json(&file, &["-p", "WHO=cairn"]);
    assert_eq!(code, 0, "{run}");
    assert_eq!(run["status"], "COMPLETED");
    assert_eq!(run["workflow"], "tour");
    assert_eq!(run["params"]["WHO"], "cairn");
    assert_eq!(run["outputs"]["SHOUT"], "hello cairn!");
    let shout = task(&run, "shout");
    assert_eq!(statuses(shout), ["SUBMITTED", "BLOCKED", "PENDING", "RUNNING", "COMPLETED"]);
    assert_eq!(shout["attempts"], 1);
    assert_eq!(shout["exit_code"], 0);
    assert_eq!(shout["outputs"]["SHOUT"], "hello cairn!");
    let t = &shout["transitions"][3];
    assert_eq!((t["from"].as_str(), t["actor"].as_str()), (Some("PENDING"), Some("executor")));
    let d = &shout["durations"];
    for key in ["submitted_at", "run_at", "finished_at"] {
        assert!(d[key].as_str().unwrap().ends_with('Z'), "{key}: {d}");
    }
    for key in ["blocked_duration", "pending_duration", "execution_duration", "total_duration"] {
        assert!(d[key].as_f64().unwrap() >= 0.0, "{key}: {d}");
    }
    assert_eq!(task(&run, "report")["progress"]["percent"], 50.0);
    assert_eq!(task(&run, "report")["progress"]["message"], "halfway");

    // The same record is there for `status`, `history` and `logs`.
    let id = run["run_id"].as_str().unwrap();
    let out = env.run(&["status", &id[..12], "--json"]);
    let again: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["tasks"], run["tasks"]);
    let out = env.run(&["status", "--json"]);
    let newest: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(newest["run_id"], run["run_id"], "`status` alone shows the newest run");
    let out = env.run(&["history", "--json"]);
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((line["run_id"].as_str(), line["status"].as_str()), (Some(id), Some("COMPLETED")));
    let out = env.run(&["logs", id, "shout"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hello cairn!\n");
}

#[test]
fn invalid_workflows_are_refused_with_positions_before_anything_runs() {
    let env = Env::new();
    let marker = env.dir.path().join("ran");
    let file = env.write(
        "bad.yaml",
        &format!(
            "type: graph\nsteps:\n  - name: a\n    command: touch {}\n    depends: [b]\n  - name: b\n    command: \"true\"\n    depends: [a]\n    retry_polcy:\n      limit: 2\n",
            marker.display()
        ),
    );
    let out = env.run(&["run", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.yaml:9:5"), "{err}");
    assert!(err.contains("retry_polcy") && err.contains("retry_policy"), "{err}");
    assert!(err.contains("cycle"), "{err}");
    assert!(!marker.exists());
    let out = env.run(&["history", "--json"]);
    assert!(out.stdout.is_empty(), "nothing was stored");

    let out = env.run(&["validate", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let cron = env.write("cron.yaml", "schedule: \"61 * * * *\"\nsteps:\n  - echo hi\n");
    let out = env.run(&["validate", cron.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cron.yaml:1:"), "{out:?}");
}

#[test]
fn retries_keep_every_failed_attempt_and_abandon_downstream_when_final() {
    let env = Env::new();
    let file = env.write(
        "retry.yaml",
        r#"
type: graph
steps:
  - name: flaky
    command: sh -c 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ $n -ge 3 ]'
    retry_policy:
      limit: 3
      interval_sec: 0
  - name: never
    command: exit 4
    retry_policy:
      limit: 1
  - name: after-never
    command: "true"
    depends: [never]
"#,
    );
    let (code, run) = env.run_json(&file, &[]);
    assert_eq!(code, 1);
    assert_eq!(run["status"], "FAILED");
    let flaky = task(&run, "flaky");
    assert_eq!(flaky["status"], "COMPLETED");
    assert_eq!(flaky["retry_count"], 2);
    assert_eq!(flaky["attempt_records"].as_array().unwrap().len(), 3);
    assert_eq!(flaky["attempt_records"][0]["exit_code"], 1);
    assert_eq!(flaky["attempt_records"][0]["outcome"], "FAILED");
    let never = task(&run, "never");
    assert_eq!(statuses(never), ["SUBMITTED", "PENDING", "RUNNING", "PENDING", "RUNNING", "FAILED"]);
    assert_eq!(never["exit_code"], 4);
    assert_eq!(task(&run, "after-never")["status"], "ABANDONED");
    assert_eq!(last_reason(task(&run, "after-never")), "upstream \"never\" failed");
}

#[test]
fn preconditions_skip_and_continue_on_lets_the_run_partially_succeed() {
    let env = Env::new();
    let file = env.write(
        "pre.yaml",
        r#"
type: graph
env:
  - STAGE: dev
steps:
  - name: deploy
    command: echo deploying
    preconditions:
      - condition: "${STAGE}"
        expected: prod
  - name: after-deploy
    command: echo after
    depends: [deploy]
  - name: lint
    command: exit 1
    continue_on:
      failure: true
  - name: package
    command: echo packaged
    depends: [lint]
"#,
    );
    let (code, run) = env.run_json(&file, &[]);
    assert_eq!(code, 0);
    assert_eq!(run["status"], "PARTIALLY_SUCCEEDED");
    let deploy = task(&run, "deploy");
    assert_eq!(statuses(deploy), ["SUBMITTED", "PENDING", "SKIPPED"]);
    assert!(last_reason(deploy).contains("precondition not met"), "{deploy}");
    assert_eq!(deploy["durations"]["execution_duration"], 0.0);
    assert!(deploy["durations"]["run_at"].is_null());
    assert_eq!(task(&run, "after-deploy")["status"], "SKIPPED");
    assert_eq!(task(&run, "lint")["status"], "FAILED");
    assert_eq!(task(&run, "package")["status"], "COMPLETED");
}

#[test]
fn sigint_cancels_kills_running_steps_and_records_it() {
    let env = Env::new();
    let started = env.dir.path().join("started");
    let file = env.write(
        "long.yaml",
        &format!(
            "type: graph\nsteps:\n  - name: long\n    command: sh -c 'touch {}; sleep 300'\n  - name: next\n    command: \"true\"\n    depends: [long]\nhandler_on:\n  abort:\n    command: echo cleaning up\n",
            started.display()
        ),
    );
    let child =
        env.cmd().args(["run", file.to_str().unwrap(), "--json"]).stdout(Stdio::piped()).spawn().unwrap();
    wait_for_file(&started);
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGINT)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(run["status"], "CANCELED");
    let long = task(&run, "long");
    assert_eq!(long["status"], "CANCELED");
    assert_eq!(last_reason(long), "canceled by user:tester");
    assert_eq!(task(&run, "next")["status"], "ABANDONED");
    assert_eq!(task(&run, "onAbort")["status"], "COMPLETED");
    let last = run["transitions"].as_array().unwrap().last().unwrap().clone();
    assert_eq!((last["to"].as_str(), last["actor"].as_str()), (Some("CANCELED"), Some("user:tester")));
}

#[test]
fn a_run_killed_with_sigkill_is_recovered_by_the_next_command() {
    let env = Env::new();
    let started = env.dir.path().join("started");
    let pid_file = env.dir.path().join("step.pid");
    let file = env.write(
        "doomed.yaml",
        &format!(
            "type: graph\nsteps:\n  - name: doomed\n    command: sh -c 'echo $$ > {}; touch {}; exec sleep 300'\n  - name: downstream\n    command: \"true\"\n    depends: [doomed]\n",
            pid_file.display(),
            started.display()
        ),
    );
    let mut child = env.cmd().args(["run", file.to_str().unwrap(), "--quiet"]).spawn().unwrap();
    wait_for_file(&started);
    child.kill().unwrap(); // SIGKILL: no chance to record anything.
    child.wait().unwrap();
    // The step's own process group outlives its executor; end it as a machine loss would.
    let step_pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(step_pid), nix::sys::signal::Signal::SIGKILL);

    let out = env.run(&["history", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let line: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(line["status"], "FAILED", "{line}");
    assert!(line["error"].as_str().unwrap().contains("heartbeat lost"), "{line}");
    let id = line["run_id"].as_str().unwrap();
    let out = env.run(&["status", id, "--json"]);
    let run: Value = serde_json::from_slice(&out.stdout).unwrap();
    let doomed = task(&run, "doomed");
    assert_eq!(doomed["status"], "FAILED");
    let reason = last_reason(doomed);
    assert!(reason.starts_with("heartbeat lost (worker local:"), "{reason}");
    assert_eq!(doomed["transitions"].as_array().unwrap().last().unwrap()["actor"], "reaper");
    assert_eq!(doomed["attempt_records"][0]["outcome"], "FAILED");
    assert_eq!(task(&run, "downstream")["status"], "ABANDONED");
    for t in run["tasks"].as_array().unwrap() {
        assert_ne!(t["status"], "RUNNING");
    }

    // The reaped attempt is listed among the alerts' reaped attempts.
    let reaped = env.json_lines(&["alerts", "--reaped", "--json"]);
    assert_eq!(reaped.len(), 1, "{reaped:?}");
    assert_eq!((reaped[0]["run_id"].as_str(), reaped[0]["step"].as_str()), (Some(id), Some("doomed")));
    assert_eq!((reaped[0]["attempt"].as_u64(), reaped[0]["to"].as_str()), (Some(1), Some("FAILED")));
    let table = String::from_utf8_lossy(&env.run(&["alerts", "--reaped"]).stdout).to_string();
    assert!(
        table.contains("doomed/doomed") && table.contains("failed") && table.contains("heartbeat lost"),
        "{table}"
    );
    assert!(env.json_lines(&["alerts", "--reaped", "--workflow", "other", "--json"]).is_empty());
    assert_eq!(env.run(&["alerts", "--reaped", "--open"]).status.code(), Some(2));
    assert_eq!(env.run(&["alerts", "--reaped", "--before", "nope"]).status.code(), Some(2));
}

#[test]
fn a_missing_run_or_step_is_a_clear_error() {
    let env = Env::new();
    let out = env.run(&["status", "01ZZZZ"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no run id starts with"), "{out:?}");
    let out = env.run(&["history", "--status", "DONE"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("COMPLETED"), "{out:?}");
}

#[test]
fn a_step_sees_the_outputs_of_its_upstream_only() {
    let env = Env::new();
    let file = env.write(
        "vis.yaml",
        r#"
type: graph
steps:
  - name: a
    command: echo from-a
    output: A
  - name: b
    command: echo "b saw [${A}]"
    output: B
    depends: [a]
  - name: lone
    command: sh -c 'sleep 0.2; echo "lone saw [${A}]"'
    output: LONE
  - name: join
    command: echo "${B} ${LONE}"
    output: JOIN
    depends: [b, lone]
"#,
    );
    let (code, run) = env.run_json(&file, &[]);
    assert_eq!(code, 0, "{run}");
    assert_eq!(task(&run, "b")["outputs"]["B"], "b saw [from-a]");
    // `lone` does not depend on `a`: `${A}` is not defined for it, however the race goes.
    assert_eq!(task(&run, "lone")["outputs"]["LONE"], "lone saw []");
    assert_eq!(task(&run, "join")["outputs"]["JOIN"], "b saw [from-a] lone saw []");
}

#[test]
fn dotenv_files_and_the_run_work_dir_reach_steps() {
    let env = Env::new();
    std::fs::write(env.dir.path().join(".env"), "# settings\nREGION=eu-west\nexport TIER=\"gold\"\n")
        .unwrap();
    let file = env.write(
        "dot.yaml",
        r#"
env:
  - WHERE: ${REGION}/${TIER}
steps:
  - name: show
    command: sh -c 'echo "$WHERE"; test -d "$DAG_RUN_WORK_DIR"'
    output: WHERE_OUT
"#,
    );
    let (code, run) = env.run_json(&file, &[]);
    assert_eq!(code, 0, "{run}");
    assert_eq!(run["outputs"]["WHERE_OUT"], "eu-west/gold");
}

#[test]
fn the_examples_validate_and_hello_runs() {
    let env = Env::new();
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "{files:?}");
    let out = env.cmd().arg("validate").args(&files).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (code, run) = env.run_json(&examples.join("hello.yaml"), &["-p", "NAME=Ada"]);
    assert_eq!((code, run["status"].as_str()), (0, Some("COMPLETED")), "{run}");
}

#[test]
fn history_filters_pages_and_counts_runs_and_tasks() {
    let env = Env::new();
    let ok = env.write(
        "ok.yaml",
        "name: ok\nlabels: [team=data, nightly]\nsteps:\n  - name: fine\n    command: \"true\"\n",
    );
    let bad = env.write("bad.yaml", "name: bad\nsteps:\n  - name: broken\n    command: exit 3\n");
    for _ in 0..3 {
        assert!(env.run(&["run", ok.to_str().unwrap(), "--quiet"]).status.success());
    }
    assert_eq!(env.run(&["run", bad.to_str().unwrap(), "--quiet"]).status.code(), Some(1));
    let lines = |args: &[&str]| env.json_lines(args);
    let failed = lines(&["history", "--status", "failed", "--json"]);
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0]["workflow"], "bad");
    assert_eq!(lines(&["history", "--label", "team=data", "--since", "1h", "--json"]).len(), 3);
    assert_eq!(lines(&["history", "--label", "team=ops", "--json"]).len(), 0);
    // Two pages of two, through the cursor printed under the first.
    let out = env.run(&["history", "--limit", "2"]);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let cursor = text.lines().last().unwrap().strip_prefix("more: add --cursor ").expect(&text).to_owned();
    let rest = lines(&["history", "--limit", "2", "--cursor", &cursor, "--json"]);
    assert_eq!(rest.len(), 2);
    let wrong = env.run(&["history", "--limit", "2", "--status", "FAILED", "--cursor", &cursor]);
    assert_eq!(wrong.status.code(), Some(2), "a cursor of other filters is refused: {wrong:?}");
    // Tasks, by step.
    let broken = lines(&["history", "--tasks", "--step", "broken", "--json"]);
    assert_eq!((broken.len(), broken[0]["status"].as_str()), (1, Some("FAILED")));
    // The status mix of the last day.
    let stats = lines(&["history", "--stats", "--bucket", "hour", "--json"]);
    assert_eq!(stats[0]["runs"], serde_json::json!({ "COMPLETED": 3, "FAILED": 1 }), "{stats:?}");
    // Then how the tasks that finished in it spent their time (the API's shape).
    let phases = stats.last().unwrap();
    let steps = phases["steps"].as_array().expect("the phases come last");
    let step = |name: &str| steps.iter().find(|s| s["step"] == name).expect(name).clone();
    assert_eq!((step("fine")["workflow"].as_str(), step("fine")["tasks"].as_u64()), (Some("ok"), Some(3)));
    assert!(step("fine")["execution"]["max"].as_f64().unwrap() > 0.0, "{phases}");
    assert_eq!(step("broken")["failed"], 1);
    // `cairn status` shows what the history of the step leads to expect.
    let ok_run = lines(&["history", "--workflow", "ok", "--limit", "1", "--json"])[0]["run_id"].clone();
    let out = env.run(&["status", ok_run.as_str().unwrap(), "--json"]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["tasks"][0]["expected"]["samples"], 3, "{shown}");
    assert_eq!(shown["expected"]["samples"], 3, "{shown}");
    assert_eq!(phases["most_failing"][0]["step"], "broken");
    assert_eq!(phases["slowest"].as_array().unwrap().len(), 4);
    let text =
        String::from_utf8_lossy(&env.run(&["history", "--stats", "--slowest", "2"]).stdout).to_string();
    assert!(text.contains("slowest tasks:") && text.contains("bad: broken, 1 failed"), "{text}");
    let out = env.run(&["history", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("RFC 3339"), "{out:?}");
}

#[test]
fn alerts_lists_the_stores_alerts_newest_first() {
    use cairn_core::alert::AlertKind;
    use cairn_core::{AlertId, RunStatus, Timestamp};
    use cairn_store::{AlertKey, AlertWrite, NewAlert, SqliteStore, Store};

    let env = Env::new();
    assert_eq!(String::from_utf8_lossy(&env.run(&["alerts"]).stdout).trim(), "no alerts");
    // Raised as the leader's anomaly watch would, in the data directory's store.
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let ids = runtime.block_on(async {
        let store = SqliteStore::open(&env.data().join("cairn.db"), Default::default()).unwrap();
        let mut ids = Vec::new();
        for (i, workflow) in ["etl", "report"].into_iter().enumerate() {
            let at = Timestamp::from_micros(1_800_000_000_000_000 + i as i64 * 1_000_000);
            let key = AlertKey {
                kind: AlertKind::Anomaly,
                workflow: workflow.into(),
                status: Some(RunStatus::Failed),
            };
            let new = NewAlert {
                id: AlertId::new(at),
                key,
                raised_at: at,
                message: format!("{workflow}: FAILED rose"),
                details: serde_json::json!({}),
            };
            ids.push(store.write_alert(AlertWrite::Raise(new)).await.unwrap().unwrap());
        }
        let key =
            AlertKey { kind: AlertKind::Anomaly, workflow: "etl".into(), status: Some(RunStatus::Failed) };
        store
            .write_alert(AlertWrite::Resolve { key, at: Timestamp::from_micros(1_800_000_100_000_000) })
            .await
            .unwrap();
        store.close().await.unwrap();
        ids
    });
    let lines = |args: &[&str]| env.json_lines(args);
    let all = lines(&["alerts", "--json"]);
    let listed: Vec<&str> = all.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(listed, [ids[1].to_string(), ids[0].to_string()]);
    let open = lines(&["alerts", "--open", "--json"]);
    assert_eq!((open.len(), open[0]["workflow"].as_str()), (1, Some("report")));
    assert_eq!(
        lines(&["alerts", "--workflow", "etl", "--json"])[0]["resolved_at"],
        "2027-01-15T08:01:40.000000Z"
    );
    assert_eq!(lines(&["alerts", "--before", &ids[1].to_string(), "--json"]).len(), 1);
    let table = String::from_utf8_lossy(&env.run(&["alerts"]).stdout).to_string();
    assert!(
        table.contains("open") && table.contains("resolved") && table.contains("report: FAILED rose"),
        "{table}"
    );
    assert_eq!(env.run(&["alerts", "--before", "nope"]).status.code(), Some(2));
    assert_eq!(env.run(&["alerts", "--limit", "0"]).status.code(), Some(2));
}

#[test]
fn tokens_are_created_once_listed_without_secrets_and_revoked() {
    let env = Env::new();
    assert_eq!(String::from_utf8_lossy(&env.run(&["token", "list"]).stdout).trim(), "no tokens");

    let out =
        env.run(&["token", "create", "ci", "--role", "operator", "--workflows", "etl-*", "--expires", "30d"]);
    assert!(out.status.success(), "{out:?}");
    let secret = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(secret.starts_with("cairn_") && secret.len() == 46, "{secret}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("will not be shown again"), "{out:?}");

    let listed = env.json_lines(&["token", "list", "--json"]);
    assert_eq!(listed.len(), 1);
    let t = &listed[0];
    assert_eq!(
        (t["name"].as_str(), t["role"].as_str(), t["state"].as_str()),
        (Some("ci"), Some("operator"), Some("live"))
    );
    assert_eq!(t["prefix"].as_str(), Some(&secret[..12]));
    assert_eq!(t["workflows"].as_str(), Some("etl-*"));
    assert!(t["expires_at"].is_string());
    assert!(t.get("hash").is_none());
    let table = String::from_utf8_lossy(&env.run(&["token", "list"]).stdout).to_string();
    assert!(table.contains("ci") && table.contains(&secret[..12]) && table.contains("live"), "{table}");
    for shown in [&table, &listed[0].to_string()] {
        assert!(!shown.contains(&secret), "the secret is never listed: {shown}");
    }

    let again = env.run(&["token", "create", "ci", "--role", "viewer"]);
    assert_eq!(again.status.code(), Some(2), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("revoke it first"), "{again:?}");

    let worker = env.run(&["token", "create", "gpu", "--role", "worker"]);
    assert_eq!(worker.status.code(), Some(2), "{worker:?}");
    assert!(String::from_utf8_lossy(&worker.stderr).contains("--queue"), "{worker:?}");
    let viewer = env.run(&["token", "create", "v", "--role", "viewer", "--queue", "gpu"]);
    assert_eq!(viewer.status.code(), Some(2), "{viewer:?}");
    assert!(env.run(&["token", "create", "gpu", "--role", "worker", "--queue", "gpu"]).status.success());

    let revoked = env.run(&["token", "revoke", "ci"]);
    assert!(revoked.status.success(), "{revoked:?}");
    assert_eq!(env.run(&["token", "revoke", "ci"]).status.code(), Some(2), "revoked already");
    let listed = env.json_lines(&["token", "list", "--json"]);
    let states: Vec<(&str, &str)> =
        listed.iter().map(|t| (t["name"].as_str().unwrap(), t["state"].as_str().unwrap())).collect();
    assert_eq!(states, [("gpu", "live"), ("ci", "revoked")]);
    assert_eq!(listed[0]["queues"], serde_json::json!(["gpu"]));
    assert!(
        env.run(&["token", "create", "ci", "--role", "viewer"]).status.success(),
        "the name is free again"
    );
}

#[test]
fn audit_lists_token_management_by_the_cli_newest_first() {
    let env = Env::new();
    assert_eq!(String::from_utf8_lossy(&env.run(&["audit"]).stdout).trim(), "no audit events");
    assert!(env.run(&["token", "create", "ci", "--role", "operator"]).status.success());
    assert!(env.run(&["token", "revoke", "ci"]).status.success());

    let events = env.json_lines(&["audit", "--json"]);
    let seen: Vec<(&str, &str, &str)> = events
        .iter()
        .map(|e| (e["kind"].as_str().unwrap(), e["actor"].as_str().unwrap(), e["target"].as_str().unwrap()))
        .collect();
    assert_eq!(seen, [("token_revoked", "cli", "ci"), ("token_created", "cli", "ci")]);

    let created = env.json_lines(&["audit", "--json", "--kind", "token_created", "--actor", "cli"]);
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["detail"]["role"], "operator");
    assert_eq!(env.json_lines(&["audit", "--json", "--limit", "1"]).len(), 1);
    let table = String::from_utf8_lossy(&env.run(&["audit"]).stdout).to_string();
    assert!(table.contains("token_revoked") && table.contains("cli"), "{table}");

    assert_eq!(env.run(&["audit", "--kind", "login"]).status.code(), Some(2));
    assert_eq!(env.run(&["audit", "--limit", "0"]).status.code(), Some(2));
}

#[test]
fn report_shows_the_days_runs_failure_rate_and_slowest_steps() {
    let today = || jiff::Timestamp::now().to_zoned(jiff::tz::TimeZone::UTC).date();
    // Two runs on one UTC day: made again, on a fresh data directory, in the
    // rare case midnight passes between them.
    let (env, day) = loop {
        let env = Env::new();
        let flow = env.write(
            "nightly.yaml",
            "name: nightly\nparams:\n  - CODE: 0\nsteps:\n  - name: load\n    command: exit ${CODE}\n",
        );
        let day = today();
        assert!(env.run(&["run", flow.to_str().unwrap(), "--quiet"]).status.success());
        let failed = env.run(&["run", flow.to_str().unwrap(), "--quiet", "-p", "CODE=3"]);
        assert_eq!(failed.status.code(), Some(1), "{failed:?}");
        if today() == day {
            break (env, day);
        }
    };

    // The day that ends at the next midnight UTC holds both runs.
    let tomorrow = day.tomorrow().unwrap().to_string();
    let report = &env.json_lines(&["report", "--end", &tomorrow, "--json"])[0];
    assert_eq!(report["period"], "day");
    let nightly = &report["workflows"][0];
    assert_eq!(nightly["workflow"], "nightly", "{report}");
    assert_eq!(nightly["current"]["counts"], serde_json::json!({ "COMPLETED": 1, "FAILED": 1 }));
    assert_eq!(nightly["current"]["failure_rate"], 0.5);
    assert_eq!(nightly["previous"]["failure_rate"], Value::Null);
    assert_eq!(nightly["slowest_steps"][0]["step"], "load");
    let load = &nightly["slowest_steps"][0];
    assert_eq!((load["count"].as_u64(), load["failures"].as_u64()), (Some(2), Some(1)), "{load}");

    let out = env.run(&["report", "--end", &tomorrow]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("Status report of the day"), "{text}");
    assert!(text.contains("\nnightly\n"), "{text}");
    assert!(text.contains("COMPLETED 1, FAILED 1 (was none)"), "{text}");
    assert!(text.contains("failure rate  50.0% (nothing finished before)"), "{text}");
    assert!(text.contains("slowest steps") && text.contains("load"), "{text}");

    // A week ending then holds them too; a day long past holds nothing.
    let week = &env.json_lines(&["report", "--period", "weekly", "--end", &tomorrow, "--json"])[0];
    assert_eq!(week["workflows"][0]["current"]["finished"], 2, "{week}");
    let past = String::from_utf8_lossy(&env.run(&["report", "--end", "2020-01-01"]).stdout).to_string();
    assert!(past.contains("no workflow finished a run in either period"), "{past}");
    let other = &env.json_lines(&["report", "--end", &tomorrow, "--workflow", "other", "--json"])[0];
    assert_eq!(other["workflows"], serde_json::json!([]));

    for bad in [["--period", "month"], ["--end", "soon"]] {
        let out = env.run(&["report", bad[0], bad[1]]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(bad[0]), "{out:?}");
    }
}
