//! Alerts: anomalies in a workflow's status mix (raised and resolved by the
//! leading server), newest first. Live, they arrive on the events
//! WebSocket as `{"kind":"alert","alert":{…}}`.

use axum::Json;
use axum::extract::State;
use cairn_core::AlertId;
use cairn_core::alert::AlertKind;
use cairn_store::alerts::MAX_ALERTS;
use cairn_store::{AlertQuery, Store};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::app::AppState;
use crate::control::Control;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiQuery, parse_bool, parse_id, parse_number};
use crate::model::AlertList;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AlertParams {
    /// `true`: only alerts not yet resolved.
    #[param(value_type = Option<bool>)]
    open: Option<String>,
    /// Only alerts of this kind (`anomaly`).
    kind: Option<String>,
    /// Only alerts about this workflow.
    workflow: Option<String>,
    /// Only alerts older than this one: the last id of the previous page.
    #[param(value_type = Option<AlertId>)]
    before: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// Alerts, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/alerts",
    tag = "alerts",
    params(AlertParams),
    responses(
        (status = 200, description = "Alerts, newest first", body = AlertList),
        (status = 400, description = "A bad filter (code `bad_request`, field names it)", body = ErrorBody),
    )
)]
pub(crate) async fn list_alerts<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    ApiQuery(q): ApiQuery<AlertParams>,
) -> Result<Json<AlertList>, ApiError> {
    let query = AlertQuery {
        open_only: q.open.as_deref().map(|o| parse_bool("open", o)).transpose()?.unwrap_or(false),
        kind: q.kind.as_deref().map(|k| parse_id::<AlertKind>("kind", k)).transpose()?,
        workflow: q.workflow.clone().filter(|w| !w.is_empty()),
        before: q.before.as_deref().map(|id| parse_id::<AlertId>("before", id)).transpose()?,
        limit: q
            .limit
            .as_deref()
            .map(|l| parse_number("limit", l, 1..=MAX_ALERTS))
            .transpose()?
            .unwrap_or(100),
    };
    let limit = query.limit;
    let alerts = state.store.alerts(query).await?;
    let next_before = if alerts.len() == limit { alerts.last().map(|a| a.id) } else { None };
    Ok(Json(AlertList { alerts, next_before }))
}
