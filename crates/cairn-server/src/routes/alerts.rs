//! Alerts: anomalies in a workflow's status mix (raised and resolved by the
//! leading server), newest first. Live, they arrive on the events
//! WebSocket as `{"kind":"alert","alert":{…}}`. Beside them, the attempts
//! the reaper ended, read from the transition log.

use axum::extract::State;
use axum::{Extension, Json};
use cairn_core::alert::AlertKind;
use cairn_core::{AlertId, RunId, TaskId, TaskStatus, Timestamp};
use cairn_store::alerts::MAX_ALERTS;
use cairn_store::reaped::MAX_REAPED;
use cairn_store::{AlertQuery, ReapedCursor, ReapedQuery, Store};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::AppState;
use crate::auth::Caller;
use crate::control::Control;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiQuery, page_limit, parse_bool, parse_id};
use crate::model::AlertList;
use crate::routes::history::names;
use crate::scope::visible_workflows;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertParams {
    /// `true`: only alerts not yet resolved.
    #[param(value_type = Option<bool>)]
    open: Option<String>,
    /// Only alerts of this kind (`anomaly`).
    kind: Option<String>,
    /// Only alerts about any of these workflows (comma-separated).
    workflow: Option<String>,
    /// Only alerts older than this one: the last id of the previous page.
    #[param(value_type = Option<AlertId>)]
    before: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// Alerts, newest first. A token scoped to workflows sees those of its
/// workflows.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    params(AlertParams),
    responses(
        (status = 200, description = "Alerts, newest first", body = AlertList),
        (status = 400, description = "A bad filter (code `bad_request`, field names it)", body = ErrorBody),
        (status = 403, description = "A workflow outside the token's scope (field `workflow`)", body = ErrorBody),
    )
)]
pub(crate) async fn list_alerts<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    caller: Option<Extension<Caller>>,
    ApiQuery(q): ApiQuery<AlertParams>,
) -> Result<Json<AlertList>, ApiError> {
    let Some(workflows) = visible_workflows(&state, caller.as_deref(), names(&q.workflow)).await? else {
        return Ok(Json(AlertList { alerts: Vec::new(), next_before: None }));
    };
    let query = AlertQuery {
        open_only: q.open.as_deref().map(|o| parse_bool("open", o)).transpose()?.unwrap_or(false),
        kind: q.kind.as_deref().map(|k| parse_id::<AlertKind>("kind", k)).transpose()?,
        workflows,
        before: q.before.as_deref().map(|id| parse_id::<AlertId>("before", id)).transpose()?,
        limit: page_limit(q.limit.as_deref(), MAX_ALERTS)?,
    };
    let limit = query.limit;
    let alerts = state.store.alerts(query).await?;
    let next_before = if alerts.len() == limit { alerts.last().map(|a| a.id) } else { None };
    Ok(Json(AlertList { alerts, next_before }))
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReapedParams {
    /// Any of these workflows (comma-separated).
    workflow: Option<String>,
    /// Only attempts reaped before this position: the `next_before` of the previous page.
    before: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// An attempt the reaper ended because its heartbeats stopped.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ReapedView {
    pub(crate) run_id: RunId,
    pub(crate) task_id: TaskId,
    pub(crate) workflow: String,
    pub(crate) step: String,
    pub(crate) attempt: u32,
    /// When the reaper ended it.
    pub(crate) at: Timestamp,
    /// `PENDING` when the task was retried, `FAILED` when that was its last attempt.
    #[schema(value_type = String)]
    pub(crate) to: TaskStatus,
    /// Which worker stopped heartbeating, and when it was last heard from.
    pub(crate) reason: String,
}

/// A page of reaped attempts, newest first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct ReapedList {
    #[schema(inline)]
    pub(crate) reaped: Vec<ReapedView>,
    /// For the next page: pass as `before`; `None` on the last page.
    pub(crate) next_before: Option<String>,
}

/// Attempts the reaper ended ("heartbeat lost"), newest first: the other
/// half of the dashboard's recent alerts. A token scoped to workflows sees
/// those of its workflows.
#[utoipa::path(
    get,
    path = "/api/v1/reaped",
    tag = "alerts",
    params(ReapedParams),
    responses(
        (status = 200, description = "Reaped attempts, newest first", body = inline(ReapedList)),
        (status = 400, description = "A bad filter (code `bad_request`, field names it)", body = ErrorBody),
        (status = 403, description = "A workflow outside the token's scope (field `workflow`)", body = ErrorBody),
    )
)]
pub(crate) async fn list_reaped<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    caller: Option<Extension<Caller>>,
    ApiQuery(q): ApiQuery<ReapedParams>,
) -> Result<Json<ReapedList>, ApiError> {
    let Some(workflows) = visible_workflows(&state, caller.as_deref(), names(&q.workflow)).await? else {
        return Ok(Json(ReapedList { reaped: Vec::new(), next_before: None }));
    };
    let query = ReapedQuery {
        workflows,
        before: q.before.as_deref().map(|c| parse_id::<ReapedCursor>("before", c)).transpose()?,
        limit: page_limit(q.limit.as_deref(), MAX_REAPED)?,
    };
    let limit = query.limit;
    let reaped = state.store.reaped_attempts(query).await?;
    let next_before = if reaped.len() == limit { reaped.last().map(|r| r.cursor.to_string()) } else { None };
    let reaped = reaped
        .into_iter()
        .map(|r| ReapedView {
            run_id: r.run_id,
            task_id: r.task_id,
            workflow: r.workflow,
            step: r.step,
            attempt: r.attempt,
            at: r.at,
            to: r.to,
            reason: r.reason,
        })
        .collect();
    Ok(Json(ReapedList { reaped, next_before }))
}
