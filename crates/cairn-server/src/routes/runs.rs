//! Runs: one run whole, cancel, retry (the run list is in `history`).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_core::RunId;
use cairn_store::Store;

use crate::app::AppState;
use crate::control::Control;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{OptionalJson, Who, parse_id};
use crate::model::{CancelAccepted, RetryRequest, RunCreated, RunView, submitted_workflow, timeouts};

/// A run with every task — each with its transitions, attempts, progress
/// and durations — and the run's own transitions.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{run_id}",
    tag = "runs",
    params(("run_id" = String, Path, description = "The run's id")),
    responses(
        (status = 200, description = "The run", body = RunView),
        (status = 400, description = "Not a run id (code `bad_request`)", body = ErrorBody),
        (status = 404, description = "No such run (code `run_not_found`)", body = ErrorBody),
    )
)]
pub(crate) async fn get_run<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    Path(run_id): Path<String>,
) -> Result<Json<RunView>, ApiError> {
    let id = parse_id::<RunId>("run_id", &run_id)?;
    let detail = state.store.run_detail(id).await?.ok_or_else(|| run_not_found(id))?;
    let workflow = submitted_workflow(&*state.store, id).await;
    let timeouts = workflow.as_ref().map(timeouts).unwrap_or_default();
    let now = state.clock.now();
    let view = RunView::new(&detail, &timeouts, now);
    let view = match &workflow {
        Some(w) => view.with_depends(w),
        None => view,
    };
    Ok(Json(match state.expected.get(&*state.store, &detail.run.workflow, now).await {
        Some(expected) => view.with_expected(&expected, now),
        None => view,
    }))
}

pub(crate) fn run_not_found(id: RunId) -> ApiError {
    ApiError::new(ErrorCode::RunNotFound, format!("no run {id}")).field("run_id")
}

/// Asks for the run to be canceled. Recorded at once; the run ends when its
/// running steps have stopped.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{run_id}/cancel",
    tag = "runs",
    params(
        ("run_id" = String, Path, description = "The run's id"),
        ("X-Cairn-User" = Option<String>, Header, description = "Who asks, recorded as the actor `user:NAME`"),
    ),
    responses(
        (status = 202, description = "Cancellation requested", body = CancelAccepted),
        (status = 400, description = "Not a run id (code `bad_request`)", body = ErrorBody),
        (status = 404, description = "No such run (code `run_not_found`)", body = ErrorBody),
        (status = 409, description = "The run has already finished (code `conflict`)", body = ErrorBody),
        (status = 503, description = "The engine cannot serve now (code `unavailable`)", body = ErrorBody),
    )
)]
pub(crate) async fn cancel_run<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    Path(run_id): Path<String>,
    Who(actor): Who,
) -> Result<Response, ApiError> {
    let id = parse_id::<RunId>("run_id", &run_id)?;
    let run = state.store.run(id).await?.ok_or_else(|| run_not_found(id))?;
    if run.status.is_terminal() {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            format!("run {id} has already finished ({}); there is nothing to cancel", run.status),
        ));
    }
    state.control.cancel(id, actor.clone()).await?;
    tracing::info!(run = %id, %actor, "run cancel requested");
    Ok((StatusCode::ACCEPTED, Json(CancelAccepted { run_id: id, cancel_requested: true })).into_response())
}

/// Starts a new run that reruns the failed step (or `from_step`) and what
/// follows it; the steps before it are carried over.
#[utoipa::path(
    post,
    path = "/api/v1/runs/{run_id}/retry",
    tag = "runs",
    params(
        ("run_id" = String, Path, description = "The finished run to retry"),
        ("X-Cairn-User" = Option<String>, Header, description = "Who asks, recorded as the actor `user:NAME`"),
    ),
    request_body(content = RetryRequest, description = "Optional: the step to rerun from"),
    responses(
        (status = 201, description = "The new run", body = RunCreated,
         headers(("Location" = String, description = "The new run's URL"))),
        (status = 400, description = "A bad body or step (`bad_request`, `invalid_input` with field `from_step`)", body = ErrorBody),
        (status = 404, description = "No such run (code `run_not_found`)", body = ErrorBody),
        (status = 409, description = "The run has not finished, or nothing to retry (code `conflict`)", body = ErrorBody),
        (status = 503, description = "The engine cannot serve now (code `unavailable`)", body = ErrorBody),
    )
)]
pub(crate) async fn retry_run<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    Path(run_id): Path<String>,
    Who(actor): Who,
    OptionalJson(body): OptionalJson<RetryRequest>,
) -> Result<Response, ApiError> {
    let id = parse_id::<RunId>("run_id", &run_id)?;
    let detail = state.store.run_detail(id).await?.ok_or_else(|| run_not_found(id))?;
    if let Some(step) = &body.from_step
        && !detail.tasks.iter().any(|t| &t.name == step)
    {
        return Err(ApiError::invalid("from_step", format!("run {id} has no step {step:?}")));
    }
    let new_run = state.control.retry(id, body.from_step.clone(), actor.clone()).await?;
    tracing::info!(run = %id, new_run = %new_run, %actor, "run retried");
    let location = format!("/api/v1/runs/{new_run}");
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(RunCreated { run_id: new_run }))
        .into_response())
}
