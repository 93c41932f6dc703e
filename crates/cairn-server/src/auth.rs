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
//! A browser signs in instead (`routes/session.rs`): it trades a token for
//! a session key in an `HttpOnly`, `SameSite=Strict` cookie, and the
//! session then acts as that token. A request the cookie authenticates
//! must come from a page of this server (no `Origin` of another site), and
//! if it changes anything it must carry the session's anti-CSRF token in
//! `X-CSRF-Token`, which a page of another site cannot read. A bearer
//! token needs neither: browsers never send one on their own.
//!
//! [`AuthMode::Open`] (no tokens configured, on loopback, or told
//! `--insecure`) lets every request through as it always did, except a
//! change sent by a page of another site: a page on the web could
//! otherwise make a user's browser trigger runs on a server on their
//! machine.

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{RawPathParams, Request, State};
use axum::http::{HeaderMap, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use cairn_core::auth::{Role, Secret, SessionKey, WorkflowScope, csrf_matches};
use cairn_core::{RunId, TaskId};
use cairn_store::{AuditKind, NewAuditEvent, Store, TokenRecord};

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
    /// The workflows the token is limited to; `None`: every workflow.
    pub workflows: Option<WorkflowScope>,
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

/// The name of the session cookie.
pub const SESSION_COOKIE: &str = "cairn_session";

/// The header a signed-in page sends its anti-CSRF token in.
pub const CSRF_HEADER: &str = "X-CSRF-Token";

/// The middleware of one route: lets the request through if `access`
/// allows its caller, else answers 401 (no valid token or session) or 403
/// (a token that does not cover the request, or a browser request that may
/// be forged).
pub(crate) async fn authorize<S: Store, C: Control>(
    State(access): State<Access>,
    params: Result<RawPathParams, RawPathParamsRejection>,
    mut req: Request,
    next: Next,
) -> Response {
    let changes = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if changes && let Err(e) = same_site(req.headers()) {
        return e.into_response();
    }
    let Access::Role(needed) = access else { return next.run(req).await };
    let state = match req.extensions().get::<AppState<S, C>>() {
        // Open: nothing to look up, and no state copied on the hot path.
        Some(state) if state.config.auth_mode() == AuthMode::Open => {
            if state.config.loopback
                && let Err(e) = loopback_host(req.headers())
            {
                return e.into_response();
            }
            return next.run(req).await;
        }
        Some(state) => state.clone(),
        None => return ApiError::new(ErrorCode::Internal, "the API state is missing").into_response(),
    };
    let params: Vec<(String, String)> =
        params.map(|p| p.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect()).unwrap_or_default();
    // Read before any await: a request's body is not `Sync`, so a borrow
    // of the request held across one would make this future not `Send`.
    let presented = Presented::of(req.headers(), changes);
    let path = req.uri().path().to_owned();
    let route = format!("{} {path}", req.method());
    match check(&state, needed, &params, presented, (&route, &path)).await {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

/// What a request presents to be let in, read off its headers.
struct Presented {
    /// The `Authorization` header, if any (`Err`: not text).
    bearer: Option<Result<String, header::ToStrError>>,
    /// The session cookie's value, if any.
    session: Option<String>,
    /// The anti-CSRF token sent, if any.
    csrf: Option<String>,
    /// Whether the request would change something (not GET, HEAD, OPTIONS).
    changes: bool,
    /// Whether a page of another site sent it: the answer of [`same_site`].
    cross_site: Result<(), ApiError>,
}

impl Presented {
    fn of(headers: &HeaderMap, changes: bool) -> Presented {
        Presented {
            bearer: headers.get(header::AUTHORIZATION).map(|h| h.to_str().map(str::to_owned)),
            session: session_cookie(headers).map(str::to_owned),
            csrf: headers.get(CSRF_HEADER).and_then(|h| h.to_str().ok()).map(str::to_owned),
            changes,
            cross_site: same_site(headers),
        }
    }
}

/// The value of the session cookie among the request's cookies.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|h| h.to_str().ok())
        .flat_map(|h| h.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == SESSION_COOKIE)
        .map(|(_, value)| value.trim())
}

/// Refuses a request a browser sent from a page of another site: its
/// `Origin` is not this server's (as the `Host`, or a proxy's
/// `X-Forwarded-Host`, names it). Programs other than browsers send no
/// `Origin`, and are let through.
pub(crate) fn same_site(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(origin) = headers.get(header::ORIGIN) else { return Ok(()) };
    let origin = origin.to_str().unwrap_or("null");
    let host = |name: &str| headers.get(name).and_then(|h| h.to_str().ok());
    let hosts = [host(header::HOST.as_str()), host("x-forwarded-host")];
    if hosts.into_iter().flatten().any(|h| same_authority(origin, h)) {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::Forbidden,
        format!(
            "refused a request sent by a page of {origin}, another site than this server's: Cairn's pages \
             make their changes from the server's own address (behind a proxy, pass the Host header through)"
        ),
    )
    .field("Origin"))
}

/// Refuses a request that names a host other than this machine's
/// loopback (`localhost`, `127.0.0.1`, `[::1]`): only a browser sent to
/// another name that resolves here does that.
fn loopback_host(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(host) = headers.get(header::HOST) else { return Ok(()) };
    let host = host.to_str().unwrap_or("");
    let name = match host.rfind(':').filter(|&i| !host[i..].contains(']')) {
        Some(i) => &host[..i],
        None => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let loopback = name.eq_ignore_ascii_case("localhost")
        || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        return Ok(());
    }
    Err(ApiError::new(
        ErrorCode::Forbidden,
        format!(
            "this server runs without API tokens for local use, and answers only requests to localhost, \
             127.0.0.1 or [::1], not {host:?}; to serve other names, make an API token"
        ),
    )
    .field("Host"))
}

/// Whether `origin` (`scheme://host[:port]`) names the authority `host`
/// (`host[:port]`), the port defaulting to the scheme's.
fn same_authority(origin: &str, host: &str) -> bool {
    let Some((scheme, authority)) = origin.split_once("://") else { return false };
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => "80",
        "https" => "443",
        _ => return false,
    };
    let split = |a: &str| -> (String, String) {
        // An IPv6 literal keeps its colons inside the brackets.
        match a.rfind(':').filter(|&i| !a[i..].contains(']')) {
            Some(i) => (a[..i].to_ascii_lowercase(), a[i + 1..].to_owned()),
            None => (a.to_ascii_lowercase(), default.to_owned()),
        }
    };
    split(authority) == split(host.trim())
}

async fn check<S: Store, C: Control>(
    state: &AppState<S, C>,
    needed: Role,
    params: &[(String, String)],
    presented: Presented,
    (route, path): (&str, &str),
) -> Result<Caller, ApiError> {
    let now = state.clock.now();
    // A session brings the anti-CSRF token its changes must carry.
    let (token, session_csrf) = match (presented.bearer, presented.session) {
        (Some(header), _) => (bearer_token(state, header, now).await?, None),
        (None, Some(cookie)) => {
            let session = live_session(state, &cookie, now).await?;
            (session.token, Some(session.csrf))
        }
        (None, None) => {
            return Err(ApiError::new(
                ErrorCode::Unauthorized,
                "this server needs an API token: send `Authorization: Bearer cairn_…`, or sign in",
            )
            .field("Authorization"));
        }
    };
    let scope = token
        .workflows
        .as_deref()
        .map(WorkflowScope::parse)
        .transpose()
        .map_err(|e| ApiError::new(ErrorCode::Internal, format!("token {}: {e}", token.name)))?;
    let forged = |expected: &str| !presented.csrf.as_deref().is_some_and(|sent| csrf_matches(expected, sent));
    let refused = if session_csrf.is_some()
        && let Err(e) = presented.cross_site
    {
        Err(e)
    } else if presented.changes && session_csrf.as_deref().is_some_and(forged) {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!(
                "a signed-in change needs the session's anti-CSRF token in the {CSRF_HEADER} header (GET \
                 /api/v1/session answers it)"
            ),
        )
        .field(CSRF_HEADER))
    } else if !token.role.allows(needed) {
        Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("token {} has the role {}; this route needs {}", token.name, token.role, needed),
        ))
    } else if let Some(scope) = &scope {
        check_scope(state, &token.name, scope, params, path).await
    } else {
        Ok(())
    };
    let caller = Caller { name: token.name, role: token.role, queues: token.queues, workflows: scope };
    if let Err(e) = refused {
        // A 403 is audited: only a valid token can cause one. (A 401 is
        // not: anyone can send a bad token.)
        if e.code == ErrorCode::Forbidden {
            return Err(audit_denied(state, &caller, route, e).await);
        }
        return Err(e);
    }
    Ok(caller)
}

/// Adds a refusal of `caller` on `route` to the audit log, and answers it.
pub(crate) async fn audit_denied<S: Store, C: Control>(
    state: &AppState<S, C>,
    caller: &Caller,
    route: &str,
    refusal: ApiError,
) -> ApiError {
    let event = NewAuditEvent::new(
        state.clock.now(),
        AuditKind::AccessDenied,
        caller.name.clone(),
        Some(route.to_owned()),
    )
    .detail(serde_json::json!({ "role": caller.role, "message": refusal.message }));
    match state.store.record_audit(event).await {
        Ok(()) => refusal,
        Err(e) => e.into(),
    }
}

/// The live token an `Authorization: Bearer …` header names, or 401.
async fn bearer_token<S: Store, C: Control>(
    state: &AppState<S, C>,
    header: Result<String, header::ToStrError>,
    now: cairn_core::Timestamp,
) -> Result<TokenRecord, ApiError> {
    let unauthorized =
        |message: String| ApiError::new(ErrorCode::Unauthorized, message).field("Authorization");
    let text = header.ok();
    let text = text.as_deref().and_then(|h| h.strip_prefix("Bearer ")).map(str::trim);
    let secret = text.and_then(Secret::parse).ok_or_else(|| {
        unauthorized("expected `Authorization: Bearer cairn_…` with a Cairn API token".to_owned())
    })?;
    let token = state
        .store
        .token_by_hash(secret.hash(), now)
        .await?
        .ok_or_else(|| unauthorized(format!("unknown API token {}…", secret.prefix())))?;
    if !token.is_live(now) {
        let why = if token.revoked_at.is_some() { "was revoked" } else { "has expired" };
        return Err(unauthorized(format!("API token {} {why}", token.name)));
    }
    Ok(token)
}

/// The live session a session cookie names, or 401.
pub(crate) async fn live_session<S: Store, C: Control>(
    state: &AppState<S, C>,
    cookie: &str,
    now: cairn_core::Timestamp,
) -> Result<cairn_store::SessionRecord, ApiError> {
    let ended = || {
        ApiError::new(
            ErrorCode::Unauthorized,
            "this browser's session has ended (signed out, expired, or its token revoked): sign in again",
        )
        .field(SESSION_COOKIE)
    };
    let key = SessionKey::parse(cookie).ok_or_else(ended)?;
    match state.store.session_by_hash(key.hash(), now).await? {
        Some(session) if session.is_live(now) => Ok(session),
        _ => Err(ended()),
    }
}

/// A scoped token reaches a route only through the one workflow it names
/// (by its name, or by a run or task of it), or a list that narrows itself
/// to the token's workflows ([`crate::scope`]).
async fn check_scope<S: Store, C: Control>(
    state: &AppState<S, C>,
    token: &str,
    scope: &WorkflowScope,
    params: &[(String, String)],
    path: &str,
) -> Result<(), ApiError> {
    let forbidden = |message: String| ApiError::new(ErrorCode::Forbidden, message);
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone());
    let workflow = if crate::scope::FILTERED.contains(&path) {
        return Ok(());
    } else if let Some(name) = param("name") {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(*name, value.parse().unwrap());
        }
        h
    }

    #[test]
    fn an_origin_is_this_server_when_it_names_its_host_and_port() {
        for (origin, host) in [
            ("http://127.0.0.1:8080", "127.0.0.1:8080"),
            ("https://cairn.example.com", "cairn.example.com"),
            ("https://cairn.example.com", "cairn.example.com:443"),
            ("http://Cairn.Example.com:80", "cairn.example.com"),
            ("http://[::1]:8080", "[::1]:8080"),
        ] {
            assert!(same_authority(origin, host), "{origin} {host}");
        }
        for (origin, host) in [
            ("http://evil.example", "cairn.example.com"),
            ("http://127.0.0.1:9090", "127.0.0.1:8080"),
            ("https://cairn.example.com", "cairn.example.com:80"),
            ("null", "cairn.example.com"),
            ("ftp://cairn.example.com", "cairn.example.com"),
            ("http://[::1]:8080", "[::1]:9090"),
        ] {
            assert!(!same_authority(origin, host), "{origin} {host}");
        }
        assert!(same_site(&headers(&[])).is_ok(), "programs send no Origin");
        let proxied = headers(&[
            ("origin", "https://cairn.example.com"),
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-host", "cairn.example.com"),
        ]);
        assert!(same_site(&proxied).is_ok());
        let e = same_site(&headers(&[("origin", "https://evil.example"), ("host", "cairn.example.com")]))
            .unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), (ErrorCode::Forbidden, Some("Origin")));
    }

    #[test]
    fn an_open_local_server_answers_only_loopback_names() {
        for host in ["localhost:8080", "127.0.0.1:8080", "127.0.0.2", "[::1]:8080", "LOCALHOST"] {
            assert!(loopback_host(&headers(&[("host", host)])).is_ok(), "{host}");
        }
        assert!(loopback_host(&headers(&[])).is_ok());
        for host in ["evil.example:8080", "10.0.0.5:8080", "localhost.evil.example", "[::2]:8080"] {
            let e = loopback_host(&headers(&[("host", host)])).unwrap_err();
            assert_eq!(e.field.as_deref(), Some("Host"), "{host}");
        }
    }
}
