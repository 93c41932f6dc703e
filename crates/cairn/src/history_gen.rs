//! A large, realistic history of finished runs, made from a seed, for W4
//! (`bench_history`): twenty workflows of 2 to 18 steps (10 on average) in
//! layers, each layer waiting for the one before; scheduled, manual, API
//! and retry runs with labels; steps that queue, run for seconds to
//! minutes, fail and retry with back-off, skip on a false precondition,
//! let failures through (`continue_on`), or are canceled with their run;
//! failure handlers that run or are not needed. Every task's log is made by
//! `TaskState::transition`, the one function that changes a status, so it
//! follows the transition table and never goes back in time.
//!
//! Runs come in submission order, spread evenly (with jitter) over a span
//! of days ending an hour before `end`, their ids made for their
//! submission times: what `Store::import_runs` loads fastest, and what a
//! real history looks like in every index keyed by id or time.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use cairn_core::progress::Progress;
use cairn_core::record::{Actor, RunTransition, TaskState, Transition};
use cairn_core::{RunId, RunStatus, TaskId, TaskStatus, Timestamp};
use cairn_store::{AttemptRecord, FinishedRun, ProgressSample, RunDetail, RunRecord, TaskRecord};

const MS: i64 = 1_000;
const SECOND: i64 = 1_000_000;
const HOUR: i64 = 3_600 * SECOND;
const DAY: i64 = 24 * HOUR;

/// xorshift64*: the same seed makes the same history.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in `[lo, hi)` µs.
    fn span(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo).max(1) as u64) as i64
    }

    /// A duration around `median` µs: skewed to the long side, as run times are.
    fn around(&mut self, median: i64) -> i64 {
        ((median as f64) * (self.unit() * 1.8 - 0.8).exp()).max(1.0) as i64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// One step of a workflow, as the generator runs it.
#[derive(Clone, Debug)]
struct Step {
    name: String,
    /// Remote steps wait longer in their queue and run on named workers.
    queue: Option<String>,
    /// Typical execution time, µs.
    median: i64,
    /// Chance that one attempt fails.
    fail: f64,
    max_attempts: u32,
    /// Has a precondition, false now and then.
    precondition: bool,
    /// `continue_on.failure`: its failure lets the run go on.
    continue_on_failure: bool,
    /// Sets `output:` variables when it completes.
    outputs: bool,
}

/// A workflow: its steps in layers, each layer waiting for the whole layer
/// before it, and maybe an `onFailure` handler (the last task).
#[derive(Clone, Debug)]
struct Flow {
    name: String,
    spec: String,
    labels: Vec<String>,
    scheduled: bool,
    steps: Vec<Step>,
    /// Where each layer starts in `steps`; the last layer ends at `steps.len()`.
    layers: Vec<usize>,
    handler: bool,
}

impl Flow {
    fn tasks(&self) -> usize {
        self.steps.len() + usize::from(self.handler)
    }

    fn layer(&self, k: usize) -> std::ops::Range<usize> {
        self.layers[k]..self.layers.get(k + 1).copied().unwrap_or(self.steps.len())
    }
}

const NAMES: [&str; 20] = [
    "etl-orders",
    "etl-customers",
    "etl-inventory",
    "report-daily",
    "report-weekly",
    "backup-db",
    "backup-files",
    "train-ranker",
    "train-forecast",
    "score-batch",
    "deploy-api",
    "deploy-web",
    "sync-crm",
    "sync-billing",
    "index-search",
    "cleanup-tmp",
    "export-ledger",
    "ingest-events",
    "compact-logs",
    "audit-access",
];

/// Steps per workflow (handler included): 10 on average.
const SIZES: [usize; 20] = [2, 3, 4, 5, 6, 7, 8, 8, 9, 10, 10, 11, 12, 12, 13, 14, 15, 16, 17, 18];

const TEAMS: [&str; 4] = ["data", "ops", "ml", "web"];

/// The twenty workflows, the same for every seed.
fn flows() -> Vec<Flow> {
    let mut rng = Rng::new(0xF10E);
    NAMES
        .iter()
        .zip(SIZES)
        .enumerate()
        .map(|(w, (name, size))| {
            let handler = size >= 6;
            let n = size - usize::from(handler);
            let steps: Vec<Step> = (0..n)
                .map(|i| {
                    let remote = w % 3 == 0 && i % 2 == 1;
                    Step {
                        name: format!("{}-{i}", ["extract", "load", "check", "build", "publish"][i % 5]),
                        queue: remote.then(|| ["gpu", "cpu"][w % 2].to_owned()),
                        median: [200 * MS, 2 * SECOND, 15 * SECOND, 60 * SECOND, 300 * SECOND]
                            [rng.below(5) as usize],
                        fail: [0.002, 0.005, 0.01, 0.03][rng.below(4) as usize],
                        max_attempts: [1, 2, 3][rng.below(3) as usize],
                        precondition: rng.chance(0.15),
                        continue_on_failure: rng.chance(0.08),
                        outputs: rng.chance(0.3),
                    }
                })
                .collect();
            let width = 1 + w % 4;
            let layers = (0..n).step_by(width).collect();
            let mut labels = vec![format!("team={}", TEAMS[w % 4]), format!("tier={}", 1 + w % 3)];
            if w % 5 == 0 {
                labels.push("pii".to_owned());
            }
            let scheduled = w % 4 != 3;
            if scheduled {
                labels.push("nightly".to_owned());
            }
            let mut spec = format!("name: {name}\n");
            if scheduled {
                spec.push_str(&format!("schedule: \"{} {} * * *\"\n", w * 3 % 60, w % 24));
            }
            spec.push_str(&format!("labels: [{}]\nsteps:\n", labels.join(", ")));
            for s in &steps {
                spec.push_str(&format!("  - name: {}\n    command: ./{}.sh\n", s.name, s.name));
            }
            if handler {
                spec.push_str("handlerOn:\n  failure:\n    command: ./notify.sh\n");
            }
            Flow { name: (*name).to_owned(), spec, labels, scheduled, steps, layers, handler }
        })
        .collect()
}

/// Makes the history, a batch of runs at a time.
pub(crate) struct HistoryGen {
    rng: Rng,
    flows: Vec<Flow>,
    start: i64,
    spacing: i64,
    /// Runs made so far, and their tasks.
    made: usize,
    tasks: usize,
    target: usize,
    last_at: i64,
}

impl HistoryGen {
    /// Runs holding `tasks` task records in all (the last run may pass it
    /// by a few), submitted over `days` days up to an hour before `end`.
    pub(crate) fn new(seed: u64, tasks: usize, end: Timestamp, days: u32) -> HistoryGen {
        let flows = flows();
        let mean = flows.iter().map(Flow::tasks).sum::<usize>() as f64 / flows.len() as f64;
        let runs = ((tasks as f64 / mean).ceil() as i64).max(1);
        let end = end.as_micros() - HOUR;
        let start = end - i64::from(days.max(1)) * DAY;
        HistoryGen {
            rng: Rng::new(seed),
            flows,
            start,
            spacing: ((end - start) / runs).max(MS),
            made: 0,
            tasks: 0,
            target: tasks,
            last_at: i64::MIN,
        }
    }

    /// The next `runs` runs (fewer at the end; none once done).
    pub(crate) fn batch(&mut self, runs: usize) -> Result<Vec<FinishedRun>> {
        let mut batch = Vec::with_capacity(runs);
        while batch.len() < runs && self.tasks < self.target {
            // Evenly spaced, jittered, never two in one millisecond.
            let slot = self.start + self.made as i64 * self.spacing;
            let at = (slot + self.rng.span(0, self.spacing / 2)).max(self.last_at + MS);
            self.last_at = at;
            let flow = self.rng.below(self.flows.len() as u64) as usize;
            let run = self.run(flow, at).with_context(|| format!("generating run #{}", self.made))?;
            self.made += 1;
            self.tasks += run.detail.tasks.len();
            batch.push(run);
        }
        Ok(batch)
    }

    fn run(&mut self, f: usize, at: i64) -> Result<FinishedRun> {
        let flow = &self.flows[f];
        let rng = &mut self.rng;
        let ms = (at / MS) as u128;
        let run_id = RunId::from_bytes(
            ((ms << 80) | (u128::from(rng.next()) << 16 | u128::from(rng.next() as u16))).to_be_bytes(),
        );
        // A run's tasks count up from a random start, as ids made together do.
        let task_base = (ms << 80) | (u128::from(rng.next()) << 15);

        let trigger = if flow.scheduled {
            if rng.chance(0.85) { "schedule" } else { *rng.pick(&["manual", "manual", "api", "retry"]) }
        } else {
            *rng.pick(&["api", "api", "api", "manual", "manual", "retry"])
        };
        let submitter = match trigger {
            "schedule" => Actor::Scheduler,
            "api" => Actor::User("token:ci".to_owned()),
            _ => Actor::User(rng.pick(&["alice", "bob", "carol"]).to_string()),
        };
        let started = at + rng.span(MS, 40 * MS);
        // A user cancels about 1.5% of runs, some time into them.
        let cancel = rng.chance(0.015).then(|| started + rng.span(1, 20 * 60 * SECOND));
        let canceler = Actor::User("alice".to_owned());

        let n = flow.tasks();
        let mut tasks: Vec<Sim> = (0..n)
            .map(|i| {
                Sim::new(
                    TaskId::from_bytes((task_base + i as u128).to_be_bytes()),
                    Timestamp::from_micros(at),
                )
            })
            .collect();
        let names =
            |r: std::ops::Range<usize>| r.map(|i| flow.steps[i].name.as_str()).collect::<Vec<_>>().join(", ");
        for (i, task) in tasks.iter_mut().enumerate().take(flow.steps.len()) {
            if i < flow.layer(0).end {
                task.to(TaskStatus::Pending, started, "no dependencies".into(), Actor::Scheduler)?;
            } else {
                let k = flow.layers.iter().rposition(|&s| s <= i).unwrap_or(0);
                task.to(
                    TaskStatus::Blocked,
                    started,
                    format!("waiting for {}", names(flow.layer(k - 1))),
                    Actor::Scheduler,
                )?;
            }
        }
        if flow.handler {
            tasks[n - 1].to(
                TaskStatus::Blocked,
                started,
                "waiting for the steps to finish".into(),
                Actor::Scheduler,
            )?;
        }

        // Layer by layer; a bad end upstream settles everything after it.
        let mut ready = started;
        let mut cascade: Option<(TaskStatus, String, i64)> = None;
        let mut failed_step: Option<String> = None;
        let mut passed_failure = false;
        let mut canceled = false;
        for k in 0..flow.layers.len() {
            let layer = flow.layer(k);
            if let Some(c) = cancel.filter(|c| cascade.is_none() && *c <= ready) {
                cascade = Some((TaskStatus::Abandoned, format!("canceled by {canceler}"), c));
                canceled = true;
            }
            if let Some((to, reason, when)) = &cascade {
                for i in layer {
                    let actor = if canceled { canceler.clone() } else { Actor::Scheduler };
                    tasks[i].to(*to, *when, reason.clone(), actor)?;
                }
                continue;
            }
            let mut end = ready;
            let mut first_bad: Option<(i64, TaskStatus, String)> = None;
            for i in layer {
                let step = &flow.steps[i];
                let task = &mut tasks[i];
                if k > 0 {
                    task.to(TaskStatus::Pending, ready, "dependencies finished".into(), Actor::Scheduler)?;
                }
                let ended = task.execute(step, ready, cancel, &canceler, rng)?;
                end = end.max(ended);
                let status = task.state.status();
                let bad = match status {
                    TaskStatus::Failed if step.continue_on_failure => {
                        passed_failure = true;
                        None
                    }
                    TaskStatus::Failed => {
                        failed_step.get_or_insert_with(|| step.name.clone());
                        Some("failed")
                    }
                    TaskStatus::Skipped => Some("was skipped"),
                    TaskStatus::Canceled => {
                        canceled = true;
                        Some("was canceled")
                    }
                    _ => None,
                };
                if let Some(verb) = bad
                    && first_bad.as_ref().is_none_or(|(t, _, _)| ended < *t)
                {
                    let to = if status == TaskStatus::Skipped {
                        TaskStatus::Skipped
                    } else {
                        TaskStatus::Abandoned
                    };
                    first_bad = Some((ended, to, format!("upstream {:?} {verb}", step.name)));
                }
            }
            if let Some((when, to, reason)) = first_bad {
                cascade = Some((to, reason, when));
            }
            ready = end;
        }
        let outcome = if canceled {
            RunStatus::Canceled
        } else if failed_step.is_some() {
            RunStatus::Failed
        } else if passed_failure {
            RunStatus::PartiallySucceeded
        } else {
            RunStatus::Completed
        };
        let mut last = tasks.iter().map(|t| t.state.last_at().as_micros()).max().unwrap_or(started);
        if flow.handler {
            let h = &mut tasks[n - 1];
            let steps_done = last;
            if outcome == RunStatus::Failed {
                h.to(TaskStatus::Pending, steps_done, "steps finished".into(), Actor::Scheduler)?;
                let notify = Step {
                    name: "onFailure".into(),
                    queue: None,
                    median: 300 * MS,
                    fail: 0.0,
                    max_attempts: 1,
                    precondition: false,
                    continue_on_failure: false,
                    outputs: false,
                };
                last = h.execute(&notify, steps_done, None, &canceler, rng)?;
            } else {
                let reason = format!("not needed: the run is {}", outcome.as_str().to_lowercase());
                h.to(TaskStatus::Abandoned, steps_done, reason, Actor::Scheduler)?;
            }
        }
        let finished = last + rng.span(MS, 5 * MS);
        let (reason, error) = match (outcome, &failed_step) {
            (RunStatus::Failed, Some(step)) => {
                let error = format!("step {step:?} failed: exit code 1");
                (error.clone(), Some(error))
            }
            (RunStatus::Canceled, _) => (format!("canceled by {canceler}"), None),
            _ => (outcome.as_str().to_lowercase().replace('_', " "), None),
        };

        let mut detail = RunDetail {
            run: RunRecord {
                id: run_id,
                workflow: flow.name.clone(),
                status: outcome,
                trigger: trigger.to_owned(),
                params: BTreeMap::from([("env".to_owned(), "prod".to_owned())]),
                owner: Some(format!("server:cairn-{}:4242", 1 + f % 2)),
                spec_path: Some(format!("workflows/{}.yaml", flow.name)),
                submitted_at: Timestamp::from_micros(at),
                started_at: Some(Timestamp::from_micros(started)),
                finished_at: Some(Timestamp::from_micros(finished)),
                error,
                cancel_requested_by: (outcome == RunStatus::Canceled).then(|| canceler.clone()),
                schedule_tick: (trigger == "schedule").then(|| Timestamp::from_micros(at / MS * MS)),
            },
            run_transitions: vec![
                RunTransition {
                    from: None,
                    to: RunStatus::Queued,
                    at: Timestamp::from_micros(at),
                    reason: format!("{trigger} run"),
                    actor: submitter,
                },
                RunTransition {
                    from: Some(RunStatus::Queued),
                    to: RunStatus::Running,
                    at: Timestamp::from_micros(started),
                    reason: "started".to_owned(),
                    actor: Actor::Scheduler,
                },
                RunTransition {
                    from: Some(RunStatus::Running),
                    to: outcome,
                    at: Timestamp::from_micros(finished),
                    reason,
                    actor: if outcome == RunStatus::Canceled { canceler } else { Actor::Scheduler },
                },
            ],
            tasks: Vec::with_capacity(n),
            transitions: BTreeMap::new(),
            attempts: BTreeMap::new(),
        };
        let mut progress = BTreeMap::new();
        for (i, sim) in tasks.into_iter().enumerate() {
            let step = flow.steps.get(i);
            let name = step.map_or("onFailure", |s| s.name.as_str()).to_owned();
            let (record, log, attempts, samples) = sim.finish(run_id, i as u32, name, step);
            let id = record.id;
            detail.tasks.push(record);
            detail.transitions.insert(id, log);
            if !attempts.is_empty() {
                detail.attempts.insert(id, attempts);
            }
            if !samples.is_empty() {
                progress.insert(id, samples);
            }
        }
        Ok(FinishedRun {
            detail,
            spec_source: Some(flow.spec.clone()),
            labels: flow.labels.clone(),
            progress,
        })
    }
}

/// One task as it is simulated: its state, its log and its attempts.
struct Sim {
    id: TaskId,
    state: TaskState,
    log: Vec<Transition>,
    attempts: Vec<AttemptRecord>,
    samples: Vec<ProgressSample>,
    progress: Option<(Progress, Timestamp)>,
    outputs: BTreeMap<String, String>,
    not_before: Option<Timestamp>,
}

impl Sim {
    fn new(id: TaskId, at: Timestamp) -> Sim {
        let (state, first) = TaskState::submit(at, "created", Actor::Scheduler);
        Sim {
            id,
            state,
            log: vec![first],
            attempts: Vec::new(),
            samples: Vec::new(),
            progress: None,
            outputs: BTreeMap::new(),
            not_before: None,
        }
    }

    fn to(&mut self, to: TaskStatus, at: i64, reason: String, actor: Actor) -> Result<()> {
        let t = self
            .state
            .transition(to, Timestamp::from_micros(at), reason, actor)
            .with_context(|| format!("task {}", self.id))?;
        self.log.push(t);
        Ok(())
    }

    /// Runs a PENDING task from `ready` to its end (or to the cancel at
    /// `cancel`): attempts with retries and back-off, or a skip. Returns
    /// when it ended.
    fn execute(
        &mut self,
        step: &Step,
        ready: i64,
        cancel: Option<i64>,
        canceler: &Actor,
        rng: &mut Rng,
    ) -> Result<i64> {
        let mut now = ready;
        if step.precondition && rng.chance(0.04) {
            let at = now + rng.span(100, 2 * MS);
            self.to(TaskStatus::Skipped, at, "precondition false: test -f ./ready".into(), Actor::Scheduler)?;
            return Ok(at);
        }
        let canceled = format!("canceled by {canceler}");
        for attempt in 1..=step.max_attempts {
            let wait = match step.queue {
                Some(_) => rng.around(300 * MS),
                None => rng.span(100, 5 * MS),
            };
            let start = now + wait;
            if let Some(c) = cancel.filter(|c| *c < start) {
                let c = c.max(self.state.last_at().as_micros());
                self.to(TaskStatus::Canceled, c, canceled, canceler.clone())?;
                return Ok(c);
            }
            let (worker, actor) = match &step.queue {
                Some(q) => {
                    let w = format!("{q}-worker-{}", 1 + rng.below(8));
                    (w.clone(), Actor::Worker(w))
                }
                None => ("server:cairn-1:4242".to_owned(), Actor::Executor),
            };
            self.to(TaskStatus::Running, start, format!("attempt {attempt} started"), actor.clone())?;
            self.not_before = None;
            self.progress = None;
            let end = start + rng.around(step.median);
            if step.queue.is_some() && rng.chance(0.5) {
                for (k, percent) in [(1, 33.0), (2, 66.0)] {
                    let at = Timestamp::from_micros(start + (end - start) * k / 3);
                    let message = Some(format!("{percent:.0}% of the batch"));
                    self.samples.push(ProgressSample { attempt, at, percent, message: message.clone() });
                    self.progress = Some((Progress { percent, message }, at));
                }
            }
            let mut record = AttemptRecord {
                task: self.id,
                attempt,
                worker,
                started_at: Timestamp::from_micros(start),
                ended_at: None,
                outcome: None,
                exit_code: None,
                error: None,
            };
            if let Some(c) = cancel.filter(|c| *c < end) {
                let c = c.max(start);
                self.to(TaskStatus::Canceled, c, canceled.clone(), canceler.clone())?;
                record.ended_at = Some(Timestamp::from_micros(c));
                record.outcome = Some(TaskStatus::Canceled);
                record.error = Some(canceled);
                self.attempts.push(record);
                return Ok(c);
            }
            record.ended_at = Some(Timestamp::from_micros(end));
            if !rng.chance(step.fail) {
                self.to(TaskStatus::Completed, end, "exit code 0".into(), actor)?;
                record.outcome = Some(TaskStatus::Completed);
                record.exit_code = Some(0);
                if step.outputs {
                    self.outputs = BTreeMap::from([("ROWS".to_owned(), rng.below(1_000_000).to_string())]);
                }
                self.attempts.push(record);
                return Ok(end);
            }
            record.outcome = Some(TaskStatus::Failed);
            record.exit_code = Some(1);
            record.error = Some("exit code 1".to_owned());
            self.attempts.push(record);
            if attempt == step.max_attempts {
                self.to(TaskStatus::Failed, end, "exit code 1".into(), actor)?;
                return Ok(end);
            }
            let delay = (2 * SECOND) << (attempt - 1);
            let reason = format!(
                "attempt {attempt} failed: exit code 1; retry {attempt} of {} in {}s",
                step.max_attempts - 1,
                delay / SECOND
            );
            self.to(TaskStatus::Pending, end, reason, actor)?;
            self.not_before = Some(Timestamp::from_micros(end + delay));
            now = end + delay;
        }
        Ok(now)
    }

    /// The task's record, log, attempts and samples.
    fn finish(
        self,
        run: RunId,
        index: u32,
        name: String,
        step: Option<&Step>,
    ) -> (TaskRecord, Vec<Transition>, Vec<AttemptRecord>, Vec<ProgressSample>) {
        let current = self.attempts.last();
        let record = TaskRecord {
            id: self.id,
            run,
            index,
            name,
            status: self.state.status(),
            attempt: self.state.attempt(),
            max_attempts: step.map_or(1, |s| s.max_attempts),
            queue: step.and_then(|s| s.queue.clone()),
            submitted_at: self.log[0].at,
            started_at: current.map(|a| a.started_at),
            finished_at: Some(self.state.last_at()),
            not_before: self.not_before,
            lease: None,
            progress: self.progress.as_ref().map(|(p, _)| p.clone()),
            progress_at: self.progress.as_ref().map(|(_, at)| *at),
            exit_code: current.and_then(|a| a.exit_code),
            error: current.and_then(|a| a.error.clone()),
            outputs: self.outputs,
            details: None,
        };
        (record, self.log, self.attempts, self.samples)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use cairn_store::{CountQuery, SqliteOptions, SqliteStore, Store};

    use super::*;

    fn end() -> Timestamp {
        Timestamp::from_micros(1_790_000_000 * SECOND)
    }

    fn history(seed: u64, tasks: usize) -> Vec<FinishedRun> {
        let mut g = HistoryGen::new(seed, tasks, end(), 30);
        let mut all = Vec::new();
        loop {
            let batch = g.batch(1_000).unwrap();
            if batch.is_empty() {
                break;
            }
            all.extend(batch);
        }
        let made: usize = all.iter().map(|r| r.detail.tasks.len()).sum();
        assert!(made >= tasks && made < tasks + 20, "{made} tasks for {tasks}");
        all
    }

    /// Every run finished; every log legal, in time order, ending in the
    /// task's status; the attempts those of the log; runs in submission
    /// order over the span; the mix of statuses a real history has.
    #[test]
    fn the_history_is_finished_legal_and_realistic() {
        let runs = history(7, 60_000);
        let (first, last) = (runs[0].detail.run.submitted_at, runs[runs.len() - 1].detail.run.submitted_at);
        assert!(first.as_micros() >= end().as_micros() - 30 * DAY - HOUR && last < end());
        assert!(last.as_micros() - first.as_micros() > 29 * DAY, "spread over the span");
        let mut statuses: BTreeMap<RunStatus, usize> = BTreeMap::new();
        let mut task_statuses: BTreeMap<TaskStatus, usize> = BTreeMap::new();
        let (mut retried, mut workflows, mut triggers) = (0, BTreeSet::new(), BTreeSet::new());
        let mut previous: Option<RunId> = None;
        for run in &runs {
            let d = &run.detail;
            assert!(d.run.status.is_terminal());
            assert!(previous.is_none_or(|p| p < d.run.id), "runs come in id (submission) order");
            previous = Some(d.run.id);
            assert_eq!(
                (d.run.id.to_bytes()[0..6]),
                ((d.run.submitted_at.as_micros() / MS) as u64).to_be_bytes()[2..]
            );
            *statuses.entry(d.run.status).or_default() += 1;
            workflows.insert(d.run.workflow.clone());
            triggers.insert(d.run.trigger.clone());
            let mut from = None;
            for (k, t) in d.run_transitions.iter().enumerate() {
                assert_eq!(t.from, from);
                RunStatus::check(t.from, t.to).unwrap();
                assert!(k == 0 || t.at >= d.run_transitions[k - 1].at);
                from = Some(t.to);
            }
            assert_eq!(from, Some(d.run.status));
            for task in &d.tasks {
                let log = &d.transitions[&task.id];
                assert!(task.status.is_terminal(), "{task:?}");
                assert_eq!(log.last().map(|t| t.to), Some(task.status));
                let mut from = None;
                for (k, t) in log.iter().enumerate() {
                    assert_eq!(t.from, from, "{log:?}");
                    TaskStatus::check(t.from, t.to).unwrap();
                    assert!(k == 0 || t.at >= log[k - 1].at, "time goes forward: {log:?}");
                    from = Some(t.to);
                }
                let starts = log.iter().filter(|t| t.to == TaskStatus::Running).count();
                let attempts = d.attempts.get(&task.id).map_or(0, Vec::len);
                assert_eq!(starts, attempts);
                retried += usize::from(attempts > 1);
                *task_statuses.entry(task.status).or_default() += 1;
            }
        }
        let share = |s: RunStatus| statuses.get(&s).copied().unwrap_or(0) as f64 / runs.len() as f64;
        assert!(share(RunStatus::Completed) > 0.85, "{statuses:?}");
        assert!((0.01..0.10).contains(&share(RunStatus::Failed)), "{statuses:?}");
        assert!((0.003..0.04).contains(&share(RunStatus::Canceled)), "{statuses:?}");
        assert!(share(RunStatus::PartiallySucceeded) > 0.0, "{statuses:?}");
        assert_eq!(task_statuses.len(), 5, "every terminal task status: {task_statuses:?}");
        assert!(retried > 20, "{retried} tasks retried");
        assert_eq!(workflows.len(), 20);
        assert_eq!(triggers.len(), 4, "{triggers:?}");
    }

    #[test]
    fn a_seed_makes_the_same_history() {
        assert_eq!(history(3, 5_000), history(3, 5_000));
        assert_ne!(history(3, 5_000), history(4, 5_000));
    }

    /// The history imports into a real store (which checks every record
    /// against the transition table and the log), reads back as made, and
    /// counts as generated.
    #[tokio::test]
    async fn the_history_imports_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("cairn.db"), SqliteOptions::default()).unwrap();
        let runs = history(11, 20_000);
        for chunk in runs.chunks(500) {
            store.import_runs(Arc::new(chunk.to_vec())).await.unwrap();
        }
        for run in runs.iter().step_by(97) {
            let detail = store.run_detail(run.detail.run.id).await.unwrap().unwrap();
            assert_eq!(detail, run.detail);
        }
        let mut expected: BTreeMap<TaskStatus, u64> = BTreeMap::new();
        for task in runs.iter().flat_map(|r| &r.detail.tasks) {
            *expected.entry(task.status).or_default() += 1;
        }
        assert_eq!(store.task_counts(CountQuery::default()).await.unwrap(), expected);
        store.close().await.unwrap();
    }
}
