//! History: runs and tasks with any set of filters and an opaque keyset
//! cursor, the status mix of a window, and its trend over time. Every
//! answer comes from an index or from the maintained counts (see
//! `cairn_store::history`), whatever the history's size. A token scoped to
//! workflows sees only theirs (`crate::scope`).

use axum::Json;
use axum::extract::{Extension, State};
use cairn_core::{RunStatus, TaskStatus, Timestamp};
use cairn_store::{
    Bucket, CountQuery, Cursor, Order, RunFilter, RunSearch, RunSort, Store, StoreError, TaskFilter,
    TaskSearch, TimeRange,
};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::app::AppState;
use crate::auth::Caller;
use crate::control::Control;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiQuery, parse_number};
use crate::model::task_summaries;
use crate::model::{RunPage, RunSummary, StatusCounts, TaskPage, Trend, TrendPoint, WorkflowTrend};
use crate::scope::visible_workflows;

/// Page size when `limit` is not given, and the largest allowed.
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 1000;

/// Filters of the run list. Lists are comma-separated; times are RFC 3339
/// (`2026-11-20T00:00:00Z`), each range `[after, before)`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct RunListQuery {
    /// Any of these run statuses (e.g. `FAILED,CANCELED`).
    status: Option<String>,
    /// Any of these workflows.
    workflow: Option<String>,
    /// Any of these triggers: `manual`, `schedule`, `api`, `retry`.
    trigger: Option<String>,
    /// Every one of these labels, each `key` or `key=value`.
    label: Option<String>,
    /// Submitted at or after.
    submitted_after: Option<String>,
    /// Submitted before.
    submitted_before: Option<String>,
    /// Finished at or after.
    finished_after: Option<String>,
    /// Finished before.
    finished_before: Option<String>,
    /// Run ids starting with this.
    id_prefix: Option<String>,
    /// `submitted` (default) or `finished` (finished runs only).
    sort: Option<String>,
    /// `desc` (newest first, default) or `asc`.
    order: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    /// `next_cursor` of the previous page of the same query.
    cursor: Option<String>,
}

/// Runs matching every filter given, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/runs",
    tag = "history",
    params(RunListQuery),
    responses(
        (status = 200, description = "A page of runs", body = RunPage),
        (status = 400, description = "A bad filter, or a cursor of another query (code `bad_request`, field names it)", body = ErrorBody),
    )
)]
pub(crate) async fn list_runs<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    caller: Option<Extension<Caller>>,
    ApiQuery(q): ApiQuery<RunListQuery>,
) -> Result<Json<RunPage>, ApiError> {
    let Some(workflows) = visible_workflows(&state, caller.as_deref(), names(&q.workflow)).await? else {
        return Ok(Json(RunPage { runs: Vec::new(), next_cursor: None }));
    };
    let filter = RunFilter {
        statuses: list(&q.status, "status", |s| s.parse::<RunStatus>().map_err(|e| e.to_string()))?,
        workflows,
        triggers: names(&q.trigger),
        labels: names(&q.label),
        submitted: range(&q.submitted_after, "submitted_after", &q.submitted_before, "submitted_before")?,
        finished: range(&q.finished_after, "finished_after", &q.finished_before, "finished_before")?,
        id_prefix: q.id_prefix.clone().filter(|p| !p.is_empty()),
    };
    let search = RunSearch {
        filter,
        sort: sort(&q.sort)?,
        order: order(&q.order)?,
        cursor: q.cursor.clone().map(Cursor),
        limit: limit(&q.limit)?,
    };
    let page = state.store.search_runs(search).await.map_err(search_error)?;
    let now = state.clock.now();
    Ok(Json(RunPage {
        runs: page.runs.iter().map(|r| RunSummary::new(r, now)).collect(),
        next_cursor: page.next.map(|c| c.0),
    }))
}

/// Filters of the task list, as for runs.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct TaskListQuery {
    /// Any of these task statuses.
    status: Option<String>,
    /// Any of these workflows.
    workflow: Option<String>,
    /// Any of these step names.
    step: Option<String>,
    /// Any of these queues.
    queue: Option<String>,
    /// Run (any attempt) by any of these workers.
    worker: Option<String>,
    submitted_after: Option<String>,
    submitted_before: Option<String>,
    finished_after: Option<String>,
    finished_before: Option<String>,
    /// Tasks of runs whose id starts with this.
    run_id_prefix: Option<String>,
    /// `submitted` (default) or `finished`.
    sort: Option<String>,
    /// `desc` (default) or `asc`.
    order: Option<String>,
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
    cursor: Option<String>,
}

/// Tasks matching every filter given, a page at a time.
#[utoipa::path(
    get,
    path = "/api/v1/tasks",
    tag = "history",
    params(TaskListQuery),
    responses(
        (status = 200, description = "A page of tasks", body = TaskPage),
        (status = 400, description = "A bad filter, or a cursor of another query (code `bad_request`)", body = ErrorBody),
    )
)]
pub(crate) async fn list_tasks<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    caller: Option<Extension<Caller>>,
    ApiQuery(q): ApiQuery<TaskListQuery>,
) -> Result<Json<TaskPage>, ApiError> {
    let Some(workflows) = visible_workflows(&state, caller.as_deref(), names(&q.workflow)).await? else {
        return Ok(Json(TaskPage { tasks: Vec::new(), next_cursor: None }));
    };
    let filter = TaskFilter {
        statuses: list(&q.status, "status", |s| s.parse::<TaskStatus>().map_err(|e| e.to_string()))?,
        workflows,
        steps: names(&q.step),
        queues: names(&q.queue),
        workers: names(&q.worker),
        submitted: range(&q.submitted_after, "submitted_after", &q.submitted_before, "submitted_before")?,
        finished: range(&q.finished_after, "finished_after", &q.finished_before, "finished_before")?,
        run_id_prefix: q.run_id_prefix.clone().filter(|p| !p.is_empty()),
    };
    let search = TaskSearch {
        filter,
        sort: sort(&q.sort)?,
        order: order(&q.order)?,
        cursor: q.cursor.clone().map(Cursor),
        limit: limit(&q.limit)?,
    };
    let page = state.store.search_tasks(search).await.map_err(search_error)?;
    let tasks = task_summaries(&*state.store, &page.tasks).await;
    Ok(Json(TaskPage { tasks, next_cursor: page.next.map(|c| c.0) }))
}

/// The window and filters of counts and trends.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct CountParams {
    /// Runs and tasks submitted at or after this time (RFC 3339; to the minute).
    from: Option<String>,
    /// Submitted before this time (default: now).
    to: Option<String>,
    /// Any of these workflows (comma-separated).
    workflow: Option<String>,
    /// For trends: `minute`, `hour` (default) or `day`.
    bucket: Option<String>,
}

/// How many runs and tasks of the window are in each status, from counts
/// kept as the changes happen (cheap at any history size).
#[utoipa::path(
    get,
    path = "/api/v1/stats/status",
    tag = "history",
    params(CountParams),
    responses(
        (status = 200, description = "Counts by status", body = StatusCounts),
        (status = 400, description = "A bad window (code `bad_request`)", body = ErrorBody),
    )
)]
pub(crate) async fn status_counts<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    caller: Option<Extension<Caller>>,
    ApiQuery(q): ApiQuery<CountParams>,
) -> Result<Json<StatusCounts>, ApiError> {
    let Some(query) = count_query(&state, caller.as_deref(), &q, false).await? else {
        return Ok(Json(StatusCounts { runs: Default::default(), tasks: Default::default() }));
    };
    let runs = state.store.run_counts(query.clone()).await.map_err(search_error)?;
    let tasks = state.store.task_counts(query).await.map_err(search_error)?;
    Ok(Json(StatusCounts { runs, tasks }))
}

/// Runs by status in each bucket of the window, and each workflow's own
/// line (its failure rate: `FAILED` over every terminal status).
#[utoipa::path(
    get,
    path = "/api/v1/stats/trend",
    tag = "history",
    params(CountParams),
    responses(
        (status = 200, description = "Counts by status per bucket, overall and per workflow", body = Trend),
        (status = 400, description = "A bad window or bucket, or too many buckets (code `bad_request`)", body = ErrorBody),
    )
)]
pub(crate) async fn trend<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    caller: Option<Extension<Caller>>,
    ApiQuery(q): ApiQuery<CountParams>,
) -> Result<Json<Trend>, ApiError> {
    let bucket = match q.bucket.as_deref().map(str::trim) {
        None | Some("") | Some("hour") => Bucket::Hour,
        Some("minute") => Bucket::Minute,
        Some("day") => Bucket::Day,
        Some(other) => {
            return Err(ApiError::bad_request(
                "bucket",
                format!("expected minute, hour or day, got {other:?}"),
            ));
        }
    };
    let Some(query) = count_query(&state, caller.as_deref(), &q, true).await? else {
        return Ok(Json(Trend { points: Vec::new(), workflows: Vec::new() }));
    };
    let overall = state.store.run_trend(query.clone(), bucket).await.map_err(search_error)?;
    let per_workflow = state.store.workflow_trends(query, bucket).await.map_err(search_error)?;
    Ok(Json(Trend {
        points: overall.into_iter().map(TrendPoint::new).collect(),
        workflows: per_workflow
            .into_iter()
            .map(|(workflow, points)| WorkflowTrend::new(workflow, points))
            .collect(),
    }))
}

/// The query of a count or trend; `None` when the caller's scope holds no
/// workflow, so there is nothing to count.
async fn count_query<S: Store, C: Control>(
    state: &AppState<S, C>,
    caller: Option<&Caller>,
    q: &CountParams,
    needs_from: bool,
) -> Result<Option<CountQuery>, ApiError> {
    let submitted = range(&q.from, "from", &q.to, "to")?;
    if needs_from && submitted.from.is_none() {
        return Err(ApiError::bad_request("from", "a trend needs the start of its window"));
    }
    let workflows = visible_workflows(state, caller, names(&q.workflow)).await?;
    Ok(workflows.map(|workflows| CountQuery { submitted, workflows }))
}

/// A store's refusal of a query is the caller's to fix; anything else is not.
pub(crate) fn search_error(e: StoreError) -> ApiError {
    match e {
        StoreError::InvalidQuery(message) => {
            let field = if message.contains("cursor") { "cursor" } else { "query" };
            ApiError::bad_request(field, message)
        }
        other => other.into(),
    }
}

pub(crate) fn names(text: &Option<String>) -> Vec<String> {
    text.iter()
        .flat_map(|t| t.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn list<T>(
    text: &Option<String>,
    field: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Vec<T>, ApiError> {
    names(text).iter().map(|s| parse(s).map_err(|e| ApiError::bad_request(field, e))).collect()
}

fn time(text: &Option<String>, field: &str) -> Result<Option<Timestamp>, ApiError> {
    let Some(text) = text.as_deref().map(str::trim).filter(|t| !t.is_empty()) else { return Ok(None) };
    text.parse::<jiff::Timestamp>().map(|t| Some(Timestamp::from_jiff(t))).map_err(|e| {
        ApiError::bad_request(
            field,
            format!("expected an RFC 3339 time like 2026-11-20T08:00:00Z, got {text:?}: {e}"),
        )
    })
}

pub(crate) fn range(
    from: &Option<String>,
    from_field: &str,
    to: &Option<String>,
    to_field: &str,
) -> Result<TimeRange, ApiError> {
    let range = TimeRange { from: time(from, from_field)?, to: time(to, to_field)? };
    if let (Some(a), Some(b)) = (range.from, range.to)
        && b < a
    {
        return Err(ApiError::bad_request(
            to_field,
            format!("{to_field} ({b}) is before {from_field} ({a})"),
        ));
    }
    Ok(range)
}

fn sort(text: &Option<String>) -> Result<RunSort, ApiError> {
    match text.as_deref().map(str::trim) {
        None | Some("") | Some("submitted") => Ok(RunSort::Submitted),
        Some("finished") => Ok(RunSort::Finished),
        Some(other) => {
            Err(ApiError::bad_request("sort", format!("expected submitted or finished, got {other:?}")))
        }
    }
}

fn order(text: &Option<String>) -> Result<Order, ApiError> {
    match text.as_deref().map(str::trim) {
        None | Some("") | Some("desc") => Ok(Order::NewestFirst),
        Some("asc") => Ok(Order::OldestFirst),
        Some(other) => Err(ApiError::bad_request("order", format!("expected desc or asc, got {other:?}"))),
    }
}

fn limit(text: &Option<String>) -> Result<usize, ApiError> {
    match text {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => parse_number("limit", text, 1..=MAX_LIMIT),
    }
}
