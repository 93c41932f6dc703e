//! The API before the store is ready: `cairn serve` listens at once, answers
//! `/api/v1/health` and reports every other request as not ready (503, code
//! `unavailable`, saying what it waits for) until the store is open, then
//! hands every request to the full API.

use std::sync::{Arc, Mutex, OnceLock};

use axum::Json;
use axum::Router;
use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use cairn_server::{ApiError, ErrorCode};
use tower::ServiceExt;

#[derive(Clone)]
pub struct Gate {
    app: Arc<OnceLock<Router>>,
    waiting_for: Arc<Mutex<String>>,
}

impl Gate {
    pub fn new(waiting_for: impl Into<String>) -> Gate {
        Gate { app: Arc::new(OnceLock::new()), waiting_for: Arc::new(Mutex::new(waiting_for.into())) }
    }

    /// What the server waits for, as not-ready answers say it.
    pub fn waiting_for(&self, what: impl Into<String>) {
        *self.waiting_for.lock().unwrap_or_else(|e| e.into_inner()) = what.into();
    }

    /// From now on every request goes to `app`.
    pub fn open(&self, app: Router) {
        let _ = self.app.set(app);
    }

    pub fn router(&self) -> Router {
        let gate = self.clone();
        Router::new().fallback(move |req: Request| {
            let gate = gate.clone();
            async move { gate.answer(req).await }
        })
    }

    async fn answer(&self, req: Request) -> Response {
        if let Some(app) = self.app.get() {
            return match app.clone().oneshot(req).await {
                Ok(res) => res,
                Err(never) => match never {},
            };
        }
        if req.uri().path() == "/api/v1/health" {
            return Json(serde_json::json!({ "status": "starting" })).into_response();
        }
        let what = self.waiting_for.lock().unwrap_or_else(|e| e.into_inner()).clone();
        ApiError::new(ErrorCode::Unavailable, format!("not ready: {what}")).into_response()
    }
}
