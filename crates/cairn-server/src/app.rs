//! The router: every route of the API with its handler, the shared
//! [`AppState`], and the layers around them (body limit, tracing, JSON
//! answers for unknown routes and methods).
//!
//! Architecture invariant: each route is registered from its handler's
//! `#[utoipa::path]` annotation (method and path), and the OpenAPI document
//! is built from the same list, so the document and the router cannot
//! disagree about what exists.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::routing::{MethodFilter, MethodRouter};
use cairn_core::auth::Role;
use cairn_core::{Clock, SystemClock};
use cairn_store::Store;
use metrics_exporter_prometheus::PrometheusHandle;
use utoipa::openapi::OpenApi;
use utoipa::openapi::path::HttpMethod;

use crate::auth::{Access, AuthMode, authorize};
use crate::catalog::Catalog;
use crate::control::Control;
use crate::error::{ApiError, ErrorCode};
use crate::limits::Surface;
use crate::routes::{
    alerts, analytics, audit, events, health, history, logs, runs, session, tasks, tokens, workers, workflows,
};

/// Settings of the API.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Where attempts' log files live (`cairn_engine::attempt_log_paths`).
    pub log_root: PathBuf,
    /// Largest request body accepted (413 beyond).
    pub body_limit: usize,
    /// How often a followed log is checked for new bytes.
    pub log_poll_interval: Duration,
    /// Whether requests need an API token, as the server started. An open
    /// API asks for tokens from the moment one is made: see
    /// [`ServerConfig::auth_mode`].
    pub auth: AuthMode,
    /// Set when the first API token is made while the API is open (over
    /// the API, or seen by `cairn serve`'s watch): from then on it asks for
    /// tokens, without a restart.
    pub tokens_made: Arc<AtomicBool>,
    /// Whether the API is served over TLS (session cookies are then `Secure`).
    pub tls: bool,
    /// Whether the server listens on a loopback address only. Open without
    /// tokens there, it then answers only requests that name a loopback host,
    /// so a web page whose name was pointed at 127.0.0.1 (DNS rebinding)
    /// cannot drive it through the user's browser.
    pub loopback: bool,
    /// Requests a second per caller on the API, bursts of twice that; 0: no limit.
    pub rate_limit_api: u32,
    /// Requests a second per caller on the worker protocol, bursts of twice that; 0: no limit.
    pub rate_limit_worker: u32,
    /// Live event subscriptions this server takes in all (503 beyond).
    pub max_subscribers: usize,
    /// Live event subscriptions one caller may hold (429 beyond).
    pub max_subscribers_per_token: usize,
}

impl ServerConfig {
    pub fn new(log_root: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            log_root: log_root.into(),
            body_limit: 1024 * 1024,
            log_poll_interval: Duration::from_millis(200),
            auth: AuthMode::Open,
            tokens_made: Arc::default(),
            tls: false,
            loopback: false,
            // Off unless set (`cairn serve` sets 50 and 500): embedders and
            // tests on a stopped manual clock are not limited by surprise.
            rate_limit_api: 0,
            rate_limit_worker: 0,
            max_subscribers: 1000,
            max_subscribers_per_token: 20,
        }
    }
}

impl ServerConfig {
    /// Whether requests need an API token now.
    pub fn auth_mode(&self) -> AuthMode {
        if self.tokens_made.load(Ordering::Relaxed) { AuthMode::Tokens } else { self.auth }
    }
}

/// What every handler shares: the store it reads, the engine it asks for
/// changes, the workflow catalog, the clock, the settings and the metrics.
pub struct AppState<S, C> {
    pub store: Arc<S>,
    pub control: Arc<C>,
    pub catalog: Catalog,
    pub clock: Arc<dyn Clock>,
    pub config: Arc<ServerConfig>,
    pub metrics: PrometheusHandle,
    /// Workflows' expected durations, for the run and task views.
    pub expected: crate::expected::ExpectedCache,
    /// The workers this server has heard from, for the workers page.
    pub presence: crate::presence::Presence,
}

// By hand: a derive would ask for `S: Clone` and `C: Clone`, and both sit in `Arc`s.
impl<S, C> Clone for AppState<S, C> {
    fn clone(&self) -> Self {
        AppState {
            store: self.store.clone(),
            control: self.control.clone(),
            catalog: self.catalog.clone(),
            clock: self.clock.clone(),
            config: self.config.clone(),
            metrics: self.metrics.clone(),
            expected: self.expected.clone(),
            presence: self.presence.clone(),
        }
    }
}

impl<S: Store, C: Control> AppState<S, C> {
    /// State on the system clock, with the process's Prometheus recorder
    /// ([`crate::metrics::install`]).
    pub fn new(store: Arc<S>, control: Arc<C>, catalog: Catalog, config: ServerConfig) -> Self {
        AppState {
            store,
            control,
            catalog,
            clock: Arc::new(SystemClock::new()),
            config: Arc::new(config),
            metrics: crate::metrics::install(),
            expected: crate::expected::ExpectedCache::default(),
            presence: crate::presence::Presence::default(),
        }
    }

    /// The same state reading time from `clock` (tests use a manual one).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
}

/// The whole API: `/api/v1/…`, `/metrics`, the web UI (feature `ui`), and
/// JSON errors for anything else.
pub fn router<S: Store, C: Control>(state: AppState<S, C>) -> Router {
    let body_limit = state.config.body_limit;
    let Api { router: routes, doc, .. } = api::<S, C>();
    let doc = Arc::new(doc);
    let limits = Arc::new(crate::limits::Limits::new(&state.config, state.clock.clone()));
    #[cfg(feature = "ui")]
    let routes = routes.merge(crate::ui::routes());
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state.clone())
        // The route guards read the state from here (`auth::authorize`).
        .layer(axum::Extension(state))
        .layer(axum::Extension(crate::openapi::Document(doc)))
        .layer(axum::Extension(limits))
        .layer(axum::Extension(crate::limits::BodyLimit(body_limit)))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(tower_http::trace::TraceLayer::new_for_http())
}

/// The routes, their document and the access each needs.
pub(crate) struct Api<S, C> {
    router: Router<AppState<S, C>>,
    doc: OpenApi,
    access: Vec<RouteAccess>,
}

/// Each route of the API with the access it needs: the table the route
/// guards enforce.
pub fn access_table<S: Store, C: Control>() -> Vec<RouteAccess> {
    api::<S, C>().access
}

/// Every route with the access it needs ([`crate::auth`]), and the
/// OpenAPI document, built from the same list.
pub(crate) fn api<S: Store, C: Control>() -> Api<S, C> {
    const PUBLIC: Access = Access::Public;
    const VIEWER: Access = Access::Role(Role::Viewer);
    const OPERATOR: Access = Access::Role(Role::Operator);
    const ADMIN: Access = Access::Role(Role::Admin);
    const WORKER: Access = Access::Role(Role::Worker);
    Routes::new()
        .add(PUBLIC, health::__path_health, health::health::<S, C>)
        .add(PUBLIC, health::__path_ready, health::ready::<S, C>)
        .add(VIEWER, health::__path_metrics, health::metrics::<S, C>)
        .add(PUBLIC, crate::openapi::__path_openapi_json, crate::openapi::openapi_json)
        .add(VIEWER, workflows::__path_list_workflows, workflows::list_workflows::<S, C>)
        .add(VIEWER, workflows::__path_get_workflow, workflows::get_workflow::<S, C>)
        .add(VIEWER, workflows::__path_validate_workflow, workflows::validate_workflow)
        .add(OPERATOR, workflows::__path_trigger_run, workflows::trigger_run::<S, C>)
        .add(VIEWER, history::__path_list_runs, history::list_runs::<S, C>)
        .add(VIEWER, history::__path_list_tasks, history::list_tasks::<S, C>)
        .add(VIEWER, history::__path_status_counts, history::status_counts::<S, C>)
        .add(VIEWER, history::__path_trend, history::trend::<S, C>)
        .add(VIEWER, analytics::__path_phase_stats, analytics::phase_stats::<S, C>)
        .add(VIEWER, analytics::__path_expected_durations, analytics::expected_durations::<S, C>)
        .add(VIEWER, alerts::__path_list_alerts, alerts::list_alerts::<S, C>)
        .add(VIEWER, alerts::__path_list_reaped, alerts::list_reaped::<S, C>)
        .add(
            VIEWER,
            crate::routes::reports::__path_status_report,
            crate::routes::reports::status_report::<S, C>,
        )
        .add(VIEWER, runs::__path_get_run, runs::get_run::<S, C>)
        .add(OPERATOR, runs::__path_cancel_run, runs::cancel_run::<S, C>)
        .add(OPERATOR, runs::__path_retry_run, runs::retry_run::<S, C>)
        .add(VIEWER, tasks::__path_get_task, tasks::get_task::<S, C>)
        .add(VIEWER, logs::__path_read_log, logs::read_log::<S, C>)
        .add(WORKER, workers::__path_lease, workers::lease::<S, C>)
        .add(WORKER, workers::__path_heartbeat, workers::heartbeat::<S, C>)
        .add(WORKER, workers::__path_task_heartbeat, workers::task_heartbeat::<S, C>)
        .add(WORKER, workers::__path_complete, workers::complete::<S, C>)
        .add(WORKER, workers::__path_complete_batch, workers::complete_batch::<S, C>)
        .add(WORKER, workers::__path_append_log, workers::append_log::<S, C>)
        .add(VIEWER, workers::__path_list_workers, workers::list_workers::<S, C>)
        .add(VIEWER, events::__path_events, events::events::<S, C>)
        .add(ADMIN, tokens::__path_create_token, tokens::create_token::<S, C>)
        .add(ADMIN, tokens::__path_list_tokens, tokens::list_tokens::<S, C>)
        .add(ADMIN, tokens::__path_revoke_token, tokens::revoke_token::<S, C>)
        .add(ADMIN, audit::__path_list_audit, audit::list_audit::<S, C>)
        .add(PUBLIC, session::__path_sign_in, session::sign_in::<S, C>)
        .add(PUBLIC, session::__path_get_session, session::get_session::<S, C>)
        .add(PUBLIC, session::__path_sign_out, session::sign_out::<S, C>)
        .add(
            ADMIN,
            crate::routes::webhooks::__path_list_deliveries,
            crate::routes::webhooks::list_deliveries::<S, C>,
        )
        .finish()
}

/// The router and the document, grown one annotated handler at a time.
struct Routes<S, C> {
    router: Router<AppState<S, C>>,
    doc: OpenApi,
    access: Vec<RouteAccess>,
}

/// One route and the access it needs, as registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteAccess {
    /// Lowercase, as in the OpenAPI document (`get`, `post`).
    pub method: String,
    /// As in the OpenAPI document (`/api/v1/runs/{run_id}`).
    pub path: String,
    pub access: Access,
}

impl<S: Store, C: Control> Routes<S, C> {
    fn new() -> Self {
        Routes { router: Router::new(), doc: crate::openapi::base(), access: Vec::new() }
    }

    /// Registers `handler` at the method(s) and path of its annotation `P`,
    /// behind the check of `access`.
    fn add<P, H, T>(mut self, access: Access, _annotation: P, handler: H) -> Self
    where
        P: utoipa::Path,
        H: Handler<T, AppState<S, C>>,
        T: 'static,
    {
        let path = P::path();
        let methods = P::methods();
        let mut method_router = MethodRouter::new();
        for method in &methods {
            method_router = method_router.on(filter(method), handler.clone());
        }
        let guard = axum::middleware::from_fn_with_state(access, authorize::<S, C>);
        // Inside the guard: the limit counts the caller the guard found.
        let limit = axum::middleware::from_fn_with_state(Surface::of(access), crate::limits::limit);
        self.router = self.router.route(&path, method_router.route_layer(limit).route_layer(guard));
        for method in &methods {
            self.access.push(RouteAccess {
                method: method_name(method).to_owned(),
                path: path.clone(),
                access,
            });
        }
        self.doc.paths.add_path_operation(path, methods, P::operation());
        self
    }

    fn finish(self) -> Api<S, C> {
        Api { router: self.router, doc: self.doc, access: self.access }
    }
}

/// As the OpenAPI document names it.
fn method_name(method: &HttpMethod) -> &'static str {
    match method {
        HttpMethod::Get => "get",
        HttpMethod::Put => "put",
        HttpMethod::Post => "post",
        HttpMethod::Delete => "delete",
        HttpMethod::Options => "options",
        HttpMethod::Head => "head",
        HttpMethod::Patch => "patch",
        HttpMethod::Trace => "trace",
    }
}

fn filter(method: &HttpMethod) -> MethodFilter {
    match method {
        HttpMethod::Get => MethodFilter::GET,
        HttpMethod::Put => MethodFilter::PUT,
        HttpMethod::Post => MethodFilter::POST,
        HttpMethod::Delete => MethodFilter::DELETE,
        HttpMethod::Options => MethodFilter::OPTIONS,
        HttpMethod::Head => MethodFilter::HEAD,
        HttpMethod::Patch => MethodFilter::PATCH,
        HttpMethod::Trace => MethodFilter::TRACE,
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::NotFound, format!("no route {}; see /api/v1/openapi.json", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorCode::MethodNotAllowed, format!("{} does not accept {method}", uri.path()))
}
