//! Token management over the API (role `admin`): make a token (its secret
//! answered once), list tokens (never their secrets or hashes), revoke one.
//! The rules of a new token are [`cairn_core::auth::check_new_token`], the
//! same as `cairn token create`'s. Each creation and revocation is added to
//! the audit log with the caller as its actor.

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_core::auth::{Role, Secret, WorkflowScope};
use cairn_core::{Timestamp, TokenId};
use cairn_store::{AuditKind, NewAuditEvent, NewToken, Store, StoreError, TokenRecord};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::auth::Caller;
use crate::control::Control;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, Who};

/// A token to make.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CreateToken {
    /// A name to recognise the token by, unique among live tokens.
    pub(crate) name: String,
    /// `viewer`, `operator`, `admin` or `worker`.
    pub(crate) role: String,
    /// The queues a worker token may lease from (worker tokens only, and
    /// at least one for them).
    #[serde(default)]
    pub(crate) queues: Vec<String>,
    /// Limit the token to workflows whose name matches this pattern (`*`
    /// stands for any characters).
    pub(crate) workflows: Option<String>,
    /// The token stops working this many seconds after it is made; never,
    /// without it.
    pub(crate) expires_in_s: Option<u64>,
}

/// A token as listed: never its secret or hash.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct TokenView {
    pub(crate) id: TokenId,
    pub(crate) name: String,
    /// `viewer`, `operator`, `admin` or `worker`.
    pub(crate) role: String,
    pub(crate) queues: Vec<String>,
    /// The workflow name pattern the token is limited to; absent: every
    /// workflow.
    pub(crate) workflows: Option<String>,
    /// The first characters of the secret, to recognise it.
    pub(crate) prefix: String,
    pub(crate) created_at: Timestamp,
    pub(crate) expires_at: Option<Timestamp>,
    pub(crate) revoked_at: Option<Timestamp>,
    /// When the token was last used, to within a minute.
    pub(crate) last_used_at: Option<Timestamp>,
    /// `live`, `revoked` or `expired`.
    pub(crate) state: String,
}

impl TokenView {
    fn of(t: TokenRecord, now: Timestamp) -> TokenView {
        let state = if t.is_live(now) {
            "live"
        } else if t.is_expired(now) {
            "expired"
        } else {
            "revoked"
        };
        TokenView {
            id: t.id,
            name: t.name,
            role: t.role.as_str().to_owned(),
            queues: t.queues,
            workflows: t.workflows,
            prefix: t.prefix,
            created_at: t.created_at,
            expires_at: t.expires_at,
            revoked_at: t.revoked_at,
            last_used_at: t.last_used_at,
            state: state.to_owned(),
        }
    }
}

/// A new token and its secret, shown this once only.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct TokenCreated {
    pub(crate) token: TokenView,
    /// `cairn_…`: send it as `Authorization: Bearer …`. Not kept by the
    /// server: it cannot be shown again.
    pub(crate) secret: String,
}

/// Every token, newest first.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct TokenList {
    pub(crate) tokens: Vec<TokenView>,
}

/// Who is managing tokens, for the audit log: the caller's token name, or
/// `user:NAME` on a server without tokens.
pub(crate) fn audit_actor(caller: Option<&Caller>, who: &cairn_core::record::Actor) -> String {
    caller.map(|c| c.name.clone()).unwrap_or_else(|| who.to_string())
}

/// Makes a token and answers its secret, once.
#[utoipa::path(
    post,
    path = "/api/v1/tokens",
    tag = "access",
    request_body = CreateToken,
    responses(
        (status = 201, description = "The token and its secret (shown this once)", body = TokenCreated),
        (status = 400, description = "A bad name, role, queues or pattern (code `invalid_input`, field names it)", body = ErrorBody),
        (status = 409, description = "A live token has this name (code `conflict`)", body = ErrorBody),
    )
)]
pub(crate) async fn create_token<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    caller: Option<Extension<Caller>>,
    Who(who): Who,
    ApiJson(body): ApiJson<CreateToken>,
) -> Result<Response, ApiError> {
    let role = body.role.parse::<Role>().map_err(|e| ApiError::invalid("role", e.to_string()))?;
    cairn_core::auth::check_new_token(&body.name, role, &body.queues)
        .map_err(|e| ApiError::invalid(e.field, e.message))?;
    let workflows = body
        .workflows
        .as_deref()
        .map(WorkflowScope::parse)
        .transpose()
        .map_err(|e| ApiError::invalid("workflows", e.to_string()))?;
    let now = state.clock.now();
    let expires_at = match body.expires_in_s {
        Some(0) => return Err(ApiError::invalid("expires_in_s", "expected a number of seconds above 0")),
        Some(s) => {
            let us = i64::try_from(s).ok().and_then(|s| s.checked_mul(1_000_000));
            Some(Timestamp::from_micros(now.as_micros().saturating_add(us.unwrap_or(i64::MAX))))
        }
        None => None,
    };
    let secret = Secret::generate();
    let new = NewToken {
        id: TokenId::new(now),
        name: body.name.clone(),
        role,
        queues: body.queues,
        workflows: workflows.map(|w| w.to_string()),
        prefix: secret.prefix(),
        hash: secret.hash(),
        created_at: now,
        expires_at,
    };
    let id = new.id;
    match state.store.create_token(new).await {
        Ok(()) => {}
        Err(StoreError::InvalidChange(m)) => return Err(ApiError::new(ErrorCode::Conflict, m).field("name")),
        Err(e) => return Err(e.into()),
    }
    let actor = audit_actor(caller.as_deref(), &who);
    let event = NewAuditEvent::new(now, AuditKind::TokenCreated, actor.clone(), Some(body.name.clone()))
        .detail(serde_json::json!({ "id": id, "role": role }));
    state.store.record_audit(event).await?;
    let token = state
        .store
        .tokens()
        .await?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::new(ErrorCode::Internal, format!("token {} vanished", body.name)))?;
    tracing::info!(token = %token.name, role = %role, %actor, "token created");
    if state.config.auth_mode() == crate::AuthMode::Open {
        state.config.tokens_made.store(true, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!("an API token exists now: from this request on, the API asks for tokens");
    }
    let created = TokenCreated { token: TokenView::of(token, now), secret: secret.expose().to_owned() };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// Every token, revoked and expired ones too, newest first; never secrets.
#[utoipa::path(
    get,
    path = "/api/v1/tokens",
    tag = "access",
    responses((status = 200, description = "Every token, newest first", body = TokenList))
)]
pub(crate) async fn list_tokens<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
) -> Result<Json<TokenList>, ApiError> {
    let now = state.clock.now();
    let tokens = state.store.tokens().await?.into_iter().map(|t| TokenView::of(t, now)).collect();
    Ok(Json(TokenList { tokens }))
}

/// Revokes the live token of this id, or else name, at once.
#[utoipa::path(
    delete,
    path = "/api/v1/tokens/{name}",
    tag = "access",
    params(("name" = String, Path, description = "The token's name or id")),
    responses(
        (status = 200, description = "The token, revoked", body = TokenView),
        (status = 404, description = "No live token of that name or id (code `token_not_found`)", body = ErrorBody),
    )
)]
pub(crate) async fn revoke_token<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    caller: Option<Extension<Caller>>,
    Who(who): Who,
    Path(name): Path<String>,
) -> Result<Json<TokenView>, ApiError> {
    let now = state.clock.now();
    let revoked = state.store.revoke_token(name.clone(), now).await?.ok_or_else(|| {
        ApiError::new(ErrorCode::TokenNotFound, format!("no live token is named {name:?} or has that id"))
    })?;
    let actor = audit_actor(caller.as_deref(), &who);
    let event = NewAuditEvent::new(now, AuditKind::TokenRevoked, actor.clone(), Some(revoked.name.clone()))
        .detail(serde_json::json!({ "id": revoked.id }));
    state.store.record_audit(event).await?;
    tracing::info!(token = %revoked.name, %actor, "token revoked");
    Ok(Json(TokenView::of(revoked, now)))
}
