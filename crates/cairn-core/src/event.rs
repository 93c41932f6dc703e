//! Live events: what the engine announces as it happens — task transitions,
//! progress, run transitions — for the API's WebSocket stream, the web UI and
//! `cairn` clients. Plain serde data, so the engine produces them without
//! knowing of HTTP, and every client reads them with one type.
//!
//! In JSON each event is an object tagged by `kind`:
//!
//! ```json
//! {"kind":"transition","run_id":"01J…","workflow":"etl","task_id":"01J…","step":"load",
//!  "queue":null,"attempt":1,"from":"PENDING","to":"RUNNING","from_at":"2026-11-20T22:16:28.100000Z",
//!  "at":"2026-11-20T22:16:28.123456Z","reason":"attempt 1 started","actor":"executor"}
//! {"kind":"progress","run_id":"01J…","workflow":"etl","task_id":"01J…","step":"load","attempt":1,
//!  "percent":40.0,"message":"chunk 4 of 10","at":"…","predicted_finish_at":"…","overrun_predicted":false}
//! {"kind":"run","run_id":"01J…","workflow":"etl","from":"RUNNING","to":"COMPLETED","at":"…",
//!  "reason":"every step completed","actor":"scheduler"}
//! {"kind":"lagged","missed":120}
//! ```
//!
//! Events are a view, not the record: the store's transition log is the
//! truth, and a subscriber that falls behind loses events (it is told how
//! many with `lagged`) but never slows the engine down.

use serde::{Deserialize, Serialize};

use crate::record::Actor;
use crate::{RunId, RunStatus, TaskId, TaskStatus, Timestamp};

/// One live event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// A task changed status (written to the store before it is announced).
    Transition(TransitionEvent),
    /// A running task reported progress (as stored, after rate limiting).
    Progress(ProgressEvent),
    /// A run changed status.
    Run(RunEvent),
    /// An alert was raised or resolved (by any server of the store).
    Alert { alert: crate::alert::Alert },
    /// Made by the server, never by the engine: this subscriber fell behind
    /// and `missed` events were dropped for it. Reload state from the API.
    Lagged {
        /// How many events were dropped.
        missed: u64,
    },
}

impl Event {
    /// The run the event belongs to; `None` for alerts and [`Event::Lagged`].
    pub fn run_id(&self) -> Option<RunId> {
        match self {
            Event::Transition(e) => Some(e.run_id),
            Event::Progress(e) => Some(e.run_id),
            Event::Run(e) => Some(e.run_id),
            Event::Alert { .. } | Event::Lagged { .. } => None,
        }
    }

    /// The workflow of the event's run; `None` for [`Event::Lagged`].
    pub fn workflow(&self) -> Option<&str> {
        match self {
            Event::Transition(e) => Some(&e.workflow),
            Event::Progress(e) => Some(&e.workflow),
            Event::Run(e) => Some(&e.workflow),
            Event::Alert { alert } => Some(&alert.workflow),
            Event::Lagged { .. } => None,
        }
    }
}

/// A task's status change: the transition row as stored, with where it belongs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TransitionEvent {
    pub run_id: RunId,
    pub workflow: String,
    pub task_id: TaskId,
    /// The step's name.
    pub step: String,
    /// The step's queue; `None` for the local executor. Metrics label gauges by it.
    pub queue: Option<String>,
    /// 1-based; 0 before the first start.
    pub attempt: u32,
    /// `None` for the creation of the task.
    pub from: Option<TaskStatus>,
    pub to: TaskStatus,
    /// When the task entered `from`, so a subscriber can measure the phase
    /// that just ended (`at - from_at`) without keeping state. `None` with `from`.
    pub from_at: Option<Timestamp>,
    pub at: Timestamp,
    pub reason: String,
    pub actor: Actor,
}

/// The latest progress of a running attempt.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProgressEvent {
    pub run_id: RunId,
    pub workflow: String,
    pub task_id: TaskId,
    pub step: String,
    pub attempt: u32,
    /// 0.0 to 100.0.
    pub percent: f32,
    pub message: Option<String>,
    pub at: Timestamp,
    /// When the attempt will finish if it keeps its average rate.
    pub predicted_finish_at: Option<Timestamp>,
    /// The predicted finish is past the step's timeout: it will likely time out.
    pub overrun_predicted: bool,
}

/// A run's status change.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunEvent {
    pub run_id: RunId,
    pub workflow: String,
    /// `None` for the creation of the run.
    pub from: Option<RunStatus>,
    pub to: RunStatus,
    pub at: Timestamp,
    pub reason: String,
    pub actor: Actor,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_tagged_by_kind() {
        let at = Timestamp::from_micros(1_000_000);
        let run = RunId::new(at);
        let e = Event::Run(RunEvent {
            run_id: run,
            workflow: "etl".into(),
            from: Some(RunStatus::Running),
            to: RunStatus::Completed,
            at,
            reason: "done".into(),
            actor: Actor::Scheduler,
        });
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["kind"], "run");
        assert_eq!(json["to"], "COMPLETED");
        assert_eq!(json["actor"], "scheduler");
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), e);
        assert_eq!((e.run_id(), e.workflow()), (Some(run), Some("etl")));
        let lagged = serde_json::to_string(&Event::Lagged { missed: 3 }).unwrap();
        assert_eq!(lagged, r#"{"kind":"lagged","missed":3}"#);
    }
}
