//! Phase analytics — how the tasks of each workflow and step spent their
//! time, the slowest, the most failing step — and a workflow's expected
//! durations. Both read one index of finished tasks by skips and bounded
//! ranges (see `cairn_store::analytics`), whatever the history's size.

use axum::Json;
use axum::extract::{Extension, Path, State};
use cairn_store::analytics::{DEFAULT_SAMPLE_CAP, DEFAULT_SLOWEST, MAX_SAMPLE_CAP, MAX_SLOWEST};
use cairn_store::{PhaseQuery, PhaseStats, Store, TimeRange};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::analytics::{ExpectedDurationsView, PhaseStatsView};
use crate::app::AppState;
use crate::auth::Caller;
use crate::control::Control;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiQuery, parse_number};
use crate::routes::history::{names, range, search_error};
use crate::scope::visible_workflows;

/// The window when the query names no start: the day before its end.
const DEFAULT_WINDOW_US: i64 = 86_400_000_000;

/// The window, filters and sizes of phase statistics.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct PhaseParams {
    /// Tasks that finished at or after this time (RFC 3339; default: a day
    /// before `to`, or before now).
    from: Option<String>,
    /// Finished before this time (default: no end).
    to: Option<String>,
    /// Any of these workflows (comma-separated; default: every one).
    workflow: Option<String>,
    /// How many of the slowest tasks to list, 1 to 100 (default 10).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100)]
    slowest: Option<String>,
    /// The newest tasks read per step at most, 1 to 100000 (default 10000).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 100000)]
    sample_cap: Option<String>,
}

/// Per workflow and step, p50/p95/max of the time the tasks that finished
/// in the window spent blocked, pending and running, with how they ended;
/// the slowest tasks; each workflow's most failing step.
#[utoipa::path(
    get,
    path = "/api/v1/stats/phases",
    tag = "history",
    params(PhaseParams),
    responses(
        (status = 200, description = "Phase statistics of the window", body = PhaseStatsView),
        (status = 400, description = "A bad window, filter or size (code `bad_request`, field names it)", body = ErrorBody),
        (status = 403, description = "A workflow outside the token's scope (field `workflow`)", body = ErrorBody),
    )
)]
pub(crate) async fn phase_stats<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    caller: Option<Extension<Caller>>,
    ApiQuery(q): ApiQuery<PhaseParams>,
) -> Result<Json<PhaseStatsView>, ApiError> {
    let given = range(&q.from, "from", &q.to, "to")?;
    let end = given.to.unwrap_or_else(|| state.clock.now());
    let day_before = cairn_core::Timestamp::from_micros(end.as_micros().saturating_sub(DEFAULT_WINDOW_US));
    let finished = TimeRange { from: given.from.or(Some(day_before)), to: given.to };
    let slowest = match &q.slowest {
        None => DEFAULT_SLOWEST,
        Some(text) => parse_number("slowest", text, 1..=MAX_SLOWEST)?,
    };
    let sample_cap = match &q.sample_cap {
        None => DEFAULT_SAMPLE_CAP,
        Some(text) => parse_number("sample_cap", text, 1..=MAX_SAMPLE_CAP)?,
    };
    let stats = match visible_workflows(&state, caller.as_deref(), names(&q.workflow)).await? {
        Some(workflows) => {
            let query = PhaseQuery { finished, workflows, slowest, sample_cap };
            state.store.phase_stats(query).await.map_err(search_error)?
        }
        // A scope that holds no workflow.
        None => PhaseStats::default(),
    };
    Ok(Json(PhaseStatsView::new(&stats, finished.from, finished.to, sample_cap)))
}

/// How long the workflow's runs (start to finish) and each of its steps
/// (execution; submission to finish) usually take: p50 and p95 of the
/// latest 100 completed ones, with how many samples each rests on. A
/// workflow without history has none (not an error: its file may be new).
#[utoipa::path(
    get,
    path = "/api/v1/workflows/{name}/expected-durations",
    tag = "history",
    params(("name" = String, Path, description = "The workflow's name")),
    responses(
        (status = 200, description = "Expected durations of the workflow's runs and steps", body = ExpectedDurationsView),
        (status = 400, description = "An empty name (code `bad_request`, field `name`)", body = ErrorBody),
    )
)]
pub(crate) async fn expected_durations<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    Path(name): Path<String>,
) -> Result<Json<ExpectedDurationsView>, ApiError> {
    if name.trim().is_empty() {
        return Err(ApiError::bad_request("name", "a workflow name is needed"));
    }
    let e = state.store.expected_durations(&name).await.map_err(search_error)?;
    Ok(Json(ExpectedDurationsView::from(&e)))
}
