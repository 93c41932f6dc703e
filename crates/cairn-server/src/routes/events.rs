//! Live events over a WebSocket: task transitions, progress and run
//! transitions as JSON text messages, optionally only those of one run or one
//! workflow; for a token scoped to workflows, only those of its workflows.
//!
//! Each connection has its own subscription (a `broadcast` receiver). The
//! engine never waits for a subscriber: one that reads too slowly loses the
//! oldest events and is sent `{"kind":"lagged","missed":N}` in their place,
//! after which it should reload what it shows from the API.
//!
//! Subscriptions are bounded per caller and per server
//! ([`crate::limits::Limits::subscribe`]): a caller over its share is
//! refused with 429, a full server with 503, both before the upgrade.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use cairn_core::RunId;
use cairn_core::auth::WorkflowScope;
use cairn_core::event::Event;
use cairn_store::Store;
use serde::Deserialize;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;
use utoipa::IntoParams;

use crate::app::AppState;
use crate::auth::Caller;
use crate::control::Control;
use crate::error::{ApiError, ErrorBody, ErrorCode};
use crate::extract::{ApiQuery, parse_id};
use crate::limits::{CallerKey, Limits, SubscriberPermit};

#[derive(Debug, Default, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct EventQuery {
    /// Only events of this run.
    #[param(value_type = Option<RunId>)]
    run: Option<String>,
    /// Only events of runs of this workflow.
    workflow: Option<String>,
}

/// Which events a connection wants, and may see.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    run: Option<RunId>,
    workflow: Option<String>,
    /// The workflows of a scoped token: nothing of the others.
    scope: Option<WorkflowScope>,
}

impl Filter {
    /// `lagged` always passes: the subscriber must know it missed something.
    pub(crate) fn matches(&self, event: &Event) -> bool {
        if matches!(event, Event::Lagged { .. }) {
            return true;
        }
        self.run.is_none_or(|run| event.run_id() == Some(run))
            && self.workflow.as_deref().is_none_or(|w| event.workflow() == Some(w))
            && self.scope.as_ref().is_none_or(|s| event.workflow().is_some_and(|w| s.matches(w)))
    }
}

/// A WebSocket of live events (JSON text messages, each an `Event`), from
/// the moment of connection. Filters: `run` and `workflow` (both must match
/// when both are given).
#[utoipa::path(
    get,
    path = "/api/v1/events",
    tag = "events",
    params(EventQuery),
    responses(
        (status = 101, description = "Switching to the WebSocket protocol; then one `Event` per text message", body = cairn_core::event::Event),
        (status = 400, description = "Not a WebSocket request, or a bad filter (code `bad_request`)", body = ErrorBody),
        (status = 429, description = "The caller holds as many subscriptions as it may (code `rate_limited`, with `Retry-After`)", body = ErrorBody),
        (status = 503, description = "The server serves as many subscriptions as it takes (code `unavailable`, with `Retry-After`)", body = ErrorBody),
    )
)]
pub(crate) async fn events<S: Store, C: Control>(
    State(state): State<AppState<S, C>>,
    Extension(limits): Extension<Arc<Limits>>,
    caller: CallerKey,
    token: Option<Extension<Caller>>,
    ApiQuery(q): ApiQuery<EventQuery>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let workflow = q.workflow.filter(|w| !w.is_empty());
    let scope = token.and_then(|Extension(t)| Some((t.name, t.workflows?)));
    if let (Some((name, scope)), Some(w)) = (&scope, &workflow)
        && !scope.matches(w)
    {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            format!("token {name} is scoped to the workflows {scope}, not {w}"),
        )
        .field("workflow"));
    }
    let filter = Filter {
        run: q.run.as_deref().map(|r| parse_id::<RunId>("run", r)).transpose()?,
        workflow,
        scope: scope.map(|(_, s)| s),
    };
    let upgrade = upgrade.map_err(|e| {
        ApiError::bad_request("", format!("expected a WebSocket upgrade request: {}", e.body_text()))
    })?;
    // Refused before the upgrade, so the client sees an HTTP status and why.
    let permit = match limits.subscribe(caller) {
        Ok(permit) => permit,
        Err(refused) => return Ok(refused.into_response()),
    };
    // Subscribed before the handshake completes, so nothing between the
    // answer and the first read is lost.
    let events = state.control.subscribe();
    Ok(upgrade.on_upgrade(move |socket| stream(socket, events, filter, permit)))
}

/// Sends the events `filter` passes until either side closes; `_permit`
/// holds the subscription's place until then.
async fn stream(
    mut socket: WebSocket,
    mut events: broadcast::Receiver<Event>,
    filter: Filter,
    _permit: SubscriberPermit,
) {
    tracing::debug!(?filter, "event subscriber connected");
    loop {
        tokio::select! {
            received = events.recv() => {
                let event = match received {
                    Ok(event) if filter.matches(&event) => event,
                    Ok(_) => continue,
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "event subscriber lagged");
                        Event::Lagged { missed }
                    }
                    Err(RecvError::Closed) => {
                        let _ = socket.send(Message::Close(None)).await;
                        break;
                    }
                };
                let text = match serde_json::to_string(&event) {
                    Ok(text) => text,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot serialize an event");
                        continue;
                    }
                };
                if socket.send(Message::Text(Utf8Bytes::from(text))).await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                // Pings are answered by the socket itself; text from the
                // client means nothing here.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    tracing::debug!("event subscriber gone");
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::event::RunEvent;
    use cairn_core::record::Actor;
    use cairn_core::{RunStatus, Timestamp};

    fn run_event(run: RunId, workflow: &str) -> Event {
        Event::Run(RunEvent {
            run_id: run,
            workflow: workflow.into(),
            from: None,
            to: RunStatus::Queued,
            at: Timestamp::from_micros(0),
            reason: "submitted".into(),
            actor: Actor::Scheduler,
        })
    }

    #[test]
    fn filters_by_run_and_workflow() {
        let (a, b) = (RunId::new(Timestamp::from_micros(1)), RunId::new(Timestamp::from_micros(2)));
        let all = Filter::default();
        let only_a = Filter { run: Some(a), ..Filter::default() };
        let etl = Filter { workflow: Some("etl".into()), ..Filter::default() };
        let both = Filter { run: Some(a), workflow: Some("other".into()), ..Filter::default() };
        let scoped = Filter { scope: Some(WorkflowScope::parse("etl-*").unwrap()), ..Filter::default() };
        assert!(scoped.matches(&run_event(a, "etl-daily")) && !scoped.matches(&run_event(a, "ml")));
        assert!(scoped.matches(&Event::Lagged { missed: 1 }));
        assert!(all.matches(&run_event(b, "x")));
        assert!(only_a.matches(&run_event(a, "x")) && !only_a.matches(&run_event(b, "x")));
        assert!(etl.matches(&run_event(b, "etl")) && !etl.matches(&run_event(b, "x")));
        assert!(!both.matches(&run_event(a, "etl")));
        assert!(both.matches(&Event::Lagged { missed: 1 }));
    }
}
