//! One task, read by its id: the task with its run, transition log,
//! attempts, progress and durations.

use axum::Json;
use axum::extract::{Path, State};
use cairn_core::{TaskId, TaskStatus};
use cairn_store::Store;

use crate::app::AppState;
use crate::control::Control;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::parse_id;
use crate::model::{
    ProgressSampleView, RunSummary, TaskDetailView, TaskView, Timeouts, submitted_workflow, timeouts,
};

/// A task with its run, every transition, every attempt, its progress and durations.
#[utoipa::path(
    get,
    path = "/api/v1/tasks/{task_id}",
    tag = "tasks",
    params(("task_id" = String, Path, description = "The task's id")),
    responses(
        (status = 200, description = "The task", body = TaskDetailView),
        (status = 400, description = "Not a task id (code `bad_request`)", body = ErrorBody),
        (status = 404, description = "No such task (code `task_not_found`)", body = ErrorBody),
    )
)]
pub(crate) async fn get_task<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    Path(task_id): Path<String>,
) -> Result<Json<TaskDetailView>, ApiError> {
    let id = parse_id::<TaskId>("task_id", &task_id)?;
    let d =
        state.store.task(id).await?.ok_or_else(|| {
            ApiError::new(ErrorCode::TaskNotFound, format!("no task {id}")).field("task_id")
        })?;
    // Overrun prediction needs the steps' timeouts, which only the workflow
    // text has: read it only when the task runs and reports progress.
    let timeouts = if d.task.status == TaskStatus::Running && d.task.progress.is_some() {
        submitted_workflow(&*state.store, d.run.id).await.map(|w| timeouts(&w)).unwrap_or_default()
    } else {
        Timeouts::new()
    };
    let now = state.clock.now();
    let samples = state.store.progress_samples(id).await?;
    let mut task = TaskView::new(&d.task, &d.transitions, &d.attempts, &timeouts, now);
    if let Some(expected) = state.expected.get(&*state.store, &d.run.workflow, now).await {
        task = task.with_expected(&expected);
    }
    Ok(Json(TaskDetailView {
        run: RunSummary::new(&d.run, now),
        task,
        progress_samples: samples
            .into_iter()
            .map(|s| ProgressSampleView {
                attempt: s.attempt,
                at: s.at,
                percent: s.percent,
                message: s.message,
            })
            .collect(),
    }))
}
