//! The typed HTTP client for a Cairn server's `/api/v1`: the worker protocol
//! (fully typed, from `cairn_core::protocol`) and the run and task routes
//! (JSON values where the server's shapes are still settling).
//!
//! It makes one request per call and never retries by itself: whether a
//! retry is safe depends on the call, so that is the caller's decision (see
//! [`crate::Backoff`] and [`ClientError::certainly_not_applied`]).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use cairn_core::protocol::{
    CompleteBatchRequest, CompleteBatchResponse, CompleteRequest, CompleteResponse, HeartbeatAck,
    HeartbeatRequest, HeartbeatResponse, LEASE_TOKEN_HEADER, LeaseRequest, LeaseResponse, LogStream,
    TaskHeartbeatRequest,
};
use cairn_core::{LeaseToken, RunId, TaskId};
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, RETRY_AFTER};
use reqwest::{Method, RequestBuilder, Url};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ClientError;
use crate::error::{classify_response, parse_retry_after};

/// A Cairn API client. Cheap to clone: clones share one connection pool.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    /// Always ends with `/api/v1/`, so relative joins land under it.
    api: Url,
    request_timeout: Duration,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client").field("api", &self.api.as_str()).finish_non_exhaustive()
    }
}

/// Settings for a [`Client`].
#[derive(Clone)]
pub struct ClientBuilder {
    base_url: String,
    connect_timeout: Duration,
    request_timeout: Duration,
    bearer_token: Option<String>,
    user_agent: String,
    /// PEM certificates of CAs trusted besides the system's ([`ClientBuilder::ca_cert_pem`]).
    ca_certs: Vec<Vec<u8>>,
}

impl fmt::Debug for ClientBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientBuilder")
            .field("base_url", &self.base_url)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .field("bearer_token", &self.bearer_token.as_ref().map(|_| "…"))
            .finish()
    }
}

impl ClientBuilder {
    /// How long to wait for a TCP connection (default 5 s).
    pub fn connect_timeout(mut self, d: Duration) -> Self {
        self.connect_timeout = d;
        self
    }

    /// How long to wait for a whole answer (default 30 s). A lease's long
    /// poll gets its `wait_ms` on top of this.
    pub fn request_timeout(mut self, d: Duration) -> Self {
        self.request_timeout = d;
        self
    }

    /// An API token sent as `Authorization: Bearer …` on every request.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    pub fn user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }

    /// Trusts, besides the system's CAs, the CA certificate(s) in this PEM
    /// text: for a server whose certificate is self-signed or from a
    /// private CA. Needs the `tls` feature; checked by [`ClientBuilder::build`].
    pub fn ca_cert_pem(mut self, pem: impl Into<Vec<u8>>) -> Self {
        self.ca_certs.push(pem.into());
        self
    }

    pub fn build(self) -> Result<Client, ClientError> {
        let api = api_root(&self.base_url)?;
        let mut headers = HeaderMap::new();
        if let Some(token) = &self.bearer_token {
            let mut v = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| {
                ClientError::InvalidRequest("the API token is not a valid header value".into())
            })?;
            v.set_sensitive(true);
            headers.insert(AUTHORIZATION, v);
        }
        let http = with_tls(reqwest::Client::builder(), &self.ca_certs)?
            .connect_timeout(self.connect_timeout)
            .default_headers(headers)
            .user_agent(self.user_agent)
            // Workers hold a handful of long-lived connections to one server.
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ClientError::InvalidRequest(crate::error::error_chain(&e)))?;
        Ok(Client { http, api, request_timeout: self.request_timeout })
    }
}

/// HTTPS on rustls with the `ring` provider, trusting the system's CAs and `ca_certs`.
#[cfg(feature = "tls")]
fn with_tls(
    builder: reqwest::ClientBuilder,
    ca_certs: &[Vec<u8>],
) -> Result<reqwest::ClientBuilder, ClientError> {
    // reqwest is built without a provider of its own (aws-lc-rs is a long C
    // build); the process's default is ring unless the program chose another.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = builder.tls_backend_rustls();
    for pem in ca_certs {
        let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| {
            ClientError::InvalidRequest(format!("the CA certificate: {}", crate::error::error_chain(&e)))
        })?;
        if certs.is_empty() {
            return Err(ClientError::InvalidRequest(
                "the CA certificate: no `-----BEGIN CERTIFICATE-----` block in it".into(),
            ));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder)
}

/// Without the `tls` feature: plain HTTP only.
#[cfg(not(feature = "tls"))]
fn with_tls(
    builder: reqwest::ClientBuilder,
    ca_certs: &[Vec<u8>],
) -> Result<reqwest::ClientBuilder, ClientError> {
    if !ca_certs.is_empty() {
        return Err(ClientError::InvalidRequest(
            "a CA certificate was given, but cairn-client was built without its `tls` feature".into(),
        ));
    }
    Ok(builder)
}

/// `http://host:port` (with or without a trailing `/`, with or without
/// `/api/v1`) → `http://host:port/api/v1/`.
fn api_root(base: &str) -> Result<Url, ClientError> {
    let bad = |why: String| ClientError::InvalidRequest(format!("server URL {base:?}: {why}"));
    let mut url = Url::parse(base.trim()).map_err(|e| bad(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("expected an http:// or https:// URL".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("expected no query or fragment".into()));
    }
    let path = url.path().trim_end_matches('/');
    let path = path.strip_suffix("/api/v1").unwrap_or(path);
    url.set_path(&format!("{path}/api/v1/"));
    Ok(url)
}

/// Filters for [`Client::list_runs`]; empty fields are not sent. Times are
/// RFC 3339 text (`2026-11-20T08:00:00Z`); each range is `[after, before)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunQuery {
    /// Any of these statuses (e.g. `FAILED`, `CANCELED`).
    pub statuses: Vec<String>,
    /// Any of these workflows.
    pub workflows: Vec<String>,
    /// Any of these triggers (`manual`, `schedule`, `api`, `retry`).
    pub triggers: Vec<String>,
    /// Every one of these labels (`key` or `key=value`).
    pub labels: Vec<String>,
    pub submitted_after: Option<String>,
    pub submitted_before: Option<String>,
    pub finished_after: Option<String>,
    pub finished_before: Option<String>,
    pub id_prefix: Option<String>,
    /// `submitted` (default) or `finished`.
    pub sort: Option<String>,
    /// `desc` (default) or `asc`.
    pub order: Option<String>,
    pub limit: Option<u32>,
    /// The page after this one of the same query (a previous page's `next_cursor`).
    pub cursor: Option<String>,
}

impl RunQuery {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = Vec::new();
        let lists = [
            ("status", &self.statuses),
            ("workflow", &self.workflows),
            ("trigger", &self.triggers),
            ("label", &self.labels),
        ];
        for (key, values) in lists {
            if !values.is_empty() {
                pairs.push((key, values.join(",")));
            }
        }
        let single = [
            ("submitted_after", &self.submitted_after),
            ("submitted_before", &self.submitted_before),
            ("finished_after", &self.finished_after),
            ("finished_before", &self.finished_before),
            ("id_prefix", &self.id_prefix),
            ("sort", &self.sort),
            ("order", &self.order),
        ];
        pairs.extend(single.into_iter().filter_map(|(k, v)| v.clone().map(|v| (k, v))));
        if let Some(n) = self.limit {
            pairs.push(("limit", n.to_string()));
        }
        if let Some(c) = &self.cursor {
            pairs.push(("cursor", c.clone()));
        }
        pairs
    }
}

/// One page of runs, newest first.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunPage {
    pub runs: Vec<serde_json::Value>,
    #[serde(default)]
    pub next_cursor: Option<String>,
}

fn window(
    from: Option<&str>,
    to: Option<&str>,
    workflows: &[String],
    bucket: Option<&str>,
) -> Vec<(&'static str, String)> {
    let mut pairs = Vec::new();
    pairs.extend(from.map(|f| ("from", f.to_owned())));
    pairs.extend(to.map(|t| ("to", t.to_owned())));
    if !workflows.is_empty() {
        pairs.push(("workflow", workflows.join(",")));
    }
    pairs.extend(bucket.map(|b| ("bucket", b.to_owned())));
    pairs
}

/// What [`Client::phase_stats`] asks for; empty fields are not sent (the
/// server's defaults: the day before `to` or now, every workflow, the 10
/// slowest tasks, 10,000 tasks per step at most).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PhaseStatsQuery {
    /// Tasks that finished at or after this time (RFC 3339).
    pub from: Option<String>,
    /// Finished before this time.
    pub to: Option<String>,
    pub workflows: Vec<String>,
    /// How many of the slowest tasks to list (1 to 100).
    pub slowest: Option<u32>,
    /// The newest tasks read per step at most (1 to 100,000).
    pub sample_cap: Option<u32>,
}

impl PhaseStatsQuery {
    fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = window(self.from.as_deref(), self.to.as_deref(), &self.workflows, None);
        pairs.extend(self.slowest.map(|n| ("slowest", n.to_string())));
        pairs.extend(self.sample_cap.map(|n| ("sample_cap", n.to_string())));
        pairs
    }
}

#[derive(Deserialize)]
struct Triggered {
    run_id: RunId,
}

impl Client {
    /// A client with default timeouts. `base_url` is the server's root, e.g.
    /// `http://127.0.0.1:8080`.
    pub fn new(base_url: &str) -> Result<Client, ClientError> {
        Client::builder(base_url).build()
    }

    pub fn builder(base_url: impl Into<String>) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.into(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            bearer_token: None,
            user_agent: format!("cairn-client/{}", env!("CARGO_PKG_VERSION")),
            ca_certs: Vec::new(),
        }
    }

    /// The API root this client talks to (ends with `/api/v1/`).
    pub fn api_url(&self) -> &Url {
        &self.api
    }

    // ---- the worker protocol ----

    /// Leases up to `req.max_tasks` tasks from `req.queue`, waiting up to
    /// `req.wait_ms` for the first. An empty list means none came in time.
    pub async fn lease(&self, req: &LeaseRequest) -> Result<LeaseResponse, ClientError> {
        let timeout = self.request_timeout + Duration::from_millis(req.wait_ms);
        let rb = self.request(Method::POST, &["workers", "lease"])?.json(req).timeout(timeout);
        self.send_json(rb).await
    }

    /// Extends the leases of many tasks in one call, carrying their progress.
    /// Acks come per item: a stale item does not fail the call.
    pub async fn heartbeat(&self, req: &HeartbeatRequest) -> Result<HeartbeatResponse, ClientError> {
        let rb = self.request(Method::POST, &["workers", "heartbeat"])?.json(req);
        self.send_json(rb).await
    }

    /// One task's heartbeat (`POST /tasks/{id}/heartbeat`), for a worker
    /// that holds a single task; a stale token is [`ClientError::LeaseStale`].
    /// Workers holding several tasks should batch with [`Client::heartbeat`].
    pub async fn heartbeat_task(
        &self,
        task: TaskId,
        req: &TaskHeartbeatRequest,
    ) -> Result<HeartbeatAck, ClientError> {
        let rb = self.request(Method::POST, &["tasks", &task.to_string(), "heartbeat"])?.json(req);
        self.send_json(rb).await
    }

    /// Ends an attempt and answers the task's status now (`COMPLETED`,
    /// `FAILED`, `CANCELED`, or `PENDING` when a failed attempt will be
    /// retried). Idempotent for the same lease token, so it is safe to retry
    /// after a timeout; [`ClientError::LeaseStale`] if the token is stale.
    pub async fn complete(
        &self,
        task: TaskId,
        req: &CompleteRequest,
    ) -> Result<CompleteResponse, ClientError> {
        let rb = self.request(Method::POST, &["tasks", &task.to_string(), "complete"])?.json(req);
        self.send_json(rb).await
    }

    /// Ends many attempts in one call (`POST /workers/complete`, at most 1000
    /// items). The answer has one ack per item, in request order: the task's
    /// status, or the error the single [`Client::complete`] would have got
    /// ([`crate::classify_item_error`] turns it into a [`ClientError`]). A
    /// stale item does not fail the call. Idempotent for each item's token, so
    /// the whole call is safe to retry after a timeout or a 5xx.
    pub async fn complete_batch(
        &self,
        req: &CompleteBatchRequest,
    ) -> Result<CompleteBatchResponse, ClientError> {
        let rb = self.request(Method::POST, &["workers", "complete"])?.json(req);
        self.send_json(rb).await
    }

    /// Appends a chunk of an attempt's stdout or stderr. The body is sent as
    /// is, so a [`reqwest::Body::wrap_stream`] streams a long output.
    pub async fn append_log(
        &self,
        task: TaskId,
        token: LeaseToken,
        stream: LogStream,
        body: impl Into<reqwest::Body>,
    ) -> Result<(), ClientError> {
        let mut token = HeaderValue::from_str(&token.to_string())
            .map_err(|_| ClientError::InvalidRequest("lease token is not a valid header value".into()))?;
        token.set_sensitive(true);
        let mut url = self.url(&["tasks", &task.to_string(), "logs"])?;
        url.query_pairs_mut().append_pair("stream", stream.as_str());
        let rb = self
            .http
            .request(Method::POST, url)
            .timeout(self.request_timeout)
            .header(LEASE_TOKEN_HEADER, token)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        self.send_json::<serde_json::Value>(rb).await.map(drop)
    }

    // ---- runs and tasks ----

    /// Starts a run of `workflow` with `params`; returns its id.
    pub async fn trigger_run(
        &self,
        workflow: &str,
        params: &BTreeMap<String, String>,
    ) -> Result<RunId, ClientError> {
        let body = serde_json::json!({ "params": params });
        let rb = self.request(Method::POST, &["workflows", workflow, "runs"])?.json(&body);
        self.send_json::<Triggered>(rb).await.map(|t| t.run_id)
    }

    pub async fn list_runs(&self, q: &RunQuery) -> Result<RunPage, ClientError> {
        self.get_with(&["runs"], &q.pairs()).await
    }

    /// Runs and tasks submitted in `[from, to)` (RFC 3339; `to` open = now),
    /// by status: `{"runs": {"FAILED": 3, …}, "tasks": {…}}`.
    pub async fn status_counts(
        &self,
        from: Option<&str>,
        to: Option<&str>,
        workflows: &[String],
    ) -> Result<serde_json::Value, ClientError> {
        self.get_with(&["stats", "status"], &window(from, to, workflows, None)).await
    }

    /// Runs by status per `bucket` (`minute`, `hour`, `day`) from `from`,
    /// overall and per workflow, with failure rates.
    pub async fn trend(
        &self,
        from: &str,
        to: Option<&str>,
        bucket: &str,
        workflows: &[String],
    ) -> Result<serde_json::Value, ClientError> {
        self.get_with(&["stats", "trend"], &window(Some(from), to, workflows, Some(bucket))).await
    }

    /// Per workflow and step, p50/p95/max of the time the tasks that
    /// finished in the window spent blocked, pending and running, the
    /// slowest tasks and each workflow's most failing step
    /// (`GET /stats/phases`).
    pub async fn phase_stats(&self, q: &PhaseStatsQuery) -> Result<serde_json::Value, ClientError> {
        self.get_with(&["stats", "phases"], &q.pairs()).await
    }

    /// How long `workflow`'s runs and steps usually take (p50, p95 and the
    /// samples they rest on), from its latest completed runs.
    pub async fn expected_durations(&self, workflow: &str) -> Result<serde_json::Value, ClientError> {
        self.get_with(&["workflows", workflow, "expected-durations"], &[]).await
    }

    /// A GET of `path` with query `pairs` (none: no `?`).
    async fn get_with<T: serde::de::DeserializeOwned>(
        &self,
        path: &[&str],
        pairs: &[(&str, String)],
    ) -> Result<T, ClientError> {
        let mut url = self.url(path)?;
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs.iter().map(|(k, v)| (*k, v.as_str())));
        }
        self.send_json(self.http.request(Method::GET, url).timeout(self.request_timeout)).await
    }

    /// A run with its tasks.
    pub async fn get_run(&self, run: RunId) -> Result<serde_json::Value, ClientError> {
        self.send_json(self.request(Method::GET, &["runs", &run.to_string()])?).await
    }

    /// Asks for a run to be canceled. Its running tasks see
    /// `cancel_requested` on their next heartbeat.
    pub async fn cancel_run(&self, run: RunId) -> Result<serde_json::Value, ClientError> {
        self.send_json(self.request(Method::POST, &["runs", &run.to_string(), "cancel"])?).await
    }

    /// Retries a finished run (`POST /runs/{id}/retry`): starts a new run
    /// that reruns `from_step`, or by default every step that did not
    /// complete, and what depends on them; the other steps are carried over.
    /// Answers `{"run_id": NEW}`. A run not finished yet, or with nothing to
    /// retry, is refused (409 `conflict`); a step the run does not have is
    /// invalid input (400, field `from_step`). Not idempotent: a second call
    /// starts a second run, so do not resend it after a timeout.
    pub async fn retry_run(
        &self,
        run: RunId,
        from_step: Option<&str>,
    ) -> Result<serde_json::Value, ClientError> {
        let body = match from_step {
            Some(step) => serde_json::json!({ "from_step": step }),
            None => serde_json::json!({}),
        };
        let rb = self.request(Method::POST, &["runs", &run.to_string(), "retry"])?.json(&body);
        self.send_json(rb).await
    }

    /// A task with its transition log, attempts, progress and durations.
    pub async fn get_task(&self, task: TaskId) -> Result<serde_json::Value, ClientError> {
        self.send_json(self.request(Method::GET, &["tasks", &task.to_string()])?).await
    }

    pub async fn health(&self) -> Result<serde_json::Value, ClientError> {
        self.send_json(self.request(Method::GET, &["health"])?).await
    }

    // ---- plumbing ----

    /// `segments` joined under the API root, each percent-encoded (a
    /// workflow name with a `/` stays one segment).
    fn url(&self, segments: &[&str]) -> Result<Url, ClientError> {
        let mut url = self.api.clone();
        url.path_segments_mut()
            .map_err(|()| ClientError::InvalidRequest("the server URL cannot have a path".into()))?
            .pop_if_empty()
            .extend(segments);
        Ok(url)
    }

    fn request(&self, method: Method, segments: &[&str]) -> Result<RequestBuilder, ClientError> {
        Ok(self.http.request(method, self.url(segments)?).timeout(self.request_timeout))
    }

    /// Sends and reads a JSON answer; an empty success body reads as JSON `null`.
    async fn send_json<T: DeserializeOwned>(&self, rb: RequestBuilder) -> Result<T, ClientError> {
        let resp = rb.send().await.map_err(|e| ClientError::from_reqwest(&e))?;
        let status = resp.status().as_u16();
        let retry_after =
            resp.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let ok = resp.status().is_success();
        let body = match resp.bytes().await {
            Ok(b) => b,
            // The answer's body broke off: for a success the request was
            // applied, and the caller must treat it like a timeout.
            Err(e) if ok => return Err(ClientError::from_reqwest(&e)),
            Err(_) => Default::default(),
        };
        if !ok {
            return Err(classify_response(status, &body, retry_after));
        }
        let body: &[u8] = if body.iter().all(u8::is_ascii_whitespace) { b"null" } else { &body };
        serde_json::from_slice(body).map_err(|e| ClientError::Decode { status, message: e.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_root_accepts_the_usual_spellings() {
        for base in [
            "http://127.0.0.1:8080",
            "http://127.0.0.1:8080/",
            "http://127.0.0.1:8080/api/v1",
            "http://127.0.0.1:8080/api/v1/",
        ] {
            assert_eq!(api_root(base).unwrap().as_str(), "http://127.0.0.1:8080/api/v1/", "{base}");
        }
        assert_eq!(api_root("https://x.example/cairn").unwrap().as_str(), "https://x.example/cairn/api/v1/");
        assert!(api_root("127.0.0.1:8080").is_err());
        assert!(api_root("ftp://x").is_err());
        assert!(api_root("http://x/?a=b").is_err());
    }

    #[test]
    fn path_segments_are_encoded() {
        let c = Client::new("http://h:1").unwrap();
        let u = c.url(&["workflows", "nightly/etl ä", "runs"]).unwrap();
        assert_eq!(u.as_str(), "http://h:1/api/v1/workflows/nightly%2Fetl%20%C3%A4/runs");
    }

    #[test]
    fn a_ca_certificate_that_is_not_one_is_refused_at_build() {
        let e = Client::builder("https://h:1").ca_cert_pem("not a certificate").build().unwrap_err();
        assert!(matches!(e, ClientError::InvalidRequest(_)), "{e:?}");
        let message = e.to_string();
        let why = if cfg!(feature = "tls") { "BEGIN CERTIFICATE" } else { "`tls` feature" };
        assert!(message.contains("CA certificate") && message.contains(why), "{message}");
    }

    #[test]
    fn debug_never_shows_the_api_token() {
        let b = Client::builder("http://h:1").bearer_token("s3cret");
        assert!(!format!("{b:?}").contains("s3cret"));
        let c = b.build().unwrap();
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
