//! The status report of a day or a week: per workflow, the status mix of
//! its runs, its failure rate and its slowest steps against the period
//! before (`cairn_core::report`), built from the store's aggregates by
//! `cairn_engine::report` — what `cairn report` prints and what scheduled
//! delivery sends.

use axum::Json;
use axum::extract::{Extension, State};
use cairn_core::Timestamp;
use cairn_core::report::{ReportPeriod, StatusReport};
use cairn_engine::EngineError;
use cairn_store::Store;
use serde::Deserialize;
use utoipa::IntoParams;

use crate::app::AppState;
use crate::auth::Caller;
use crate::control::Control;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::ApiQuery;
use crate::routes::history::{names, search_error};
use crate::scope::visible_workflows;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReportParams {
    /// `day` (or `daily`) or `week` (or `weekly`); default `day`.
    period: Option<String>,
    /// The end of the period, excluded (RFC 3339; default: the last
    /// midnight UTC, for a week the last Monday midnight UTC).
    end: Option<String>,
    /// Only this workflow (comma-separated for several; default: every
    /// one with a finished run in either period).
    workflow: Option<String>,
}

/// The status report of the period ending at `end`: per workflow its runs
/// by status, failure rate and slowest steps, against the period before.
/// A run belongs to the period it was submitted in; the steps are those
/// of the tasks that finished in it.
#[utoipa::path(
    get,
    path = "/api/v1/reports/status",
    tag = "history",
    params(ReportParams),
    responses(
        (status = 200, description = "The status report of the period", body = StatusReport),
        (status = 400, description = "A bad period, end or workflow (code `bad_request`, field names it)", body = ErrorBody),
        (status = 403, description = "A workflow outside the token's scope (field `workflow`)", body = ErrorBody),
    )
)]
pub(crate) async fn status_report<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    caller: Option<Extension<Caller>>,
    ApiQuery(q): ApiQuery<ReportParams>,
) -> Result<Json<StatusReport>, ApiError> {
    let period = match q.period.as_deref().map(str::trim).filter(|p| !p.is_empty()) {
        None => ReportPeriod::Day,
        Some(text) => text.parse().map_err(|e: cairn_core::report::UnknownReportPeriod| {
            ApiError::bad_request("period", e.to_string())
        })?,
    };
    let end = match q.end.as_deref().map(str::trim).filter(|e| !e.is_empty()) {
        None => period.default_end(state.clock.now()),
        Some(text) => text.parse::<jiff::Timestamp>().map(Timestamp::from_jiff).map_err(|e| {
            ApiError::bad_request(
                "end",
                format!("expected an RFC 3339 time like 2026-11-23T00:00:00Z, got {text:?}: {e}"),
            )
        })?,
    };
    let Some(workflows) = visible_workflows(&state, caller.as_deref(), names(&q.workflow)).await? else {
        // A scope that holds no workflow.
        return Ok(Json(StatusReport::new(period, end, Vec::new())));
    };
    let report = cairn_engine::report::build_for(&*state.store, period, end, &workflows).await.map_err(
        |e| match e {
            EngineError::Store(e) => search_error(e),
            other => ApiError::new(ErrorCode::Internal, other.to_string()),
        },
    )?;
    Ok(Json(report))
}
