//! The webhook delivery log (role `admin`): every notification enqueued for
//! a webhook, with its state (pending, delivered, failed) and its last
//! attempt, newest first.

use axum::Json;
use axum::extract::State;
use cairn_core::Timestamp;
use cairn_store::webhooks::MAX_DELIVERIES;
use cairn_store::{Delivery, DeliveryQuery, DeliveryState, Store};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::AppState;
use crate::control::Control;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiQuery, page_limit, parse_id, parse_number};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeliveryParams {
    /// Only deliveries in this state: `pending`, `delivered` or `failed`.
    state: Option<String>,
    /// Only deliveries to this webhook (its name in the server config).
    webhook: Option<String>,
    /// Only deliveries older than this one: the last id of the previous page.
    #[param(value_type = Option<i64>)]
    before: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// One delivery of a notification to a webhook.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct DeliveryView {
    /// Sent as `X-Cairn-Delivery`.
    pub(crate) id: i64,
    pub(crate) webhook: String,
    /// The event kind: `run_failed`, `task_reaped`, `overrun_predicted`,
    /// `anomaly`, `run_recovered` or `report`.
    pub(crate) kind: String,
    /// The event's dedupe key: one delivery per webhook and key.
    pub(crate) key: String,
    pub(crate) workflow: Option<String>,
    pub(crate) created_at: Timestamp,
    /// `pending`, `delivered` or `failed` (given up).
    pub(crate) state: String,
    pub(crate) attempts: u32,
    pub(crate) max_attempts: u32,
    /// When a pending delivery is tried next.
    pub(crate) next_attempt_at: Option<Timestamp>,
    pub(crate) last_attempt_at: Option<Timestamp>,
    /// The HTTP status of the last answer, if the receiver answered.
    pub(crate) last_status: Option<u16>,
    pub(crate) last_error: Option<String>,
    pub(crate) delivered_at: Option<Timestamp>,
    /// The JSON posted.
    #[schema(value_type = Object)]
    pub(crate) body: serde_json::Value,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        let body = serde_json::from_str(&d.body).unwrap_or(serde_json::Value::String(d.body));
        DeliveryView {
            id: d.id,
            webhook: d.webhook,
            kind: d.kind,
            key: d.key,
            workflow: d.workflow,
            created_at: d.created_at,
            state: d.state.as_str().to_owned(),
            attempts: d.attempts,
            max_attempts: d.max_attempts,
            next_attempt_at: d.next_attempt_at,
            last_attempt_at: d.last_attempt_at,
            last_status: d.last_status,
            last_error: d.last_error,
            delivered_at: d.delivered_at,
            body,
        }
    }
}

/// A page of the delivery log, newest first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct DeliveryList {
    #[schema(inline)]
    pub(crate) deliveries: Vec<DeliveryView>,
    /// For the next page: pass as `before`; `None` on the last page.
    pub(crate) next_before: Option<i64>,
}

/// The webhook delivery log, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/webhooks/deliveries",
    tag = "access",
    params(DeliveryParams),
    responses(
        (status = 200, description = "Webhook deliveries, newest first", body = inline(DeliveryList)),
        (status = 400, description = "A bad filter (code `bad_request`, field names it)", body = ErrorBody),
    )
)]
pub(crate) async fn list_deliveries<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    ApiQuery(q): ApiQuery<DeliveryParams>,
) -> Result<Json<DeliveryList>, ApiError> {
    let query = DeliveryQuery {
        state: q.state.as_deref().map(|s| parse_id::<DeliveryState>("state", s)).transpose()?,
        webhook: q.webhook.clone().filter(|w| !w.is_empty()),
        before: q.before.as_deref().map(|id| parse_number("before", id, 1..=i64::MAX)).transpose()?,
        limit: page_limit(q.limit.as_deref(), MAX_DELIVERIES)?,
    };
    let limit = query.limit;
    let deliveries = state.store.webhook_deliveries(query).await?;
    let next_before = if deliveries.len() == limit { deliveries.last().map(|d| d.id) } else { None };
    Ok(Json(DeliveryList { deliveries: deliveries.into_iter().map(Into::into).collect(), next_before }))
}
