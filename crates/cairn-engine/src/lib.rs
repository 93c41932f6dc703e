//! Runs Cairn workflows: the run [`driver`] (scheduling, leases, retries,
//! timeouts, cancellation), the local shell [`process`] executor,
//! [`recover`]y of runs whose executor died, and the cron [`scheduler`] of
//! `cairn serve`.

pub mod anomalies;
pub mod archive;
pub mod driver;
pub mod error;
pub mod manager;
pub mod owner;
pub mod plan;
pub mod process;
pub mod queues;
pub mod recover;
pub mod report;
pub mod retention;
pub mod runner;
pub mod scheduler;
pub mod shell;
pub mod time;
pub mod webhooks;

pub use anomalies::{AnomalyWatch, Checked};
pub use driver::{Command, Driver, RunEvent, RunOptions, StaleLease, attempt_log_paths, human};
pub use error::EngineError;
pub use manager::{Manager, ManagerOptions};
pub use plan::{Carried, ContinueOn, Handler, PlannedTask, Role, RunPlan};
pub use queues::QueueWaits;
pub use recover::{Recovery, recover};
pub use retention::RetentionJob;
pub use runner::{AttemptContext, AttemptOutcome, NoopRunner, Precheck, ProgressSink, TaskRunner};
pub use scheduler::{ScheduledWorkflow, Scheduler};
pub use shell::ShellRunner;
pub use time::EngineClock;
