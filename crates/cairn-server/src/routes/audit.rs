//! The audit log (role `admin`): token management, token use (at most once
//! a minute per token) and refused requests (`403`), newest first.

use axum::Json;
use axum::extract::State;
use cairn_core::{AuditId, Timestamp};
use cairn_store::audit::MAX_AUDIT_EVENTS;
use cairn_store::{AuditEvent, AuditKind, AuditQuery, Store};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::app::AppState;
use crate::control::Control;
use crate::error::{ApiError, ErrorBody};
use crate::extract::{ApiQuery, page_limit, parse_id};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
    /// Only events of this kind: `token_created`, `token_revoked`,
    /// `token_used` or `access_denied`.
    kind: Option<String>,
    /// Only events by this actor (a token's name, `user:NAME`, `cli`).
    actor: Option<String>,
    /// Only events older than this one: the last id of the previous page.
    #[param(value_type = Option<AuditId>)]
    before: Option<String>,
    /// Page size, 1 to 1000 (default 100).
    #[param(value_type = Option<u32>, minimum = 1, maximum = 1000)]
    limit: Option<String>,
}

/// One event of the audit log.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AuditEventView {
    pub(crate) id: AuditId,
    pub(crate) at: Timestamp,
    /// `token_created`, `token_revoked`, `token_used` or `access_denied`.
    pub(crate) kind: String,
    /// Who: a token's name, `user:NAME` on a server without tokens, or
    /// `cli`.
    pub(crate) actor: String,
    /// What: a token's name, or for `access_denied` the route.
    pub(crate) target: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub(crate) detail: Option<serde_json::Value>,
}

impl From<AuditEvent> for AuditEventView {
    fn from(e: AuditEvent) -> Self {
        AuditEventView {
            id: e.id,
            at: e.at,
            kind: e.kind.as_str().to_owned(),
            actor: e.actor,
            target: e.target,
            detail: e.detail,
        }
    }
}

/// A page of the audit log, newest first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct AuditList {
    pub(crate) events: Vec<AuditEventView>,
    /// For the next page: pass as `before`; `None` on the last page.
    pub(crate) next_before: Option<AuditId>,
}

/// The audit log, newest first.
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    tag = "access",
    params(AuditParams),
    responses(
        (status = 200, description = "Audit events, newest first", body = AuditList),
        (status = 400, description = "A bad filter (code `bad_request`, field names it)", body = ErrorBody),
    )
)]
pub(crate) async fn list_audit<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    ApiQuery(q): ApiQuery<AuditParams>,
) -> Result<Json<AuditList>, ApiError> {
    let query = AuditQuery {
        kind: q.kind.as_deref().map(|k| parse_id::<AuditKind>("kind", k)).transpose()?,
        actor: q.actor.clone().filter(|a| !a.is_empty()),
        before: q.before.as_deref().map(|id| parse_id::<AuditId>("before", id)).transpose()?,
        limit: page_limit(q.limit.as_deref(), MAX_AUDIT_EVENTS)?,
    };
    let limit = query.limit;
    let events = state.store.audit_events(query).await?;
    let next_before = if events.len() == limit { events.last().map(|e| e.id) } else { None };
    Ok(Json(AuditList { events: events.into_iter().map(Into::into).collect(), next_before }))
}
