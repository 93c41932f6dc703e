//! The worker protocol over HTTP: lease tasks from a queue, heartbeat them
//! (one or many per call, carrying progress), complete them (one or many
//! per call), stream their logs. The bodies are `cairn_core::protocol`'s types; this module checks
//! what the types cannot say (ranges, sizes) and hands the rest to
//! [`Control`].
//!
//! Every call after the lease names the attempt's lease token; a stale one
//! changes nothing and is answered 409 `lease_stale` (or, inside a batch
//! heartbeat or a batch completion, an item that says `lease_stale`).
//!
//! And the workers page's list: the workers that called (`crate::presence`)
//! and the holders of leases (the store's RUNNING tasks).

use std::collections::HashMap;

use axum::Extension;
use axum::Json;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use cairn_core::protocol::{
    AckStatus, CompleteAck, CompleteBatchRequest, CompleteBatchResponse, CompleteItem, CompleteRequest,
    CompleteResponse, HeartbeatAck, HeartbeatItem, HeartbeatRequest, HeartbeatResponse, ItemError,
    LEASE_TOKEN_HEADER, LeaseRequest, LeaseResponse, LogStream, MAX_DETAILS_BYTES, TaskHeartbeatRequest,
};
use cairn_core::{LeaseToken, TaskId, TaskStatus};
use cairn_store::{Store, TaskFilter, TaskSearch};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::app::AppState;
use crate::auth::Caller;
use crate::control::Control;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{ApiJson, ApiQuery, body_bytes, parse_id};
use crate::metrics::{HeartbeatResult, record_heartbeats};
use crate::model::{WorkerList, WorkerView};

/// Most tasks one lease call may ask for.
pub(crate) const MAX_LEASE_TASKS: u32 = 1000;
/// Longest a lease call may wait for work, in milliseconds.
pub(crate) const MAX_WAIT_MS: u64 = 60_000;
/// Most items one batch heartbeat may carry.
pub(crate) const MAX_HEARTBEAT_ITEMS: usize = 10_000;
/// Most items one batch completion may carry.
pub(crate) const MAX_COMPLETE_ITEMS: usize = 1000;
/// Longest worker id, queue name or progress message accepted, in bytes.
const MAX_NAME_BYTES: usize = 200;

/// Leases up to `max_tasks` tasks of `queue`, waiting up to `wait_ms` for
/// the first. Each task is RUNNING, with its first heartbeat and lease
/// expiry stored, before the answer is sent. An empty list means no work came.
#[utoipa::path(
    post,
    path = "/api/v1/workers/lease",
    tag = "workers",
    request_body = LeaseRequest,
    responses(
        (status = 200, description = "The leased tasks (possibly none)", body = LeaseResponse),
        (status = 400, description = "A bad body (`bad_request`) or value (`invalid_input`)", body = ErrorBody),
        (status = 503, description = "The engine cannot lease now (code `unavailable`)", body = ErrorBody),
    )
)]
pub(crate) async fn lease<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    caller: Option<Extension<Caller>>,
    ApiJson(req): ApiJson<LeaseRequest>,
) -> Result<Json<LeaseResponse>, ApiError> {
    check_name("worker_id", &req.worker_id)?;
    check_name("queue", &req.queue)?;
    if let Some(Extension(caller)) = caller
        && let Err(refused) = caller.may_lease(&req.queue)
    {
        return Err(crate::auth::audit_denied(&state, &caller, "POST /api/v1/workers/lease", refused).await);
    }
    if !(1..=MAX_LEASE_TASKS).contains(&req.max_tasks) {
        return Err(ApiError::invalid(
            "max_tasks",
            format!("expected 1 to {MAX_LEASE_TASKS}, got {}", req.max_tasks),
        ));
    }
    if req.wait_ms > MAX_WAIT_MS {
        return Err(ApiError::invalid(
            "wait_ms",
            format!("expected at most {MAX_WAIT_MS}, got {}", req.wait_ms),
        ));
    }
    let (worker, queue) = (req.worker_id.clone(), req.queue.clone());
    state.presence.saw(&worker, Some(&queue), state.clock.now());
    let leased = state.control.lease(req).await?;
    if !leased.tasks.is_empty() {
        tracing::debug!(%worker, %queue, tasks = leased.tasks.len(), "tasks leased");
    }
    Ok(Json(leased))
}

/// Extends many leases at once, with each task's progress. Answers one item
/// per request item, in order; a stale token is an item with status
/// `lease_stale`, and the others still apply.
#[utoipa::path(
    post,
    path = "/api/v1/workers/heartbeat",
    tag = "workers",
    request_body = HeartbeatRequest,
    responses(
        (status = 200, description = "One answer per item", body = HeartbeatResponse),
        (status = 400, description = "A bad body (`bad_request`) or value (`invalid_input`, e.g. field `items[3].progress_percent`)", body = ErrorBody),
        (status = 503, description = "The engine cannot serve now (code `unavailable`)", body = ErrorBody),
    )
)]
pub(crate) async fn heartbeat<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    ApiJson(req): ApiJson<HeartbeatRequest>,
) -> Result<Json<HeartbeatResponse>, ApiError> {
    check_name("worker_id", &req.worker_id)?;
    if req.items.len() > MAX_HEARTBEAT_ITEMS {
        return Err(ApiError::invalid(
            "items",
            format!("at most {MAX_HEARTBEAT_ITEMS} items per call, got {}", req.items.len()),
        ));
    }
    for (i, item) in req.items.iter().enumerate() {
        check_item(&format!("items[{i}]."), item)?;
    }
    state.presence.saw(&req.worker_id, None, state.clock.now());
    let answer = state.control.heartbeat(req).await?;
    count_acks(&answer.items);
    Ok(Json(answer))
}

/// One task's heartbeat: the batch item without `task_id`, which is in the
/// path. A stale token is 409 `lease_stale`.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{task_id}/heartbeat",
    tag = "workers",
    params(("task_id" = String, Path, description = "The task's id")),
    request_body = TaskHeartbeatRequest,
    responses(
        (status = 200, description = "The lease is extended", body = HeartbeatAck),
        (status = 400, description = "A bad body (`bad_request`) or value (`invalid_input`)", body = ErrorBody),
        (status = 409, description = "The lease is not held by this token (code `lease_stale`); nothing changed", body = ErrorBody),
        (status = 503, description = "The engine cannot serve now (code `unavailable`)", body = ErrorBody),
    )
)]
pub(crate) async fn task_heartbeat<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    Path(task_id): Path<String>,
    ApiJson(req): ApiJson<TaskHeartbeatRequest>,
) -> Result<Json<HeartbeatAck>, ApiError> {
    let task = parse_id::<TaskId>("task_id", &task_id)?;
    check_name("worker_id", &req.worker_id)?;
    let item = HeartbeatItem {
        task_id: task,
        lease_token: req.lease_token,
        progress_percent: req.progress_percent,
        progress_message: req.progress_message,
        details: req.details,
    };
    check_item("", &item)?;
    state.presence.saw(&req.worker_id, None, state.clock.now());
    let answer =
        state.control.heartbeat(HeartbeatRequest { worker_id: req.worker_id, items: vec![item] }).await?;
    count_acks(&answer.items);
    let ack = answer.items.into_iter().next().ok_or_else(|| {
        ApiError::new(ErrorCode::Internal, "the engine answered a heartbeat without its item")
    })?;
    match ack.status {
        AckStatus::Ok => Ok(Json(ack)),
        AckStatus::LeaseStale => Err(lease_stale(task)),
    }
}

/// Ends the attempt: succeeded, failed or canceled, with its exit code,
/// outputs and error. Repeating it with the same token answers the same.
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{task_id}/complete",
    tag = "workers",
    params(("task_id" = String, Path, description = "The task's id")),
    request_body = CompleteRequest,
    responses(
        (status = 200, description = "The status the task is in now", body = CompleteResponse),
        (status = 400, description = "A bad body (code `bad_request`)", body = ErrorBody),
        (status = 404, description = "No such task (code `not_found`)", body = ErrorBody),
        (status = 409, description = "The lease is not held by this token (code `lease_stale`); nothing changed", body = ErrorBody),
        (status = 503, description = "The engine cannot serve now (code `unavailable`); repeat the call", body = ErrorBody),
    )
)]
pub(crate) async fn complete<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    Path(task_id): Path<String>,
    ApiJson(req): ApiJson<CompleteRequest>,
) -> Result<Json<CompleteResponse>, ApiError> {
    let task = parse_id::<TaskId>("task_id", &task_id)?;
    let outcome = req.outcome;
    let answer = state.control.complete(task, req).await?;
    tracing::debug!(%task, ?outcome, status = %answer.status, "attempt completed");
    Ok(Json(answer))
}

/// Ends many attempts in one call: each item is a single completion with its
/// `task_id`, and all are handed to the engine at once, so the ones of one
/// run share its commits. Answers one item per request item, in order: the
/// task's status, or the error the single completion would have answered
/// (`lease_stale`, …) — an item's error never fails the others. An item
/// repeated in the call is applied once and answered the same each time.
#[utoipa::path(
    post,
    path = "/api/v1/workers/complete",
    tag = "workers",
    request_body = CompleteBatchRequest,
    responses(
        (status = 200, description = "One answer per item, in request order", body = CompleteBatchResponse),
        (status = 400, description = "A bad body (`bad_request`) or value (`invalid_input`, e.g. field `items` for too many); nothing was applied", body = ErrorBody),
        (status = 413, description = "The body is too large (code `payload_too_large`); send fewer items", body = ErrorBody),
    )
)]
pub(crate) async fn complete_batch<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    ApiJson(req): ApiJson<CompleteBatchRequest>,
) -> Result<Json<CompleteBatchResponse>, ApiError> {
    check_name("worker_id", &req.worker_id)?;
    if req.items.len() > MAX_COMPLETE_ITEMS {
        return Err(ApiError::invalid(
            "items",
            format!("at most {MAX_COMPLETE_ITEMS} items per call, got {}", req.items.len()),
        ));
    }
    let (unique, first_of) = dedup_items(req.items);
    let control = &state.control;
    let answers = futures_util::future::join_all(unique.into_iter().map(|item| async move {
        let (task, single) = item.into_request();
        let outcome = single.outcome;
        match control.complete(task, single).await {
            Ok(answer) => {
                tracing::debug!(%task, ?outcome, status = %answer.status, "attempt completed");
                CompleteAck { task_id: task, status: Some(answer.status), error: None }
            }
            Err(e) => {
                let e = ApiError::from(e);
                let error = ItemError { code: e.code.as_str().to_owned(), message: e.message };
                CompleteAck { task_id: task, status: None, error: Some(error) }
            }
        }
    }))
    .await;
    tracing::debug!(worker = %req.worker_id, items = first_of.len(), "batch completion");
    Ok(Json(CompleteBatchResponse { items: first_of.into_iter().map(|i| answers[i].clone()).collect() }))
}

/// The items with a repeated `(task_id, lease_token)` left out (the first is
/// kept), and for each request item the index of its kept one: a repeat is
/// answered as its first, not raced against it.
fn dedup_items(items: Vec<CompleteItem>) -> (Vec<CompleteItem>, Vec<usize>) {
    let mut seen = HashMap::with_capacity(items.len());
    let mut unique = Vec::with_capacity(items.len());
    let mut first_of = Vec::with_capacity(items.len());
    for item in items {
        let next = unique.len();
        let i = *seen.entry((item.task_id, item.lease_token)).or_insert(next);
        if i == next {
            unique.push(item);
        }
        first_of.push(i);
    }
    (unique, first_of)
}

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AppendLogQuery {
    /// `stdout` (default) or `stderr`.
    #[param(value_type = Option<LogStream>)]
    stream: Option<String>,
}

/// Appends the body's bytes to the attempt's log. The lease token goes in
/// the `X-Cairn-Lease-Token` header, since the body is the log itself. Send
/// chunks smaller than the body limit (1 MiB by default).
#[utoipa::path(
    post,
    path = "/api/v1/tasks/{task_id}/logs",
    tag = "workers",
    params(
        ("task_id" = String, Path, description = "The task's id"),
        ("X-Cairn-Lease-Token" = String, Header, description = "The attempt's lease token"),
        AppendLogQuery,
    ),
    request_body(content = String, content_type = "application/octet-stream", description = "Log bytes"),
    responses(
        (status = 204, description = "Appended"),
        (status = 400, description = "A bad id, stream or token header (code `bad_request`)", body = ErrorBody),
        (status = 409, description = "The lease is not held by this token (code `lease_stale`)", body = ErrorBody),
        (status = 413, description = "The chunk is too large (code `payload_too_large`)", body = ErrorBody),
    )
)]
pub(crate) async fn append_log<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    Path(task_id): Path<String>,
    ApiQuery(q): ApiQuery<AppendLogQuery>,
    headers: HeaderMap,
    req: Request,
) -> Result<Response, ApiError> {
    let task = parse_id::<TaskId>("task_id", &task_id)?;
    let stream = match &q.stream {
        None => LogStream::Stdout,
        Some(s) => s.parse::<LogStream>().map_err(|e| ApiError::bad_request("stream", e))?,
    };
    let token = headers
        .get(LEASE_TOKEN_HEADER)
        .ok_or_else(|| ApiError::bad_request(LEASE_TOKEN_HEADER, "the lease token header is missing"))?
        .to_str()
        .map_err(|_| ApiError::bad_request(LEASE_TOKEN_HEADER, "the lease token is not text"))
        .and_then(|t| parse_id::<LeaseToken>(LEASE_TOKEN_HEADER, t.trim()))?;
    let bytes = body_bytes(req, &()).await?;
    if !bytes.is_empty() {
        state.control.append_log(task, token, stream, bytes).await?;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn lease_stale(task: TaskId) -> ApiError {
    ApiError::from(crate::control::ControlError::LeaseStale { task })
}

fn check_name(field: &str, value: &str) -> Result<(), ApiError> {
    if value.trim().is_empty() {
        return Err(ApiError::invalid(field, "must not be empty"));
    }
    if value.len() > MAX_NAME_BYTES {
        return Err(ApiError::invalid(field, format!("at most {MAX_NAME_BYTES} bytes")));
    }
    Ok(())
}

/// What a heartbeat item's types cannot say: the percent's range and the
/// size of `details`. `prefix` is the item's place in the request.
fn check_item(prefix: &str, item: &HeartbeatItem) -> Result<(), ApiError> {
    if let Some(p) = item.progress_percent
        && !(p.is_finite() && (0.0..=100.0).contains(&p))
    {
        return Err(ApiError::invalid(
            format!("{prefix}progress_percent"),
            format!("expected 0 to 100, got {p}"),
        ));
    }
    if let Some(details) = &item.details {
        if !details.is_object() {
            return Err(ApiError::invalid(format!("{prefix}details"), "expected a JSON object"));
        }
        let size = serde_json::to_vec(details).map(|v| v.len()).unwrap_or(usize::MAX);
        if size > MAX_DETAILS_BYTES {
            return Err(ApiError::invalid(
                format!("{prefix}details"),
                format!("{size} bytes serialized; at most {MAX_DETAILS_BYTES}"),
            ));
        }
    }
    Ok(())
}

fn count_acks(acks: &[HeartbeatAck]) {
    let stale = acks.iter().filter(|a| a.status == AckStatus::LeaseStale).count() as u64;
    record_heartbeats(HeartbeatResult::Accepted, acks.len() as u64 - stale);
    record_heartbeats(HeartbeatResult::Rejected, stale);
}

#[cfg(test)]
mod tests {
    use cairn_core::protocol::AttemptEnd;
    use cairn_core::{LeaseToken, TaskId};

    use super::*;

    fn item(task: u8, token: u8, outcome: AttemptEnd) -> CompleteItem {
        CompleteItem {
            task_id: TaskId::from_bytes([task; 16]),
            lease_token: LeaseToken::from_bytes([token; 16]),
            outcome,
            exit_code: None,
            outputs: Default::default(),
            error: None,
        }
    }

    #[test]
    fn a_repeated_item_is_answered_as_its_first() {
        let items = vec![
            item(1, 1, AttemptEnd::Succeeded),
            item(2, 2, AttemptEnd::Failed),
            item(1, 1, AttemptEnd::Failed),
            item(1, 9, AttemptEnd::Succeeded),
            item(2, 2, AttemptEnd::Failed),
        ];
        let (unique, first_of) = dedup_items(items.clone());
        assert_eq!(unique, vec![items[0].clone(), items[1].clone(), items[3].clone()]);
        assert_eq!(first_of, [0, 1, 0, 2, 1]);
        assert_eq!(dedup_items(Vec::new()), (Vec::new(), Vec::new()));
    }
}

/// How far back the workers page looks for workers that called.
const SEEN_WITHIN: std::time::Duration = std::time::Duration::from_secs(10 * 60);
/// Most running tasks read to count the leases of workers.
const MAX_LEASES_READ: usize = 10_000;

/// The workers that called this server in the last ten minutes, and every
/// holder of a lease (remote workers, and this or another server's local
/// executor): their queues, leases held, last call and last heartbeat.
#[utoipa::path(
    get,
    path = "/api/v1/workers",
    tag = "workers",
    responses((status = 200, description = "Workers, the most recently heard from first", body = WorkerList))
)]
pub(crate) async fn list_workers<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
) -> Result<Json<WorkerList>, ApiError> {
    use std::collections::BTreeMap;

    let now = state.clock.now();
    let mut workers: BTreeMap<String, WorkerView> = BTreeMap::new();
    for seen in state.presence.since(now.saturating_sub(SEEN_WITHIN)) {
        let view = WorkerView::named(&seen.worker);
        workers.insert(
            seen.worker.clone(),
            WorkerView {
                last_seen_at: Some(seen.last_seen),
                queues: seen.queues.into_iter().collect(),
                ..view
            },
        );
    }
    let mut search = TaskSearch {
        filter: TaskFilter { statuses: vec![TaskStatus::Running], ..TaskFilter::default() },
        limit: 1000,
        ..TaskSearch::default()
    };
    let mut read = 0;
    loop {
        let page = state.store.search_tasks(search.clone()).await?;
        read += page.tasks.len();
        for row in &page.tasks {
            let Some(lease) = &row.task.lease else { continue };
            let w = workers.entry(lease.worker.clone()).or_insert_with(|| WorkerView::named(&lease.worker));
            w.leases += 1;
            w.last_heartbeat_at = w.last_heartbeat_at.max(Some(lease.last_heartbeat_at));
            match &row.task.queue {
                Some(q) if !w.queues.contains(q) => w.queues.push(q.clone()),
                Some(_) => {}
                None => w.local = true,
            }
        }
        match page.next {
            Some(next) if read < MAX_LEASES_READ => search.cursor = Some(next),
            more => {
                let capped = more.is_some();
                let mut list: Vec<WorkerView> = workers.into_values().collect();
                for w in &mut list {
                    w.queues.sort();
                }
                list.sort_by(|a, b| {
                    b.last_activity().cmp(&a.last_activity()).then_with(|| a.worker_id.cmp(&b.worker_id))
                });
                return Ok(Json(WorkerList { workers: list, leases_capped: capped }));
            }
        }
    }
}
