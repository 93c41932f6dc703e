//! The run driver: owns one run from creation to its terminal status.
//!
//! It keeps every task's [`TaskState`] in memory, turns events (an attempt
//! ended, progress arrived, a timer fired, cancel was asked) into status
//! changes, and writes all changes of one turn of its loop in one batch —
//! completing A, promoting its dependent B and starting B share one commit.
//!
//! Architecture invariant: work is started only after the commit that records
//! its RUNNING status and lease, so a crash can cause at most a re-run, never
//! a task running without a record. Conversely a change the store refuses
//! (another process reaped our lease) stops the driver: it never overwrites.

mod remote;
mod restore;

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use cairn_core::lease::{Lease, LeaseSettings};
use cairn_core::progress::{self, Progress, ProgressLimiter};
use cairn_core::protocol::{CompleteRequest, HeartbeatAck, HeartbeatItem};
use cairn_core::record::{Actor, RunTransition, TaskState, Transition};
use cairn_core::retry::FailureKind;
use cairn_core::{LeaseToken, RunId, RunStatus, TaskId, TaskStatus, Timestamp};
use cairn_store::{
    AttemptResult, Change, Heartbeat, NewRun, NewTask, Offer, Outcome, RunChange, Store, TaskChange,
    TaskUpdate,
};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::error::EngineError;
use crate::plan::{Handler, PlannedTask, Role, RunPlan};
use crate::queues::OfferPayload;
use crate::runner::{AttemptContext, AttemptOutcome, Precheck, ProgressSink, TaskRunner};
use crate::time::EngineClock;

/// The metric the server documents (`cairn_server::metrics`); progress the
/// rate limit holds back is counted here, where it happens.
const HEARTBEATS_TOTAL: &str = "cairn_heartbeats_total";

/// How to run one workflow.
#[derive(Clone, Debug)]
pub struct RunOptions {
    pub run_id: RunId,
    /// Recorded as the run's owner and the attempts' worker, e.g. `local:HOST:PID:START`.
    pub owner: String,
    pub lease: LeaseSettings,
    /// Per-attempt logs go under `<log_root>/<run id>/`.
    pub log_root: PathBuf,
    /// Whether the runner must be asked about preconditions before each start.
    pub prechecks: bool,
    /// Whether steps with a `queue` can run: a server offers them to workers
    /// through the store. Without it (`cairn run`) such a plan is refused.
    pub remote: bool,
}

/// What the driver tells a live view, once it is committed (progress: as reported).
#[derive(Clone, Debug)]
pub enum RunEvent {
    Task {
        index: usize,
        from: Option<TaskStatus>,
        /// When the task entered `from`.
        from_at: Timestamp,
        status: TaskStatus,
        attempt: u32,
        at: Timestamp,
        reason: String,
        actor: Actor,
    },
    Progress {
        index: usize,
        attempt: u32,
        progress: Progress,
        at: Timestamp,
        /// When the attempt will finish at its average rate so far.
        predicted_finish_at: Option<Timestamp>,
        /// The prediction is past the step's `timeout_sec`: it will likely time out.
        overrun_predicted: bool,
    },
    Run {
        from: RunStatus,
        status: RunStatus,
        at: Timestamp,
        reason: String,
        actor: Actor,
    },
}

/// Why a running attempt's token was canceled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KillReason {
    StepTimeout(Duration),
    RunCanceled,
    RunTimeout(Duration),
    /// The server is stopping: the attempt is interrupted, not failed.
    Shutdown,
}

struct Slot {
    id: TaskId,
    state: TaskState,
    /// Upstream tasks not yet finished.
    waiting_on: usize,
    dependents: Vec<usize>,
    lease: Option<Lease>,
    cancel: Option<CancellationToken>,
    kill: Option<KillReason>,
    deadline: Option<Timestamp>,
    retry_at: Option<Timestamp>,
    /// The task's own heartbeat timeout, else the run's.
    lease_settings: LeaseSettings,
    /// Counts against `max_active` (dispatched steps, until they end or wait to retry).
    holds_slot: bool,
    limiter: ProgressLimiter,
    /// Failed but let pass by `continue_on` (makes the run partially succeeded).
    failure_passed: bool,
    /// Runs on a remote worker (the step has a `queue`).
    remote: bool,
    /// Waits in its queue: an offer is stored that a claim may take.
    offered: bool,
    /// Its effect on its dependents has been applied (it is terminal).
    settled: bool,
    /// Who holds the current attempt (remote tasks).
    worker: Option<String>,
    /// The token and result of the last attempt its worker completed, so a
    /// worker repeating its completion gets the same answer, not a conflict.
    last_end: Option<(LeaseToken, TaskStatus)>,
    /// The latest checkpoint a remote attempt reported, for the next attempt.
    details: Option<serde_json::Value>,
    /// Which progress reports of the current attempt become history samples.
    samples: SampleGate,
    /// Completed in the run this one retries: SKIPPED here, but its
    /// dependents run as after a success.
    carried: bool,
}

/// Keeps the progress history sparse: a report becomes a sample when it is
/// the attempt's first, moved at least 10 points, reached 100%, or came a
/// minute after the last sample.
#[derive(Clone, Copy, Debug, Default)]
struct SampleGate {
    last: Option<(Timestamp, f32)>,
}

impl SampleGate {
    fn take(&mut self, p: &Progress, now: Timestamp) -> bool {
        let due = match self.last {
            None => true,
            Some((at, pct)) => {
                (p.percent - pct).abs() >= 10.0
                    || (p.percent >= 100.0 && pct < 100.0)
                    || now.since(at) >= Duration::from_secs(60)
            }
        };
        if due {
            self.last = Some((now, p.percent));
        }
        due
    }
}

/// Requests from outside the driver's loop: the worker protocol and cancel.
/// Each answer is sent only after the change it reports is committed.
pub enum Command {
    /// The store leased the task to a worker (a claim, on this server or
    /// another): it is RUNNING under `lease`. Ignored when already known.
    Claimed {
        index: usize,
        attempt: u32,
        lease: Lease,
        worker: String,
    },
    Heartbeat {
        index: usize,
        item: HeartbeatItem,
        reply: oneshot::Sender<HeartbeatAck>,
    },
    Complete {
        index: usize,
        req: CompleteRequest,
        reply: oneshot::Sender<Result<TaskStatus, StaleLease>>,
    },
    Cancel {
        actor: Actor,
    },
    /// Stop starting work, interrupt running local attempts (back to
    /// PENDING, recorded), and answer once none is left.
    Interrupt {
        reply: oneshot::Sender<()>,
    },
    /// Where the attempt holding `token` keeps its logs (answered at once).
    LogPaths {
        index: usize,
        token: LeaseToken,
        reply: oneshot::Sender<Option<(PathBuf, PathBuf)>>,
    },
}

/// The lease named is not the task's current one: the attempt was reaped,
/// canceled or finished by another holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaleLease;

/// An answer waiting for the commit of what it reports.
enum Reply {
    Ack(oneshot::Sender<HeartbeatAck>, HeartbeatAck),
    Complete(oneshot::Sender<Result<TaskStatus, StaleLease>>, TaskStatus),
}

/// Messages from attempt and precheck tasks back to the loop.
enum Done {
    Attempt { index: usize, token: LeaseToken, outcome: AttemptOutcome },
    Precheck { index: usize, verdict: Precheck },
    RunPrecheck(Precheck),
}

/// Phases of the run after its steps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Steps,
    Handlers,
    Exit,
    Done,
}

pub struct Driver<S: Store, R: TaskRunner> {
    store: Arc<S>,
    runner: Arc<R>,
    clock: EngineClock,
    plan: Arc<RunPlan>,
    opts: RunOptions,
    slots: Vec<Slot>,
    ready: VecDeque<usize>,
    running: usize,
    batch: Vec<Change>,
    /// Tasks whose Start is in the current batch, to launch after the commit.
    to_launch: Vec<usize>,
    events: Option<mpsc::UnboundedSender<RunEvent>>,
    done_tx: mpsc::UnboundedSender<Done>,
    done_rx: mpsc::UnboundedReceiver<Done>,
    progress_tx: mpsc::UnboundedSender<(usize, Progress)>,
    progress_rx: mpsc::UnboundedReceiver<(usize, Progress)>,
    run_status: RunStatus,
    phase: Phase,
    canceled_by: Option<Actor>,
    timed_out: bool,
    /// The workflow's own preconditions were not met (or could not be checked).
    precondition_failed: Option<String>,
    run_deadline: Option<Timestamp>,
    /// Nothing is dispatched before this time (the workflow's `delay_sec`).
    start_at: Option<Timestamp>,
    next_heartbeat: Timestamp,
    pending_events: Vec<RunEvent>,
    cmd_tx: mpsc::UnboundedSender<Command>,
    cmd_rx: mpsc::UnboundedReceiver<Command>,
    replies: Vec<Reply>,
    /// Changes in `batch` (by position) that may meet a conflict without the
    /// run being taken over: an offer or a cancel request that a worker's
    /// claim or completion overtook.
    benign: Vec<usize>,
    /// Offers being taken back (position in `batch`, task), to cancel the
    /// task once the withdrawal commits.
    withdrawing: Vec<(usize, usize)>,
    /// Fired once the run's creation is committed.
    created: Option<oneshot::Sender<()>>,
    /// Set by an interrupt: nothing new starts, and the sender is answered
    /// once no local attempt runs any more.
    draining: Option<oneshot::Sender<()>>,
    /// Continues a run recorded in the store instead of creating one.
    restored: bool,
    /// For a restored run: what each finished task produced, handed to the
    /// runner on the first turn.
    restored_outputs: Vec<Option<Produced>>,
}

/// What a finished attempt produced: its exit code and output variables.
type Produced = (Option<i32>, BTreeMap<String, String>);

impl<S: Store, R: TaskRunner> Driver<S, R> {
    pub fn new(
        store: Arc<S>,
        runner: Arc<R>,
        clock: EngineClock,
        plan: RunPlan,
        opts: RunOptions,
    ) -> Result<Self, EngineError> {
        validate(&plan)?;
        let now = clock.now();
        let mut slots: Vec<Slot> = plan
            .tasks
            .iter()
            .map(|t| Slot {
                id: TaskId::new(now),
                lease_settings: t.heartbeat_timeout.map_or(opts.lease, LeaseSettings::with_timeout),
                remote: t.queue.is_some(),
                offered: false,
                settled: false,
                worker: None,
                last_end: None,
                details: None,
                samples: SampleGate::default(),
                carried: false,
                state: TaskState::restore(TaskStatus::Submitted, 0, now),
                waiting_on: t.depends.len(),
                dependents: Vec::new(),
                lease: None,
                cancel: None,
                kill: None,
                deadline: None,
                retry_at: None,
                holds_slot: false,
                limiter: ProgressLimiter::new(t.progress),
                failure_passed: false,
            })
            .collect();
        for (i, t) in plan.tasks.iter().enumerate() {
            for &d in &t.depends {
                slots[d].dependents.push(i);
            }
        }
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let (progress_tx, progress_rx) = mpsc::unbounded_channel();
        let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
        if !opts.remote
            && let Some(t) = plan.tasks.iter().find(|t| t.queue.is_some())
        {
            return Err(EngineError::InvalidPlan(format!(
                "step {:?} runs on queue {:?}, which needs a server with workers",
                t.name,
                t.queue.as_deref().unwrap_or_default()
            )));
        }
        Ok(Driver {
            store,
            runner,
            next_heartbeat: now.saturating_add(opts.lease.heartbeat_interval),
            clock,
            plan: Arc::new(plan),
            opts,
            slots,
            ready: VecDeque::new(),
            running: 0,
            batch: Vec::new(),
            to_launch: Vec::new(),
            events: None,
            done_tx,
            done_rx,
            progress_tx,
            progress_rx,
            run_status: RunStatus::Queued,
            phase: Phase::Steps,
            canceled_by: None,
            timed_out: false,
            precondition_failed: None,
            run_deadline: None,
            start_at: None,
            pending_events: Vec::new(),
            cmd_tx,
            cmd_rx,
            replies: Vec::new(),
            benign: Vec::new(),
            withdrawing: Vec::new(),
            created: None,
            draining: None,
            restored: false,
            restored_outputs: Vec::new(),
        })
    }

    /// Live events go here as they are committed.
    pub fn with_events(mut self, tx: mpsc::UnboundedSender<RunEvent>) -> Self {
        self.events = Some(tx);
        self
    }

    pub fn run_id(&self) -> RunId {
        self.opts.run_id
    }

    /// Where commands for this run go (worker protocol, cancel).
    pub fn commands(&self) -> mpsc::UnboundedSender<Command> {
        self.cmd_tx.clone()
    }

    /// The names of the tasks, in plan order.
    pub fn task_names(&self) -> Vec<String> {
        self.plan.tasks.iter().map(|t| t.name.clone()).collect()
    }

    /// The queues of the tasks (`None`: local), in plan order.
    pub fn task_queues(&self) -> Vec<Option<String>> {
        self.plan.tasks.iter().map(|t| t.queue.clone()).collect()
    }

    /// The ids of the tasks, in plan order.
    pub fn task_ids(&self) -> Vec<TaskId> {
        self.slots.iter().map(|s| s.id).collect()
    }

    /// `tx` fires once the run and its tasks are committed.
    pub fn on_created(mut self, tx: oneshot::Sender<()>) -> Self {
        self.created = Some(tx);
        self
    }

    /// Drives the run to its end. `cancel` fires on Ctrl-C / SIGTERM; `actor`
    /// of the cancellation is recorded in the reasons.
    pub async fn drive(
        mut self,
        cancel: CancellationToken,
        cancel_actor: Actor,
    ) -> Result<RunStatus, EngineError> {
        std::fs::create_dir_all(self.log_dir()).map_err(|e| EngineError::Logs {
            path: self.log_dir().display().to_string(),
            reason: e.to_string(),
        })?;
        let now = self.clock.now();
        if self.restored {
            self.resume(now);
        } else {
            self.create(now);
            self.run_deadline = self.plan.timeout.map(|t| now.saturating_add(t));
            self.start_at = self.plan.delay.map(|d| now.saturating_add(d));
        }
        let result = self.drive_loop(cancel, cancel_actor).await;
        if result.is_err() {
            // Whatever happens to the records, leave no process behind.
            for s in &self.slots {
                if let Some(c) = &s.cancel {
                    c.cancel();
                }
            }
        }
        result
    }

    async fn drive_loop(
        &mut self,
        cancel: CancellationToken,
        cancel_actor: Actor,
    ) -> Result<RunStatus, EngineError> {
        loop {
            let now = self.clock.now();
            self.dispatch(now);
            self.advance_phase(now);
            // Entering a phase may have made handlers ready.
            self.dispatch(now);
            self.flush().await?;
            if !self.batch.is_empty() {
                continue;
            }
            if self.phase == Phase::Done {
                return Ok(self.run_status);
            }
            if self.draining.is_some() && !self.slots.iter().any(|s| s.lease.is_some() && !s.remote) {
                let _ = self.draining.take().map(|tx| tx.send(()));
            }
            let wake = self.next_wake();
            let clock = self.clock.clone();
            tokio::select! {
                biased;
                _ = cancel.cancelled(), if self.canceled_by.is_none() && !self.timed_out => {
                    self.cancel_run(self.clock.now(), cancel_actor.clone());
                }
                Some(cmd) = self.cmd_rx.recv() => {
                    let now = self.clock.now();
                    self.on_command(cmd, now);
                    // Serve everything already waiting in one batch.
                    while let Ok(more) = self.cmd_rx.try_recv() {
                        self.on_command(more, now);
                    }
                }
                Some(done) = self.done_rx.recv() => {
                    let now = self.clock.now();
                    // A runner reports progress before it returns, so draining
                    // progress first lands every report on its attempt.
                    self.drain_progress(now);
                    self.on_done(done, now);
                    while let Ok(more) = self.done_rx.try_recv() {
                        self.drain_progress(now);
                        self.on_done(more, now);
                    }
                }
                Some((index, p)) = self.progress_rx.recv() => {
                    let now = self.clock.now();
                    self.on_progress(index, p, now, None);
                    self.drain_progress(now);
                }
                _ = sleep_opt(&clock, wake) => {
                    self.refresh_expiring(self.clock.now()).await;
                    self.on_timers(self.clock.now());
                }
            }
        }
    }

    fn log_dir(&self) -> PathBuf {
        self.opts.log_root.join(self.opts.run_id.to_string())
    }

    // ---- creation -------------------------------------------------------

    fn create(&mut self, now: Timestamp) {
        let plan = self.plan.clone();
        let mut tasks = Vec::with_capacity(plan.tasks.len());
        for (i, t) in plan.tasks.iter().enumerate() {
            let (state, transition) = TaskState::submit(now, "submitted with the run", Actor::Scheduler);
            self.slots[i].state = state;
            tasks.push(NewTask {
                id: self.slots[i].id,
                index: i as u32,
                name: t.name.clone(),
                queue: t.queue.clone(),
                max_attempts: t.retry.limit + 1,
                transition,
            });
        }
        self.batch.push(Change::CreateRun(NewRun {
            schedule_tick: self.plan.schedule_tick,
            labels: self.plan.labels.clone(),
            id: self.opts.run_id,
            workflow: plan.workflow.clone(),
            trigger: plan.trigger.clone(),
            spec_source: plan.spec_source.clone(),
            spec_path: plan.spec_path.clone(),
            params: plan.params.clone(),
            owner: Some(self.opts.owner.clone()),
            transition: RunTransition {
                from: None,
                to: RunStatus::Queued,
                at: now,
                reason: format!("{} run", plan.trigger),
                actor: plan.requested_by.clone(),
            },
            tasks,
        }));
        self.set_run_status(RunStatus::Running, now, "started".into(), None);
        if plan.preconditions {
            self.spawn_run_precheck();
        }
        let carried = |i: usize| plan.carried.get(i).and_then(Option::as_ref);
        for (i, t) in plan.tasks.iter().enumerate() {
            if let Some(c) = carried(i) {
                let reason = format!("carried over from run {}", c.from_run);
                self.task_change(i, TaskStatus::Pending, now, reason, Actor::Scheduler);
                continue;
            }
            match t.role {
                Role::Handler(h) if h != Handler::Init => {
                    self.task_change(
                        i,
                        TaskStatus::Blocked,
                        now,
                        "waiting for the steps to finish".into(),
                        Actor::Scheduler,
                    );
                }
                _ if t.depends.is_empty() && plan.preconditions => {
                    let reason = "waiting for the workflow's preconditions".to_owned();
                    self.task_change(i, TaskStatus::Blocked, now, reason, Actor::Scheduler);
                }
                _ if t.depends.is_empty() => {
                    self.task_change(i, TaskStatus::Pending, now, "no dependencies".into(), Actor::Scheduler);
                    self.ready.push_back(i);
                }
                _ => {
                    let names: Vec<&str> = t.depends.iter().map(|&d| plan.tasks[d].name.as_str()).collect();
                    let reason = format!("waiting for {}", names.join(", "));
                    self.task_change(i, TaskStatus::Blocked, now, reason, Actor::Scheduler);
                }
            }
        }
        // Carried tasks end at once, in dependency order by index, so their
        // dependents find them finished.
        for i in 0..plan.tasks.len() {
            let Some(c) = carried(i) else { continue };
            let reason = format!("completed in run {}; not run again", c.from_run);
            self.task_change(i, TaskStatus::Skipped, now, reason, Actor::Scheduler);
            self.slots[i].carried = true;
            let ctx = self.context(i, 0, CancellationToken::new());
            self.runner.outputs_known(&ctx, c.exit_code, &c.outputs);
            self.finished(i, now);
        }
    }

    // ---- recording ------------------------------------------------------

    fn task_change(
        &mut self,
        index: usize,
        to: TaskStatus,
        at: Timestamp,
        reason: String,
        actor: Actor,
    ) -> Transition {
        self.task_change_with(index, to, at, reason, actor, TaskUpdate::Plain)
    }

    fn task_change_with(
        &mut self,
        index: usize,
        to: TaskStatus,
        at: Timestamp,
        reason: String,
        actor: Actor,
        update: TaskUpdate,
    ) -> Transition {
        let t = self.record(index, to, at, reason, actor);
        let task = self.slots[index].id;
        self.batch.push(Change::Task(TaskChange { task, transition: t.clone(), update }));
        t
    }

    /// Applies a transition in memory and queues its event (published after
    /// the next commit); the caller writes it, or the store already has.
    fn record(
        &mut self,
        index: usize,
        to: TaskStatus,
        at: Timestamp,
        reason: String,
        actor: Actor,
    ) -> Transition {
        let slot = &mut self.slots[index];
        let from_at = slot.state.last_at();
        // A claim on another server may be dated by a clock a little ahead.
        let at = at.max(from_at);
        // The driver is the only owner of these states; an illegal change here
        // is a bug in this file, not a runtime condition.
        let t = slot
            .state
            .transition(to, at, reason, actor)
            .unwrap_or_else(|e| panic!("driver bug on task {}: {e}", self.plan.tasks[index].name));
        self.pending_events.push(RunEvent::Task {
            index,
            from: t.from,
            from_at,
            status: to,
            attempt: t.attempt,
            at,
            reason: t.reason.clone(),
            actor: t.actor.clone(),
        });
        t
    }

    fn set_run_status(&mut self, to: RunStatus, at: Timestamp, reason: String, error: Option<String>) {
        let from = self.run_status;
        self.run_status = to;
        let actor = match (&self.canceled_by, to) {
            (Some(a), RunStatus::Canceled) => a.clone(),
            _ => Actor::Scheduler,
        };
        let event = RunEvent::Run { from, status: to, at, reason: reason.clone(), actor: actor.clone() };
        self.pending_events.push(event);
        self.batch.push(Change::Run(RunChange {
            run: self.opts.run_id,
            transition: RunTransition { from: Some(from), to, at, reason, actor },
            error,
        }));
    }

    async fn flush(&mut self) -> Result<(), EngineError> {
        if self.batch.is_empty() {
            // Nothing waits for a commit: answers about what is already stored go now.
            self.send_replies();
            return Ok(());
        }
        let changes = std::mem::take(&mut self.batch);
        let benign = std::mem::take(&mut self.benign);
        let withdrawing = std::mem::take(&mut self.withdrawing);
        let outcomes = self.apply_until_stored(changes).await?;
        let expected = |pos: usize| benign.contains(&pos) || withdrawing.iter().any(|&(p, _)| p == pos);
        if let Some((_, Outcome::Conflict(reason))) =
            outcomes.iter().enumerate().find(|&(pos, o)| !o.is_applied() && !expected(pos))
        {
            return Err(EngineError::TakenOver { run: self.opts.run_id.to_string(), reason: reason.clone() });
        }
        // A withdrawn offer is the driver's again: the stop that wanted it
        // back ends it now. One that a claim took first is canceled through
        // its worker once the claim is reported.
        for (pos, index) in withdrawing {
            self.slots[index].offered = false;
            if outcomes[pos].is_applied()
                && self.slots[index].state.status() == TaskStatus::Pending
                && let Some((reason, actor)) = self.stop_cause()
            {
                self.task_change(index, TaskStatus::Canceled, self.clock.now(), reason, actor);
                self.release(index);
            }
        }
        if let Some(tx) = self.created.take() {
            let _ = tx.send(());
        }
        self.send_replies();
        for e in self.pending_events.drain(..) {
            if let Some(tx) = &self.events {
                let _ = tx.send(e);
            }
        }
        for index in std::mem::take(&mut self.to_launch) {
            self.launch(index);
        }
        Ok(())
    }

    /// Applies a batch, trying again while the store cannot be reached: a
    /// database that is down for a while stalls the run, it does not end
    /// it. A commit whose fate is unknown is not repeated (the driver stops;
    /// its manager continues the run from the records).
    async fn apply_until_stored(&self, changes: Vec<Change>) -> Result<Vec<Outcome>, EngineError> {
        let changes = Arc::new(changes);
        let mut pause = Duration::from_millis(50);
        let mut tries = 0u32;
        loop {
            match self.store.apply_shared(changes.clone()).await {
                Err(e @ cairn_store::StoreError::Database(_)) => {
                    tries += 1;
                    if tries == 1 || tries.is_multiple_of(20) {
                        tracing::warn!(run = %self.opts.run_id, error = %e, tries, "cannot store the run's changes; trying again");
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(2));
                }
                other => return Ok(other?),
            }
        }
    }

    fn send_replies(&mut self) {
        for reply in self.replies.drain(..) {
            match reply {
                Reply::Ack(tx, ack) => drop(tx.send(ack)),
                Reply::Complete(tx, status) => drop(tx.send(Ok(status))),
            }
        }
    }

    // ---- dispatch -------------------------------------------------------

    fn capacity_left(&self) -> bool {
        self.plan.max_active.is_none_or(|max| self.running < max)
    }

    fn dispatch(&mut self, now: Timestamp) {
        if self.draining.is_some() {
            return;
        }
        let stopping = self.canceled_by.is_some() || self.timed_out;
        if !stopping && self.start_at.is_some_and(|at| now < at) {
            return;
        }
        while let Some(&index) = self.ready.front() {
            let is_handler = matches!(self.plan.tasks[index].role, Role::Handler(_));
            if !is_handler && !stopping && !self.capacity_left() {
                break;
            }
            self.ready.pop_front();
            // After a stop only handlers still run; the steps were ended by the stop.
            if self.slots[index].state.status() != TaskStatus::Pending || (stopping && !is_handler) {
                continue;
            }
            if !is_handler {
                self.running += 1;
                self.slots[index].holds_slot = true;
            }
            if self.opts.prechecks {
                let ctx =
                    self.context(index, self.slots[index].state.attempt() + 1, CancellationToken::new());
                let runner = self.runner.clone();
                let tx = self.done_tx.clone();
                tokio::spawn(async move {
                    let verdict = runner.precheck(&ctx).await;
                    let _ = tx.send(Done::Precheck { index, verdict });
                });
            } else {
                self.start_or_offer(index, now);
            }
        }
    }

    /// Local tasks start now; remote ones wait in their queue for a worker.
    fn start_or_offer(&mut self, index: usize, now: Timestamp) {
        match self.plan.tasks[index].queue.clone() {
            Some(queue) => self.offer(index, queue, now),
            None => self.start(index, now),
        }
    }

    /// Stores the task's offer: any server's lease call may claim it from now on.
    fn offer(&mut self, index: usize, queue: String, now: Timestamp) {
        let attempt = self.slots[index].state.attempt() + 1;
        let ctx = self.context(index, attempt, CancellationToken::new());
        let command = self.runner.remote_command(&ctx);
        let input: BTreeMap<String, String> = match &command {
            Some(c) => c.env.iter().cloned().collect(),
            None => self.runner.remote_input(&ctx),
        };
        let task = &self.plan.tasks[index];
        let slot = &self.slots[index];
        let payload = OfferPayload {
            workflow: self.plan.workflow.clone(),
            step: task.name.clone(),
            task_type: task.task_type.clone().unwrap_or_else(|| task.name.clone()),
            heartbeat_interval_ms: slot.lease_settings.heartbeat_interval.as_millis() as u64,
            timeout_ms: task.timeout.map(|t| t.as_millis() as u64),
            command,
            input,
            details: slot.details.clone(),
        };
        self.benign.push(self.batch.len());
        self.batch.push(Change::Offer(Offer {
            task: slot.id,
            run: self.opts.run_id,
            queue,
            ready_at: now,
            lease_ms: slot.lease_settings.heartbeat_timeout.as_millis() as u64,
            payload: payload.to_json(),
        }));
        self.slots[index].offered = true;
    }

    /// Starts a local attempt; it is launched once the start is committed.
    fn start(&mut self, index: usize, now: Timestamp) {
        let owner = self.opts.owner.clone();
        self.start_attempt(index, now, owner, Actor::Executor);
        let slot = &self.slots[index];
        self.next_heartbeat =
            self.next_heartbeat.min(now.saturating_add(slot.lease_settings.heartbeat_interval));
        self.to_launch.push(index);
    }

    /// `PENDING -> RUNNING` with a fresh lease, written in one change.
    fn start_attempt(&mut self, index: usize, now: Timestamp, worker: String, actor: Actor) -> Lease {
        let lease = Lease::grant(now, &self.slots[index].lease_settings);
        let attempt = self.slots[index].state.attempt() + 1;
        let reason = format!("attempt {attempt} started");
        let update = TaskUpdate::Start { lease, worker: worker.clone() };
        self.task_change_with(index, TaskStatus::Running, now, reason, actor, update);
        let slot = &mut self.slots[index];
        slot.lease = Some(lease);
        slot.worker = Some(worker);
        slot.samples = SampleGate::default();
        slot.deadline = self.plan.tasks[index].timeout.map(|t| now.saturating_add(t));
        slot.kill = None;
        lease
    }

    fn context(&self, index: usize, attempt: u32, cancel: CancellationToken) -> AttemptContext {
        let (stdout_path, stderr_path) = attempt_log_paths(
            &self.opts.log_root,
            self.opts.run_id,
            index,
            &self.plan.tasks[index].name,
            attempt,
        );
        let mut env = vec![
            ("DAG_RUN_ID".to_owned(), self.opts.run_id.to_string()),
            ("DAG_NAME".to_owned(), self.plan.workflow.clone()),
            ("DAG_RUN_STEP_NAME".to_owned(), self.plan.tasks[index].name.clone()),
            ("CAIRN_RUN_ID".to_owned(), self.opts.run_id.to_string()),
            ("CAIRN_TASK_ID".to_owned(), self.slots[index].id.to_string()),
            ("CAIRN_ATTEMPT".to_owned(), attempt.to_string()),
        ];
        if let Role::Handler(_) = self.plan.tasks[index].role {
            env.push(("DAG_RUN_STATUS".to_owned(), dagu_status_word(self.outcome_so_far()).to_owned()));
        }
        AttemptContext {
            run: self.opts.run_id,
            task: self.slots[index].id,
            index,
            name: self.plan.tasks[index].name.clone(),
            attempt,
            stdout_path,
            stderr_path,
            cancel,
            progress: ProgressSink::new(index, self.progress_tx.clone()),
            env,
        }
    }

    fn launch(&mut self, index: usize) {
        let cancel = CancellationToken::new();
        let attempt = self.slots[index].state.attempt();
        let ctx = self.context(index, attempt, cancel.clone());
        let slot = &mut self.slots[index];
        slot.cancel = Some(cancel);
        let token = slot.lease.expect("a launched task holds a lease").token;
        let runner = self.runner.clone();
        let tx = self.done_tx.clone();
        tokio::spawn(async move {
            let outcome = runner.run(ctx).await;
            let _ = tx.send(Done::Attempt { index, token, outcome });
        });
    }

    // ---- events ---------------------------------------------------------

    fn on_done(&mut self, done: Done, now: Timestamp) {
        match done {
            Done::Precheck { index, verdict } => {
                if self.slots[index].state.status() != TaskStatus::Pending {
                    return;
                }
                match verdict {
                    Precheck::Run => self.start_or_offer(index, now),
                    Precheck::Skip(reason) => {
                        self.release(index);
                        self.task_change(index, TaskStatus::Skipped, now, reason, Actor::Scheduler);
                        self.finished(index, now);
                    }
                    Precheck::Fail(error) => {
                        // No attempt began: record it as a start failure through a
                        // zero-length attempt, so the reason and error are kept.
                        self.start(index, now);
                        self.to_launch.retain(|&i| i != index);
                        let token = self.slots[index].lease.expect("just started").token;
                        let outcome = AttemptOutcome::Failed {
                            kind: FailureKind::StartFailed,
                            exit_code: None,
                            error,
                            outputs: BTreeMap::new(),
                            continue_matched: false,
                        };
                        self.on_attempt_end(index, token, outcome, now, Actor::Executor);
                    }
                }
            }
            Done::Attempt { index, token, outcome } => {
                self.on_attempt_end(index, token, outcome, now, Actor::Executor)
            }
            Done::RunPrecheck(verdict) => self.on_run_precheck(verdict, now),
        }
    }

    fn spawn_run_precheck(&self) {
        let runner = self.runner.clone();
        let tx = self.done_tx.clone();
        tokio::spawn(async move {
            let verdict = runner.precheck_run().await;
            let _ = tx.send(Done::RunPrecheck(verdict));
        });
    }

    fn on_run_precheck(&mut self, verdict: Precheck, now: Timestamp) {
        if self.canceled_by.is_some() || self.timed_out {
            return;
        }
        let reason = match verdict {
            Precheck::Run => {
                for i in 0..self.slots.len() {
                    let t = &self.plan.tasks[i];
                    let root =
                        t.depends.is_empty() && matches!(t.role, Role::Step | Role::Handler(Handler::Init));
                    if root && self.slots[i].state.status() == TaskStatus::Blocked {
                        self.task_change(
                            i,
                            TaskStatus::Pending,
                            now,
                            "preconditions met".into(),
                            Actor::Scheduler,
                        );
                        self.ready.push_back(i);
                    }
                }
                return;
            }
            Precheck::Skip(reason) => format!("workflow {reason}"),
            Precheck::Fail(error) => error,
        };
        self.precondition_failed = Some(reason.clone());
        for i in 0..self.slots.len() {
            let is_step = matches!(self.plan.tasks[i].role, Role::Step | Role::Handler(Handler::Init));
            if is_step && self.slots[i].state.status() == TaskStatus::Blocked {
                self.task_change(i, TaskStatus::Abandoned, now, reason.clone(), Actor::Scheduler);
            }
        }
    }

    fn release(&mut self, index: usize) {
        if std::mem::take(&mut self.slots[index].holds_slot) {
            self.running -= 1;
        }
    }

    fn on_attempt_end(
        &mut self,
        index: usize,
        token: LeaseToken,
        outcome: AttemptOutcome,
        now: Timestamp,
        actor: Actor,
    ) {
        let slot = &mut self.slots[index];
        if slot.state.status() != TaskStatus::Running || slot.lease.map(|l| l.token) != Some(token) {
            return;
        }
        // The last progress held back by the rate limit is not lost.
        if let Some(p) = slot.limiter.take_held() {
            let lease = slot.lease.expect("running");
            self.batch.push(Change::Heartbeat(Heartbeat {
                task: slot.id,
                token,
                at: now,
                lease_expires_at: lease.expires_at,
                progress: Some(p),
                // An attempt's last word is always worth a sample.
                sample: true,
                details: None,
            }));
        }
        let slot = &mut self.slots[index];
        slot.lease = None;
        slot.cancel = None;
        slot.deadline = None;
        let kill = slot.kill.take();
        let attempt = slot.state.attempt();
        let task = &self.plan.tasks[index];
        let (kind, exit_code, error, outputs, continue_matched) = match outcome {
            AttemptOutcome::Succeeded { exit_code, outputs } => {
                let result = AttemptResult { exit_code, error: None, outputs };
                let reason = match exit_code {
                    Some(c) => format!("exit code {c}"),
                    None => "succeeded".to_owned(),
                };
                self.end(index, token, TaskStatus::Completed, now, reason, result, None, actor.clone());
                self.finished(index, now);
                return;
            }
            AttemptOutcome::Killed { exit_code, outputs } => match kill {
                Some(KillReason::StepTimeout(t)) => {
                    (FailureKind::Timeout, exit_code, format!("timed out after {}", human(t)), outputs, false)
                }
                Some(KillReason::Shutdown) => {
                    // Not the step's fault: it waits, PENDING, for a server to resume the run.
                    let reason =
                        "interrupted: the server stopped; the step runs again when the run is resumed";
                    let result = AttemptResult { exit_code, error: Some(reason.to_owned()), outputs };
                    self.end(
                        index,
                        token,
                        TaskStatus::Pending,
                        now,
                        reason.to_owned(),
                        result,
                        None,
                        actor.clone(),
                    );
                    self.release(index);
                    return;
                }
                Some(KillReason::RunCanceled) | Some(KillReason::RunTimeout(_)) | None => {
                    let reason = match kill {
                        Some(KillReason::RunTimeout(t)) => {
                            format!("killed: the workflow timed out after {}", human(t))
                        }
                        _ => match &self.canceled_by {
                            Some(actor) => format!("canceled by {actor}"),
                            None => "canceled".to_owned(),
                        },
                    };
                    let result = AttemptResult { exit_code, error: Some(reason.clone()), outputs };
                    self.end(index, token, TaskStatus::Canceled, now, reason, result, None, actor.clone());
                    self.finished(index, now);
                    return;
                }
            },
            AttemptOutcome::Failed { kind, exit_code, error, outputs, continue_matched } => {
                (kind, exit_code, error, outputs, continue_matched)
            }
        };
        let stopping = self.canceled_by.is_some() || self.timed_out;
        if !stopping && let Some(delay) = task.retry.next_retry(attempt, kind) {
            let retry_at = now.saturating_add(delay);
            let reason = format!(
                "attempt {attempt} failed: {error}; retry {attempt} of {} in {}",
                task.retry.limit,
                human(delay)
            );
            let result = AttemptResult { exit_code, error: Some(error), outputs };
            self.end(index, token, TaskStatus::Pending, now, reason, result, Some(retry_at), actor.clone());
            self.release(index);
            self.slots[index].retry_at = Some(retry_at);
            return;
        }
        let passes = continue_matched || task.continue_on.lets_failure_pass(exit_code);
        let result = AttemptResult { exit_code, error: Some(error.clone()), outputs };
        if passes && task.continue_on.mark_success {
            let reason = format!("{error}; marked successful by continue_on.mark_success");
            self.end(index, token, TaskStatus::Completed, now, reason, result, None, actor.clone());
        } else {
            self.end(index, token, TaskStatus::Failed, now, error, result, None, actor.clone());
            self.slots[index].failure_passed = passes;
        }
        self.finished(index, now);
    }

    #[allow(clippy::too_many_arguments)]
    fn end(
        &mut self,
        index: usize,
        token: LeaseToken,
        to: TaskStatus,
        now: Timestamp,
        reason: String,
        result: AttemptResult,
        retry_at: Option<Timestamp>,
        actor: Actor,
    ) {
        self.task_change_with(
            index,
            to,
            now,
            reason,
            actor,
            TaskUpdate::EndAttempt { token, result, retry_at },
        );
    }

    /// A task reached a terminal status: free its slot and settle its dependents.
    fn finished(&mut self, index: usize, now: Timestamp) {
        debug_assert!(self.slots[index].state.status().is_terminal());
        self.release(index);
        self.settle_dependents(index, now);
    }

    /// Applies a terminal task's effect on its dependents, once.
    fn settle_dependents(&mut self, index: usize, now: Timestamp) {
        if std::mem::replace(&mut self.slots[index].settled, true) {
            return;
        }
        let status = self.slots[index].state.status();
        let task = &self.plan.tasks[index];
        // `None`: dependents may run; else what they become, and why.
        let cascade = match status {
            TaskStatus::Completed => None,
            TaskStatus::Failed if self.slots[index].failure_passed => None,
            TaskStatus::Failed => Some((TaskStatus::Abandoned, "failed")),
            TaskStatus::Skipped if task.continue_on.skipped || self.slots[index].carried => None,
            TaskStatus::Skipped => Some((TaskStatus::Skipped, "was skipped")),
            TaskStatus::Canceled => Some((TaskStatus::Abandoned, "was canceled")),
            _ => Some((TaskStatus::Abandoned, "was abandoned")),
        };
        let name = task.name.clone();
        for d in self.slots[index].dependents.clone() {
            self.slots[d].waiting_on -= 1;
            if self.slots[d].state.status() != TaskStatus::Blocked {
                continue;
            }
            match cascade {
                Some((to, verb)) => {
                    self.task_change(d, to, now, format!("upstream {name:?} {verb}"), Actor::Scheduler);
                    self.finished(d, now);
                }
                None if self.slots[d].waiting_on == 0 && !(self.canceled_by.is_some() || self.timed_out) => {
                    self.task_change(
                        d,
                        TaskStatus::Pending,
                        now,
                        "dependencies finished".into(),
                        Actor::Scheduler,
                    );
                    self.ready.push_back(d);
                }
                None => {}
            }
        }
    }

    /// Shows a progress report and stores it (with a lease extension and
    /// `details`, if any) when the rate limit lets it through; says whether
    /// it was stored.
    fn on_progress(
        &mut self,
        index: usize,
        p: Progress,
        now: Timestamp,
        details: Option<serde_json::Value>,
    ) -> bool {
        let slot = &mut self.slots[index];
        let Some(lease) = slot.lease else { return false };
        if slot.state.status() != TaskStatus::Running {
            return false;
        }
        if let Some(tx) = &self.events {
            let predicted = progress::predict_finish(lease.started_at, now, p.percent);
            let deadline = self.plan.tasks[index].timeout.map(|t| lease.started_at.saturating_add(t));
            let _ = tx.send(RunEvent::Progress {
                index,
                attempt: slot.state.attempt(),
                progress: p.clone(),
                at: now,
                predicted_finish_at: predicted,
                overrun_predicted: matches!((predicted, deadline), (Some(p), Some(d)) if p > d),
            });
        }
        if let Some(p) = slot.limiter.offer(p, now) {
            let lease = lease.extended(now, &slot.lease_settings);
            slot.lease = Some(lease);
            let sample = slot.samples.take(&p, now);
            self.batch.push(Change::Heartbeat(Heartbeat {
                task: slot.id,
                token: lease.token,
                at: now,
                lease_expires_at: lease.expires_at,
                progress: Some(p),
                sample,
                details,
            }));
            return true;
        }
        // Held back by the rate limit: the next stored value replaces it.
        metrics::counter!(HEARTBEATS_TOTAL, "result" => "coalesced").increment(1);
        false
    }

    fn drain_progress(&mut self, now: Timestamp) {
        while let Ok((index, p)) = self.progress_rx.try_recv() {
            self.on_progress(index, p, now, None);
        }
    }

    // ---- timers ---------------------------------------------------------

    fn next_wake(&self) -> Option<Timestamp> {
        let mut wake: Option<Timestamp> = None;
        let mut consider = |t: Option<Timestamp>| {
            if let Some(t) = t {
                wake = Some(wake.map_or(t, |w| w.min(t)));
            }
        };
        if self.slots.iter().any(|s| s.lease.is_some() && !s.remote) {
            consider(Some(self.next_heartbeat));
        }
        if self.canceled_by.is_none() && !self.timed_out {
            consider(self.run_deadline);
            consider(self.start_at.filter(|_| !self.ready.is_empty()));
        }
        for s in &self.slots {
            if s.lease.is_some() && s.kill.is_none() {
                consider(s.deadline);
            }
            if s.remote
                && let Some(lease) = s.lease
            {
                // Expired means strictly past the expiry.
                consider(Some(lease.expires_at.saturating_add(Duration::from_micros(1))));
            }
            if s.state.status() == TaskStatus::Pending {
                consider(s.retry_at);
            }
        }
        wake
    }

    fn on_timers(&mut self, now: Timestamp) {
        if let Some(deadline) = self.run_deadline
            && now >= deadline
            && self.canceled_by.is_none()
            && !self.timed_out
        {
            self.timeout_run(now);
        }
        for index in 0..self.slots.len() {
            let slot = &mut self.slots[index];
            if slot.lease.is_some()
                && slot.kill.is_none()
                && let Some(d) = slot.deadline
                && now >= d
            {
                let limit = self.plan.tasks[index].timeout.unwrap_or_default();
                self.kill(index, KillReason::StepTimeout(limit));
            }
            let slot = &mut self.slots[index];
            if slot.state.status() == TaskStatus::Pending
                && let Some(at) = slot.retry_at
                && now >= at
            {
                slot.retry_at = None;
                self.ready.push_back(index);
            }
        }
        self.reap_expired(now);
        if now >= self.next_heartbeat {
            self.heartbeat_all(now);
        }
    }

    /// Extends every held lease in one batch, carrying any progress the rate
    /// limit was holding back.
    fn heartbeat_all(&mut self, now: Timestamp) {
        // The shortest interval among held leases keeps every one of them alive.
        let interval = self
            .slots
            .iter()
            .filter(|s| s.lease.is_some() && !s.remote)
            .map(|s| s.lease_settings.heartbeat_interval)
            .fold(self.opts.lease.heartbeat_interval, Duration::min);
        self.next_heartbeat = now.saturating_add(interval);
        // Remote leases are extended by their workers' heartbeats.
        for slot in self.slots.iter_mut().filter(|s| !s.remote) {
            let Some(lease) = slot.lease else { continue };
            let lease = lease.extended(now, &slot.lease_settings);
            slot.lease = Some(lease);
            let progress = slot.limiter.flush_due(now);
            let sample = progress.as_ref().is_some_and(|p| slot.samples.take(p, now));
            self.batch.push(Change::Heartbeat(Heartbeat {
                task: slot.id,
                token: lease.token,
                at: now,
                lease_expires_at: lease.expires_at,
                progress,
                sample,
                details: None,
            }));
        }
    }

    // ---- stopping -------------------------------------------------------

    fn cancel_run(&mut self, now: Timestamp, actor: Actor) {
        let reason = format!("canceled by {actor}");
        self.canceled_by = Some(actor.clone());
        self.stop_steps(now, KillReason::RunCanceled, &reason, actor);
    }

    fn timeout_run(&mut self, now: Timestamp) {
        let limit = self.plan.timeout.unwrap_or_default();
        self.timed_out = true;
        let reason = format!("the workflow timed out after {}", human(limit));
        self.stop_steps(now, KillReason::RunTimeout(limit), &reason, Actor::Scheduler);
    }

    /// Kills running steps (they end when their runner returns) and ends every
    /// step that has not started.
    fn stop_steps(&mut self, now: Timestamp, why: KillReason, reason: &str, actor: Actor) {
        self.ready.clear();
        for index in 0..self.slots.len() {
            if matches!(self.plan.tasks[index].role, Role::Handler(_)) {
                continue;
            }
            match self.slots[index].state.status() {
                TaskStatus::Running => self.kill(index, why),
                TaskStatus::Pending if self.slots[index].offered => {
                    self.slots[index].retry_at = None;
                    self.withdrawing.push((self.batch.len(), index));
                    self.batch.push(Change::Withdraw { task: self.slots[index].id });
                }
                TaskStatus::Pending => {
                    self.slots[index].retry_at = None;
                    self.task_change(index, TaskStatus::Canceled, now, reason.to_owned(), actor.clone());
                    self.release(index);
                }
                TaskStatus::Submitted | TaskStatus::Blocked => {
                    self.task_change(index, TaskStatus::Abandoned, now, reason.to_owned(), actor.clone());
                }
                _ => {}
            }
        }
    }

    /// Stops a running attempt: a local one through its token, a remote one
    /// through its worker, who hears of it in its heartbeat answers.
    fn kill(&mut self, index: usize, why: KillReason) {
        let slot = &mut self.slots[index];
        slot.kill = Some(why);
        if let Some(c) = &slot.cancel {
            c.cancel();
        }
        if slot.remote
            && let Some(lease) = slot.lease
        {
            let task = slot.id;
            self.benign.push(self.batch.len());
            self.batch.push(Change::RequestCancel { task, token: lease.token });
        }
    }

    /// Why the run's steps are being stopped, and by whom; `None` while it runs on.
    fn stop_cause(&self) -> Option<(String, Actor)> {
        if let Some(actor) = &self.canceled_by {
            return Some((format!("canceled by {actor}"), actor.clone()));
        }
        self.timed_out.then(|| {
            let limit = self.plan.timeout.unwrap_or_default();
            (format!("the workflow timed out after {}", human(limit)), Actor::Scheduler)
        })
    }

    fn stop_reason(&self) -> Option<KillReason> {
        if self.canceled_by.is_some() {
            Some(KillReason::RunCanceled)
        } else if self.timed_out {
            Some(KillReason::RunTimeout(self.plan.timeout.unwrap_or_default()))
        } else {
            None
        }
    }

    // ---- phases ---------------------------------------------------------

    fn steps_done(&self) -> bool {
        self.plan
            .tasks
            .iter()
            .zip(&self.slots)
            .filter(|(t, _)| matches!(t.role, Role::Step | Role::Handler(Handler::Init)))
            .all(|(_, s)| s.state.status().is_terminal())
    }

    fn handler_index(&self, h: Handler) -> Option<usize> {
        self.plan.tasks.iter().position(|t| t.role == Role::Handler(h))
    }

    /// The run's outcome judged from its steps (and handlers once they ran).
    fn outcome_so_far(&self) -> RunStatus {
        if self.canceled_by.is_some() {
            return RunStatus::Canceled;
        }
        if self.timed_out {
            return RunStatus::Failed;
        }
        if self.precondition_failed.is_some() || self.init_failed() {
            return RunStatus::Canceled;
        }
        let mut partial = false;
        for (t, s) in self.plan.tasks.iter().zip(&self.slots) {
            match (s.state.status(), t.role) {
                (TaskStatus::Failed, Role::Handler(_)) => return RunStatus::Failed,
                (TaskStatus::Failed, Role::Step) if s.failure_passed => partial = true,
                (TaskStatus::Failed | TaskStatus::Canceled | TaskStatus::Abandoned, Role::Step) => {
                    return RunStatus::Failed;
                }
                _ => {}
            }
        }
        // Dagu: partial success needs a step that succeeded; a run whose every
        // step failed (even under continue_on) has failed.
        let any_completed = self
            .plan
            .tasks
            .iter()
            .zip(&self.slots)
            .any(|(t, s)| t.role == Role::Step && s.state.status() == TaskStatus::Completed);
        match (partial, any_completed) {
            (false, _) => RunStatus::Completed,
            (true, true) => RunStatus::PartiallySucceeded,
            (true, false) => RunStatus::Failed,
        }
    }

    /// Dagu: a failed init handler stops the run before any step, as a cancel.
    fn init_failed(&self) -> bool {
        self.handler_index(Handler::Init).is_some_and(|i| self.slots[i].state.status() == TaskStatus::Failed)
    }

    fn advance_phase(&mut self, now: Timestamp) {
        loop {
            match self.phase {
                Phase::Steps => {
                    if !self.steps_done() {
                        return;
                    }
                    let outcome = self.outcome_so_far();
                    let run_this = match outcome {
                        RunStatus::Canceled => Handler::Cancel,
                        RunStatus::Failed => Handler::Failure,
                        _ => Handler::Success,
                    };
                    for h in [Handler::Success, Handler::Failure, Handler::Cancel] {
                        let Some(i) = self.handler_index(h) else { continue };
                        if h == run_this {
                            self.task_change(
                                i,
                                TaskStatus::Pending,
                                now,
                                "steps finished".into(),
                                Actor::Scheduler,
                            );
                            self.ready.push_back(i);
                        } else {
                            // Dagu reports a handler that did not fire as never started.
                            let reason =
                                format!("not needed: the run is {}", outcome.as_str().to_lowercase());
                            self.task_change(i, TaskStatus::Abandoned, now, reason, Actor::Scheduler);
                        }
                    }
                    self.phase = Phase::Handlers;
                }
                Phase::Handlers => {
                    if !self.handlers_done(&[Handler::Success, Handler::Failure, Handler::Cancel]) {
                        return;
                    }
                    if let Some(i) = self.handler_index(Handler::Exit) {
                        self.task_change(
                            i,
                            TaskStatus::Pending,
                            now,
                            "run finishing".into(),
                            Actor::Scheduler,
                        );
                        self.ready.push_back(i);
                    }
                    self.phase = Phase::Exit;
                }
                Phase::Exit => {
                    if !self.handlers_done(&[Handler::Exit]) {
                        return;
                    }
                    let outcome = self.outcome_so_far();
                    let (reason, error) = self.final_reason(outcome);
                    self.set_run_status(outcome, now, reason, error);
                    self.phase = Phase::Done;
                }
                Phase::Done => return,
            }
        }
    }

    fn handlers_done(&self, which: &[Handler]) -> bool {
        which
            .iter()
            .filter_map(|&h| self.handler_index(h))
            .all(|i| self.slots[i].state.status().is_terminal())
    }

    fn final_reason(&self, outcome: RunStatus) -> (String, Option<String>) {
        if let Some(actor) = &self.canceled_by {
            let r = format!("canceled by {actor}");
            return (r.clone(), Some(r));
        }
        if self.timed_out {
            let r = format!("the workflow timed out after {}", human(self.plan.timeout.unwrap_or_default()));
            return (r.clone(), Some(r));
        }
        if let Some(r) = &self.precondition_failed {
            return (r.clone(), Some(r.clone()));
        }
        if self.init_failed() {
            let r = "the init handler failed; no step ran".to_owned();
            return (r.clone(), Some(r));
        }
        let failed: Vec<&str> = self
            .plan
            .tasks
            .iter()
            .zip(&self.slots)
            .filter(|(_, s)| s.state.status() == TaskStatus::Failed)
            .map(|(t, _)| t.name.as_str())
            .collect();
        match outcome {
            RunStatus::Completed => ("all steps completed".into(), None),
            RunStatus::PartiallySucceeded => {
                (format!("finished; failed but continued: {}", failed.join(", ")), None)
            }
            _ => {
                let r = if failed.is_empty() {
                    "steps did not complete".to_owned()
                } else {
                    format!("failed: {}", failed.join(", "))
                };
                (r.clone(), Some(r))
            }
        }
    }
}

async fn sleep_opt(clock: &EngineClock, wake: Option<Timestamp>) {
    match wake {
        Some(t) => clock.sleep_until(t).await,
        None => std::future::pending().await,
    }
}

fn validate(plan: &RunPlan) -> Result<(), EngineError> {
    let n = plan.tasks.len();
    for (i, t) in plan.tasks.iter().enumerate() {
        if let Some(&d) = t.depends.iter().find(|&&d| d >= n || d == i) {
            return Err(EngineError::InvalidPlan(format!(
                "task {:?} depends on task #{d}, which does not exist",
                t.name
            )));
        }
        if matches!(t.role, Role::Handler(h) if h != Handler::Init) && !t.depends.is_empty() {
            return Err(EngineError::InvalidPlan(format!("handler {:?} cannot have dependencies", t.name)));
        }
    }
    let handlers: Vec<Role> = plan.tasks.iter().map(|t| t.role).filter(|r| *r != Role::Step).collect();
    if (1..handlers.len()).any(|i| handlers[..i].contains(&handlers[i])) {
        return Err(EngineError::InvalidPlan("a handler appears twice".into()));
    }
    if plan.tasks.iter().any(|t: &PlannedTask| t.name.is_empty()) {
        return Err(EngineError::InvalidPlan("a task has an empty name".into()));
    }
    Ok(())
}

/// Dagu's words for a run's status, as a handler's shell sees them in `DAG_RUN_STATUS`.
fn dagu_status_word(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Queued => "queued",
        RunStatus::Running => "running",
        RunStatus::Completed => "succeeded",
        RunStatus::PartiallySucceeded => "partially_succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Canceled => "aborted",
    }
}

/// Where one attempt's stdout and stderr are kept.
pub fn attempt_log_paths(
    log_root: &Path,
    run: RunId,
    index: usize,
    name: &str,
    attempt: u32,
) -> (PathBuf, PathBuf) {
    let dir = log_root.join(run.to_string());
    let base = format!("{index:03}-{}.{attempt}", sanitize(name));
    (dir.join(format!("{base}.out")), dir.join(format!("{base}.err")))
}

/// A file-name-safe form of a step name.
fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') { c } else { '_' })
        .collect();
    s.chars().take(64).collect()
}

/// `1.5s`, `250ms`, `3m20s`: durations as people read them in reasons.
pub fn human(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        let s = d.as_secs_f64();
        if ms.is_multiple_of(1000) { format!("{}s", ms / 1000) } else { format!("{s:.1}s") }
    } else {
        let s = d.as_secs();
        format!("{}m{}s", s / 60, s % 60)
    }
}
