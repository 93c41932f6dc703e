//! What can go wrong talking to a Cairn server, classified by what the caller
//! should do about it: retry, give up, or drop a task that is no longer ours.
//!
//! The classification is pure ([`classify_response`]) so it is tested from
//! status codes and bodies alone, without a server.

use std::fmt;
use std::time::Duration;

use cairn_core::protocol::ItemError;
use serde::Deserialize;

/// The error code a server answers with (HTTP 409) when a lease token is no
/// longer the task's current one: the lease expired and was reaped, or the
/// task already ended under another token.
pub const LEASE_STALE: &str = "lease_stale";

/// Longest piece of a non-JSON error body kept in an error message.
const MAX_BODY_IN_MESSAGE: usize = 512;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ClientError {
    /// The lease token is stale (HTTP 409, code `lease_stale`): the task was
    /// reaped or has ended, and belongs to someone else now. Never retry; the
    /// server changed nothing.
    #[error("lease is stale: {message}")]
    LeaseStale { message: String },

    /// HTTP 404: no such run, task or workflow (or no such route).
    #[error("not found ({code}): {message}")]
    NotFound { code: String, message: String },

    /// Any other 4xx: the request itself is wrong (bad input, forbidden, a
    /// conflict other than a stale lease). Retrying the same request cannot help.
    #[error("rejected by the server (HTTP {status}, {code}): {message}{}", field_suffix(.field))]
    Rejected { status: u16, code: String, message: String, field: Option<String> },

    /// Worth retrying: the server could not be reached, did not answer in
    /// time, failed (5xx), or asked the client to slow down (429, 503).
    #[error("{kind}: {message}")]
    Transient {
        kind: TransientKind,
        /// The HTTP status, when the server answered at all.
        status: Option<u16>,
        message: String,
        /// The server's `Retry-After`, when it sent one.
        retry_after: Option<Duration>,
    },

    /// The server answered success with a body this client cannot read: a
    /// version mismatch or a server bug. The request *was* applied.
    #[error("could not read the server's answer (HTTP {status}): {message}")]
    Decode { status: u16, message: String },

    /// The request could not be built (a bad base URL, a header that is not
    /// valid HTTP). Nothing was sent.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
}

fn field_suffix(field: &Option<String>) -> String {
    field.as_ref().map(|f| format!(" (field `{f}`)")).unwrap_or_default()
}

/// Why a transient error happened; it decides [`ClientError::certainly_not_applied`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransientKind {
    /// No connection could be made: the request was never sent.
    Connect,
    /// The request was sent (or partly sent) but no full answer came in time.
    Timeout,
    /// The connection broke while sending or receiving.
    Io,
    /// The server answered 5xx (other than 503).
    Server,
    /// The server asked us to back off: 429 or 503.
    Unavailable,
}

impl fmt::Display for TransientKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TransientKind::Connect => "could not connect to the server",
            TransientKind::Timeout => "the server did not answer in time",
            TransientKind::Io => "the connection to the server broke",
            TransientKind::Server => "the server failed",
            TransientKind::Unavailable => "the server is unavailable",
        })
    }
}

impl ClientError {
    /// Whether sending the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, ClientError::Transient { .. })
    }

    /// True when the request certainly had no effect on the server, so even a
    /// non-idempotent request may be sent again without risk of applying twice:
    /// it was never sent (a connect failure), or the server refused it with a
    /// 4xx, which by the API's contract changes nothing.
    ///
    /// False when the server may have applied it: a timeout or broken
    /// connection after the request left, a 5xx (the change may have committed
    /// before the failure), or an unreadable success. Callers then rely on the
    /// operation being idempotent — completing a task twice with the same lease
    /// token is, by the worker protocol.
    pub fn certainly_not_applied(&self) -> bool {
        match self {
            // A 429 is refused before anything runs (the server's rate limit).
            ClientError::Transient { .. } if self.is_rate_limited() => true,
            ClientError::Transient { kind, .. } => *kind == TransientKind::Connect,
            ClientError::LeaseStale { .. }
            | ClientError::NotFound { .. }
            | ClientError::Rejected { .. }
            | ClientError::InvalidRequest(_) => true,
            ClientError::Decode { .. } => false,
        }
    }

    /// The HTTP status of the server's answer, if there was one.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::LeaseStale { .. } => Some(409),
            ClientError::NotFound { .. } => Some(404),
            ClientError::Rejected { status, .. } | ClientError::Decode { status, .. } => Some(*status),
            ClientError::Transient { status, .. } => *status,
            ClientError::InvalidRequest(_) => None,
        }
    }

    /// Whether the server refused the request for the caller's rate (HTTP
    /// 429): nothing was done, and the same request may be sent again once
    /// [`ClientError::retry_after`] has passed.
    pub fn is_rate_limited(&self) -> bool {
        matches!(self, ClientError::Transient { status: Some(429), .. })
    }

    /// How long the server asked us to wait before retrying, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ClientError::Transient { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Classifies a transport error from reqwest (no HTTP answer, or a broken one).
    pub(crate) fn from_reqwest(e: &reqwest::Error) -> ClientError {
        // Neither the URL's query nor the body carry tokens (the log route
        // takes it in a header), so reqwest's message is safe to keep.
        let message = error_chain(e);
        // A connect timeout is both `is_connect` and `is_timeout`: test connect
        // first, since a request that never connected was certainly not applied.
        let kind = if e.is_builder() {
            return ClientError::InvalidRequest(message);
        } else if e.is_connect() {
            TransientKind::Connect
        } else if e.is_timeout() {
            TransientKind::Timeout
        } else {
            TransientKind::Io
        };
        ClientError::Transient { kind, status: e.status().map(|s| s.as_u16()), message, retry_after: None }
    }
}

/// An error's message followed by its sources, `a: b: c`, skipping a source
/// whose text its parent already contains (reqwest repeats itself).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// The server's error body: `{"code": "...", "message": "...", "field": "..."}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ApiErrorBody {
    pub code: String,
    pub message: String,
    #[serde(default)]
    pub field: Option<String>,
}

/// Classifies a non-success HTTP answer from its status, body and
/// `Retry-After`. Bodies that are not the API's JSON error (a proxy's HTML
/// page, an empty body) still classify by status.
pub fn classify_response(status: u16, body: &[u8], retry_after: Option<Duration>) -> ClientError {
    let parsed: Option<ApiErrorBody> = serde_json::from_slice(body).ok();
    let (code, message, field) = match parsed {
        Some(b) => (b.code, b.message, b.field),
        None => (format!("http_{status}"), body_text(body, status), None),
    };
    match status {
        409 if code == LEASE_STALE => ClientError::LeaseStale { message },
        404 => ClientError::NotFound { code, message },
        // 408 Request Timeout: the server gave up waiting for our request.
        408 => ClientError::Transient {
            kind: TransientKind::Timeout,
            status: Some(status),
            message,
            retry_after,
        },
        429 | 503 => ClientError::Transient {
            kind: TransientKind::Unavailable,
            status: Some(status),
            message,
            retry_after,
        },
        400..=499 => ClientError::Rejected { status, code, message, field },
        500..=599 => {
            ClientError::Transient { kind: TransientKind::Server, status: Some(status), message, retry_after }
        }
        // 1xx/3xx reaching here mean a redirect we did not follow or a broken
        // proxy; retrying will not change that.
        _ => ClientError::Rejected { status, code, message, field },
    }
}

/// Classifies one item's error in a batch answer (`{"code", "message"}` of
/// a [`CompleteAck`](cairn_core::protocol::CompleteAck)) as the single call
/// would have been classified: `lease_stale` is [`ClientError::LeaseStale`],
/// `unavailable` and `internal` are transient (retry the item), not-found
/// codes are [`ClientError::NotFound`], and other refusals are
/// [`ClientError::Rejected`]. `status` in the result is the HTTP status the
/// single call would have had. A code this client does not know counts as a
/// server failure: retrying an idempotent item is safe.
pub fn classify_item_error(error: &ItemError) -> ClientError {
    let status = match error.code.as_str() {
        LEASE_STALE | "conflict" => 409,
        "bad_request" | "invalid_input" => 400,
        "payload_too_large" => 413,
        "unsupported_media_type" => 415,
        "workflow_invalid" => 422,
        "unavailable" => 503,
        "rate_limited" => 429,
        code if code == "not_found" || code.ends_with("_not_found") => 404,
        _ => 500,
    };
    let body = serde_json::json!({ "code": error.code, "message": error.message }).to_string();
    classify_response(status, body.as_bytes(), None)
}

fn body_text(body: &[u8], status: u16) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return format!("HTTP {status} with no body");
    }
    let mut end = text.len().min(MAX_BODY_IN_MESSAGE);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() { format!("{}…", &text[..end]) } else { text.to_owned() }
}

/// Reads a `Retry-After` header given in seconds. (The HTTP-date form is not
/// used by Cairn's server; it is ignored rather than guessed at.)
pub(crate) fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(code: &str, message: &str) -> Vec<u8> {
        serde_json::json!({ "code": code, "message": message }).to_string().into_bytes()
    }

    #[test]
    fn stale_lease_is_its_own_kind_and_never_retried() {
        let e = classify_response(409, &json("lease_stale", "lease of task X is stale"), None);
        assert_eq!(e, ClientError::LeaseStale { message: "lease of task X is stale".into() });
        assert!(!e.is_retryable());
        assert!(e.certainly_not_applied(), "a stale token changes nothing");
        assert_eq!(e.status(), Some(409));
    }

    #[test]
    fn other_conflicts_are_rejections() {
        let e = classify_response(409, &json("run_finished", "the run has ended"), None);
        assert!(matches!(e, ClientError::Rejected { status: 409, ref code, .. } if code == "run_finished"));
        assert!(!e.is_retryable());
    }

    #[test]
    fn client_errors_keep_code_message_and_field() {
        let body = br#"{"code":"invalid","message":"max_tasks must be at least 1","field":"max_tasks"}"#;
        let e = classify_response(400, body, None);
        assert_eq!(
            e,
            ClientError::Rejected {
                status: 400,
                code: "invalid".into(),
                message: "max_tasks must be at least 1".into(),
                field: Some("max_tasks".into()),
            }
        );
        assert!(e.to_string().contains("field `max_tasks`"), "{e}");
        assert!(!e.is_retryable());
        assert!(classify_response(403, &json("forbidden", "no"), None).status() == Some(403));
    }

    #[test]
    fn not_found_is_its_own_kind() {
        let e = classify_response(404, &json("run_not_found", "no run 01J"), None);
        assert!(matches!(e, ClientError::NotFound { ref code, .. } if code == "run_not_found"));
        assert!(!e.is_retryable());
    }

    #[test]
    fn server_failures_and_throttling_are_retryable_but_maybe_applied() {
        for status in [500, 502, 504] {
            let e = classify_response(status, b"<html>bad gateway</html>", None);
            assert!(matches!(e, ClientError::Transient { kind: TransientKind::Server, .. }), "{status}");
            assert!(e.is_retryable());
            assert!(!e.certainly_not_applied(), "a 5xx may come after a commit");
        }
        for status in [429, 503] {
            let e = classify_response(status, &json("overloaded", "slow down"), Some(Duration::from_secs(2)));
            assert!(matches!(e, ClientError::Transient { kind: TransientKind::Unavailable, .. }));
            assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        }
        assert!(classify_response(408, b"", None).is_retryable());
    }

    #[test]
    fn bodies_that_are_not_api_errors_still_classify() {
        let e = classify_response(400, b"", None);
        assert!(matches!(e, ClientError::Rejected { ref code, ref message, .. }
            if code == "http_400" && message == "HTTP 400 with no body"));
        // A 409 without the stale code is not taken for a stale lease.
        assert!(matches!(classify_response(409, b"conflict", None), ClientError::Rejected { .. }));
        let long = "x".repeat(5000);
        let e = classify_response(502, long.as_bytes(), None);
        assert!(e.to_string().len() < 700);
    }

    #[test]
    fn only_connect_failures_are_certainly_not_applied_among_transients() {
        let t =
            |kind| ClientError::Transient { kind, status: None, message: String::new(), retry_after: None };
        assert!(t(TransientKind::Connect).certainly_not_applied());
        for kind in
            [TransientKind::Timeout, TransientKind::Io, TransientKind::Server, TransientKind::Unavailable]
        {
            assert!(!t(kind).certainly_not_applied(), "{kind:?}");
            assert!(t(kind).is_retryable());
        }
        let decode = ClientError::Decode { status: 200, message: "eof".into() };
        assert!(!decode.is_retryable() && !decode.certainly_not_applied());
    }

    #[test]
    fn batch_item_errors_classify_as_the_single_call_would() {
        let item = |code: &str| classify_item_error(&ItemError { code: code.into(), message: "why".into() });
        assert_eq!(item("lease_stale"), ClientError::LeaseStale { message: "why".into() });
        for code in ["unavailable", "internal", "something_new"] {
            let e = item(code);
            assert!(e.is_retryable() && !e.certainly_not_applied(), "{code}: {e:?}");
        }
        assert!(matches!(
            item("unavailable"),
            ClientError::Transient { kind: TransientKind::Unavailable, .. }
        ));
        assert!(
            matches!(item("task_not_found"), ClientError::NotFound { ref code, .. } if code == "task_not_found")
        );
        assert!(matches!(item("not_found"), ClientError::NotFound { .. }));
        for (code, status) in [("conflict", 409), ("invalid_input", 400), ("bad_request", 400)] {
            let e = item(code);
            assert!(matches!(e, ClientError::Rejected { status: s, .. } if s == status), "{code}: {e:?}");
            assert!(!e.is_retryable());
        }
    }

    #[test]
    fn retry_after_in_seconds() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
