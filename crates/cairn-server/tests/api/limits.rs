//! The limits on what one caller may ask (`cairn_server::limits`), and the
//! answers to oversize and malformed input, through the real router on a
//! real SQLite store. Time for the rate limits comes from a manual clock:
//! the buckets refill only when a test advances it.

use std::io::{Read, Write};
use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use cairn_core::auth::Role;
use cairn_server::conformance::token;
use cairn_server::{AuthMode, ServerConfig};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::*;

const NOW: Timestamp = Timestamp::from_micros(1_800_000_000_000_000);

/// The harness with `config` changed by `f`, on a manual clock at [`NOW`].
async fn configured(
    f: impl FnOnce(ServerConfig) -> ServerConfig,
) -> (Harness<SqliteStore, Stub>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(NOW));
    let c = clock.clone();
    let h = harness().await.rebuild(move |mut state| {
        state.config = Arc::new(f((*state.config).clone()));
        router(state.with_clock(c))
    });
    (h, clock)
}

fn retry_after(a: &cairn_server::conformance::Answer) -> Option<u64> {
    a.headers.get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

/// A token's N+1th request in a burst is refused with 429, `rate_limited`
/// and `Retry-After`, while another token still passes; once the clock has
/// moved on, the first passes again. The worker protocol has its own budget.
#[tokio::test]
async fn a_token_over_its_rate_gets_429_while_another_passes() {
    // 1 a second, bursts of 2.
    let (h, clock) =
        configured(|c| ServerConfig { auth: AuthMode::Tokens, rate_limit_api: 1, rate_limit_worker: 2, ..c })
            .await;
    let alice = token(h.store.as_ref(), "alice", Role::Viewer, &[], None, None).await;
    let bob = token(h.store.as_ref(), "bob", Role::Viewer, &[], None, None).await;
    let worker = token(h.store.as_ref(), "edge", Role::Worker, &["q"], None, None).await;

    for _ in 0..2 {
        let a = h.call("get", "/api/v1/runs", Some(&alice)).await;
        assert_eq!(a.status, StatusCode::OK, "{}", a.text());
    }
    let refused = h.call("get", "/api/v1/runs", Some(&alice)).await;
    refused.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", None);
    assert_eq!(retry_after(&refused), Some(1));
    let message = refused.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("token alice") && message.contains("faster than 1 a second"), "{message}");
    // Another token, on the same route: its own bucket.
    assert_eq!(h.call("get", "/api/v1/runs", Some(&bob)).await.status, StatusCode::OK);

    // The worker protocol draws from its own budget: 4 in a burst, then 429.
    // (The stub engine answers 503 to what passes.)
    let lease = json!({"worker_id": "w", "queue": "q"});
    for _ in 0..4 {
        let a = h.call_json("post", "/api/v1/workers/lease", &worker, lease.clone()).await;
        assert_eq!(a.status, StatusCode::SERVICE_UNAVAILABLE, "{}", a.text());
    }
    let refused = h.call_json("post", "/api/v1/workers/lease", &worker, lease.clone()).await;
    refused.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", None);
    assert!(refused.json()["message"].as_str().unwrap().contains("worker protocol"));

    // A second later, one more request of alice's fits.
    clock.advance(Duration::from_secs(1));
    assert_eq!(h.call("get", "/api/v1/runs", Some(&alice)).await.status, StatusCode::OK);
    assert_eq!(h.call("get", "/api/v1/runs", Some(&alice)).await.status, StatusCode::TOO_MANY_REQUESTS);

    // Counted by surface.
    let metrics = h.call("get", "/metrics", Some(&bob)).await.text();
    for surface in ["api", "worker"] {
        let line = format!("cairn_rate_limited_total{{surface=\"{surface}\"}}");
        assert!(metrics.contains(&line), "{line} missing from\n{metrics}");
    }
}

/// Without tokens, each client address has its own bucket.
#[tokio::test]
async fn without_tokens_each_address_has_its_own_bucket() {
    let (h, _clock) = configured(|c| ServerConfig { rate_limit_api: 1, ..c }).await;
    let from = |ip: [u8; 4]| {
        Request::get("/api/v1/runs")
            .extension(ConnectInfo(SocketAddr::from((ip, 40_000))))
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..2 {
        assert_eq!(h.send(from([10, 0, 0, 1])).await.status, StatusCode::OK);
    }
    let refused = h.send(from([10, 0, 0, 1])).await;
    refused.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", None);
    assert!(refused.text().contains("address 10.0.0.1"), "{}", refused.text());
    assert_eq!(h.send(from([10, 0, 0, 2])).await.status, StatusCode::OK);
}

/// A rate of 0 is no limit.
#[tokio::test]
async fn a_rate_of_zero_is_no_limit() {
    let (h, _clock) = configured(|c| ServerConfig { rate_limit_api: 0, ..c }).await;
    for _ in 0..300 {
        assert_eq!(h.get("/api/v1/health").await.status, StatusCode::OK);
    }
}

/// A WebSocket request of `token` for live events.
fn subscription(addr: SocketAddr, token: &str) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut request = format!("ws://{addr}/api/v1/events").into_client_request().unwrap();
    request.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// The HTTP status a refused WebSocket handshake was answered with.
fn refused_status(e: tokio_tungstenite::tungstenite::Error) -> (u16, Option<String>, Value) {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            let body =
                response.body().as_deref().map(|b| serde_json::from_slice(b).unwrap()).unwrap_or_default();
            (response.status().as_u16(), retry, body)
        }
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

/// Subscriptions beyond a token's share are refused with 429 before the
/// upgrade; beyond the server's, with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_subscriptions_are_bounded_per_token_and_per_server() {
    let (h, _clock) = configured(|c| ServerConfig {
        auth: AuthMode::Tokens,
        max_subscribers: 2,
        max_subscribers_per_token: 1,
        ..c
    })
    .await;
    let alice = token(h.store.as_ref(), "alice", Role::Viewer, &[], None, None).await;
    let bob = token(h.store.as_ref(), "bob", Role::Viewer, &[], None, None).await;
    let carol = token(h.store.as_ref(), "carol", Role::Viewer, &[], None, None).await;
    let addr = h.serve().await;

    let (_alice_ws, _) = tokio_tungstenite::connect_async(subscription(addr, &alice)).await.unwrap();
    let (status, retry, body) =
        refused_status(tokio_tungstenite::connect_async(subscription(addr, &alice)).await.unwrap_err());
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")), "{body}");
    assert!(retry.is_some());
    assert!(body["message"].as_str().unwrap().contains("--max-subscribers-per-token"), "{body}");

    let (_bob_ws, _) = tokio_tungstenite::connect_async(subscription(addr, &bob)).await.unwrap();
    let (status, retry, body) =
        refused_status(tokio_tungstenite::connect_async(subscription(addr, &carol)).await.unwrap_err());
    assert_eq!((status, body["code"].as_str()), (503, Some("unavailable")), "{body}");
    assert!(retry.is_some());
    assert!(body["message"].as_str().unwrap().contains("--max-subscribers"), "{body}");
}

/// Oversize and malformed input is a 4xx that says what was wrong, and
/// nothing stored is harmed by a barrage of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversize_and_malformed_input_is_refused_and_harms_nothing() {
    // On a manual clock, so the run's durations read back the same.
    let h = harness_at(NOW).await;
    let (run, tasks) = stored_run(&h, "etl", 2, t(0)).await;
    let before = h.get(&format!("/api/v1/runs/{run}")).await;
    assert_eq!(before.status, StatusCode::OK);
    let lease_token = LeaseToken::random();

    // Too large: 413, naming the limit (1 MiB by default).
    let big = vec![b' '; 1024 * 1024 + 1];
    let a = h.post_raw(&format!("/api/v1/runs/{run}/retry"), "application/json", big.clone()).await;
    a.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None);
    assert!(a.json()["message"].as_str().unwrap().contains("1 MiB"), "{}", a.text());
    // A worker's log chunk over the limit, too.
    let log = Request::post(format!("/api/v1/tasks/{}/logs", tasks[0]))
        .header("X-Cairn-Lease-Token", lease_token.to_string())
        .body(Body::from(big))
        .unwrap();
    let a = h.send(log).await;
    a.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", None);
    assert!(a.json()["message"].as_str().unwrap().contains("1 MiB"), "{}", a.text());

    // Broken JSON: 400 with the line and column.
    let a = h
        .post_raw("/api/v1/workers/lease", "application/json", "{\n  \"worker_id\": \"w\",\n  \"queue\": }")
        .await;
    a.assert_error(StatusCode::BAD_REQUEST, "bad_request", None);
    assert!(a.json()["message"].as_str().unwrap().contains("line 3 column"), "{}", a.text());
    // A wrong type: 400 naming the field.
    let a =
        h.post_raw("/api/v1/workers/lease", "application/json", r#"{"worker_id": "w", "queue": 7}"#).await;
    a.assert_error(StatusCode::BAD_REQUEST, "bad_request", Some("queue"));
    // No content type, or the wrong one: 415.
    let none =
        Request::post("/api/v1/workers/lease").body(Body::from(r#"{"worker_id":"w","queue":"q"}"#)).unwrap();
    h.send(none).await.assert_error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        Some("Content-Type"),
    );
    h.post_raw("/api/v1/workers/lease", "application/xml", "<lease/>").await.assert_error(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        Some("Content-Type"),
    );
    // An id that is not one: 400 naming the path segment.
    h.get("/api/v1/runs/..%2F..%2Fetc%2Fpasswd").await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("run_id"),
    );
    h.get(&format!("/api/v1/tasks/{}x", tasks[0])).await.assert_error(
        StatusCode::BAD_REQUEST,
        "bad_request",
        Some("task_id"),
    );

    // Over a real connection: a huge query string or header is refused by
    // the HTTP server itself with a 4xx, never served.
    let addr = h.serve().await;
    let huge = "a".repeat(1024 * 1024);
    for head in [
        format!("GET /api/v1/runs?workflow={huge} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
        format!("GET /api/v1/runs HTTP/1.1\r\nHost: x\r\nX-Big: {huge}\r\nConnection: close\r\n\r\n"),
    ] {
        let status = tokio::task::spawn_blocking(move || raw_status(addr, &head)).await.unwrap();
        assert!((400..500).contains(&status), "expected a 4xx, got {status}");
    }

    // A barrage of all of it, and the run reads back as it was.
    for _ in 0..20 {
        h.post_raw(&format!("/api/v1/runs/{run}/cancel"), "application/json", "{{{").await;
        h.post_raw(&format!("/api/v1/runs/{run}/retry"), "text/plain", "x").await;
        h.post_raw(&format!("/api/v1/tasks/{}/complete", tasks[1]), "application/json", r#"{"outcome": 5}"#)
            .await;
        h.get(&format!("/api/v1/runs/{run}x")).await;
    }
    let after = h.get(&format!("/api/v1/runs/{run}")).await;
    assert_eq!(after.status, StatusCode::OK);
    assert_eq!(after.json(), before.json());
}

/// Sends `head` on a fresh connection; the status of the answer (0 if the
/// server closed the connection without one).
fn raw_status(addr: SocketAddr, head: &str) -> u16 {
    let mut conn = std::net::TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer and close before reading everything.
    let _ = conn.write_all(head.as_bytes());
    let mut answer = Vec::new();
    let _ = conn.read_to_end(&mut answer);
    let text = String::from_utf8_lossy(&answer);
    text.strip_prefix("HTTP/1.1 ").and_then(|rest| rest.get(..3)).and_then(|s| s.parse().ok()).unwrap_or(0)
}
