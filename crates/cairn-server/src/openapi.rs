//! The OpenAPI document at `/api/v1/openapi.json`: generated from the code —
//! the paths from each handler's `#[utoipa::path]` (registered together with
//! the route in `app.rs`), the schemas from the types' `ToSchema`.

use std::sync::Arc;

use axum::Extension;
use axum::response::{IntoResponse, Response};
use utoipa::OpenApi;

use cairn_core::protocol;

use crate::error::ErrorBody;
use crate::model;

/// The document as built with the router, shared by the handler.
#[derive(Clone)]
pub(crate) struct Document(pub(crate) Arc<utoipa::openapi::OpenApi>);

/// Everything but the paths: title, version, tags, and the schemas of every
/// body (their nested schemas come along). A test checks that every `$ref`
/// of the document resolves, so a body left out of this list fails it.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Cairn API",
        description = "Workflows, runs, tasks and their logs; the worker protocol; live events. \
                       Errors are JSON `{code, message, field?}` with a stable `code` (see docs/api.md).",
        license(name = "Apache-2.0")
    ),
    components(schemas(
        ErrorBody,
        cairn_core::event::Event,
        model::Health,
        model::Readiness,
        model::WorkflowList,
        model::WorkflowDetail,
        model::ValidateResponse,
        model::TriggerRequest,
        model::RunCreated,
        model::RunPage,
        model::TaskPage,
        model::StatusCounts,
        model::Trend,
        crate::analytics::PhaseStatsView,
        crate::analytics::ExpectedDurationsView,
        model::AlertList,
        cairn_core::report::StatusReport,
        model::RunView,
        model::RetryRequest,
        model::CancelAccepted,
        model::TaskDetailView,
        protocol::LeaseRequest,
        protocol::LeaseResponse,
        protocol::HeartbeatRequest,
        protocol::HeartbeatResponse,
        protocol::HeartbeatAck,
        protocol::TaskHeartbeatRequest,
        protocol::CompleteRequest,
        protocol::CompleteResponse,
        protocol::CompleteBatchRequest,
        protocol::CompleteBatchResponse,
        protocol::LogStream,
        crate::routes::tokens::CreateToken,
        crate::routes::tokens::TokenCreated,
        crate::routes::tokens::TokenList,
        crate::routes::tokens::TokenView,
        crate::routes::audit::AuditList,
        crate::routes::session::SignIn,
        crate::routes::session::SessionView,
        model::WorkerList,
        cairn_core::AuditId,
    )),
    tags(
        (name = "health", description = "Liveness, readiness, metrics and this document"),
        (name = "workflows", description = "The workflow catalog: list, inspect, validate, trigger"),
        (name = "history", description = "Runs and tasks by any filters, status counts and trends, phase analytics and expected durations"),
        (name = "alerts", description = "Anomalies in a workflow's status mix, raised and resolved by the leader"),
        (name = "runs", description = "One run, cancel, retry"),
        (name = "tasks", description = "One task with its transition log and attempts"),
        (name = "logs", description = "An attempt's stdout and stderr, read or followed"),
        (name = "workers", description = "The worker protocol: lease, heartbeat, complete (one or many), stream logs"),
        (name = "events", description = "Live transitions and progress over a WebSocket"),
        (name = "access", description = "API tokens (make, list, revoke) and the audit log, role admin; web sign-in and sign-out"),
    )
)]
struct Base;

/// The document without paths; `app::api` adds one per route.
pub(crate) fn base() -> utoipa::openapi::OpenApi {
    let mut doc = Base::openapi();
    doc.info.version = env!("CARGO_PKG_VERSION").to_owned();
    doc
}

/// The OpenAPI 3.1 document of this API.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    tag = "health",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
pub(crate) async fn openapi_json(Extension(doc): Extension<Document>) -> Response {
    axum::Json(doc.0.as_ref()).into_response()
}
