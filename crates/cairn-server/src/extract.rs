//! Reading requests: JSON bodies, query strings, ids in paths and headers,
//! each failure an [`ApiError`] that names the field at fault — never axum's
//! plain-text rejections, never a 500 for bad input.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use bytes::Bytes;
use cairn_core::record::Actor;
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorCode};

/// A JSON body (`Content-Type: application/json`), read within the body limit.
pub(crate) struct ApiJson<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        require_json(req.headers())?;
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(ApiJson)
    }
}

/// A JSON body that may be left out entirely (no body means `T::default()`).
pub(crate) struct OptionalJson<T>(pub(crate) T);

impl<T: DeserializeOwned + Default, S: Send + Sync> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let headers = req.headers().clone();
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(OptionalJson(T::default()));
        }
        require_json(&headers)?;
        parse_json(&bytes).map(OptionalJson)
    }
}

/// The raw body, within the body limit (413 `payload_too_large` beyond it).
pub(crate) async fn body_bytes<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    let limit = req.extensions().get::<crate::limits::BodyLimit>().copied();
    Bytes::from_request(req, state).await.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            let limit = limit.map(|l| format!(" (at most {l})")).unwrap_or_default();
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the request body is larger than the server accepts{limit}; send less at a time"),
            )
        } else {
            ApiError::new(
                ErrorCode::BadRequest,
                format!("cannot read the request body: {}", rejection.body_text()),
            )
        }
    })
}

fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false);
    if json { Ok(()) } else { Err(unsupported_media_type()) }
}

fn unsupported_media_type() -> ApiError {
    ApiError::new(ErrorCode::UnsupportedMediaType, "expected a JSON body with Content-Type: application/json")
        .field("Content-Type")
}

/// Parses JSON, naming the field at fault: `items[0].lease_token` for a bad
/// value, `items[0].queue` for a missing one; no field for broken syntax.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let result: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    let value = match result {
        Ok(value) => value,
        Err(e) => {
            let path = field_path(&e.path().to_string());
            let inner = e.into_inner();
            return Err(match inner.classify() {
                serde_json::error::Category::Data => {
                    let message = inner.to_string();
                    // serde names a missing field in the message, at the path
                    // of the object that lacks it; an unknown one is the path.
                    let field = match missing_field(&message) {
                        Some(name) if path.is_empty() => name.to_owned(),
                        Some(name) => format!("{path}.{name}"),
                        None if path.is_empty() => unknown_field(&message).unwrap_or_default().to_owned(),
                        None => path,
                    };
                    ApiError::bad_request(field, message)
                }
                _ => ApiError::new(ErrorCode::BadRequest, format!("the body is not valid JSON: {inner}")),
            });
        }
    };
    de.end().map_err(|e| ApiError::new(ErrorCode::BadRequest, format!("the body is not valid JSON: {e}")))?;
    Ok(value)
}

/// serde_path_to_error writes the root as `.`; the API names it not at all.
fn field_path(path: &str) -> String {
    if path == "." { String::new() } else { path.to_owned() }
}

/// The name in serde's "missing field `x`" message.
fn missing_field(message: &str) -> Option<&str> {
    message.strip_prefix("missing field `")?.split('`').next()
}

/// A query string, parsed into `T` (whose unknown parameters are refused by
/// `#[serde(deny_unknown_fields)]`), naming the parameter at fault.
pub(crate) struct ApiQuery<T>(pub(crate) T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(de).map(ApiQuery).map_err(|e| {
            let path = field_path(&e.path().to_string());
            let message = e.into_inner().to_string();
            let field = unknown_field(&message).map(str::to_owned).unwrap_or(path);
            ApiError::bad_request(field, format!("bad query string: {message}"))
        })
    }
}

/// The name in serde's "unknown field `x`, expected …" message.
fn unknown_field(message: &str) -> Option<&str> {
    message.strip_prefix("unknown field `")?.split('`').next()
}

/// An id from the path (or a query parameter) named `field`.
pub(crate) fn parse_id<T>(field: &str, text: &str) -> Result<T, ApiError>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    text.parse().map_err(|e: T::Err| ApiError::bad_request(field, e.to_string()))
}

/// A whole number from a query parameter, within `range`.
pub(crate) fn parse_number<T>(
    field: &str,
    text: &str,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, ApiError>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
{
    text.trim().parse::<T>().ok().filter(|n| range.contains(n)).ok_or_else(|| {
        ApiError::bad_request(
            field,
            format!("expected a whole number from {} to {}, got {text:?}", range.start(), range.end()),
        )
    })
}

/// The `limit` of a page of a log read newest first (alerts, audit
/// events, deliveries, reaped attempts): 1 to `max`, 100 when not given.
pub(crate) fn page_limit(text: Option<&str>, max: usize) -> Result<usize, ApiError> {
    text.map_or(Ok(100), |l| parse_number("limit", l, 1..=max))
}

/// `true`/`false` (and `1`/`0`) from a query parameter.
pub(crate) fn parse_bool(field: &str, text: &str) -> Result<bool, ApiError> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(ApiError::bad_request(field, format!("expected true or false, got {text:?}"))),
    }
}

/// Names who asks, for the transition log's actor.
pub(crate) const USER_HEADER: &str = "X-Cairn-User";

/// Who made a request, for the transition log: the name of its API token
/// (`user:NAME`), which no header can change. On a server without tokens,
/// callers name themselves in the `X-Cairn-User` header, and without it
/// the actor is `user:anonymous`.
pub(crate) struct Who(pub(crate) Actor);

impl<S: Send + Sync> FromRequestParts<S> for Who {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Who, ApiError> {
        match parts.extensions.get::<crate::auth::Caller>() {
            Some(caller) => Ok(Who(Actor::User(caller.name.clone()))),
            None => actor(&parts.headers).map(Who),
        }
    }
}

fn actor(headers: &HeaderMap) -> Result<Actor, ApiError> {
    let Some(value) = headers.get(USER_HEADER) else {
        return Ok(Actor::User("anonymous".to_owned()));
    };
    value
        .to_str()
        .ok()
        .map(str::trim)
        .filter(|name| {
            (1..=64).contains(&name.len())
                && name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'))
        })
        .map(|name| Actor::User(name.to_owned()))
        .ok_or_else(|| {
            ApiError::bad_request(USER_HEADER, "expected up to 64 letters, digits, `.`, `_`, `-` and `@`")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_core::protocol::HeartbeatRequest;

    #[test]
    fn json_errors_name_the_field() {
        let e =
            parse_json::<HeartbeatRequest>(br#"{"worker_id":"w","items":[{"task_id":"nope"}]}"#).unwrap_err();
        assert_eq!((e.code, e.field.as_deref()), (ErrorCode::BadRequest, Some("items[0].task_id")));
        let e = parse_json::<HeartbeatRequest>(br#"{"items":[]}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("worker_id"));
        let e = parse_json::<HeartbeatRequest>(br#"{"worker_id": 3, "items": []}"#).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("worker_id"));
        let e = parse_json::<HeartbeatRequest>(b"{not json").unwrap_err();
        assert_eq!((e.code, e.field), (ErrorCode::BadRequest, None));
        let e = parse_json::<HeartbeatRequest>(br#"{"worker_id":"w","items":[]} trailing"#).unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
    }

    #[test]
    fn numbers_and_bools_from_queries() {
        assert_eq!(parse_number("limit", "50", 1..=100), Ok(50));
        assert_eq!(parse_number("limit", "0", 1..=100).unwrap_err().field.as_deref(), Some("limit"));
        assert!(parse_number::<u32>("limit", "x", 1..=100).is_err());
        assert_eq!(parse_bool("follow", "true"), Ok(true));
        assert!(parse_bool("follow", "maybe").is_err());
    }
}
