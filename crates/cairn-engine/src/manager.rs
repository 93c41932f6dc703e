//! The run manager of a server: starts runs, keeps a driver per active run,
//! leases remote tasks to workers by claiming them from the store, routes
//! the rest of the worker protocol and cancels to the driver that owns the
//! task — or, for a run another server drives, writes it through the store
//! (lease renewal, a posted result) — and publishes every committed change
//! to subscribers.
//!
//! Architecture invariant: each run has exactly one driver, the only writer
//! of its tasks' statuses but for the claim (`PENDING -> RUNNING` of an
//! offered task, made by the store for any server's lease call); the driver
//! hears of claims and posted results through the store's notices.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use cairn_core::event::{self, Event, ProgressEvent, TransitionEvent};
use cairn_core::lease::Lease;
use cairn_core::lease::LeaseSettings;
use cairn_core::progress::Progress;
use cairn_core::protocol::{
    AckStatus, CompleteRequest, HeartbeatAck, HeartbeatRequest, HeartbeatResponse, LeaseRequest,
    LeaseResponse,
};
use cairn_core::record::Actor;
use cairn_core::spec::{self, Workflow};
use cairn_core::{LeaseToken, RunId, TaskId, TaskStatus};
use cairn_store::{
    AdoptRun, Change, ClaimRequest, LeaseState, Notice, Outcome, PostedResult, Renewal, RunDetail, Store,
};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::driver::{Command, Driver, RunEvent, RunOptions, StaleLease};
use crate::error::EngineError;
use crate::owner::LocalOwner;
use crate::plan::{Carried, RunPlan};
use crate::queues::{OfferPayload, QueueWaits};
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
    waits: QueueWaits,
    opts: ManagerOptions,
    runs: Mutex<HashMap<RunId, ActiveRun>>,
    /// Which run and position each live task has, to route worker calls,
    /// and whether it is remote.
    tasks: Mutex<HashMap<TaskId, (RunId, usize, bool)>>,
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
        let notices = store.notices();
        let manager = Arc::new(Manager {
            store,
            clock,
            waits: QueueWaits::default(),
            opts,
            runs: Mutex::new(HashMap::new()),
            tasks: Mutex::new(HashMap::new()),
            updates,
            completed: Mutex::new(Completions::default()),
        });
        tokio::spawn(pump(Arc::downgrade(&manager), notices));
        manager
    }

    pub fn store(&self) -> &Arc<S> {
        &self.store
    }

    pub fn queues(&self) -> &QueueWaits {
        &self.waits
    }

    /// The id this server records as the owner of the runs it drives.
    pub fn owner(&self) -> &str {
        &self.opts.owner
    }

    /// Every committed change of every run this manager drives, as it happens,
    /// and every alert raised or resolved in the store.
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
        self.submit_at(workflow, source, params, trigger, None, Actor::Scheduler).await
    }

    /// [`Manager::submit`] asked by `actor` (a user or API token), the
    /// actor of the run's creation.
    pub async fn submit_by(
        self: &Arc<Self>,
        workflow: Arc<Workflow>,
        source: String,
        params: &[String],
        trigger: &str,
        actor: Actor,
    ) -> Result<RunId, EngineError> {
        self.submit_at(workflow, source, params, trigger, None, actor).await
    }

    /// [`Manager::submit`] for the cron tick `tick`: refused when a run for
    /// that tick of the workflow exists already (another leader fired it).
    pub async fn submit_at(
        self: &Arc<Self>,
        workflow: Arc<Workflow>,
        source: String,
        params: &[String],
        trigger: &str,
        tick: Option<cairn_core::Timestamp>,
        actor: Actor,
    ) -> Result<RunId, EngineError> {
        let resolved = workflow.resolve_params(params).map_err(|e| EngineError::Invalid(e.to_string()))?;
        let params_json = spec::params_json(params, &resolved);
        let runner =
            ShellRunner::new(workflow.clone(), &resolved, params_json).map_err(EngineError::Invalid)?;
        let mut plan = shell::plan(&workflow, &resolved, source, trigger);
        plan.schedule_tick = tick;
        plan.requested_by = actor;
        let opts = self.run_options(RunId::new(self.clock.now()), &workflow);
        let (created_tx, created_rx) = oneshot::channel();
        let driver = Driver::new(self.store.clone(), Arc::new(runner), self.clock.clone(), plan, opts)?
            .on_created(created_tx);
        let run = self.launch(driver, workflow.name.clone());
        created_rx.await.map_err(|_| EngineError::Conflict(format!("run {run} could not be created")))?;
        Ok(run)
    }

    /// Whether the server that owns a run is alive: the store knows for the
    /// servers sharing it (PostgreSQL); otherwise a server on this host is
    /// checked by its process. `None`: cannot tell (left alone).
    async fn owner_alive(&self, owner: &str) -> Result<Option<bool>, EngineError> {
        if let Some(alive) = self.store.server_alive(owner).await? {
            return Ok(Some(alive));
        }
        Ok(LocalOwner::parse_server(owner).and_then(|o| o.is_alive()))
    }

    /// Takes over the unfinished runs of servers that are gone (this server
    /// before a restart, or another server of the same database) and
    /// continues each from its records. Returns how many runs were resumed.
    pub async fn resume(self: &Arc<Self>) -> Result<usize, EngineError> {
        let mut resumed = 0;
        for run in self.store.active_runs().await? {
            let Some(owner) = run.owner.as_deref() else { continue };
            if owner == self.opts.owner || self.owner_alive(owner).await? != Some(false) {
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
        let remote: Vec<TaskId> = driver
            .task_ids()
            .into_iter()
            .zip(driver.task_queues())
            .filter_map(|(id, q)| q.map(|_| id))
            .collect();
        self.launch(driver, workflow.name.clone());
        // Claims, results and a cancel the old owner was told of and never acted on.
        for task in remote {
            self.sync_task(task).await;
        }
        self.cancel_if_requested(id).await;
        Ok(())
    }

    /// Retries a finished run: a new run of its workflow as it was submitted,
    /// with the same params, that runs again `from_step` and what depends on
    /// it — or, without `from_step`, every step that did not complete and
    /// what depends on those. Steps that are not run again are carried over
    /// (recorded SKIPPED with the run they completed in, their outputs kept).
    pub async fn retry(self: &Arc<Self>, run: RunId, from_step: Option<&str>) -> Result<RunId, EngineError> {
        self.retry_by(run, from_step, Actor::Scheduler).await
    }

    /// [`Manager::retry`] asked by `actor`, the actor of the new run's creation.
    pub async fn retry_by(
        self: &Arc<Self>,
        run: RunId,
        from_step: Option<&str>,
        actor: Actor,
    ) -> Result<RunId, EngineError> {
        let (detail, workflow, runner, mut plan) = self.rebuild(run, Some("retry")).await?;
        plan.requested_by = actor;
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
            remote: true,
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
        lock(&self.tasks)
            .extend(tasks.iter().enumerate().map(|(i, (id, _, q))| (*id, (run, i, q.is_some()))));

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
            lock(&manager.tasks).retain(|_, (r, _, _)| *r != run);
            if let Err(EngineError::Store(e)) = result {
                manager.restart_when_stored(run, e).await;
            }
        });
        runs.insert(run, ActiveRun { workflow, commands, driving: driving.abort_handle() });
        run
    }

    /// Continues a run whose driver stopped on a store failure (a commit
    /// whose fate is unknown, the database gone) from its records, once
    /// the store answers again; the records, not the driver's memory, say
    /// what was done.
    async fn restart_when_stored(self: &Arc<Self>, run: RunId, cause: cairn_store::StoreError) {
        let mut pause = Duration::from_millis(200);
        loop {
            if self.waits.is_closed() {
                return;
            }
            tokio::time::sleep(pause).await;
            // The lost commit may have been the run's last.
            if let Ok(Some(r)) = self.store.run(run).await
                && r.status.is_terminal()
            {
                return;
            }
            match Box::pin(self.restart(run)).await {
                Ok(()) => {
                    tracing::info!(run = %run, cause = %cause, "run continued from its records");
                    return;
                }
                Err(EngineError::Store(e)) => {
                    tracing::warn!(run = %run, error = %e, "cannot continue the run yet");
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
                Err(e) => {
                    tracing::error!(run = %run, error = %e, "cannot continue the run");
                    return;
                }
            }
        }
    }

    /// A graceful stop: lease nothing more, give active runs up to `grace`
    /// to finish, then interrupt the local attempts still running (each goes
    /// back to PENDING with the reason recorded) and stop driving. Remote
    /// attempts keep their leases; the next server resumes everything.
    pub async fn shutdown(&self, grace: Duration) {
        self.waits.close();
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
        if let Some(tx) = commands
            && tx.send(Command::Cancel { actor: actor.clone() }).is_ok()
        {
            return Ok(());
        }
        // Driven by another server (or about to be adopted): the request is
        // recorded, and whoever drives the run hears of it.
        let outcomes = self.store.apply(vec![Change::RequestRunCancel { run, actor }]).await?;
        match outcomes.into_iter().next() {
            Some(Outcome::Conflict(reason)) => Err(EngineError::Conflict(reason)),
            _ => Ok(()),
        }
    }

    /// Cancels a run driven here if a cancel was recorded for it (asked on
    /// another server, or before this server adopted it).
    async fn cancel_if_requested(&self, run: RunId) {
        let Some(commands) = lock(&self.runs).get(&run).map(|r| r.commands.clone()) else { return };
        match self.store.run(run).await {
            Ok(Some(r)) => {
                if let Some(actor) = r.cancel_requested_by.filter(|_| !r.status.is_terminal()) {
                    let _ = commands.send(Command::Cancel { actor });
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(run = %run, error = %e, "could not read a run to follow a cancel request")
            }
        }
    }

    /// Leases up to `req.max_tasks` tasks of `req.queue` to `req.worker_id`,
    /// long-polling up to `req.wait_ms` for the first: the store claims
    /// them, whichever server drives their runs. Each is RUNNING, its lease
    /// committed, before it is returned.
    pub async fn lease(&self, req: &LeaseRequest) -> Result<LeaseResponse, EngineError> {
        let max = req.max_tasks.clamp(1, 1000) as usize;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(req.wait_ms.min(60_000));
        let wake = self.waits.of(&req.queue);
        loop {
            if self.waits.is_closed() {
                return Ok(LeaseResponse { tasks: Vec::new() });
            }
            let offered = wake.notified();
            tokio::pin!(offered);
            offered.as_mut().enable();
            let claim = ClaimRequest {
                queues: vec![req.queue.clone()],
                worker: req.worker_id.clone(),
                max,
                now: self.clock.now(),
                server: self.opts.owner.clone(),
            };
            let out = self.store.claim(claim).await?;
            let mut tasks = Vec::with_capacity(out.tasks.len());
            for c in &out.tasks {
                // This server's own drivers hear of their claims here, before
                // the worker can report on them.
                if let Some((commands, index)) = self.route(c.task) {
                    let worker = req.worker_id.clone();
                    let _ =
                        commands.send(Command::Claimed { index, attempt: c.attempt, lease: c.lease, worker });
                }
                match OfferPayload::leased(c) {
                    Some(t) => tasks.push(t),
                    None => {
                        tracing::error!(task = %c.task, "an offer's payload is unreadable; its lease will expire")
                    }
                }
            }
            if !tasks.is_empty() {
                return Ok(LeaseResponse { tasks });
            }
            let clock = self.clock.clone();
            let ready = async move {
                match out.next_ready_at {
                    Some(at) => clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = offered => {}
                _ = ready => {}
                _ = tokio::time::sleep_until(deadline) => return Ok(LeaseResponse { tasks: Vec::new() }),
            }
        }
    }

    /// Extends many leases at once; answers in request order.
    pub async fn heartbeat(&self, req: HeartbeatRequest) -> HeartbeatResponse {
        let req_items = req.items.clone();
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
        // Leases no driver here holds may be renewed in the store: the run
        // is driven by another server, or its driver has not yet heard of
        // the claim. A stale token is refused there too.
        let unknown: Vec<usize> =
            (0..items.len()).filter(|&i| items[i].status == AckStatus::LeaseStale).collect();
        if !unknown.is_empty() {
            let now = self.clock.now();
            let renewals = unknown
                .iter()
                .map(|&i| {
                    let item = &req_items[i];
                    Renewal {
                        task: item.task_id,
                        token: item.lease_token,
                        at: now,
                        progress: item
                            .progress_percent
                            .and_then(|pct| Progress::new(pct, item.progress_message.clone()).ok()),
                        details: item.details.clone(),
                    }
                })
                .collect();
            match self.store.renew(renewals).await {
                Ok(states) => {
                    for (&i, state) in unknown.iter().zip(states) {
                        if let LeaseState::Held { expires_at, cancel_requested } = state {
                            items[i].status = AckStatus::Ok;
                            items[i].lease_expires_at = Some(expires_at);
                            items[i].cancel_requested = cancel_requested;
                        }
                    }
                }
                Err(e) => tracing::warn!(error = %e, "could not renew leases through the store"),
            }
        }
        HeartbeatResponse { items }
    }

    /// Ends an attempt a worker ran. `Err(StaleLease)` when the token is not
    /// the task's current one (nothing changed).
    pub async fn complete(&self, task: TaskId, req: CompleteRequest) -> Result<TaskStatus, StaleLease> {
        let token = req.lease_token;
        let (tx, rx) = oneshot::channel();
        let body = serde_json::to_string(&req).expect("a completion is plain data");
        let sent = self.route(task).is_some_and(|(commands, index)| {
            commands.send(Command::Complete { index, req, reply: tx }).is_ok()
        });
        let answer = if sent { rx.await.unwrap_or(Err(StaleLease)) } else { Err(StaleLease) };
        match answer {
            Ok(status) => {
                lock(&self.completed).remember(task, token, status);
                Ok(status)
            }
            Err(stale) => {
                if let Some(status) = lock(&self.completed).answer(task, token) {
                    return Ok(status);
                }
                // Not a lease any driver here holds: post the result for the
                // run's driver, wherever it is. The attempt stays RUNNING
                // until that driver applies it.
                let Ok(Some(run)) = self.store.task(task).await.map(|d| d.map(|d| d.run.id)) else {
                    return Err(stale);
                };
                let post = PostedResult { task, run, token, at: self.clock.now(), body };
                match self.store.apply(vec![Change::PostResult(post)]).await {
                    Ok(outcomes) if outcomes.iter().all(|o| o.is_applied()) => Ok(TaskStatus::Running),
                    Ok(_) => Err(stale),
                    Err(e) => {
                        tracing::warn!(task = %task, error = %e, "could not post a result through the store");
                        Err(stale)
                    }
                }
            }
        }
    }

    /// The stdout and stderr log files of the attempt that `token` holds.
    /// For a run another server drives, the files are this server's: the
    /// log of an attempt lives where its worker sent it.
    pub async fn log_paths(&self, task: TaskId, token: LeaseToken) -> Result<(PathBuf, PathBuf), StaleLease> {
        if let Some((commands, index)) = self.route(task) {
            let (tx, rx) = oneshot::channel();
            if commands.send(Command::LogPaths { index, token, reply: tx }).is_ok()
                && let Ok(Some(paths)) = rx.await
            {
                return Ok(paths);
            }
        }
        let Ok(Some(d)) = self.store.task(task).await else { return Err(StaleLease) };
        let holds =
            d.task.status == TaskStatus::Running && d.task.lease.as_ref().is_some_and(|l| l.token == token);
        if !holds {
            return Err(StaleLease);
        }
        let index = d.task.index as usize;
        Ok(crate::driver::attempt_log_paths(
            &self.opts.log_root,
            d.run.id,
            index,
            &d.task.name,
            d.task.attempt,
        ))
    }

    fn route(&self, task: TaskId) -> Option<(mpsc::UnboundedSender<Command>, usize)> {
        let (run, index, _) = *lock(&self.tasks).get(&task)?;
        let commands = lock(&self.runs).get(&run)?.commands.clone();
        Some((commands, index))
    }

    async fn on_notice(&self, notice: Notice) {
        match notice {
            Notice::Offered { queue } => self.waits.offered(&queue),
            Notice::Claimed { task, .. } | Notice::Posted { task, .. } => {
                if self.route(task).is_some() {
                    self.sync_task(task).await;
                }
            }
            Notice::CancelRequested { run } => self.cancel_if_requested(run).await,
            // Alerts reach this server's subscribers with its runs' events,
            // whichever server raised them.
            Notice::Alert { id } => match self.store.alert(id).await {
                Ok(Some(alert)) => {
                    let _ = self.updates.send(Event::Alert { alert });
                }
                Ok(None) => {}
                Err(error) => tracing::warn!(%error, %id, "cannot read an alert to announce it"),
            },
            Notice::Resync => {
                self.waits.all();
                let runs: Vec<RunId> = lock(&self.runs).keys().copied().collect();
                for run in runs {
                    self.cancel_if_requested(run).await;
                }
                let remote: Vec<TaskId> =
                    lock(&self.tasks).iter().filter(|(_, (_, _, remote))| *remote).map(|(t, _)| *t).collect();
                for task in remote {
                    self.sync_task(task).await;
                }
            }
        }
    }

    /// Tells a remote task's driver here what the store knows of it: a
    /// claim (the attempt RUNNING under a worker's lease) and a result
    /// posted for that attempt. Telling it twice changes nothing.
    async fn sync_task(&self, task: TaskId) {
        let detail = match self.store.task(task).await {
            Ok(Some(d)) => d,
            Ok(None) => return,
            Err(e) => {
                tracing::warn!(task = %task, error = %e, "could not read a task to follow its claim");
                return;
            }
        };
        let (Some((commands, index)), Some(held)) = (self.route(task), detail.task.lease.as_ref()) else {
            return;
        };
        if detail.task.status != TaskStatus::Running {
            return;
        }
        let attempt = detail.task.attempt;
        let started_at = detail
            .attempts
            .iter()
            .find(|a| a.attempt == attempt)
            .map_or(held.last_heartbeat_at, |a| a.started_at);
        let lease = Lease {
            token: held.token,
            started_at,
            last_heartbeat_at: held.last_heartbeat_at,
            expires_at: held.expires_at,
        };
        let worker = held.worker.clone();
        let _ = commands.send(Command::Claimed { index, attempt, lease, worker });
        let posted = match self.store.posted_result(task).await {
            Ok(p) => p.filter(|p| p.token == held.token),
            Err(e) => {
                tracing::warn!(task = %task, error = %e, "could not read a posted result");
                None
            }
        };
        let Some(req) = posted.and_then(|p| serde_json::from_str::<CompleteRequest>(&p.body).ok()) else {
            return;
        };
        // The worker was answered when the result was posted.
        let (reply, _) = oneshot::channel();
        let _ = commands.send(Command::Complete { index, req, reply });
    }
}

/// Feeds the store's notices to the manager, in the order they come, for
/// as long as the manager lives.
async fn pump<S: Store>(manager: std::sync::Weak<Manager<S>>, mut notices: broadcast::Receiver<Notice>) {
    loop {
        let notice = match notices.recv().await {
            Ok(n) => n,
            Err(RecvError::Lagged(_)) => Notice::Resync,
            Err(RecvError::Closed) => return,
        };
        let Some(manager) = manager.upgrade() else { return };
        manager.on_notice(notice).await;
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
