//! API tokens on SQLite (`crate::tokens`): written on the writer thread
//! like every other write, read on the reader pool.

use cairn_core::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::Error;
use crate::audit::{AuditKind, NewAuditEvent};
use crate::error::StoreError;
use crate::tokens::{self, SessionRecord, TokenRecord, TokenWrite};

const COLUMNS: &str =
    "id, name, role, queues, workflows, prefix, created_at, expires_at, revoked_at, last_used_at";

// An expired token that was never revoked gives its name up: revoked at its expiry.
const RELEASE_EXPIRED: &str = "\
UPDATE api_tokens SET revoked_at = expires_at
WHERE name = ?1 AND revoked_at IS NULL AND expires_at <= ?2";

const CREATE: &str = "\
INSERT INTO api_tokens (id, name, role, queues, workflows, prefix, hash, created_at, expires_at)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING
RETURNING id";

// By id before by name; never dated before the token was made.
const REVOKE: &str = "\
UPDATE api_tokens SET revoked_at = max(created_at, ?3)
WHERE token_no = (
    SELECT token_no FROM api_tokens
    WHERE revoked_at IS NULL AND (id = ?2 OR name = ?1)
    ORDER BY id IS ?2 DESC LIMIT 1
)
RETURNING id, name, role, queues, workflows, prefix, created_at, expires_at, revoked_at, last_used_at";

const USED: &str = "\
UPDATE api_tokens SET last_used_at = ?2
WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at <= ?2 - ?3)";

const START_SESSION: &str = "\
INSERT INTO web_sessions (hash, token_id, csrf, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)";

// Signing out dates the expiry to it; a session already over stays as it ended.
const END_SESSION: &str = "\
UPDATE web_sessions SET expires_at = ?2 WHERE hash = ?1 AND expires_at > ?2
RETURNING token_id";

const SESSION: &str = "\
SELECT t.id, t.name, t.role, t.queues, t.workflows, t.prefix, t.created_at, t.expires_at, t.revoked_at,
       t.last_used_at, s.csrf, s.created_at, s.expires_at
FROM web_sessions s JOIN api_tokens t ON t.id = s.token_id
WHERE s.hash = ?1";

/// On the writer's transaction: the token revoked, if any.
pub(super) fn write(conn: &Connection, w: &TokenWrite) -> Result<Option<TokenRecord>, Error> {
    match w {
        TokenWrite::Create(t) => {
            conn.prepare_cached(RELEASE_EXPIRED)?.execute(params![t.name, t.created_at.as_micros()])?;
            let queues = serde_json::to_string(&t.queues)
                .map_err(|e| Error::Store(StoreError::InvalidChange(format!("token queues: {e}"))))?;
            let created = conn
                .prepare_cached(CREATE)?
                .query_row(
                    params![
                        t.id.to_bytes(),
                        t.name,
                        t.role.as_str(),
                        queues,
                        t.workflows,
                        t.prefix,
                        t.hash,
                        t.created_at.as_micros(),
                        t.expires_at.map(Timestamp::as_micros),
                    ],
                    |r| r.get::<_, [u8; 16]>(0),
                )
                .optional()?;
            match created {
                Some(_) => Ok(None),
                None => Err(Error::Store(tokens::name_taken(&t.name))),
            }
        }
        TokenWrite::Revoke { name_or_id, at } => {
            let id = TokenWrite::id_of(name_or_id).map(|id| id.to_bytes());
            conn.prepare_cached(REVOKE)?
                .query_row(params![name_or_id, id, at.as_micros()], |row| Ok(token(row)))
                .optional()?
                .transpose()
        }
        TokenWrite::Used { id, name, at } => {
            let renewed = conn.prepare_cached(USED)?.execute(params![
                id.to_bytes(),
                at.as_micros(),
                tokens::LAST_USED_GRAIN_US
            ])?;
            if renewed > 0 {
                let event = NewAuditEvent::new(*at, AuditKind::TokenUsed, name.clone(), Some(name.clone()));
                super::audit::record(conn, &event)?;
            }
            Ok(None)
        }
        TokenWrite::StartSession(n) => {
            let at = n.created_at.as_micros();
            conn.prepare_cached("DELETE FROM web_sessions WHERE expires_at <= ?1")?.execute([at])?;
            conn.prepare_cached(START_SESSION)?.execute(params![
                n.hash,
                n.token.to_bytes(),
                n.csrf,
                at,
                n.expires_at.as_micros()
            ])?;
            Ok(None)
        }
        TokenWrite::EndSession { hash, at } => {
            let ended = conn
                .prepare_cached(END_SESSION)?
                .query_row(params![hash, at.as_micros()], |r| r.get::<_, [u8; 16]>(0))
                .optional()?;
            let Some(id) = ended else { return Ok(None) };
            conn.prepare_cached(&format!("SELECT {COLUMNS} FROM api_tokens WHERE id = ?1"))?
                .query_row([id], |row| Ok(token(row)))
                .optional()?
                .transpose()
        }
    }
}

pub(super) fn session(conn: &Connection, hash: [u8; 32]) -> Result<Option<SessionRecord>, Error> {
    conn.prepare_cached(SESSION)?
        .query_row([hash], |row| {
            Ok(token(row).and_then(|token| {
                Ok(SessionRecord {
                    token,
                    csrf: row.get(10)?,
                    created_at: Timestamp::from_micros(row.get(11)?),
                    expires_at: Timestamp::from_micros(row.get(12)?),
                })
            }))
        })
        .optional()?
        .transpose()
}

pub(super) fn list(conn: &Connection) -> Result<Vec<TokenRecord>, Error> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {COLUMNS} FROM api_tokens ORDER BY token_no DESC"))?;
    let rows = stmt.query_map([], |row| Ok(token(row)))?;
    rows.map(|r| r?).collect()
}

pub(super) fn by_hash(conn: &Connection, hash: [u8; 32]) -> Result<Option<TokenRecord>, Error> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM api_tokens WHERE hash = ?1"))?
        .query_row([hash], |row| Ok(token(row)))
        .optional()?
        .transpose()
}

pub(super) fn any_live(conn: &Connection, now: Timestamp) -> Result<bool, Error> {
    Ok(conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM api_tokens \
             WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > ?1))",
        )?
        .query_row([now.as_micros()], |r| r.get(0))?)
}

fn token(row: &Row<'_>) -> Result<TokenRecord, Error> {
    let queues: String = row.get(3)?;
    let queues = serde_json::from_str(&queues)
        .map_err(|e| Error::Store(StoreError::Corrupt(format!("token queues are not JSON: {e}"))))?;
    tokens::from_columns(
        row.get(0)?,
        row.get(1)?,
        &row.get::<_, String>(2)?,
        queues,
        row.get(4)?,
        row.get(5)?,
        (row.get(6)?, row.get(7)?, row.get(8)?, row.get(9)?),
    )
    .map_err(|e| Error::Store(StoreError::Corrupt(e)))
}
