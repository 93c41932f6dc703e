//! The web UI: the files under `crates/cairn-server/ui/` embedded in the
//! binary, served at `/ui/…`, and the page shell (`index.html`) at every
//! address of the UI (`/`, `/runs`, `/runs/{id}`, …), so a shared link or
//! a reload lands on the right page. The pages are ES modules that read
//! the JSON API and its live events; nothing is fetched from elsewhere.
//!
//! The shell and the files are public: they hold no data. Every answer
//! carries a Content-Security-Policy that lets the pages load only this
//! server's scripts and talk only to this server, and refuses framing
//! (clickjacking).
//!
//! Architecture invariant: no build step. The files are served as written
//! (the vendored ones as their upstream released them, see
//! `ui/vendor/MANIFEST.md`), so `cargo build` alone makes the whole binary.

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;

/// The UI's files, embedded at build time (in debug builds too).
#[derive(RustEmbed)]
#[folder = "ui/"]
struct Files;

/// The addresses of the UI's pages: each answers the shell, whose script
/// draws the page the address names.
const PAGES: [&str; 9] = [
    "/",
    "/sign-in",
    "/runs",
    "/runs/{run_id}",
    "/workflows",
    "/workflows/{name}",
    "/workers",
    "/alerts",
    "/analytics",
];

// Scripts set styles through the CSSOM (`element.style`), which CSP does
// not govern, so no inline style or script is ever needed.
const CSP: &str = "default-src 'self'; img-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; \
                   base-uri 'none'; form-action 'self'";

/// The UI's routes, to merge beside the API's.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let mut router = Router::new().route("/ui/{*path}", get(asset));
    for page in PAGES {
        router = router.route(page, get(shell));
    }
    router
}

async fn shell(headers: HeaderMap) -> Response {
    serve("index.html", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    serve(&path, &headers)
}

/// A file with its type and an `ETag`, or `304` when the browser has it.
fn serve(path: &str, headers: &HeaderMap) -> Response {
    let Some(file) = Files::get(path) else {
        return (StatusCode::NOT_FOUND, secure_headers(), "no such file in the UI").into_response();
    };
    let etag = format!("\"{}\"", hex(&file.metadata.sha256_hash()[..12]));
    let fresh = headers.get(header::IF_NONE_MATCH).is_some_and(|v| v.as_bytes() == etag.as_bytes());
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (StatusCode::OK, file.data.into_owned()).into_response()
    };
    let h = response.headers_mut();
    h.extend(secure_headers());
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type(path)));
    // Revalidated on every load, so a new binary's files are never mixed
    // with an old one's cached in the browser.
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    response
}

fn secure_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("md" | "txt") | None => "text/plain; charset=utf-8",
        Some(_) => "application/octet-stream",
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_has_a_type_and_the_shell_is_embedded() {
        assert!(Files::get("index.html").is_some());
        for path in Files::iter() {
            assert_ne!(content_type(&path), "application/octet-stream", "{path}");
        }
    }
}
