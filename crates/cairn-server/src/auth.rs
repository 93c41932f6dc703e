//! Who may call what. Every route declares the [`Access`] it needs where it
//! is registered (`app.rs`, the one table of routes), and [`authorize`]
//! checks the caller's API token against it before the handler runs.
//!
//! A token is sent as `Authorization: Bearer cairn_…`. The store keeps only
//! its SHA-256 hash, looked up by index on every request, so a revoked
//! token is refused at its very next request. A token may be scoped to
//! workflows by a name pattern: it then reaches only the routes that name
//! one workflow (by name, run or task), and only those of its workflows.
//! A worker token reaches only the worker protocol, and leases only from
//! its queues.
//!
//! A valid token refused for its role or scope (`403`) is added to the
//! audit log (`access_denied`, with the route); a missing or unknown token
//! (`401`) is not, since anyone can send one.
//!
//! [`AuthMode::Open`] (no tokens configured, on loopback, or told
//! `--insecure`) lets every request through as it always did.

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cairn_core::auth::{Role, Secret, WorkflowScope};
use cairn_core::{RunId, TaskId};
use cairn_store::{AuditKind, NewAuditEvent, Store};

use crate::app::AppState;
use crate::control::Control;
use crate::error::{ApiError, ErrorCode};

/// What a route asks of its caller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: liveness, readiness and the API document.
    Public,
    /// A token whose role allows this one ([`Role::allows`]).
    Role(Role),
}

/// Whether the server asks for tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AuthMode {
    /// Every request is let through, as from a trusted local user.
    #[default]
    Open,
    /// Every route but the public ones needs a live token of a role that
    /// allows the route's.
    Tokens,
}

/// The caller of a request, as its token says; handlers read it from the
/// request's extensions (absent in [`AuthMode::Open`]).
#[derive(Clone, Debug)]
pub struct Caller {
    /// The token's name: the actor of what the caller changes.
    pub name: String,
    pub role: Role,
    /// For a worker token: the queues it may lease from.
    pub queues: Vec<String>,
}

impl Caller {
    /// Refuses a lease from a queue the worker token was not made for.
    pub fn may_lease(&self, queue: &str) -> Result<(), ApiError> {
        if self.queues.iter().any(|q| q == queue) {
            return Ok(());
        }
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "token {} may lease only from the queues {}, not {queue:?}",
                self.name,
                self.queues.join(", ")
            ),
        )
        .field("queue"))
    }
}

/// The middleware of one route: lets the request through if `access`
/// allows its caller, else answers 401 (no valid token) or 403 (a token
/// that does not cover the request).
pub(crate) async fn authorize<S: Store, C: Control>(
    State(access): State<Access>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    mut req: Request,
    next: Next,
) -> Response {
    let Access::Role(needed) = access else { return next.run(req).await };
    let state = match req.extensions().get::<AppState<S, C>>() {
        // Open: nothing to look up, and no state copied on the hot path.
        Some(state) if state.config.auth == AuthMode::Open => return next.run(req).await,
        Some(state) => state.clone(),
        None => return ApiError::new(ErrorCode::Internal, "the API state is missing").into_response(),
    };
    let params: Vec<(String, String)> =
        params.map(|p| p.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()).unwrap_or_default();
    // Read before any await: a request's body is not `Sync`, so a borrow
    // of the request held across one would make this future not `Send`.
    let header = req.headers().get(axum::http::header::AUTHORIZATION).map(|h| h.to_str().map(str::to_owned));
    let route = format!("{} {}", req.method(), req.uri().path());
    match check(&state, needed, &params, header, &route).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn check<S: Store, C: Control>(
    state: &AppState<S, C>,
    needed: Role,
    params: &[(String, String)],
    header: Option<Result<String, axum::http::header::ToStrError>>,
    route: &str,
) -> Result<Caller, ApiError> {
    let unauthorized =
        |message: String| ApiError::new(ErrorCode::Unauthorized, message).field("Authorization");
    let header = header.ok_or_else(|| {
        unauthorized("this server needs an API token: send `Authorization: Bearer cairn_…`".to_owned())
    })?;
    let text = header.ok();
    let text = text.as_deref().and_then(|h| h.strip_prefix("Bearer ")).map(str::trim);
    let secret = text.and_then(Secret::parse).ok_or_else(|| {
        unauthorized("expected `Authorization: Bearer cairn_…` with a Cairn API token".to_owned())
    })?;
    let now = state.clock.now();
    let token = state
        .store
        .token_by_hash(secret.hash(), now)
        .await?
        .ok_or_else(|| unauthorized(format!("unknown API token {}…", secret.prefix())))?;
    if !token.is_live(now) {
        let why = if token.revoked_at.is_some() { "was revoked" } else { "has expired" };
        return Err(unauthorized(format!("API token {} {why}", token.name)));
    }
    let refused = if !token.role.allows(needed) {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("token {} has the role {}; this route needs {}", token.name, token.role, needed),
        ))
    } else if let Some(pattern) = &token.workflows {
        let scope = WorkflowScope::parse(pattern)
            .map_err(|e| ApiError::new(ErrorCode::Internal, format!("token {}: {e}", token.name)))?;
        check_scope(state, &token.name, &scope, params).await
    } else {
        Ok(())
    };
    if let Err(e) = refused {
        // A 403 is audited: only a valid token can cause one. (A 401 is
        // not: anyone can send a bad token.)
        if e.code == ErrorCode::Forbidden {
            let event =
                NewAuditEvent::new(now, AuditKind::AccessDenied, token.name.clone(), Some(route.to_owned()))
                    .detail(serde_json::json!({ "role": token.role, "message": e.message }));
            state.store.record_audit(event).await?;
        }
        return Err(e);
    }
    Ok(Caller { name: token.name, role: token.role, queues: token.queues })
}

/// A scoped token reaches a route only through the one workflow it names:
/// by its name, or by a run or task of it.
async fn check_scope<S: Store, C: Control>(
    state: &AppState<S, C>,
    token: &str,
    scope: &WorkflowScope,
    params: &[(String, String)],
) -> Result<(), ApiError> {
    let forbidden = |message: String| ApiError::new(ErrorCode::Forbidden, message);
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let workflow = if let Some(name) = param("name") {
        Some(name)
    } else if let Some(run) = param("run_id").and_then(|id| id.parse::<RunId>().ok()) {
        state.store.run(run).await?.map(|r| r.workflow)
    } else if let Some(task) = param("task_id").and_then(|id| id.parse::<TaskId>().ok()) {
        state.store.task(task).await?.map(|t| t.run.workflow)
    } else {
        return Err(forbidden(format!(
            "token {token} is scoped to the workflows {}: it reaches only the routes of one workflow, its runs \
             and their tasks",
            scope.as_str()
        )));
    };
    match workflow {
        Some(w) if scope.matches(&w) => Ok(()),
        Some(w) => {
            Err(forbidden(format!("token {token} is scoped to the workflows {}, not {w}", scope.as_str())))
        }
        // Nothing there: the handler says so, as to anyone.
        None => Ok(()),
    }
}
