//! The workflow catalog: list, inspect, validate YAML, trigger a run.

use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use cairn_core::spec;
use cairn_store::Store;

use crate::app::AppState;
use crate::control::Control;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{OptionalJson, Who, body_bytes};
use crate::model::{
    DiagnosticView, RunCreated, TriggerRequest, ValidateResponse, WorkflowDetail, WorkflowList,
    WorkflowSummary,
};

/// Every workflow file of the catalog, valid or not, by name.
#[utoipa::path(
    get,
    path = "/api/v1/workflows",
    tag = "workflows",
    responses((status = 200, description = "The catalog", body = WorkflowList))
)]
pub(crate) async fn list_workflows<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
) -> Json<WorkflowList> {
    let snapshot = state.catalog.snapshot();
    let now = state.clock.now();
    Json(WorkflowList {
        workflows: snapshot.entries().map(|e| WorkflowSummary::new(e, now)).collect(),
        problem: snapshot.problem.clone(),
    })
}

/// One workflow: steps, schedule, params, source text, and its errors if broken.
#[utoipa::path(
    get,
    path = "/api/v1/workflows/{name}",
    tag = "workflows",
    params(("name" = String, Path, description = "The workflow's name")),
    responses(
        (status = 200, description = "The workflow", body = WorkflowDetail),
        (status = 404, description = "No such workflow (code `workflow_not_found`)", body = ErrorBody),
    )
)]
pub(crate) async fn get_workflow<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    Path(name): Path<String>,
) -> Result<Json<WorkflowDetail>, ApiError> {
    let entry = state.catalog.get(&name).ok_or_else(|| workflow_not_found(&name))?;
    Ok(Json(WorkflowDetail::new(&entry)))
}

fn workflow_not_found(name: &str) -> ApiError {
    ApiError::new(ErrorCode::WorkflowNotFound, format!("no workflow named {name:?} in the catalog"))
        .field("name")
}

/// Checks workflow YAML (the request body, as text) without storing or
/// running anything: every problem with its line and column. Always 200 for
/// YAML, valid or not; `valid` tells which.
#[utoipa::path(
    post,
    path = "/api/v1/workflows/validate",
    tag = "workflows",
    request_body(content = String, content_type = "application/yaml", description = "Workflow YAML"),
    responses(
        (status = 200, description = "The verdict and every diagnostic", body = ValidateResponse),
        (status = 400, description = "The body is not UTF-8 text (code `bad_request`)", body = ErrorBody),
        (status = 413, description = "The body is too large (code `payload_too_large`)", body = ErrorBody),
    )
)]
pub(crate) async fn validate_workflow(req: Request) -> Result<Json<ValidateResponse>, ApiError> {
    let bytes = body_bytes(req, &()).await?;
    let text = std::str::from_utf8(&bytes)
        .map_err(|e| ApiError::bad_request("body", format!("the workflow is not UTF-8 text: {e}")))?;
    Ok(Json(match spec::parse(text, None) {
        Ok(w) => ValidateResponse {
            valid: true,
            name: Some(w.name.clone()),
            steps: Some(w.steps.len()),
            errors: Vec::new(),
            warnings: w.warnings.iter().map(DiagnosticView::from).collect(),
        },
        Err(e) => ValidateResponse {
            valid: false,
            name: None,
            steps: None,
            errors: e.diagnostics.iter().map(DiagnosticView::from).collect(),
            warnings: Vec::new(),
        },
    }))
}

/// Starts a run of the workflow. The params are checked against the
/// workflow's declarations before anything is stored.
#[utoipa::path(
    post,
    path = "/api/v1/workflows/{name}/runs",
    tag = "workflows",
    params(
        ("name" = String, Path, description = "The workflow's name"),
        ("X-Cairn-User" = Option<String>, Header, description = "Who asks, recorded as the actor `user:NAME`"),
    ),
    request_body(content = TriggerRequest, description = "Optional: params"),
    responses(
        (status = 201, description = "The run is stored and started", body = RunCreated,
         headers(("Location" = String, description = "The new run's URL"))),
        (status = 400, description = "Bad params (`invalid_input`, field `params`) or body (`bad_request`)", body = ErrorBody),
        (status = 404, description = "No such workflow (code `workflow_not_found`)", body = ErrorBody),
        (status = 409, description = "The workflow cannot run now (code `conflict`)", body = ErrorBody),
        (status = 422, description = "The workflow file has errors (code `workflow_invalid`)", body = ErrorBody),
        (status = 503, description = "The engine cannot take runs now (code `unavailable`)", body = ErrorBody),
    )
)]
pub(crate) async fn trigger_run<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    Path(name): Path<String>,
    Who(actor): Who,
    OptionalJson(body): OptionalJson<TriggerRequest>,
) -> Result<Response, ApiError> {
    let entry = state.catalog.get(&name).ok_or_else(|| workflow_not_found(&name))?;
    let workflow = match &entry.spec {
        Ok(w) => w.clone(),
        Err(diagnostics) => {
            let first = diagnostics.first().map(ToString::to_string).unwrap_or_default();
            return Err(ApiError::new(
                ErrorCode::WorkflowInvalid,
                format!(
                    "workflow {name:?} has {} error(s) and cannot run; first: {first}",
                    diagnostics.len()
                ),
            ));
        }
    };
    let params = params_list(&body.params)?;
    // Refused here with the workflow's own rules, so a bad param never
    // reaches the engine; the engine checks again with the same function.
    workflow.resolve_params(&params).map_err(|e| {
        let messages: Vec<String> = e.diagnostics.iter().map(|d| d.message.clone()).collect();
        ApiError::invalid("params", messages.join("; "))
    })?;
    let run_id = state.control.trigger(&name, params, actor.clone()).await?;
    tracing::info!(workflow = %name, run = %run_id, %actor, "run triggered");
    let location = format!("/api/v1/runs/{run_id}");
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(RunCreated { run_id })).into_response())
}

/// `params` as `cairn run -p` values: an object becomes `KEY=VALUE` items
/// (strings, numbers and booleans as text), a list is taken as is.
fn params_list(params: &serde_json::Value) -> Result<Vec<String>, ApiError> {
    use serde_json::Value;
    match params {
        Value::Null => Ok(Vec::new()),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let field = format!("params.{k}");
                if k.is_empty() || k.contains('=') {
                    return Err(ApiError::bad_request(field, "a param name is not empty and has no `=`"));
                }
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => {
                        return Err(ApiError::bad_request(field, "expected a string, a number or a boolean"));
                    }
                };
                Ok(format!("{k}={text}"))
            })
            .collect(),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, v)| match v {
                Value::String(s) => Ok(s.clone()),
                _ => Err(ApiError::bad_request(
                    format!("params[{i}]"),
                    "expected a string: KEY=VALUE or a value",
                )),
            })
            .collect(),
        _ => Err(ApiError::bad_request(
            "params",
            "expected an object of NAME: value, or a list of KEY=VALUE / positional strings",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn params_become_cli_values() {
        assert_eq!(params_list(&json!({"A": "x", "N": 3, "B": true})).unwrap(), ["A=x", "B=true", "N=3"]);
        assert_eq!(params_list(&json!(["A=x", "pos"])).unwrap(), ["A=x", "pos"]);
        assert_eq!(params_list(&json!(null)).unwrap(), Vec::<String>::new());
        assert_eq!(params_list(&json!({"A": [1]})).unwrap_err().field.as_deref(), Some("params.A"));
        assert_eq!(params_list(&json!([1])).unwrap_err().field.as_deref(), Some("params[0]"));
        assert_eq!(params_list(&json!("x")).unwrap_err().field.as_deref(), Some("params"));
    }
}
