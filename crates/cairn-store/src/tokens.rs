//! API tokens as stored ([`cairn_core::auth`]): never the secret, only its
//! SHA-256 hash (looked up through a unique index), the prefix shown to
//! recognise it, its role, queues (worker tokens) and workflow scope.
//!
//! At most one token of a name is not revoked: a partial unique index
//! refuses a second. A token past its expiry that was never revoked gives
//! its name up when a new token takes it: it is recorded revoked at its
//! expiry. Revocation is a write the next lookup sees, so it is immediate.
//! A lookup records when the token was last used, at most once a minute
//! per token, so requests do not each write.
//!
//! A web session ([`NewSession`]) is a browser signed in with a token: it
//! acts as the token, so it is refused once the token is revoked or
//! expired, whatever its own expiry. Signing out ends it by setting its
//! expiry to the time of it; sessions past their expiry are deleted when
//! the next one starts, so the table holds only live ones and a few ended
//! since.

use cairn_core::auth::Role;
use cairn_core::{Timestamp, TokenId};
use serde::Serialize;

/// A token to record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewToken {
    pub id: TokenId,
    pub name: String,
    pub role: Role,
    /// The queues a worker token may lease from; empty for other roles.
    pub queues: Vec<String>,
    /// The workflow name pattern the token is limited to
    /// ([`cairn_core::auth::WorkflowScope`]); `None`: every workflow.
    pub workflows: Option<String>,
    /// The first characters of the secret, to recognise it in lists.
    pub prefix: String,
    /// The SHA-256 of the secret.
    pub hash: [u8; 32],
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
}

/// A token as stored: everything but its hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TokenRecord {
    pub id: TokenId,
    pub name: String,
    pub role: Role,
    pub queues: Vec<String>,
    pub workflows: Option<String>,
    pub prefix: String,
    pub created_at: Timestamp,
    pub expires_at: Option<Timestamp>,
    pub revoked_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
}

impl TokenRecord {
    /// Whether the token may be used at `now`: not revoked, not expired.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }

    /// Whether the token ran out (before any revocation) rather than being
    /// revoked, as of `now`.
    pub fn is_expired(&self, now: Timestamp) -> bool {
        match (self.expires_at, self.revoked_at) {
            (Some(e), Some(r)) => e <= r,
            (Some(e), None) => e <= now,
            (None, _) => false,
        }
    }
}

/// A web session to record: its key's hash, the token it acts as, its
/// anti-CSRF token and its lifetime.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession {
    /// The SHA-256 of the session key ([`cairn_core::auth::SessionKey`]).
    pub hash: [u8; 32],
    pub token: TokenId,
    pub csrf: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

/// A web session as stored, with the token it acts as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    pub token: TokenRecord,
    pub csrf: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

impl SessionRecord {
    /// Whether the session may be used at `now`: neither it nor its token
    /// has ended.
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at && self.token.is_live(now)
    }
}

/// How long a recorded `last_used_at` stands before a lookup renews it.
pub const LAST_USED_GRAIN_US: i64 = 60_000_000;

/// Whether a lookup at `now` should record the use.
pub(crate) fn use_is_news(last_used_at: Option<Timestamp>, now: Timestamp) -> bool {
    last_used_at.is_none_or(|t| now.as_micros() - t.as_micros() >= LAST_USED_GRAIN_US)
}

pub(crate) fn name_taken(name: &str) -> crate::StoreError {
    crate::StoreError::InvalidChange(format!("a token named {name:?} exists; revoke it first"))
}

/// A token from its stored columns, in the order of the `COLUMNS` of both
/// backends.
#[allow(clippy::too_many_arguments)]
pub(crate) fn from_columns(
    id: [u8; 16],
    name: String,
    role: &str,
    queues: serde_json::Value,
    workflows: Option<String>,
    prefix: String,
    (created_at, expires_at, revoked_at, last_used_at): (i64, Option<i64>, Option<i64>, Option<i64>),
) -> Result<TokenRecord, String> {
    let role = role.parse::<Role>().map_err(|e| format!("token {name:?}: {e}"))?;
    let queues = serde_json::from_value(queues).map_err(|e| format!("token {name:?}: queues: {e}"))?;
    let t = Timestamp::from_micros;
    Ok(TokenRecord {
        id: TokenId::from_bytes(id),
        name,
        role,
        queues,
        workflows,
        prefix,
        created_at: t(created_at),
        expires_at: expires_at.map(t),
        revoked_at: revoked_at.map(t),
        last_used_at: last_used_at.map(t),
    })
}

/// A write of tokens, as the backends carry it.
#[derive(Clone, Debug)]
pub(crate) enum TokenWrite {
    Create(NewToken),
    /// Revoke the token not revoked yet whose id (first) or name is this.
    Revoke {
        name_or_id: String,
        at: Timestamp,
    },
    /// Record a use, unless one was recorded less than a minute before,
    /// and with it a `token_used` audit event.
    Used {
        id: TokenId,
        name: String,
        at: Timestamp,
    },
    /// Start a web session, deleting those that have ended.
    StartSession(NewSession),
    /// End the session of this key hash, if it is live at `at`; the
    /// session's token, when one ended.
    EndSession {
        hash: [u8; 32],
        at: Timestamp,
    },
}

impl TokenWrite {
    /// The id `name_or_id` spells, if it spells one.
    pub(crate) fn id_of(name_or_id: &str) -> Option<TokenId> {
        name_or_id.parse().ok()
    }
}
