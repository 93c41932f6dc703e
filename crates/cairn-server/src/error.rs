//! The API's one error type and the one table that gives every kind of error
//! its stable `code` and its HTTP status (as Meilisearch does), so every
//! failure has the same JSON shape:
//!
//! ```json
//! {"code": "run_not_found", "message": "no run 01J…", "field": "run_id"}
//! ```
//!
//! Clients branch on `code`, never on `message` (which is for people and may
//! change). `field` names the input at fault when there is one: a JSON path
//! such as `items[2].progress_percent`, a query parameter, a path segment or
//! a header.
//!
//! Architecture invariant: bad input is a 4xx naming what was wrong; a 5xx
//! means the server or its store failed, never the request.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cairn_store::StoreError;
use serde::Serialize;
use utoipa::ToSchema;

use crate::control::ControlError;

/// Every kind of error the API answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    BadRequest,
    InvalidInput,
    UnsupportedMediaType,
    PayloadTooLarge,
    NotFound,
    RunNotFound,
    TaskNotFound,
    StepNotFound,
    WorkflowNotFound,
    LogNotFound,
    TokenNotFound,
    MethodNotAllowed,
    Unauthorized,
    Forbidden,
    WorkflowInvalid,
    LeaseStale,
    Conflict,
    Unavailable,
    Internal,
    RateLimited,
}

impl ErrorCode {
    pub const ALL: [ErrorCode; 20] = [
        ErrorCode::BadRequest,
        ErrorCode::InvalidInput,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::PayloadTooLarge,
        ErrorCode::NotFound,
        ErrorCode::RunNotFound,
        ErrorCode::TaskNotFound,
        ErrorCode::StepNotFound,
        ErrorCode::WorkflowNotFound,
        ErrorCode::LogNotFound,
        ErrorCode::TokenNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Unauthorized,
        ErrorCode::Forbidden,
        ErrorCode::WorkflowInvalid,
        ErrorCode::LeaseStale,
        ErrorCode::Conflict,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
        ErrorCode::RateLimited,
    ];

    /// The table: each kind's stable code and HTTP status. docs/api.md
    /// mirrors it, and a test holds the two together.
    pub const fn info(self) -> (&'static str, StatusCode) {
        match self {
            // The request cannot be read: malformed JSON, a wrong type, a
            // missing field, a bad query parameter, path segment or header.
            ErrorCode::BadRequest => ("bad_request", StatusCode::BAD_REQUEST),
            // The request reads fine but a value is not acceptable (a param
            // the workflow refuses, a percent over 100, an unknown step).
            ErrorCode::InvalidInput => ("invalid_input", StatusCode::BAD_REQUEST),
            ErrorCode::UnsupportedMediaType => ("unsupported_media_type", StatusCode::UNSUPPORTED_MEDIA_TYPE),
            ErrorCode::PayloadTooLarge => ("payload_too_large", StatusCode::PAYLOAD_TOO_LARGE),
            // No such route, or a thing the engine did not find.
            ErrorCode::NotFound => ("not_found", StatusCode::NOT_FOUND),
            ErrorCode::RunNotFound => ("run_not_found", StatusCode::NOT_FOUND),
            ErrorCode::TaskNotFound => ("task_not_found", StatusCode::NOT_FOUND),
            ErrorCode::StepNotFound => ("step_not_found", StatusCode::NOT_FOUND),
            ErrorCode::WorkflowNotFound => ("workflow_not_found", StatusCode::NOT_FOUND),
            ErrorCode::LogNotFound => ("log_not_found", StatusCode::NOT_FOUND),
            ErrorCode::TokenNotFound => ("token_not_found", StatusCode::NOT_FOUND),
            ErrorCode::MethodNotAllowed => ("method_not_allowed", StatusCode::METHOD_NOT_ALLOWED),
            // No token, or one that is not (or no longer) valid.
            ErrorCode::Unauthorized => ("unauthorized", StatusCode::UNAUTHORIZED),
            // A valid token whose role (or queues, or workflows) does not cover the request.
            ErrorCode::Forbidden => ("forbidden", StatusCode::FORBIDDEN),
            // The workflow file has errors; it cannot run until they are fixed.
            ErrorCode::WorkflowInvalid => ("workflow_invalid", StatusCode::UNPROCESSABLE_ENTITY),
            // The lease token is not the task's current one: the caller lost
            // the lease; nothing was changed.
            ErrorCode::LeaseStale => ("lease_stale", StatusCode::CONFLICT),
            // The request clashes with the current state (the run already
            // finished); nothing was changed.
            ErrorCode::Conflict => ("conflict", StatusCode::CONFLICT),
            // The store or the engine cannot serve now; retrying later is safe.
            ErrorCode::Unavailable => ("unavailable", StatusCode::SERVICE_UNAVAILABLE),
            ErrorCode::Internal => ("internal", StatusCode::INTERNAL_SERVER_ERROR),
            // The caller sent more requests than its rate allows, or holds as
            // many event subscriptions as it may; `Retry-After` says when to
            // try again. Nothing was changed.
            ErrorCode::RateLimited => ("rate_limited", StatusCode::TOO_MANY_REQUESTS),
        }
    }

    pub const fn as_str(self) -> &'static str {
        self.info().0
    }

    pub const fn status(self) -> StatusCode {
        self.info().1
    }
}

/// The JSON body of every error response.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct ErrorBody {
    /// Stable: branch on it. One of the codes in docs/api.md.
    #[schema(example = "run_not_found")]
    pub code: String,
    /// For people: what went wrong and, where it helps, what to do.
    pub message: String,
    /// The input at fault, when there is one: a JSON path
    /// (`items[2].progress_percent`), a query parameter, a path segment or a header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// An error answer of the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub field: Option<String>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError { code, message: message.into(), field: None }
    }

    /// The same error, naming the input at fault.
    pub fn field(mut self, field: impl Into<String>) -> ApiError {
        let field = field.into();
        self.field = (!field.is_empty()).then_some(field);
        self
    }

    pub fn bad_request(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, message).field(field)
    }

    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InvalidInput, message).field(field)
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            code: self.code.as_str().to_owned(),
            message: self.message.clone(),
            field: self.field.clone(),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.code.status();
        if status.is_server_error() {
            tracing::error!(code = self.code.as_str(), message = %self.message, "request failed");
        } else {
            tracing::debug!(code = self.code.as_str(), message = %self.message, field = ?self.field, "request refused");
        }
        (status, axum::Json(self.body())).into_response()
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        let message = e.to_string();
        match e {
            ControlError::NotFound { .. } => ApiError::new(ErrorCode::NotFound, message),
            ControlError::LeaseStale { .. } => ApiError::new(ErrorCode::LeaseStale, message),
            ControlError::Conflict { .. } => ApiError::new(ErrorCode::Conflict, message),
            ControlError::Invalid { field, message } => ApiError::invalid(field, message),
            ControlError::Unavailable { .. } => ApiError::new(ErrorCode::Unavailable, message),
            ControlError::Internal { .. } => ApiError::new(ErrorCode::Internal, message),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            // The database is busy or unreachable: a later try may work.
            StoreError::Database(_) | StoreError::Closed | StoreError::Open { .. } => {
                ApiError::new(ErrorCode::Unavailable, format!("the store cannot answer now: {e}"))
            }
            _ => ApiError::new(ErrorCode::Internal, e.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_statuses_are_errors() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            assert!(seen.insert(code.as_str()), "duplicate code {}", code.as_str());
            assert!(code.status().is_client_error() || code.status().is_server_error());
            assert!(code.as_str().chars().all(|c| c.is_ascii_lowercase() || c == '_'));
        }
    }
}
