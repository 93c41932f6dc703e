//! Liveness, readiness and the Prometheus scrape.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use cairn_core::RunId;
use cairn_store::Store;

use crate::app::AppState;
use crate::control::Control;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::model::{Health, Readiness};

/// The process is up and serving requests.
#[utoipa::path(
    get,
    path = "/api/v1/health",
    tag = "health",
    responses((status = 200, description = "Alive", body = Health))
)]
pub(crate) async fn health<S: Store, C: Control>(State(_): State<AppState<S, C>>) -> Json<Health> {
    Json(Health { status: "ok".to_owned() })
}

/// The store answers (a cheap indexed read), so requests can be served.
#[utoipa::path(
    get,
    path = "/api/v1/ready",
    tag = "health",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "The store does not answer (code `unavailable`)", body = ErrorBody),
    )
)]
pub(crate) async fn ready<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
) -> Result<Json<Readiness>, ApiError> {
    // A lookup of an id that never exists: one index probe, no table scan.
    state
        .store
        .run(RunId::from_bytes([0; 16]))
        .await
        .map_err(|e| ApiError::new(ErrorCode::Unavailable, format!("the store does not answer: {e}")))?;
    let catalog = state.catalog.snapshot();
    Ok(Json(Readiness {
        status: "ready".to_owned(),
        workflows: catalog.len(),
        broken_workflows: catalog.broken(),
    }))
}

/// Every metric in Prometheus text format (names in docs/api.md).
#[utoipa::path(
    get,
    path = "/metrics",
    tag = "health",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String))
)]
pub(crate) async fn metrics<S: Store, C: Control>(State(state): State<AppState<S, C>>) -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render())
        .into_response()
}
