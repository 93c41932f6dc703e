//! The cron scheduler of `cairn serve`: starts runs of workflows at the
//! times their `schedule` names, with the workflow's overlap policy,
//! `max_active_runs`, `skip_if_successful` and `catchup_window`.
//!
//! Two parts. The pure part decides, from times and counts alone:
//! [`Cron`] computes fire times in the schedule's time zone, [`Timetable`]
//! keeps the next fire time of every schedule and says which workflows are
//! due, [`Lane`] applies the overlap policy and `max_active_runs` to the
//! ticks of one workflow, and [`missed_tick`] picks the tick to catch up at
//! start. The loop, [`Scheduler::run`], sleeps on the [`EngineClock`] until
//! the next fire time, a workflow reload or the end of a run, submits runs
//! to the [`Manager`] with trigger [`TRIGGER`], and logs every fire and skip
//! with its reason.
//!
//! The rules, in one place:
//!
//! - **One run per tick.** A workflow whose schedules fire at the same time
//!   (or that missed several ticks because the process was held up) gets one
//!   tick, for the latest time due.
//! - **Overlap** ([`OverlapPolicy`]). `skip` (default): a tick that comes
//!   while a run the schedule started is still active is dropped. `all`:
//!   every tick starts a run. `latest`: a tick that comes while a scheduled
//!   run is active waits, replacing any tick already waiting, and starts when
//!   that run ends.
//! - **`max_active_runs`** counts every run of the workflow the server drives
//!   (scheduled or not). A tick beyond it is dropped under `skip`, waits under
//!   `latest` (one at most) and `all` (at most [`MAX_WAITING`], in order).
//! - **`skip_if_successful`**: a tick is dropped when a run of the workflow
//!   that the schedule did not start was submitted after the previous
//!   scheduled time and completed.
//! - **Catch-up** (`catchup_window`, default none): when the scheduler
//!   starts, a workflow whose latest tick passed while no scheduler ran —
//!   later than its last scheduled run, and no older than the window — is
//!   fired once for that tick. Older missed ticks are not replayed, and a
//!   workflow never started by the schedule before is not caught up.
//!   A scheduler that takes over ([`Scheduler::with_takeover`]: `cairn
//!   serve` when it becomes the leader) also catches up every workflow's
//!   tick that fell due within that short window; a tick the previous
//!   leader fired is refused by the store (one run per tick).
//! - **Reloads** keep the next fire time of a schedule whose text did not
//!   change; a new or changed one fires first after the reload. A workflow
//!   that is gone loses its waiting ticks.
//!
//! Time zones: a schedule's `CRON_TZ=`/`TZ=` zone, else the server's local
//! time zone; croner walks wall-clock time in that zone, so a daily 06:00
//! stays 06:00 across daylight saving changes.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use cairn_core::event::Event;
use cairn_core::spec::{OverlapPolicy, Schedule, Workflow};
use cairn_core::{RunId, RunStatus, Timestamp};
use cairn_store::{RunQuery, Store};
use jiff::tz::TimeZone;
use tokio::sync::{broadcast, mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::manager::Manager;
use crate::time::EngineClock;

/// The trigger recorded on runs the scheduler starts.
pub const TRIGGER: &str = "schedule";

/// Most ticks of one workflow waiting under `overlap_policy: all`; more are dropped.
pub const MAX_WAITING: usize = 64;

/// Runs scanned (newest first) for a workflow's last scheduled run, at start.
const CATCH_UP_SCAN: usize = 1000;

/// Why a schedule cannot be used.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("unknown time zone \"{zone}\": {reason}")]
    TimeZone { zone: String, reason: String },
    #[error("no fire time for \"{schedule}\": {reason}")]
    NoTime { schedule: String, reason: String },
}

/// A schedule with its time zone resolved, ready to compute fire times.
#[derive(Clone, Debug)]
pub struct Cron {
    schedule: Schedule,
    zone: TimeZone,
}

impl Cron {
    /// Resolves the schedule's time zone (`None` = the local time zone).
    pub fn new(schedule: &Schedule) -> Result<Cron, ScheduleError> {
        let zone = match &schedule.timezone {
            Some(name) => TimeZone::get(name)
                .map_err(|e| ScheduleError::TimeZone { zone: name.clone(), reason: e.to_string() })?,
            None => TimeZone::system(),
        };
        Ok(Cron { schedule: schedule.clone(), zone })
    }

    /// The schedule as written, with its time zone prefix: what identifies
    /// it across reloads.
    pub fn text(&self) -> String {
        schedule_text(&self.schedule)
    }

    /// The first fire time strictly after `t`.
    pub fn after(&self, t: Timestamp) -> Result<Timestamp, ScheduleError> {
        self.find(t, false, true)
    }

    /// The latest fire time at or before `t`.
    pub fn at_or_before(&self, t: Timestamp) -> Result<Timestamp, ScheduleError> {
        self.find(t, true, false)
    }

    /// The latest fire time strictly before `t`, a fire time itself (fire
    /// times are whole seconds; for another `t` use [`Cron::at_or_before`]).
    pub fn before(&self, t: Timestamp) -> Result<Timestamp, ScheduleError> {
        self.find(t, false, false)
    }

    fn find(&self, t: Timestamp, inclusive: bool, forward: bool) -> Result<Timestamp, ScheduleError> {
        let zoned = t.to_jiff().to_zoned(self.zone.clone());
        let cron = &self.schedule.cron;
        let found = if forward {
            cron.find_next_occurrence(&zoned, inclusive)
        } else {
            cron.find_previous_occurrence(&zoned, inclusive)
        };
        found
            .map(|z| Timestamp::from_jiff(z.timestamp()))
            .map_err(|e| ScheduleError::NoTime { schedule: self.text(), reason: e.to_string() })
    }
}

fn schedule_text(s: &Schedule) -> String {
    match &s.timezone {
        Some(zone) => format!("CRON_TZ={zone} {}", s.expr),
        None => s.expr.clone(),
    }
}

/// A schedule that cannot be used, to report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    pub workflow: String,
    pub error: ScheduleError,
}

/// A workflow due to start: the scheduled time it is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tick {
    pub workflow: String,
    /// The fire time (the latest one due, when several were).
    pub at: Timestamp,
    /// The workflow's fire time before `at`, for `skip_if_successful`.
    pub previous: Option<Timestamp>,
}

#[derive(Clone, Debug)]
struct Slot {
    cron: Cron,
    /// `None` when the schedule has no fire time after the last one.
    next: Option<Timestamp>,
}

/// The next fire time of every schedule of every workflow.
#[derive(Clone, Debug, Default)]
pub struct Timetable {
    slots: BTreeMap<String, Vec<Slot>>,
}

impl Timetable {
    /// Brings the timetable in line with `workflows` at `now`: a schedule
    /// whose text is unchanged keeps its next fire time, a new one gets its
    /// first fire time after `now`, and schedules no longer listed are
    /// dropped. Returns the schedules that cannot be used.
    pub fn sync<'a>(
        &mut self,
        workflows: impl IntoIterator<Item = &'a Workflow>,
        now: Timestamp,
    ) -> Vec<Problem> {
        let mut old = std::mem::take(&mut self.slots);
        let mut problems = Vec::new();
        for w in workflows {
            let mut kept = old.remove(&w.name).unwrap_or_default();
            let mut slots = Vec::with_capacity(w.schedule.start.len());
            for schedule in &w.schedule.start {
                let text = schedule_text(schedule);
                if slots.iter().any(|s: &Slot| s.cron.text() == text) {
                    continue; // written twice
                }
                if let Some(i) = kept.iter().position(|s| s.cron.text() == text) {
                    slots.push(kept.swap_remove(i));
                    continue;
                }
                match Cron::new(schedule) {
                    Ok(cron) => {
                        let next = match cron.after(now) {
                            Ok(t) => Some(t),
                            Err(error) => {
                                problems.push(Problem { workflow: w.name.clone(), error });
                                None
                            }
                        };
                        slots.push(Slot { cron, next });
                    }
                    Err(error) => problems.push(Problem { workflow: w.name.clone(), error }),
                }
            }
            if !slots.is_empty() {
                self.slots.insert(w.name.clone(), slots);
            }
        }
        problems
    }

    /// The earliest next fire time; `None` when nothing will fire.
    pub fn next_wake(&self) -> Option<Timestamp> {
        self.slots.values().flatten().filter_map(|s| s.next).min()
    }

    /// The next fire time of `workflow`.
    pub fn next_of(&self, workflow: &str) -> Option<Timestamp> {
        self.slots.get(workflow)?.iter().filter_map(|s| s.next).min()
    }

    /// The resolved schedules of `workflow`.
    pub fn crons(&self, workflow: &str) -> Vec<&Cron> {
        self.slots.get(workflow).map(|s| s.iter().map(|s| &s.cron).collect()).unwrap_or_default()
    }

    /// The workflows due at `now`, one tick each, and every due schedule
    /// moved on to its first fire time after `now`.
    pub fn due(&mut self, now: Timestamp) -> Vec<Tick> {
        let mut ticks = Vec::new();
        for (workflow, slots) in &mut self.slots {
            let mut at: Option<Timestamp> = None;
            for slot in slots.iter_mut() {
                let Some(next) = slot.next.filter(|&n| n <= now) else { continue };
                // Ticks missed while the loop was held up collapse into the latest.
                let latest = slot.cron.at_or_before(now).unwrap_or(next).max(next);
                at = at.max(Some(latest));
                slot.next = slot.cron.after(now).ok();
            }
            let Some(at) = at else { continue };
            let previous = slots.iter().filter_map(|s| s.cron.before(at).ok()).max();
            ticks.push(Tick { workflow: workflow.clone(), at, previous });
        }
        ticks
    }
}

/// The tick to fire once when the scheduler starts, for ticks missed while
/// none ran: the latest fire time at or before `now`, if it is later than
/// the workflow's last scheduled run (`last`) and within `window` of `now`.
/// `None` without a window, or for a workflow never run by the schedule.
pub fn missed_tick(
    crons: &[&Cron],
    window: Option<Duration>,
    last: Option<Timestamp>,
    now: Timestamp,
) -> Option<Timestamp> {
    let (window, last) = (window?, last?);
    let latest = crons.iter().filter_map(|c| c.at_or_before(now).ok()).max()?;
    (latest > last && now.since(latest) <= window).then_some(latest)
}

/// How busy a workflow is, as the overlap rules see it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Occupancy {
    /// Active runs the schedule started.
    pub scheduled: usize,
    /// Active runs of the workflow, whoever started them.
    pub active: usize,
}

/// Why a tick cannot start now; `None` when it can.
pub fn blocked(policy: OverlapPolicy, max_active_runs: Option<u32>, occ: Occupancy) -> Option<String> {
    if policy != OverlapPolicy::All && occ.scheduled > 0 {
        return Some("the previous scheduled run is still active".to_owned());
    }
    if let Some(max) = max_active_runs
        && occ.active >= max as usize
    {
        let runs = if occ.active == 1 { "run is" } else { "runs are" };
        return Some(format!("max_active_runs is {max} and {} {runs} active", occ.active));
    }
    None
}

/// What became of a tick offered to a [`Lane`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Queued, to start as soon as the lane allows (at once if it does now);
    /// `replaced` is the waiting tick it took the place of (`latest`).
    Queued { replaced: Option<Timestamp> },
    /// Dropped, with the reason.
    Skipped(String),
}

/// The ticks of one workflow that wait to start.
#[derive(Clone, Debug, Default)]
pub struct Lane {
    waiting: VecDeque<Timestamp>,
}

impl Lane {
    /// Takes a tick under the workflow's `policy`.
    pub fn offer(
        &mut self,
        tick: Timestamp,
        policy: OverlapPolicy,
        max_active_runs: Option<u32>,
        occ: Occupancy,
    ) -> Offer {
        match policy {
            OverlapPolicy::Skip => match blocked(policy, max_active_runs, occ) {
                Some(reason) => Offer::Skipped(reason),
                None => {
                    self.waiting.push_back(tick);
                    Offer::Queued { replaced: None }
                }
            },
            OverlapPolicy::Latest => {
                let replaced = self.waiting.pop_back();
                self.waiting.clear();
                self.waiting.push_back(tick);
                Offer::Queued { replaced }
            }
            OverlapPolicy::All if self.waiting.len() >= MAX_WAITING => {
                Offer::Skipped(format!("{MAX_WAITING} ticks are already waiting"))
            }
            OverlapPolicy::All => {
                self.waiting.push_back(tick);
                Offer::Queued { replaced: None }
            }
        }
    }

    /// The oldest waiting tick, taken, if it may start now.
    pub fn pop_ready(
        &mut self,
        policy: OverlapPolicy,
        max_active_runs: Option<u32>,
        occ: Occupancy,
    ) -> Option<Timestamp> {
        if self.waiting.is_empty() || blocked(policy, max_active_runs, occ).is_some() {
            return None;
        }
        self.waiting.pop_front()
    }

    /// Fits the waiting ticks to a (possibly changed) policy: none wait
    /// under `skip`, one under `latest`. Returns the ticks dropped.
    pub fn reshape(&mut self, policy: OverlapPolicy) -> Vec<Timestamp> {
        let keep = match policy {
            OverlapPolicy::Skip => 0,
            OverlapPolicy::Latest => 1,
            OverlapPolicy::All => MAX_WAITING,
        };
        let excess = self.waiting.len().saturating_sub(keep);
        self.waiting.drain(..excess).collect()
    }

    pub fn waiting(&self) -> usize {
        self.waiting.len()
    }
}

/// A workflow the scheduler may start: its validated spec and the text each
/// run keeps.
#[derive(Clone, Debug)]
pub struct ScheduledWorkflow {
    pub workflow: Arc<Workflow>,
    pub source: String,
}

/// The set of workflows, as a catalog publishes it (only those with a
/// `schedule` matter).
pub type Workflows = Arc<Vec<ScheduledWorkflow>>;

/// What the scheduler did, as it happens (also logged). For tests and metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Report {
    /// A run was started for the tick at `at`.
    Started { workflow: String, at: Timestamp, run: RunId },
    /// The tick waits for a run to end (`all`, `latest`).
    Waiting { workflow: String, at: Timestamp, reason: String },
    /// The tick was dropped.
    Skipped { workflow: String, at: Timestamp, reason: String },
    /// The run could not be submitted.
    Failed { workflow: String, at: Timestamp, error: String },
    /// A schedule cannot be used (reported at each reload).
    Problem { workflow: String, error: String },
    /// The scheduler has handled everything due at `now` and sleeps until
    /// `next` (or a reload, or the end of a run).
    Idle { now: Timestamp, next: Option<Timestamp> },
}

/// The next run that ended, skipping every other event (cancel-safe: each
/// `recv` is, and what it consumed before a cancel was not an end).
async fn next_end(
    events: &mut broadcast::Receiver<Event>,
) -> Result<(RunId, String), broadcast::error::RecvError> {
    loop {
        if let Event::Run(e) = events.recv().await?
            && e.to.is_terminal()
        {
            return Ok((e.run_id, e.workflow));
        }
    }
}

/// The loop: see the [module](self) documentation.
pub struct Scheduler<S: Store> {
    manager: Arc<Manager<S>>,
    clock: EngineClock,
    source: watch::Receiver<Workflows>,
    reports: Option<mpsc::UnboundedSender<Report>>,
    timetable: Timetable,
    workflows: BTreeMap<String, ScheduledWorkflow>,
    lanes: BTreeMap<String, Lane>,
    /// Active runs the schedule started, with their workflow.
    scheduled: HashMap<RunId, String>,
    /// Runs seen ending that the manager may still list for a moment.
    ended: HashSet<RunId>,
    /// Catch-up for every scheduled workflow, not only those with a
    /// `catchup_window`: this scheduler takes over from a leader that died.
    takeover: Option<Duration>,
}

impl<S: Store> Scheduler<S> {
    /// A scheduler of the workflows `source` publishes (`cairn serve` feeds
    /// it from the catalog at every reload).
    pub fn new(manager: Arc<Manager<S>>, source: watch::Receiver<Workflows>, clock: EngineClock) -> Self {
        Scheduler {
            manager,
            clock,
            source,
            reports: None,
            timetable: Timetable::default(),
            workflows: BTreeMap::new(),
            lanes: BTreeMap::new(),
            scheduled: HashMap::new(),
            ended: HashSet::new(),
            takeover: None,
        }
    }

    /// Catches up, once, the latest tick of every workflow that fell within
    /// `window` after its last scheduled run: the ticks a leader that died
    /// may have left. A tick the old leader did fire is refused by the store.
    pub fn with_takeover(mut self, window: Duration) -> Self {
        self.takeover = Some(window);
        self
    }

    /// Also sends every [`Report`] to `reports`.
    pub fn with_reports(mut self, reports: mpsc::UnboundedSender<Report>) -> Self {
        self.reports = Some(reports);
        self
    }

    /// Runs until `shutdown` is canceled. Runs already started are left to
    /// the manager; waiting ticks are dropped.
    pub async fn run(mut self, shutdown: CancellationToken) {
        // Subscribed before anything is submitted, so no end is missed.
        let mut events = self.manager.subscribe();
        self.adopt_active_runs().await;
        let initial = self.source.borrow_and_update().clone();
        self.reload(&initial);
        self.catch_up().await;
        let mut source_open = true;
        let mut events_open = true;
        loop {
            let now = self.clock.now();
            for tick in self.timetable.due(now) {
                self.tick(tick).await;
            }
            let next = self.timetable.next_wake();
            self.report(Report::Idle { now, next });
            let clock = self.clock.clone();
            let wake = async move {
                match next {
                    Some(t) => clock.sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                changed = self.source.changed(), if source_open => {
                    if changed.is_ok() {
                        let workflows = self.source.borrow_and_update().clone();
                        self.reload(&workflows);
                        self.drain_all().await;
                    } else {
                        source_open = false;
                    }
                }
                ended = next_end(&mut events), if events_open => match ended {
                    Ok((run, workflow)) => self.run_ended(run, &workflow).await,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "scheduler fell behind the run events; checking its runs in the store");
                        self.reconcile().await;
                    }
                    Err(broadcast::error::RecvError::Closed) => events_open = false,
                },
                () = wake => {}
            }
        }
        let waiting: usize = self.lanes.values().map(Lane::waiting).sum();
        tracing::info!(waiting, "scheduler stopped");
    }

    fn report(&self, r: Report) {
        if let Some(tx) = &self.reports {
            let _ = tx.send(r);
        }
    }

    /// Counts the scheduled runs a previous server left and this manager resumed.
    async fn adopt_active_runs(&mut self) {
        match self.manager.store().active_runs().await {
            Ok(runs) => {
                for run in runs {
                    if run.trigger == TRIGGER && self.manager.is_active(run.id) {
                        self.scheduled.insert(run.id, run.workflow);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "scheduler cannot read the active runs"),
        }
    }

    fn reload(&mut self, workflows: &[ScheduledWorkflow]) {
        let now = self.clock.now();
        self.workflows = workflows
            .iter()
            .filter(|w| !w.workflow.schedule.start.is_empty())
            .map(|w| (w.workflow.name.clone(), w.clone()))
            .collect();
        for p in self.timetable.sync(self.workflows.values().map(|w| &*w.workflow), now) {
            tracing::error!(workflow = %p.workflow, error = %p.error, "schedule cannot be used");
            self.report(Report::Problem { workflow: p.workflow, error: p.error.to_string() });
        }
        let workflows = &self.workflows;
        self.lanes.retain(|name, lane| {
            let dropped = match workflows.get(name) {
                Some(w) => lane.reshape(w.workflow.overlap),
                None => lane.reshape(OverlapPolicy::Skip),
            };
            if !dropped.is_empty() {
                tracing::info!(workflow = %name, dropped = dropped.len(), "waiting scheduled runs dropped: the workflow or its overlap policy changed");
            }
            lane.waiting() > 0
        });
        for (name, w) in &self.workflows {
            let next = self.timetable.next_of(name).map(|t| t.to_string());
            tracing::debug!(workflow = %name, overlap = %w.workflow.overlap, next = next.as_deref().unwrap_or("never"), "workflow scheduled");
        }
    }

    /// Fires, once each, the ticks workflows with a `catchup_window` missed
    /// while no scheduler ran.
    async fn catch_up(&mut self) {
        let now = self.clock.now();
        let windows: Vec<(String, Duration)> = self
            .workflows
            .values()
            .filter_map(|w| {
                let window = match (w.workflow.catchup_window, self.takeover) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    (a, b) => a.or(b),
                };
                window.map(|d| (w.workflow.name.clone(), d))
            })
            .collect();
        for (name, window) in windows {
            let last = match self.last_scheduled_run(&name).await {
                Ok(last) => last,
                Err(e) => {
                    tracing::error!(workflow = %name, error = %e, "cannot read the last scheduled run; no catch-up");
                    continue;
                }
            };
            let crons = self.timetable.crons(&name);
            let Some(at) = missed_tick(&crons, Some(window), last, now) else { continue };
            let previous = crons.iter().filter_map(|c| c.before(at).ok()).max();
            tracing::info!(workflow = %name, scheduled_for = %at, "catching up a tick missed while no scheduler ran");
            self.tick(Tick { workflow: name, at, previous }).await;
        }
    }

    async fn last_scheduled_run(&self, workflow: &str) -> Result<Option<Timestamp>, cairn_store::StoreError> {
        let store = self.manager.store();
        let mut before = None;
        let mut scanned = 0;
        while scanned < CATCH_UP_SCAN {
            let page = store
                .list_runs(RunQuery {
                    workflow: Some(workflow.to_owned()),
                    limit: 100,
                    before,
                    ..Default::default()
                })
                .await?;
            let Some(last) = page.last() else { return Ok(None) };
            before = Some(last.id);
            scanned += page.len();
            if let Some(run) = page.iter().find(|r| r.trigger == TRIGGER) {
                return Ok(Some(run.submitted_at));
            }
        }
        Ok(None)
    }

    /// Whether a run not started by the schedule was submitted after
    /// `previous` and completed.
    async fn succeeded_since(
        &self,
        workflow: &str,
        previous: Timestamp,
    ) -> Result<bool, cairn_store::StoreError> {
        let store = self.manager.store();
        let mut before = None;
        loop {
            let query = RunQuery {
                workflow: Some(workflow.to_owned()),
                statuses: vec![RunStatus::Completed],
                limit: 100,
                before,
            };
            let page = store.list_runs(query).await?;
            for run in &page {
                if run.submitted_at <= previous {
                    return Ok(false);
                }
                if run.trigger != TRIGGER {
                    return Ok(true);
                }
            }
            match page.last() {
                Some(last) => before = Some(last.id),
                None => return Ok(false),
            }
        }
    }

    async fn tick(&mut self, tick: Tick) {
        let Some(w) = self.workflows.get(&tick.workflow).cloned() else { return };
        let name = tick.workflow;
        if w.workflow.skip_if_successful
            && let Some(previous) = tick.previous
        {
            match self.succeeded_since(&name, previous).await {
                Ok(true) => {
                    let reason = format!(
                        "a run succeeded since the previous scheduled time {previous} (skip_if_successful)"
                    );
                    self.skipped(&name, tick.at, reason);
                    return;
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(workflow = %name, error = %e, "cannot check skip_if_successful; starting anyway")
                }
            }
        }
        let occ = self.occupancy(&name);
        let (policy, max) = (w.workflow.overlap, w.workflow.max_active_runs);
        match self.lanes.entry(name.clone()).or_default().offer(tick.at, policy, max, occ) {
            Offer::Skipped(reason) => self.skipped(&name, tick.at, reason),
            Offer::Queued { replaced } => {
                if let Some(old) = replaced {
                    self.skipped(
                        &name,
                        old,
                        format!("replaced by the tick of {} (overlap_policy latest)", tick.at),
                    );
                }
                if let Some(reason) = blocked(policy, max, occ) {
                    tracing::info!(workflow = %name, scheduled_for = %tick.at, %reason, "scheduled run waiting");
                    self.report(Report::Waiting { workflow: name.clone(), at: tick.at, reason });
                }
            }
        }
        self.drain(&name).await;
    }

    fn skipped(&self, workflow: &str, at: Timestamp, reason: String) {
        tracing::info!(workflow = %workflow, scheduled_for = %at, %reason, "scheduled run skipped");
        self.report(Report::Skipped { workflow: workflow.to_owned(), at, reason });
    }

    /// Starts the waiting ticks of `workflow` that may start now.
    async fn drain(&mut self, workflow: &str) {
        loop {
            let Some(w) = self.workflows.get(workflow).cloned() else {
                self.lanes.remove(workflow);
                return;
            };
            let occ = self.occupancy(workflow);
            let Some(lane) = self.lanes.get_mut(workflow) else { return };
            let ready = lane.pop_ready(w.workflow.overlap, w.workflow.max_active_runs, occ);
            if lane.waiting() == 0 {
                self.lanes.remove(workflow);
            }
            let Some(at) = ready else { return };
            self.start(&w, at).await;
        }
    }

    async fn drain_all(&mut self) {
        let names: Vec<String> = self.lanes.keys().cloned().collect();
        for name in names {
            self.drain(&name).await;
        }
    }

    async fn start(&mut self, w: &ScheduledWorkflow, at: Timestamp) {
        let name = w.workflow.name.clone();
        match self
            .manager
            .submit_at(
                w.workflow.clone(),
                w.source.clone(),
                &[],
                TRIGGER,
                Some(at),
                cairn_core::record::Actor::Scheduler,
            )
            .await
        {
            Ok(run) => {
                tracing::info!(workflow = %name, scheduled_for = %at, run = %run, "scheduled run started");
                self.scheduled.insert(run, name.clone());
                self.report(Report::Started { workflow: name, at, run });
            }
            Err(e) => {
                tracing::error!(workflow = %name, scheduled_for = %at, error = %e, "scheduled run could not start");
                self.report(Report::Failed { workflow: name, at, error: e.to_string() });
            }
        }
    }

    /// The workflow's active runs, as the manager drives them, less those
    /// seen ending.
    fn occupancy(&mut self, workflow: &str) -> Occupancy {
        let manager = &self.manager;
        let ended = &self.ended;
        self.scheduled.retain(|run, _| manager.is_active(*run) && !ended.contains(run));
        self.ended.retain(|run| manager.is_active(*run));
        let active = manager.active_runs_of(workflow).into_iter().filter(|r| !self.ended.contains(r)).count();
        let scheduled = self.scheduled.values().filter(|w| *w == workflow).count();
        Occupancy { scheduled, active }
    }

    async fn run_ended(&mut self, run: RunId, workflow: &str) {
        self.scheduled.remove(&run);
        if !self.workflows.contains_key(workflow) {
            return;
        }
        self.ended.insert(run);
        if self.lanes.contains_key(workflow) {
            self.drain(workflow).await;
        }
    }

    /// After missed events: asks the store which runs have ended.
    async fn reconcile(&mut self) {
        let mut runs: Vec<RunId> = self.scheduled.keys().copied().collect();
        for name in self.lanes.keys() {
            runs.extend(self.manager.active_runs_of(name));
        }
        for run in runs {
            match self.manager.store().run(run).await {
                Ok(Some(r)) if r.status.is_terminal() => {
                    self.scheduled.remove(&run);
                    self.ended.insert(run);
                }
                Ok(_) => {}
                Err(e) => tracing::error!(run = %run, error = %e, "scheduler cannot read a run"),
            }
        }
        self.drain_all().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workflow(yaml: &str) -> Workflow {
        cairn_core::spec::parse(yaml, None).unwrap()
    }

    fn at(text: &str) -> Timestamp {
        Timestamp::from_jiff(text.parse().unwrap())
    }

    fn cron(text: &str) -> Cron {
        let w = workflow(&format!("schedule: {text:?}\nsteps: [\"true\"]"));
        Cron::new(&w.schedule.start[0]).unwrap()
    }

    #[test]
    fn fire_times_follow_the_schedule_time_zone() {
        let paris = cron("CRON_TZ=Europe/Paris 0 6 * * *");
        // 06:00 in Paris is 05:00Z in winter and 04:00Z in summer.
        assert_eq!(paris.after(at("2026-01-10T12:00:00Z")).unwrap(), at("2026-01-11T05:00:00Z"));
        assert_eq!(paris.after(at("2026-07-10T12:00:00Z")).unwrap(), at("2026-07-11T04:00:00Z"));
        // Across the spring change (2026-03-29) the wall clock time holds.
        assert_eq!(paris.after(at("2026-03-28T12:00:00Z")).unwrap(), at("2026-03-29T04:00:00Z"));

        let utc = cron("CRON_TZ=UTC */15 * * * *");
        let t = at("2026-01-01T00:15:00Z");
        assert_eq!(utc.after(t).unwrap(), at("2026-01-01T00:30:00Z"), "strictly after");
        assert_eq!(utc.after(at("2026-01-01T00:14:59.999999Z")).unwrap(), t);
        assert_eq!(utc.at_or_before(t).unwrap(), t);
        assert_eq!(utc.at_or_before(at("2026-01-01T00:29:59.5Z")).unwrap(), t);
        assert_eq!(utc.before(t).unwrap(), at("2026-01-01T00:00:00Z"));
    }

    #[test]
    fn without_a_zone_the_local_time_zone_is_used() {
        let local = cron("30 6 * * *");
        let from = at("2026-01-10T12:00:00Z");
        let expected = from
            .to_jiff()
            .to_zoned(TimeZone::system())
            .date()
            .tomorrow()
            .unwrap()
            .at(6, 30, 0, 0)
            .to_zoned(TimeZone::system())
            .unwrap();
        assert_eq!(local.after(from).unwrap(), Timestamp::from_jiff(expected.timestamp()));
    }

    #[test]
    fn an_unknown_time_zone_is_an_error() {
        let mut w = workflow("schedule: \"CRON_TZ=UTC 0 * * * *\"\nsteps: [\"true\"]");
        w.schedule.start[0].timezone = Some("Nowhere/Atlantis".into());
        let err = Cron::new(&w.schedule.start[0]).unwrap_err();
        assert!(matches!(&err, ScheduleError::TimeZone { zone, .. } if zone == "Nowhere/Atlantis"), "{err}");
        let mut table = Timetable::default();
        let problems = table.sync([&w], at("2026-01-01T00:00:00Z"));
        assert_eq!(problems, vec![Problem { workflow: w.name.clone(), error: err }]);
        assert_eq!(table.next_wake(), None);
    }

    #[test]
    fn a_schedule_that_never_fires_is_reported() {
        let w = workflow("schedule: \"CRON_TZ=UTC 0 0 30 2 *\"\nsteps: [\"true\"]");
        let mut table = Timetable::default();
        let problems = table.sync([&w], at("2026-01-01T00:00:00Z"));
        assert!(
            matches!(&problems[..], [Problem { error: ScheduleError::NoTime { .. }, .. }]),
            "{problems:?}"
        );
        assert_eq!(table.next_wake(), None);
    }

    #[test]
    fn due_gives_one_tick_per_workflow_and_moves_on() {
        let w = workflow(
            "name: w\nschedule: [\"CRON_TZ=UTC */2 * * * *\", \"CRON_TZ=UTC * * * * *\"]\nsteps: [\"true\"]",
        );
        let mut table = Timetable::default();
        let start = at("2026-01-01T00:00:00Z");
        assert!(table.sync([&w], start).is_empty());
        assert_eq!(table.next_wake(), Some(at("2026-01-01T00:01:00Z")));
        assert!(table.due(at("2026-01-01T00:00:59Z")).is_empty());
        let tick = |t: &str, p: &str| Tick { workflow: "w".into(), at: at(t), previous: Some(at(p)) };
        assert_eq!(
            table.due(at("2026-01-01T00:01:00Z")),
            vec![tick("2026-01-01T00:01:00Z", "2026-01-01T00:00:00Z")]
        );
        assert!(table.due(at("2026-01-01T00:01:30Z")).is_empty(), "once per tick");
        // Both schedules fire at 00:02: one tick.
        assert_eq!(
            table.due(at("2026-01-01T00:02:00Z")),
            vec![tick("2026-01-01T00:02:00Z", "2026-01-01T00:01:00Z")]
        );
        // Held up past several ticks: one tick, for the latest.
        assert_eq!(
            table.due(at("2026-01-01T00:05:10Z")),
            vec![tick("2026-01-01T00:05:00Z", "2026-01-01T00:04:00Z")]
        );
        assert_eq!(table.next_wake(), Some(at("2026-01-01T00:06:00Z")));
    }

    #[test]
    fn a_sync_keeps_unchanged_schedules_and_times_new_ones_from_now() {
        let hourly = workflow("name: w\nschedule: \"CRON_TZ=UTC 0 * * * *\"\nsteps: [\"true\"]");
        let mut table = Timetable::default();
        table.sync([&hourly], at("2026-01-01T00:00:00Z"));
        assert_eq!(table.next_wake(), Some(at("2026-01-01T01:00:00Z")));
        // A reload later in the hour keeps the time (no re-fire, no skip).
        let edited = workflow("name: w\nschedule: \"CRON_TZ=UTC 0 * * * *\"\nsteps: [\"echo edited\"]");
        table.sync([&edited], at("2026-01-01T00:59:59Z"));
        assert_eq!(table.next_wake(), Some(at("2026-01-01T01:00:00Z")));
        let every5 = workflow("name: w\nschedule: \"CRON_TZ=UTC */5 * * * *\"\nsteps: [\"true\"]");
        table.sync([&every5], at("2026-01-01T00:07:00Z"));
        assert_eq!(table.next_wake(), Some(at("2026-01-01T00:10:00Z")));
        table.sync([], at("2026-01-01T00:07:00Z"));
        assert_eq!(table.next_wake(), None);
    }

    #[test]
    fn catch_up_fires_the_latest_missed_tick_within_the_window() {
        let hourly = cron("CRON_TZ=UTC 0 * * * *");
        let crons = [&hourly];
        let now = at("2026-01-01T05:30:00Z");
        let last = Some(at("2026-01-01T02:00:00.004Z"));
        let hour = Duration::from_secs(3600);
        assert_eq!(missed_tick(&crons, Some(hour), last, now), Some(at("2026-01-01T05:00:00Z")));
        assert_eq!(missed_tick(&crons, None, last, now), None, "no window: no catch-up");
        assert_eq!(missed_tick(&crons, Some(hour / 4), last, now), None, "too old");
        assert_eq!(missed_tick(&crons, Some(hour), None, now), None, "never scheduled");
        let ran = Some(at("2026-01-01T05:00:00.002Z"));
        assert_eq!(missed_tick(&crons, Some(hour), ran, now), None, "the tick ran");
    }

    #[test]
    fn lanes_apply_the_overlap_policy_and_max_active_runs() {
        use OverlapPolicy::*;
        let (t1, t2, t3) =
            (at("2026-01-01T00:01:00Z"), at("2026-01-01T00:02:00Z"), at("2026-01-01T00:03:00Z"));
        let idle = Occupancy::default();
        let busy = Occupancy { scheduled: 1, active: 1 };
        let unlimited = None;

        let mut skip = Lane::default();
        assert_eq!(skip.offer(t1, Skip, unlimited, idle), Offer::Queued { replaced: None });
        assert_eq!(skip.pop_ready(Skip, unlimited, idle), Some(t1));
        assert!(
            matches!(skip.offer(t2, Skip, unlimited, busy), Offer::Skipped(r) if r.contains("still active"))
        );
        assert_eq!(skip.waiting(), 0);

        let mut all = Lane::default();
        assert_eq!(all.offer(t1, All, unlimited, busy), Offer::Queued { replaced: None });
        assert_eq!(all.pop_ready(All, unlimited, busy), Some(t1), "all ignores active scheduled runs");
        // ...but not max_active_runs: ticks wait, in order.
        let full = Occupancy { scheduled: 0, active: 2 };
        assert!(blocked(All, Some(2), full).unwrap().contains("max_active_runs is 2"));
        all.offer(t2, All, Some(2), full);
        all.offer(t3, All, Some(2), full);
        assert_eq!(all.pop_ready(All, Some(2), full), None);
        assert_eq!(all.pop_ready(All, Some(2), Occupancy { scheduled: 0, active: 1 }), Some(t2));
        assert_eq!(all.pop_ready(All, Some(2), idle), Some(t3));
        for i in 0..MAX_WAITING {
            assert!(matches!(all.offer(t1, All, Some(2), full), Offer::Queued { .. }), "{i}");
        }
        assert!(matches!(all.offer(t1, All, Some(2), full), Offer::Skipped(_)));

        let mut latest = Lane::default();
        assert_eq!(latest.offer(t1, Latest, unlimited, busy), Offer::Queued { replaced: None });
        assert_eq!(latest.offer(t2, Latest, unlimited, busy), Offer::Queued { replaced: Some(t1) });
        assert_eq!(latest.offer(t3, Latest, unlimited, busy), Offer::Queued { replaced: Some(t2) });
        assert_eq!(latest.pop_ready(Latest, unlimited, busy), None);
        assert_eq!(latest.pop_ready(Latest, unlimited, idle), Some(t3));
        assert_eq!(latest.waiting(), 0);

        let mut reshaped = Lane::default();
        reshaped.offer(t1, All, Some(1), busy);
        reshaped.offer(t2, All, Some(1), busy);
        assert_eq!(reshaped.reshape(Latest), vec![t1]);
        assert_eq!(reshaped.reshape(Skip), vec![t2]);
    }
}
