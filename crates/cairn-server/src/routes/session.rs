//! Web sign-in: a browser trades an API token for a session (`POST`), asks
//! who it is signed in as and for its anti-CSRF token (`GET`), and signs
//! out (`DELETE`). The session key travels only in a cookie the page's
//! scripts cannot read (`HttpOnly`), that no other site's request carries
//! (`SameSite=Strict`), and that only goes over TLS when the server serves
//! TLS (`Secure`). The store keeps only the key's hash ([`Store::start_session`]).
//!
//! The three routes are public in the route table, since signing in is how
//! a browser gets a credential; each checks what it needs itself. A session
//! lives [`SESSION_TTL`], never past its token's expiry, and ends at once
//! when its token is revoked. Sign-in and sign-out are added to the audit
//! log under the token's name.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_core::Timestamp;
use cairn_core::auth::{Role, Secret, SessionKey, csrf_matches, csrf_token};
use cairn_store::{AuditKind, NewAuditEvent, NewSession, SessionRecord, Store};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::app::AppState;
use crate::auth::{AuthMode, CSRF_HEADER, SESSION_COOKIE, live_session, same_site, session_cookie};
use crate::control::Control;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::ApiJson;

/// How long a session lasts (less if its token expires sooner): a working
/// day, so a browser left open overnight asks for the token again.
pub(crate) const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);

/// A token to sign in with.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignIn {
    /// An API token's secret (`cairn_…`) of role viewer, operator or admin.
    pub(crate) token: String,
}

/// Whom this browser is signed in as.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub(crate) struct SessionView {
    /// `tokens`: the server asks for a token or a session; `open`: it asks
    /// for nothing (no tokens made, local use), and there is no sign-in.
    pub(crate) auth: String,
    pub(crate) signed_in: bool,
    /// The token's name: the actor of what this session changes.
    pub(crate) name: Option<String>,
    /// `viewer`, `operator` or `admin`.
    pub(crate) role: Option<String>,
    /// The workflow pattern the token is limited to; absent: every workflow.
    pub(crate) workflows: Option<String>,
    pub(crate) expires_at: Option<Timestamp>,
    /// Send it back in the `X-CSRF-Token` header with every change.
    pub(crate) csrf_token: Option<String>,
}

impl SessionView {
    fn signed_out(auth: AuthMode) -> SessionView {
        let auth = match auth {
            AuthMode::Open => "open",
            AuthMode::Tokens => "tokens",
        };
        SessionView {
            auth: auth.to_owned(),
            signed_in: false,
            name: None,
            role: None,
            workflows: None,
            expires_at: None,
            csrf_token: None,
        }
    }

    fn of(session: SessionRecord) -> SessionView {
        SessionView {
            auth: "tokens".to_owned(),
            signed_in: true,
            name: Some(session.token.name),
            role: Some(session.token.role.as_str().to_owned()),
            workflows: session.token.workflows,
            expires_at: Some(session.expires_at),
            csrf_token: Some(session.csrf),
        }
    }
}

/// Signs this browser in with an API token: answers a session cookie.
#[utoipa::path(
    post,
    path = "/api/v1/session",
    tag = "access",
    request_body = SignIn,
    responses(
        (status = 201, description = "Signed in: the session, and its key in the `cairn_session` cookie (HttpOnly, SameSite=Strict, Secure under TLS)", body = SessionView),
        (status = 401, description = "Not a live API token (code `unauthorized`, field `token`)", body = ErrorBody),
        (status = 403, description = "A worker token, which cannot sign in, or a page of another site (code `forbidden`)", body = ErrorBody),
        (status = 409, description = "The server runs without tokens: nothing to sign in to (code `conflict`)", body = ErrorBody),
    )
)]
pub(crate) async fn sign_in<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    ApiJson(body): ApiJson<SignIn>,
) -> Result<Response, ApiError> {
    if state.config.auth_mode() == AuthMode::Open {
        return Err(ApiError::new(
            ErrorCode::Conflict,
            "this server runs without API tokens: there is nothing to sign in to",
        ));
    }
    let unauthorized = |message: String| ApiError::new(ErrorCode::Unauthorized, message).field("token");
    let secret = Secret::parse(body.token.trim()).ok_or_else(|| {
        unauthorized("expected an API token: `cairn_` and 40 letters and digits".to_owned())
    })?;
    let now = state.clock.now();
    let token = match state.store.token_by_hash(secret.hash(), now).await? {
        Some(t) if t.is_live(now) => t,
        Some(t) => return Err(unauthorized(format!("API token {} is revoked or expired", t.name))),
        None => return Err(unauthorized(format!("unknown API token {}…", secret.prefix()))),
    };
    if token.role == Role::Worker {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "{} is a worker token: it speaks only the worker protocol; sign in with a viewer, operator or \
                 admin token",
                token.name
            ),
        )
        .field("token"));
    }
    let ttl = i64::try_from(SESSION_TTL.as_micros()).unwrap_or(i64::MAX);
    let mut expires_at = Timestamp::from_micros(now.as_micros().saturating_add(ttl));
    if let Some(end) = token.expires_at {
        expires_at = expires_at.min(end);
    }
    let key = SessionKey::generate();
    let new =
        NewSession { hash: key.hash(), token: token.id, csrf: csrf_token(), created_at: now, expires_at };
    let view = SessionView::of(SessionRecord {
        token: token.clone(),
        csrf: new.csrf.clone(),
        created_at: now,
        expires_at,
    });
    state.store.start_session(new).await?;
    let event = NewAuditEvent::new(now, AuditKind::SignedIn, token.name.clone(), Some(token.name.clone()))
        .detail(serde_json::json!({ "expires_at": expires_at }));
    state.store.record_audit(event).await?;
    tracing::info!(token = %token.name, "signed in");
    let max_age = (expires_at.as_micros() - now.as_micros()) / 1_000_000;
    let cookie = cookie(key.expose(), max_age, state.config.tls);
    Ok((StatusCode::CREATED, [(header::SET_COOKIE, cookie)], Json(view)).into_response())
}

/// Whom this browser is signed in as, and the anti-CSRF token its changes
/// must carry; `signed_in: false` when it is not.
#[utoipa::path(
    get,
    path = "/api/v1/session",
    tag = "access",
    responses((status = 200, description = "The session, or `signed_in: false`", body = SessionView))
)]
pub(crate) async fn get_session<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    headers: HeaderMap,
) -> Result<Json<SessionView>, ApiError> {
    let signed_out = SessionView::signed_out(state.config.auth_mode());
    if state.config.auth_mode() == AuthMode::Open {
        return Ok(Json(signed_out));
    }
    let Some(cookie) = session_cookie(&headers) else { return Ok(Json(signed_out)) };
    // Its anti-CSRF token is for this server's pages only.
    same_site(&headers)?;
    match live_session(&state, cookie, state.clock.now()).await {
        Ok(session) => Ok(Json(SessionView::of(session))),
        Err(e) if e.code == ErrorCode::Unauthorized => Ok(Json(signed_out)),
        Err(e) => Err(e),
    }
}

/// Signs this browser out: ends its session and clears the cookie.
#[utoipa::path(
    delete,
    path = "/api/v1/session",
    tag = "access",
    responses(
        (status = 204, description = "Signed out (or was not signed in); the cookie is cleared"),
        (status = 403, description = "No or a wrong `X-CSRF-Token`, or a page of another site (code `forbidden`)", body = ErrorBody),
    )
)]
pub(crate) async fn sign_out<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let clear = [(header::SET_COOKIE, cookie("", 0, state.config.tls))];
    let key = session_cookie(&headers).and_then(SessionKey::parse);
    let Some(key) = key.filter(|_| state.config.auth_mode() == AuthMode::Tokens) else {
        return Ok((StatusCode::NO_CONTENT, clear).into_response());
    };
    let now = state.clock.now();
    if let Some(session) = state.store.session_by_hash(key.hash(), now).await?.filter(|s| s.is_live(now)) {
        let sent = headers.get(CSRF_HEADER).and_then(|h| h.to_str().ok());
        if !sent.is_some_and(|sent| csrf_matches(&session.csrf, sent)) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("signing out needs the session's anti-CSRF token in the {CSRF_HEADER} header"),
            )
            .field(CSRF_HEADER));
        }
        if let Some(token) = state.store.end_session(key.hash(), now).await? {
            let event = NewAuditEvent::new(now, AuditKind::SignedOut, token.name.clone(), Some(token.name));
            state.store.record_audit(event).await?;
        }
    }
    Ok((StatusCode::NO_CONTENT, clear).into_response())
}

/// The `Set-Cookie` value of a session key (`max_age` 0 clears it).
fn cookie(key: &str, max_age: i64, tls: bool) -> HeaderValue {
    let secure = if tls { "; Secure" } else { "" };
    let text =
        format!("{SESSION_COOKIE}={key}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}");
    // A key is base62 and the rest is ours: always a valid header value.
    HeaderValue::from_str(&text).unwrap_or_else(|_| HeaderValue::from_static("cairn_session=; Max-Age=0"))
}
