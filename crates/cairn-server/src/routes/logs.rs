//! An attempt's stdout or stderr: read whole, or followed — new bytes sent
//! as they are written, until the attempt ends.
//!
//! Logs are files under the server's log root
//! (`cairn_engine::attempt_log_paths`); the local executor writes them, and
//! remote workers' streamed logs are appended to them by the engine. A
//! follower polls the file for growth and the store for the attempt's end
//! (a file watcher would save little at these rates and is not portable).

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use cairn_core::protocol::LogStream;
use cairn_core::{RunId, TaskId, TaskStatus};
use cairn_engine::attempt_log_paths;
use cairn_store::Store;
use serde::Deserialize;
use tokio::fs::File;
use tokio::io::AsyncReadExt;
use utoipa::IntoParams;

use crate::app::AppState;
use crate::control::Control;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{ApiQuery, parse_bool, parse_id, parse_number};
use crate::routes::runs::run_not_found;

/// The header naming the attempt a log belongs to (useful when the request
/// left `attempt` to its default, the latest).
pub(crate) const ATTEMPT_HEADER: &str = "x-cairn-attempt";

/// How many polls of the file between two looks at the attempt's status.
const POLLS_PER_STATUS_CHECK: u32 = 5;

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct LogQuery {
    /// The attempt, 1-based; default the latest.
    #[param(value_type = Option<u32>, minimum = 1)]
    attempt: Option<String>,
    /// `stdout` (default) or `stderr`.
    #[param(value_type = Option<LogStream>)]
    stream: Option<String>,
    /// `true`: keep the response open and send new bytes until the attempt ends.
    #[param(value_type = Option<bool>)]
    follow: Option<String>,
}

/// One attempt's log as text. With `follow=true` the body streams (chunked)
/// new bytes as they are written and ends when the attempt does; for an
/// attempt that has ended it is the whole file either way.
#[utoipa::path(
    get,
    path = "/api/v1/runs/{run_id}/logs/{step}",
    tag = "logs",
    params(
        ("run_id" = String, Path, description = "The run's id"),
        ("step" = String, Path, description = "The step's name"),
        LogQuery,
    ),
    responses(
        (status = 200, description = "The log's bytes (empty when the attempt wrote nothing)",
         content_type = "text/plain", body = String,
         headers(("x-cairn-attempt" = u32, description = "The attempt this log belongs to"))),
        (status = 400, description = "A bad id or parameter (code `bad_request`)", body = ErrorBody),
        (status = 404, description = "No such run (`run_not_found`), step (`step_not_found`) or attempt (`log_not_found`)", body = ErrorBody),
    )
)]
pub(crate) async fn read_log<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    Path((run_id, step)): Path<(String, String)>,
    ApiQuery(q): ApiQuery<LogQuery>,
) -> Result<Response, ApiError> {
    let run = parse_id::<RunId>("run_id", &run_id)?;
    let stream = match &q.stream {
        None => LogStream::Stdout,
        Some(s) => s.parse::<LogStream>().map_err(|e| ApiError::bad_request("stream", e))?,
    };
    let follow = q.follow.as_deref().map(|f| parse_bool("follow", f)).transpose()?.unwrap_or(false);
    let wanted = q.attempt.as_deref().map(|a| parse_number("attempt", a, 1..=u32::MAX)).transpose()?;

    let detail = state.store.run_detail(run).await?.ok_or_else(|| run_not_found(run))?;
    let task = detail.tasks.iter().find(|t| t.name == step).ok_or_else(|| {
        ApiError::new(ErrorCode::StepNotFound, format!("run {run} has no step {step:?}")).field("step")
    })?;
    let attempt = wanted.unwrap_or(task.attempt);
    if task.attempt == 0 {
        return Err(ApiError::new(ErrorCode::LogNotFound, format!("step {step:?} has not started yet")));
    }
    if attempt > task.attempt {
        return Err(ApiError::new(
            ErrorCode::LogNotFound,
            format!("step {step:?} has had {} attempt(s), not {attempt}", task.attempt),
        )
        .field("attempt"));
    }

    let (stdout, stderr) =
        attempt_log_paths(&state.config.log_root, run, task.index as usize, &task.name, attempt);
    let path = match stream {
        LogStream::Stdout => stdout,
        LogStream::Stderr => stderr,
    };
    let running = task.status == TaskStatus::Running && task.attempt == attempt;
    let body = if follow && running {
        let follower = Follower {
            store: state.store.clone(),
            task: task.id,
            attempt,
            path,
            file: None,
            ended: false,
            poll: state.config.log_poll_interval,
            polls: 0,
        };
        Body::from_stream(futures_util::stream::unfold(follower, |mut f| async move {
            f.next_chunk().await.map(|chunk| (chunk, f))
        }))
    } else {
        match File::open(&path).await {
            Ok(file) => Body::from_stream(tokio_util::io::ReaderStream::new(file)),
            // The attempt has not written to this stream (yet).
            Err(e) if e.kind() == io::ErrorKind::NotFound => Body::empty(),
            Err(e) => {
                return Err(ApiError::new(
                    ErrorCode::Internal,
                    format!("cannot read {}: {e}", path.display()),
                ));
            }
        }
    };
    let mut response = ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response();
    response.headers_mut().insert(ATTEMPT_HEADER, HeaderValue::from(attempt));
    Ok(response)
}

/// A followed log: reads what the file has, then waits for more until the
/// attempt has ended and the file is drained.
struct Follower<S> {
    store: Arc<S>,
    task: TaskId,
    attempt: u32,
    path: PathBuf,
    file: Option<File>,
    /// The attempt has ended: what remains in the file is the last of it.
    ended: bool,
    poll: Duration,
    polls: u32,
}

impl<S: Store> Follower<S> {
    async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        loop {
            if self.file.is_none() {
                match File::open(&self.path).await {
                    Ok(file) => self.file = Some(file),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Some(Err(e)),
                }
            }
            if let Some(file) = &mut self.file {
                let mut buf = vec![0; 64 * 1024];
                match file.read(&mut buf).await {
                    Ok(0) => {}
                    Ok(n) => {
                        buf.truncate(n);
                        return Some(Ok(Bytes::from(buf)));
                    }
                    Err(e) => return Some(Err(e)),
                }
            }
            if self.ended {
                return None;
            }
            if self.polls.is_multiple_of(POLLS_PER_STATUS_CHECK) {
                match self.store.task(self.task).await {
                    Ok(Some(d)) if d.task.status == TaskStatus::Running && d.task.attempt == self.attempt => {
                    }
                    // Ended (or gone): one more read drains what was written last.
                    Ok(_) => {
                        self.ended = true;
                        continue;
                    }
                    Err(e) => return Some(Err(io::Error::other(e))),
                }
            }
            self.polls = self.polls.wrapping_add(1);
            tokio::time::sleep(self.poll).await;
        }
    }
}
