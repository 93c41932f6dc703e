//! The run manager of a server: starts runs, keeps a driver per active run,
//! routes the worker protocol and cancels to the driver that owns the task,
//! and publishes every committed change to subscribers.
//!
//! Architecture invariant: each run has exactly one driver, the only writer
//! of its tasks' statuses; the manager only routes messages to it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_core::event::{self, Event, ProgressEvent, TransitionEvent};
use cairn_core::lease::LeaseSettings;
use cairn_core::protocol::{
    AckStatus, CompleteRequest, HeartbeatAck, HeartbeatRequest, HeartbeatResponse, LeaseRequest,
    LeaseResponse,
};
use cairn_core::record::Actor;
use cairn_core::spec::{self, Workflow};
use cairn_core::{LeaseToken, RunId, TaskId, TaskStatus};
use cairn_store::{AdoptRun, Change, RunDetail, Store};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::driver::{Command, Driver, RunEvent, RunOptions, StaleLease};
use crate::error::EngineError;
use crate::owner::LocalOwner;
use crate::plan::{Carried, RunPlan};
use crate::queues::QueueHub;
use crate::shell::{self, ShellRunner};
use crate::time::EngineClock;

/// How the manager runs what it starts.
#[derive(Clone, Debug)]
pub struct ManagerOptions {
    /// Recorded as each run's owner and the local attempts' worker.
    pub owner: String,
    pub log_root: PathBuf,
    pub lease: LeaseSettings,
}

struct ActiveRun {
    workflow: String,
    commands: mpsc::UnboundedSender<Command>,
    driving: tokio::task::AbortHandle,
}

pub struct Manager<S: Store> {
    store: Arc<S>,
    clock: EngineClock,
    hub: Arc<QueueHub>,
    opts: ManagerOptions,
    runs: Mutex<HashMap<RunId, ActiveRun>>,
    /// Which run and position each live task has, to route worker calls.
    tasks: Mutex<HashMap<TaskId, (RunId, usize)>>,
    updates: broadcast::Sender<Event>,
    /// Recent completions, so a worker repeating one after its run ended
    /// (and its driver is gone) still gets the same answer.
    completed: Mutex<Completions>,
}

/// A bounded memory of completions: oldest forgotten first.
#[derive(Default)]
struct Completions {
    by_task: HashMap<TaskId, (LeaseToken, TaskStatus)>,
    order: std::collections::VecDeque<TaskId>,
}

impl Completions {
    const KEEP: usize = 100_000;

    fn remember(&mut self, task: TaskId, token: LeaseToken, status: TaskStatus) {
        if self.by_task.insert(task, (token, status)).is_none() {
            self.order.push_back(task);
        }
        while self.order.len() > Self::KEEP {
            if let Some(old) = self.order.pop_front() {
                self.by_task.remove(&old);
            }
        }
    }

    fn answer(&self, task: TaskId, token: LeaseToken) -> Option<TaskStatus> {
        self.by_task.get(&task).filter(|(t, _)| *t == token).map(|(_, s)| *s)
    }
}

impl<S: Store> Manager<S> {
    pub fn new(store: Arc<S>, clock: EngineClock, opts: ManagerOptions) -> Arc<Self> {
        let (updates, _) = broadcast::channel(4096);
        Arc::new(Manager {
            store,
            clock,
            hub: QueueHub::new(),
            opts,
            runs: Mutex::new(HashMap::new()),
            tasks: Mutex::new(HashMap::new()),
            updates,
            completed: Mutex::new(Completions::default()),
        })
    }

    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    pub fn queues(&self) -> &Arc<QueueHub> {
        &self.hub
    }

    /// Every committed change of every run this manager drives, as it happens.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.updates.subscribe()
    }

    /// Runs being driven by this manager now.
    pub fn active_runs(&self) -> usize {
        lock(&self.runs).len()
    }

    /// The runs of `workflow` this manager drives now. A run leaves this
    /// list when its driver stops, shortly after its final status is published.
    pub fn active_runs_of(&self, workflow: &str) -> Vec<RunId> {
        lock(&self.runs).iter().filter(|(_, r)| r.workflow == workflow).map(|(id, _)| *id).collect()
    }

    /// Whether this manager still drives `run`.
    pub fn is_active(&self, run: RunId) -> bool {
        lock(&self.runs).contains_key(&run)
    }

    /// Starts a run of `workflow`; returns once the run and its tasks are
    /// recorded. `params` are given as on the command line (`KEY=VALUE`, or
    /// a bare positional value).
    pub async fn submit(
        self: &Arc<Self>,
        workflow: Arc<Workflow>,
        source: String,
        params: &[String],
        trigger: &str,
    ) -> Result<RunId, EngineError> {
        let resolved = workflow.resolve_params(params).map_err(|e| EngineError::Invalid(e.to_string()))?;
        let params_json = spec::params_json(params, &resolved);
        let runner =
            ShellRunner::new(workflow.clone(), &resolved, params_json).map_err(EngineError::Invalid)?;
        let plan = shell::plan(&workflow, &resolved, source, trigger);
        let opts = self.run_options(RunId::new(self.clock.now()), &workflow);
        let (created_tx, created_rx) = oneshot::channel();
        let driver = Driver::new(self.store.clone(), Arc::new(runner), self.clock.clone(), plan, opts)?
            .on_created(created_tx);
        let run = self.launch(driver, workflow.name.clone());
        created_rx.await.map_err(|_| EngineError::Conflict(format!("run {run} could not be created")))?;
        Ok(run)
    }

    /// Takes over the unfinished runs of servers on this host that are gone
    /// (this server before a restart, typically) and continues each from
    /// its records. Returns how many runs were resumed.
    pub async fn resume(self: &Arc<Self>) -> Result<usize, EngineError> {
        let mut resumed = 0;
        for run in self.store.active_runs().await? {
            let Some(owner) = run.owner.as_deref() else { continue };
            if owner == self.opts.owner
                || LocalOwner::parse_server(owner).and_then(|o| o.is_alive()) != Some(false)
            {
                continue;
            }
            let adopt = Change::AdoptRun(AdoptRun {
                run: run.id,
                from: run.owner.clone(),
                to: self.opts.owner.clone(),
            });
            if !self.store.apply(vec![adopt]).await?.iter().all(|o| o.is_applied()) {
                continue; // another server took it first
            }
            match self.restart(run.id).await {
                Ok(()) => resumed += 1,
                Err(e) => tracing::error!(run = %run.id, error = %e, "could not resume run"),
            }
        }
        Ok(resumed)
    }

    /// A recorded run's workflow as it was submitted (its stored text and
    /// params), its runner and plan, for resuming or retrying it.
    async fn rebuild(
        &self,
        id: RunId,
        trigger: Option<&str>,
    ) -> Result<(RunDetail, Arc<Workflow>, ShellRunner, RunPlan), EngineError> {
        let detail =
            self.store.run_detail(id).await?.ok_or_else(|| EngineError::NotFound(format!("run {id}")))?;
        let source = self.store.spec_source(id).await?.unwrap_or_default();
        let path = detail.run.spec_path.as_ref().map(PathBuf::from);
        let workflow =
            spec::parse(&source, path.as_deref()).map_err(|e| EngineError::Invalid(e.to_string()))?;
        let workflow = Arc::new(workflow);
        let params: Vec<(String, String)> = detail.run.params.clone().into_iter().collect();
        let params_json = serde_json::to_string(&detail.run.params).ok();
        let runner =
            ShellRunner::new(workflow.clone(), &params, params_json).map_err(EngineError::Invalid)?;
        let plan = shell::plan(&workflow, &params, source, trigger.unwrap_or(&detail.run.trigger));
        if detail.tasks.len() != plan.tasks.len() {
            return Err(EngineError::Conflict(format!("run {id} no longer matches its own workflow")));
        }
        Ok((detail, workflow, runner, plan))
    }

    async fn restart(self: &Arc<Self>, id: RunId) -> Result<(), EngineError> {
        let (detail, workflow, runner, plan) = self.rebuild(id, None).await?;
        let opts = self.run_options(id, &workflow);
        let driver = Driver::new(self.store.clone(), Arc::new(runner), self.clock.clone(), plan, opts)?
            .restore(&detail)?;
        self.launch(driver, workflow.name.clone());
        Ok(())
    }

    /// Retries a finished run: a new run of its workflow as it was submitted,
    /// with the same params, that runs again `from_step` and what depends on
    /// it — or, without `from_step`, every step that did not complete and
    /// what depends on those. Steps that are not run again are carried over
    /// (recorded SKIPPED with the run they completed in, their outputs kept).
    pub async fn retry(self: &Arc<Self>, run: RunId, from_step: Option<&str>) -> Result<RunId, EngineError> {
        let (detail, workflow, runner, mut plan) = self.rebuild(run, Some("retry")).await?;
        if !detail.run.status.is_terminal() {
            return Err(EngineError::Conflict(format!("run {run} is still {}", detail.run.status)));
        }
        let is_step = |i: usize| plan.tasks[i].role == crate::plan::Role::Step;
        let mut again: Vec<bool> = match from_step {
            Some(name) => {
                let Some(start) = (0..plan.tasks.len()).find(|&i| is_step(i) && plan.tasks[i].name == name)
                else {
                    return Err(EngineError::Invalid(format!("run {run} has no step {name:?}")));
                };
                (0..plan.tasks.len()).map(|i| i == start).collect()
            }
            None => (0..plan.tasks.len())
                .map(|i| {
                    is_step(i)
                        && !matches!(detail.tasks[i].status, TaskStatus::Completed)
                        && carried_from(&detail, i).is_none()
                })
                .collect(),
        };
        if !again.iter().any(|&a| a) {
            return Err(EngineError::Conflict(format!(
                "run {run} has nothing to retry: every step completed"
            )));
        }
        // What depends on a step that runs again runs again too.
        let mut changed = true;
        while changed {
            changed = false;
            for i in 0..plan.tasks.len() {
                if !again[i] && is_step(i) && plan.tasks[i].depends.iter().any(|&d| again[d]) {
                    again[i] = true;
                    changed = true;
                }
            }
        }
        let mut carried = Vec::with_capacity(plan.tasks.len());
        for (i, t) in detail.tasks.iter().enumerate() {
            if !is_step(i) || again[i] {
                carried.push(None);
                continue;
            }
            // A task this run carried over itself completed further back:
            // carry it from where it ran, with what it produced there.
            let c = match carried_from(&detail, i) {
                Some(origin) => {
                    let there = self.store.run_detail(origin).await?;
                    let task = there.as_ref().and_then(|d| d.tasks.get(i));
                    Carried {
                        from_run: origin,
                        exit_code: task.and_then(|t| t.exit_code),
                        outputs: task.map(|t| t.outputs.clone()).unwrap_or_default(),
                    }
                }
                None => Carried { from_run: run, exit_code: t.exit_code, outputs: t.outputs.clone() },
            };
            carried.push(Some(c));
        }
        plan.carried = carried;
        let opts = self.run_options(RunId::new(self.clock.now()), &workflow);
        let (created_tx, created_rx) = oneshot::channel();
        let driver = Driver::new(self.store.clone(), Arc::new(runner), self.clock.clone(), plan, opts)?
            .on_created(created_tx);
        let new = self.launch(driver, workflow.name.clone());
        created_rx.await.map_err(|_| EngineError::Conflict(format!("run {new} could not be created")))?;
        Ok(new)
    }

    fn run_options(&self, run_id: RunId, workflow: &Workflow) -> RunOptions {
        RunOptions {
            run_id,
            owner: self.opts.owner.clone(),
            lease: self.opts.lease,
            log_root: self.opts.log_root.clone(),
            prechecks: shell::needs_prechecks(workflow),
            queues: Some(self.hub.clone()),
        }
    }

    /// Registers a driver's tasks for routing, forwards its events, and drives it.
    fn launch(self: &Arc<Self>, driver: Driver<S, ShellRunner>, workflow: String) -> RunId {
        let (events_tx, mut events_rx) = mpsc::unbounded_channel();
        let driver = driver.with_events(events_tx);
        let run = driver.run_id();
        let tasks: Vec<(TaskId, String, Option<String>)> = driver
            .task_ids()
            .into_iter()
            .zip(driver.task_names())
            .zip(driver.task_queues())
            .map(|((id, name), queue)| (id, name, queue))
            .collect();
        let commands = driver.commands();
        lock(&self.tasks).extend(tasks.iter().enumerate().map(|(i, (id, _, _))| (*id, (run, i))));

        let updates = self.updates.clone();
        let name = workflow.clone();
        tokio::spawn(async move {
            while let Some(event) = events_rx.recv().await {
                // Nobody listening is fine.
                let _ = updates.send(to_event(run, &name, &tasks, event));
            }
        });

        let manager = self.clone();
        // Registered under the lock the driver's own clean-up takes, so the
        // clean-up can never run before the registration.
        let mut runs = lock(&self.runs);
        let driving = tokio::spawn(async move {
            // A manager's runs are canceled through commands, never this token.
            let result = driver.drive(CancellationToken::new(), Actor::Scheduler).await;
            if let Err(e) = &result {
                tracing::error!(run = %run, error = %e, "run driver stopped");
            }
            lock(&manager.runs).remove(&run);
            lock(&manager.tasks).retain(|_, (r, _)| *r != run);
        });
        runs.insert(run, ActiveRun { workflow, commands, driving: driving.abort_handle() });
        run
    }

    /// A graceful stop: lease nothing more, give active runs up to `grace`
    /// to finish, then interrupt the local attempts still running (each goes
    /// back to PENDING with the reason recorded) and stop driving. Remote
    /// attempts keep their leases; the next server resumes everything.
    pub async fn shutdown(&self, grace: Duration) {
        self.hub.close();
        let deadline = tokio::time::Instant::now() + grace;
        while self.active_runs() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let drivers: Vec<_> = lock(&self.runs).values().map(|r| r.commands.clone()).collect();
        let mut waiting = Vec::new();
        for commands in drivers {
            let (tx, rx) = oneshot::channel();
            if commands.send(Command::Interrupt { reply: tx }).is_ok() {
                waiting.push(rx);
            }
        }
        // A process gets its kill grace to go, then the group is killed.
        let limit = crate::process::KILL_GRACE + Duration::from_secs(2);
        for rx in waiting {
            let _ = tokio::time::timeout(limit, rx).await;
        }
        self.halt();
    }

    /// Stops driving every run at once and records nothing, as a crash
    /// would: what was running stays RUNNING in the store until a server
    /// resumes it. For a hard stop, and for tests of recovery.
    pub fn halt(&self) {
        for (_, run) in lock(&self.runs).drain() {
            run.driving.abort();
        }
        lock(&self.tasks).clear();
    }

    /// Asks the run's driver to cancel it.
    pub async fn cancel(&self, run: RunId, actor: Actor) -> Result<(), EngineError> {
        // The record decides: a driver may still be winding down a run that
        // is already finished.
        match self.store.run(run).await? {
            None => return Err(EngineError::NotFound(format!("run {run}"))),
            Some(r) if r.status.is_terminal() => {
                return Err(EngineError::Conflict(format!("run {run} already finished ({})", r.status)));
            }
            Some(_) => {}
        }
        let commands = lock(&self.runs).get(&run).map(|r| r.commands.clone());
        match commands {
            Some(tx) if tx.send(Command::Cancel { actor }).is_ok() => Ok(()),
            _ => Err(EngineError::Conflict(format!("run {run} is not driven by this server"))),
        }
    }

    pub async fn lease(&self, req: &LeaseRequest) -> LeaseResponse {
        LeaseResponse { tasks: self.hub.lease(req).await }
    }

    /// Extends many leases at once; answers in request order.
    pub async fn heartbeat(&self, req: HeartbeatRequest) -> HeartbeatResponse {
        let mut waiting = Vec::with_capacity(req.items.len());
        for item in req.items {
            let task_id = item.task_id;
            let (tx, rx) = oneshot::channel();
            let sent = self.route(task_id).is_some_and(|(commands, index)| {
                commands.send(Command::Heartbeat { index, item, reply: tx }).is_ok()
            });
            waiting.push((task_id, sent.then_some(rx)));
        }
        let mut items = Vec::with_capacity(waiting.len());
        for (task_id, rx) in waiting {
            let stale = HeartbeatAck {
                task_id,
                status: AckStatus::LeaseStale,
                lease_expires_at: None,
                cancel_requested: false,
            };
            items.push(match rx {
                Some(rx) => rx.await.unwrap_or(stale),
                None => stale,
            });
        }
        HeartbeatResponse { items }
    }

    /// Ends an attempt a worker ran. `Err(StaleLease)` when the token is not
    /// the task's current one (nothing changed).
    pub async fn complete(&self, task: TaskId, req: CompleteRequest) -> Result<TaskStatus, StaleLease> {
        let token = req.lease_token;
        let (tx, rx) = oneshot::channel();
        let sent = self.route(task).is_some_and(|(commands, index)| {
            commands.send(Command::Complete { index, req, reply: tx }).is_ok()
        });
        let answer = if sent { rx.await.unwrap_or(Err(StaleLease)) } else { Err(StaleLease) };
        match answer {
            Ok(status) => {
                lock(&self.completed).remember(task, token, status);
                Ok(status)
            }
            Err(stale) => lock(&self.completed).answer(task, token).ok_or(stale),
        }
    }

    /// The stdout and stderr log files of the attempt that `token` holds.
    pub async fn log_paths(&self, task: TaskId, token: LeaseToken) -> Result<(PathBuf, PathBuf), StaleLease> {
        let (tx, rx) = oneshot::channel();
        let Some((commands, index)) = self.route(task) else { return Err(StaleLease) };
        if commands.send(Command::LogPaths { index, token, reply: tx }).is_err() {
            return Err(StaleLease);
        }
        rx.await.ok().flatten().ok_or(StaleLease)
    }

    fn route(&self, task: TaskId) -> Option<(mpsc::UnboundedSender<Command>, usize)> {
        let (run, index) = *lock(&self.tasks).get(&task)?;
        let commands = lock(&self.runs).get(&run)?.commands.clone();
        Some((commands, index))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The driver's event as the event stream publishes it.
fn to_event(run: RunId, workflow: &str, tasks: &[(TaskId, String, Option<String>)], e: RunEvent) -> Event {
    match e {
        RunEvent::Task { index, from, from_at, status, attempt, at, reason, actor } => {
            let (task_id, step, queue) = tasks[index].clone();
            Event::Transition(TransitionEvent {
                run_id: run,
                workflow: workflow.to_owned(),
                task_id,
                step,
                queue,
                attempt,
                from,
                to: status,
                from_at: from.map(|_| from_at),
                at,
                reason,
                actor,
            })
        }
        RunEvent::Progress { index, attempt, progress, at, predicted_finish_at, overrun_predicted } => {
            let (task_id, step, _) = tasks[index].clone();
            Event::Progress(ProgressEvent {
                run_id: run,
                workflow: workflow.to_owned(),
                task_id,
                step,
                attempt,
                percent: progress.percent,
                message: progress.message,
                at,
                predicted_finish_at,
                overrun_predicted,
            })
        }
        RunEvent::Run { from, status, at, reason, actor } => Event::Run(event::RunEvent {
            run_id: run,
            workflow: workflow.to_owned(),
            from: Some(from),
            to: status,
            at,
            reason,
            actor,
        }),
    }
}

/// The run a task of `detail` was carried over from, if it was (its last
/// transition says `completed in run X; not run again`).
fn carried_from(detail: &RunDetail, index: usize) -> Option<RunId> {
    let task = detail.tasks.get(index).filter(|t| t.status == TaskStatus::Skipped)?;
    let reason = &detail.transitions.get(&task.id)?.last()?.reason;
    reason.strip_prefix("completed in run ")?.split(';').next()?.parse().ok()
}
