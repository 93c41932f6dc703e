//! The audit log: who managed tokens, when a token was used (at most once a
//! minute per token, with its recorded last use), and which requests were
//! refused for want of a role (`403`; not `401`, which anyone can cause).
//! Events are only ever added; they are read newest first.

use std::fmt;
use std::str::FromStr;

use cairn_core::{AuditId, Timestamp};
use serde::Serialize;

/// What an audit event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditKind {
    /// A token was made; the target is its name.
    TokenCreated,
    /// A token was revoked; the target is its name.
    TokenRevoked,
    /// A token's last use was renewed (at most once a minute per token).
    TokenUsed,
    /// A token's role or scope did not cover a request (`403`); the target
    /// is the route.
    AccessDenied,
    /// A browser signed in with a token; the target is the token's name.
    SignedIn,
    /// A browser signed out; the target is the token's name.
    SignedOut,
}

impl AuditKind {
    pub const ALL: [AuditKind; 6] = [
        AuditKind::TokenCreated,
        AuditKind::TokenRevoked,
        AuditKind::TokenUsed,
        AuditKind::AccessDenied,
        AuditKind::SignedIn,
        AuditKind::SignedOut,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AuditKind::TokenCreated => "token_created",
            AuditKind::TokenRevoked => "token_revoked",
            AuditKind::TokenUsed => "token_used",
            AuditKind::AccessDenied => "access_denied",
            AuditKind::SignedIn => "signed_in",
            AuditKind::SignedOut => "signed_out",
        }
    }
}

impl fmt::Display for AuditKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// An audit event kind that is not one of [`AuditKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an audit event kind: expected token_created, token_revoked, token_used, access_denied, \
     signed_in or signed_out"
)]
pub struct BadAuditKind(pub String);

impl FromStr for AuditKind {
    type Err = BadAuditKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        AuditKind::ALL.into_iter().find(|k| k.as_str() == s.trim()).ok_or_else(|| BadAuditKind(s.to_owned()))
    }
}

/// An event to record.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAuditEvent {
    pub id: AuditId,
    pub at: Timestamp,
    pub kind: AuditKind,
    /// Who: a token's name, `user:NAME` on a server without tokens, or
    /// `cli` for the command line on the store itself.
    pub actor: String,
    /// What it was done to: a token's name, a route.
    pub target: Option<String>,
    pub detail: Option<serde_json::Value>,
}

impl NewAuditEvent {
    /// An event at `at`, with a fresh id.
    pub fn new(at: Timestamp, kind: AuditKind, actor: impl Into<String>, target: Option<String>) -> Self {
        NewAuditEvent { id: AuditId::new(at), at, kind, actor: actor.into(), target, detail: None }
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.detail = Some(detail);
        self
    }
}

/// An event as stored.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AuditEvent {
    pub id: AuditId,
    pub at: Timestamp,
    pub kind: AuditKind,
    pub actor: String,
    pub target: Option<String>,
    pub detail: Option<serde_json::Value>,
}

/// Which events to read, newest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditQuery {
    pub kind: Option<AuditKind>,
    pub actor: Option<String>,
    /// Only events older than this one (the last of the previous page).
    pub before: Option<AuditId>,
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        AuditQuery { kind: None, actor: None, before: None, limit: 100 }
    }
}

/// The largest page of events.
pub const MAX_AUDIT_EVENTS: usize = 1000;

/// An event from its stored columns, in the order of the `COLUMNS` of both
/// backends.
pub(crate) fn from_columns(
    id: [u8; 16],
    at: i64,
    kind: &str,
    actor: String,
    target: Option<String>,
    detail: Option<serde_json::Value>,
) -> Result<AuditEvent, String> {
    let kind = kind.parse::<AuditKind>().map_err(|e| format!("audit event: {e}"))?;
    Ok(AuditEvent {
        id: AuditId::from_bytes(id),
        at: Timestamp::from_micros(at),
        kind,
        actor,
        target,
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_print_and_serialize_alike() {
        for k in AuditKind::ALL {
            assert_eq!(k.as_str().parse::<AuditKind>(), Ok(k));
            assert_eq!(serde_json::to_string(&k).unwrap(), format!("\"{k}\""));
        }
        assert!("login".parse::<AuditKind>().unwrap_err().to_string().contains("token_used"));
    }
}
