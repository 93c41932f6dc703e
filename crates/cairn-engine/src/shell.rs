//! Workflows of shell steps: turns a validated [`Workflow`] into a
//! [`RunPlan`], and runs its steps as local processes with Dagu's variable
//! semantics (params, env, outputs of earlier steps, step references).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use cairn_core::protocol::{RemoteCommand, RemoteProcess};
use cairn_core::retry::FailureKind;
use cairn_core::spec::{ConditionCheck, HandlerKind, Process, Step, Workflow};
use cairn_core::vars::{CommandRunner, Scope, StepInfo};
use nix::sys::signal::Signal;

use crate::plan::{ContinueOn, Handler, PlannedTask, Role, RunPlan};
use crate::process::{KILL_GRACE, MAX_CAPTURE_BYTES, ProcessEnd, ProcessSpec, run_process};
use crate::runner::{AttemptContext, AttemptOutcome, Precheck, TaskRunner};

/// The plan of one run of `workflow`. Tasks are the steps in file order, then
/// the handlers; root steps wait for the init handler when there is one.
pub fn plan(workflow: &Workflow, params: &[(String, String)], source: String, trigger: &str) -> RunPlan {
    let handlers: Vec<(HandlerKind, &Step)> =
        HandlerKind::ALL.into_iter().filter_map(|k| workflow.handlers.get(k).map(|s| (k, s))).collect();
    let init = handlers.iter().position(|(k, _)| *k == HandlerKind::Init).map(|i| workflow.steps.len() + i);
    let mut tasks: Vec<PlannedTask> = workflow
        .steps
        .iter()
        .map(|s| {
            let mut depends: Vec<usize> = s.depends.iter().map(|d| d.0).collect();
            if depends.is_empty()
                && let Some(init) = init
            {
                depends.push(init);
            }
            planned(s, depends, Role::Step)
        })
        .collect();
    for (kind, step) in &handlers {
        tasks.push(planned(step, vec![], Role::Handler(handler(*kind))));
    }
    RunPlan {
        workflow: workflow.name.clone(),
        tasks,
        max_active: workflow.max_active_steps.map(|n| n.max(1) as usize),
        timeout: workflow.timeout,
        delay: workflow.delay,
        params: params.iter().cloned().collect(),
        spec_source: source,
        spec_path: workflow.file.as_ref().map(|p| p.display().to_string()),
        trigger: trigger.to_owned(),
        requested_by: cairn_core::record::Actor::Scheduler,
        schedule_tick: None,
        labels: workflow
            .labels
            .iter()
            .map(|l| match &l.value {
                Some(v) => format!("{}={v}", l.key),
                None => l.key.clone(),
            })
            .collect(),
        preconditions: !workflow.preconditions.is_empty(),
        keep_details: workflow.keep_details,
        carried: Vec::new(),
    }
}

/// Whether any step or handler has preconditions, which the runner then
/// checks before each start.
pub fn needs_prechecks(workflow: &Workflow) -> bool {
    workflow.steps.iter().chain(workflow.handlers.iter()).any(|s| !s.preconditions.is_empty())
}

fn handler(kind: HandlerKind) -> Handler {
    match kind {
        HandlerKind::Init => Handler::Init,
        HandlerKind::Success => Handler::Success,
        HandlerKind::Failure => Handler::Failure,
        HandlerKind::Abort => Handler::Cancel,
        HandlerKind::Exit => Handler::Exit,
    }
}

fn planned(step: &Step, depends: Vec<usize>, role: Role) -> PlannedTask {
    let c = &step.continue_on;
    PlannedTask {
        name: step.name.clone(),
        depends,
        role,
        retry: step.retry.clone(),
        timeout: step.timeout,
        continue_on: ContinueOn {
            failure: c.failure,
            skipped: c.skipped,
            exit_codes: c.exit_codes.clone(),
            mark_success: c.mark_success,
        },
        progress: step.progress.unwrap_or_default(),
        queue: step.queue.clone(),
        heartbeat_timeout: step.heartbeat_timeout,
        task_type: step.task_type().map(str::to_owned),
    }
}

/// Runs the steps of one run of a workflow as local processes.
pub struct ShellRunner {
    workflow: Arc<Workflow>,
    /// In plan order: steps, then handlers.
    steps: Vec<Step>,
    /// Params, the workflow's env and special variables: what every step sees.
    base: Scope,
    /// For each task, the steps whose outputs it sees, in topological order:
    /// its transitive upstream (Dagu's rule), so what a step reads never
    /// depends on which parallel branch happened to finish first.
    visible: Vec<Vec<usize>>,
    /// What each finished step published.
    published: Mutex<Vec<Option<Published>>>,
}

#[derive(Clone)]
struct Published {
    /// The variables later steps see: the `output:` variable of a shell
    /// step, every output an SDK handler returned.
    vars: Vec<(String, String)>,
    info: StepInfo,
}

impl ShellRunner {
    /// `params` as resolved by [`Workflow::resolve_params`]; the workflow's
    /// env is expanded here, once per run, as Dagu does.
    pub fn new(
        workflow: Arc<Workflow>,
        params: &[(String, String)],
        params_json: Option<String>,
    ) -> Result<Self, String> {
        let mut scope = Scope::with_os_env(std::env::vars());
        for (k, v) in params {
            scope.set(k.clone(), v.clone());
        }
        if let Some(json) = params_json {
            scope.set("DAGU_PARAMS_JSON", json.clone());
            scope.set("DAG_PARAMS_JSON", json);
        }
        scope.set("DAG_NAME", workflow.name.clone());
        load_dotenv(&workflow, &mut scope)?;
        workflow.resolve_env(&mut scope, &mut ShellCommands).map_err(|e| format!("env: {e}"))?;
        let mut steps = workflow.steps.clone();
        steps.extend(HandlerKind::ALL.into_iter().filter_map(|k| workflow.handlers.get(k).cloned()));
        let visible = steps.iter().map(|s| visible_steps(&workflow, s)).collect();
        let published = Mutex::new(vec![None; steps.len()]);
        Ok(ShellRunner { workflow, steps, base: scope, visible, published })
    }

    fn scope_for(&self, ctx: &AttemptContext) -> Scope {
        let mut scope = self.base.clone();
        let published = self.published.lock().unwrap_or_else(|e| e.into_inner());
        for &i in &self.visible[ctx.index] {
            let Some(p) = &published[i] else { continue };
            for (name, value) in &p.vars {
                scope.set(name.clone(), value.clone());
            }
            let step = &self.steps[i];
            if let Some(id) = &step.id {
                scope.set_step(id.clone(), p.info.clone());
            }
            scope.set_step(step.name.clone(), p.info.clone());
        }
        drop(published);
        for (k, v) in &ctx.env {
            scope.set(k.clone(), v.clone());
        }
        if let Some(run_dir) = ctx.stdout_path.parent() {
            scope.set("DAG_RUN_WORK_DIR", run_dir.join("work").display().to_string());
        }
        scope.set("DAG_RUN_LOG_FILE", ctx.stdout_path.display().to_string());
        scope.set("DAG_RUN_STEP_STDOUT_FILE", ctx.stdout_path.display().to_string());
        scope.set("DAG_RUN_STEP_STDERR_FILE", ctx.stderr_path.display().to_string());
        scope
    }

    /// Publishes a finished attempt's output and references for later steps.
    fn publish(&self, step: &Step, ctx: &AttemptContext, exit_code: Option<i32>, output: Option<&str>) {
        let info = StepInfo {
            stdout: Some(ctx.stdout_path.display().to_string()),
            stderr: Some(ctx.stderr_path.display().to_string()),
            exit_code,
            output: output.map(str::to_owned),
        };
        let vars = step.output.clone().zip(output.map(str::to_owned)).into_iter().collect();
        self.published.lock().unwrap_or_else(|e| e.into_inner())[ctx.index] = Some(Published { vars, info });
    }

    /// Evaluates conditions; command conditions run in the step's shell.
    fn judge(checks: Vec<ConditionCheck>, dir: &Path, env: &[(String, String)]) -> Precheck {
        for check in checks {
            match check {
                ConditionCheck::Met => {}
                ConditionCheck::NotMet { reason } => {
                    return Precheck::Skip(format!("precondition not met: {reason}"));
                }
                ConditionCheck::Run(cmd) => {
                    let Some((program, args)) = cmd.argv.split_first() else { continue };
                    let status = std::process::Command::new(program)
                        .args(args)
                        .current_dir(dir)
                        .envs(env.iter().map(|(k, v)| (k, v)))
                        .stdin(std::process::Stdio::null())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status();
                    match status {
                        Ok(s) => {
                            if let ConditionCheck::NotMet { reason } = cmd.judge(s.success()) {
                                return Precheck::Skip(format!("precondition not met: {reason}"));
                            }
                        }
                        Err(e) => {
                            return Precheck::Fail(format!(
                                "precondition {:?} could not run: {e}",
                                cmd.command
                            ));
                        }
                    }
                }
            }
        }
        Precheck::Run
    }

    /// The workflow's own preconditions, checked once before any step.
    pub fn check_workflow_preconditions(&self) -> Precheck {
        let scope = &self.base;
        match self.workflow.check_preconditions(None, scope, &mut ShellCommands) {
            Ok(checks) => Self::judge(checks, &self.workflow.working_dir(scope), &scope.exports()),
            Err(e) => Precheck::Fail(format!("workflow precondition: {e}")),
        }
    }

    fn precheck_blocking(&self, ctx: &AttemptContext) -> Precheck {
        let step = &self.steps[ctx.index];
        if step.preconditions.is_empty() {
            return Precheck::Run;
        }
        let mut scope = self.scope_for(ctx);
        if let Err(e) = step.resolve_env(&mut scope, &mut ShellCommands) {
            return Precheck::Fail(format!("env: {e}"));
        }
        match self.workflow.check_preconditions(Some(step), &scope, &mut ShellCommands) {
            Ok(checks) => Self::judge(checks, &step.working_dir(&self.workflow, &scope), &scope.exports()),
            Err(e) => Precheck::Fail(format!("precondition: {e}")),
        }
    }

    async fn run_attempt(&self, ctx: AttemptContext) -> AttemptOutcome {
        let step = self.steps[ctx.index].clone();
        if let Some(task_type) = step.task_type() {
            // The spec gives such a step a queue, so it only ever runs remotely.
            return start_failed(format!(
                "task type {task_type:?} has no command to run here: an SDK worker polling its queue runs it"
            ));
        }
        let mut scope = self.scope_for(&ctx);
        let prepared = tokio::task::block_in_place(|| step.resolve_env(&mut scope, &mut ShellCommands));
        if let Err(e) = prepared {
            return start_failed(format!("env: {e}"));
        }
        let inv = step.invocation(&self.workflow, &scope);
        if let Some(parent) = ctx.stdout_path.parent()
            && let Err(e) = tokio::fs::create_dir_all(parent).await
        {
            return start_failed(format!("cannot create the log directory {}: {e}", parent.display()));
        }
        if let Some(work) = scope.var("DAG_RUN_WORK_DIR")
            && let Err(e) = tokio::fs::create_dir_all(work).await
        {
            return start_failed(format!("cannot create the run's work directory {work}: {e}"));
        }
        if !inv.working_dir.exists()
            && let Err(e) = tokio::fs::create_dir_all(&inv.working_dir).await
        {
            return start_failed(format!(
                "cannot create the working directory {}: {e}",
                inv.working_dir.display()
            ));
        }
        let capture = step.output.is_some() || !step.continue_on.output.is_empty();
        let stop_signal =
            step.signal_on_stop.and_then(|s| Signal::try_from(s.number).ok()).unwrap_or(Signal::SIGTERM);
        let mut stdout_all = String::new();
        let mut last_code = Some(0);
        let mut failure: Option<(FailureKind, Option<i32>, String)> = None;
        let mut killed = false;
        for (i, process) in inv.processes.iter().enumerate() {
            let (argv, script) = match process {
                Process::Exec { argv } => (argv.clone(), None),
                Process::Script { argv, body } => {
                    let path = ctx.stdout_path.with_extension(format!("script{i}"));
                    if let Err(e) = write_script(&path, body).await {
                        return start_failed(format!("cannot write the script {}: {e}", path.display()));
                    }
                    let mut argv = argv.clone();
                    argv.push(path.display().to_string());
                    (argv, Some(path))
                }
            };
            let Some((program, args)) = argv.split_first() else { continue };
            let spec = ProcessSpec {
                program: program.clone(),
                args: args.to_vec(),
                dir: inv.working_dir.clone(),
                env: inv.env.clone(),
                stop_signal,
                kill_grace: self.workflow.max_clean_up_time.unwrap_or(KILL_GRACE),
                max_capture: self
                    .workflow
                    .max_output_size
                    .map_or(MAX_CAPTURE_BYTES, |n| usize::try_from(n).unwrap_or(usize::MAX)),
            };
            let end =
                run_process(&spec, &ctx.stdout_path, &ctx.stderr_path, capture, &ctx.progress, &ctx.cancel)
                    .await;
            if let Some(path) = script {
                let _ = tokio::fs::remove_file(path).await;
            }
            match end {
                ProcessEnd::SpawnFailed(e) => {
                    failure = Some((FailureKind::StartFailed, None, e));
                    break;
                }
                ProcessEnd::Exited { code, signal, stdout, stderr_tail, killed: k } => {
                    stdout_all.push_str(stdout.as_deref().unwrap_or(""));
                    last_code = code;
                    if k {
                        killed = true;
                        break;
                    }
                    if code != Some(0) {
                        let error = match (code, signal) {
                            (Some(c), _) => exit_error(c, &stderr_tail),
                            (None, Some(s)) => format!("killed by signal {s}"),
                            (None, None) => "ended without an exit code".to_owned(),
                        };
                        let kind = code.map_or(FailureKind::Exit(-1), FailureKind::Exit);
                        failure = Some((kind, code, error));
                        break;
                    }
                }
            }
        }
        copy_redirects(&inv.stdout, &ctx.stdout_path, &inv.stderr, &ctx.stderr_path).await;
        let output = capture.then(|| stdout_all.trim().to_owned());
        let mut outputs = BTreeMap::new();
        if let (Some(name), Some(value)) = (&step.output, &output) {
            outputs.insert(name.clone(), value.clone());
        }
        if killed {
            return AttemptOutcome::Killed { exit_code: last_code, outputs };
        }
        let exit_code = match &failure {
            Some((_, code, _)) => *code,
            None => last_code,
        };
        self.publish(&step, &ctx, exit_code, if step.output.is_some() { output.as_deref() } else { None });
        match failure {
            None => AttemptOutcome::Succeeded { exit_code, outputs },
            Some((kind, exit_code, error)) => {
                let text = output.as_deref().unwrap_or("");
                let continue_matched = step.continue_on.output.iter().any(|p| p.matches(text));
                AttemptOutcome::Failed { kind, exit_code, error, outputs, continue_matched }
            }
        }
    }
}

impl TaskRunner for ShellRunner {
    async fn precheck(&self, ctx: &AttemptContext) -> Precheck {
        tokio::task::block_in_place(|| self.precheck_blocking(ctx))
    }

    async fn precheck_run(&self) -> Precheck {
        tokio::task::block_in_place(|| self.check_workflow_preconditions())
    }

    async fn run(&self, ctx: AttemptContext) -> AttemptOutcome {
        self.run_attempt(ctx).await
    }

    fn outputs_known(
        &self,
        ctx: &AttemptContext,
        exit_code: Option<i32>,
        outputs: &BTreeMap<String, String>,
    ) {
        let step = &self.steps[ctx.index];
        let output = step.output.as_ref().and_then(|name| outputs.get(name)).map(String::as_str);
        self.publish(step, ctx, exit_code, output);
        if step.task_type().is_some() {
            // An SDK handler returns named outputs: later steps see them all.
            let mut published = self.published.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = &mut published[ctx.index] {
                p.vars = outputs.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
            }
        }
    }

    /// The step as a worker on another machine runs it: the same processes
    /// and variables; the working directory only when the step names one,
    /// since the server's paths mean nothing there. `None` for a
    /// `task_type` step: an SDK handler runs it from [`Self::remote_input`].
    fn remote_command(&self, ctx: &AttemptContext) -> Option<RemoteCommand> {
        let step = &self.steps[ctx.index];
        if step.task_type().is_some() {
            return None;
        }
        let mut scope = self.scope_for(ctx);
        if let Err(e) = step.resolve_env(&mut scope, &mut ShellCommands) {
            tracing::warn!(step = %step.name, error = %e, "remote step env could not be expanded");
        }
        let inv = step.invocation(&self.workflow, &scope);
        let processes = inv
            .processes
            .into_iter()
            .map(|p| match p {
                Process::Exec { argv } => RemoteProcess::Exec { argv },
                Process::Script { argv, body } => RemoteProcess::Script { argv, body },
            })
            .collect();
        Some(RemoteCommand {
            processes,
            working_dir: step.working_dir.as_ref().map(|_| inv.working_dir.display().to_string()),
            env: inv.env.into_iter().filter(|(k, _)| k != "PWD").collect(),
            output: step.output.clone(),
        })
    }

    /// What an SDK handler gets: everything the step would see as variables
    /// — params (positional ones by number), the workflow's env, outputs of
    /// the steps it depends on, Cairn's run variables and the step's env,
    /// expanded — except the server's own file paths.
    fn remote_input(&self, ctx: &AttemptContext) -> BTreeMap<String, String> {
        let step = &self.steps[ctx.index];
        let mut scope = self.scope_for(ctx);
        if let Err(e) = step.resolve_env(&mut scope, &mut ShellCommands) {
            tracing::warn!(step = %step.name, error = %e, "remote step env could not be expanded");
        }
        const SERVER_PATHS: [&str; 4] =
            ["DAG_RUN_WORK_DIR", "DAG_RUN_LOG_FILE", "DAG_RUN_STEP_STDOUT_FILE", "DAG_RUN_STEP_STDERR_FILE"];
        scope
            .vars()
            .filter(|(k, _)| !SERVER_PATHS.contains(k))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

/// Dagu's `dotenv`: each file (relative to the workflow's working directory)
/// that exists adds its variables, before the workflow's own `env`.
fn load_dotenv(workflow: &Workflow, scope: &mut Scope) -> Result<(), String> {
    let base = workflow.working_dir(scope);
    for file in &workflow.dotenv {
        let path = base.join(cairn_core::vars::expand(file, scope));
        if !path.is_file() {
            continue;
        }
        let vars = dotenvy::from_path_iter(&path).map_err(|e| format!("dotenv {}: {e}", path.display()))?;
        for item in vars {
            let (k, v) = item.map_err(|e| format!("dotenv {}: {e}", path.display()))?;
            scope.set(k, v);
        }
    }
    Ok(())
}

/// The steps whose outputs `step` sees: its transitive upstream for a step,
/// every step for a handler after the steps, none for the init handler.
fn visible_steps(workflow: &Workflow, step: &Step) -> Vec<usize> {
    match step.handler {
        Some(HandlerKind::Init) => Vec::new(),
        Some(_) => workflow.order.iter().map(|i| i.0).collect(),
        None => {
            let mut seen = vec![false; workflow.steps.len()];
            let mut stack: Vec<usize> = step.depends.iter().map(|d| d.0).collect();
            while let Some(i) = stack.pop() {
                if !std::mem::replace(&mut seen[i], true) {
                    stack.extend(workflow.steps[i].depends.iter().map(|d| d.0));
                }
            }
            workflow.order.iter().map(|i| i.0).filter(|&i| seen[i]).collect()
        }
    }
}

fn start_failed(error: String) -> AttemptOutcome {
    AttemptOutcome::Failed {
        kind: FailureKind::StartFailed,
        exit_code: None,
        error,
        outputs: BTreeMap::new(),
        continue_matched: false,
    }
}

fn exit_error(code: i32, stderr_tail: &str) -> String {
    match stderr_tail.lines().last().map(str::trim).filter(|l| !l.is_empty()) {
        Some(line) => format!("exit code {code}: {}", line.chars().take(200).collect::<String>()),
        None => format!("exit code {code}"),
    }
}

async fn write_script(path: &Path, body: &str) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await?;
    }
    tokio::fs::write(path, body).await?;
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o750)).await
}

/// Dagu's `stdout:`/`stderr:` keys: the step's output also lands in these files.
async fn copy_redirects(
    stdout: &Option<std::path::PathBuf>,
    stdout_log: &Path,
    stderr: &Option<std::path::PathBuf>,
    stderr_log: &Path,
) {
    for (target, log) in [(stdout, stdout_log), (stderr, stderr_log)] {
        if let Some(target) = target {
            if let Some(parent) = target.parent() {
                let _ = tokio::fs::create_dir_all(parent).await;
            }
            let _ = tokio::fs::copy(log, target).await;
        }
    }
}

/// Backtick substitution: runs the command with `sh -c` and returns its stdout.
struct ShellCommands;

impl CommandRunner for ShellCommands {
    fn run(&mut self, command: &str, scope: &Scope) -> Result<String, String> {
        let out = std::process::Command::new("/bin/sh")
            .args(["-c", command])
            .envs(scope.exports())
            .stdin(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|e| format!("cannot run `{command}`: {e}"))?;
        if !out.status.success() {
            return Err(format!("`{command}` failed with {}", out.status));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}
