//! API tokens on PostgreSQL (`crate::tokens`): a creation is one
//! transaction; a revocation and a recorded use are one statement each.

use cairn_core::Timestamp;
use deadpool_postgres::Pool;
use tokio_postgres::Row;

use super::{Error, Uuid};
use crate::error::StoreError;
use crate::tokens::{self, NewToken, SessionRecord, TokenRecord, TokenWrite};

const COLUMNS: &str =
    "id, name, role, queues, workflows, prefix, created_at, expires_at, revoked_at, last_used_at";

// An expired token that was never revoked gives its name up: revoked at its expiry.
const RELEASE_EXPIRED: &str = "\
UPDATE api_tokens SET revoked_at = expires_at
WHERE name = $1 AND revoked_at IS NULL AND expires_at <= $2";

const CREATE: &str = "\
INSERT INTO api_tokens (id, name, role, queues, workflows, prefix, hash, created_at, expires_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (name) WHERE revoked_at IS NULL DO NOTHING
RETURNING id";

// By id before by name; never dated before the token was made.
const REVOKE: &str = "\
UPDATE api_tokens SET revoked_at = greatest(created_at, $3)
WHERE token_no = (
    SELECT token_no FROM api_tokens
    WHERE revoked_at IS NULL AND (id = $2::uuid OR name = $1)
    ORDER BY id IS NOT DISTINCT FROM $2::uuid DESC LIMIT 1
)
RETURNING id, name, role, queues, workflows, prefix, created_at, expires_at, revoked_at, last_used_at";

// The use and its audit event, in one statement: the event only when the
// use was renewed.
const USED: &str = "\
WITH renewed AS (
    UPDATE api_tokens SET last_used_at = $2
    WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $2::bigint - $3::bigint)
    RETURNING name
)
INSERT INTO audit_events (id, at, kind, actor, target)
SELECT $4, $2, 'token_used', name, name FROM renewed";

// Ends are deleted as a new session starts, in the same statement.
const START_SESSION: &str = "\
WITH ended AS (DELETE FROM web_sessions WHERE expires_at <= $4)
INSERT INTO web_sessions (hash, token_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)";

// Signing out dates the expiry to it; the token it acted as, if it was live.
const END_SESSION: &str = "\
WITH ended AS (
    UPDATE web_sessions SET expires_at = $2 WHERE hash = $1 AND expires_at > $2 RETURNING token_id
)
SELECT t.id, t.name, t.role, t.queues, t.workflows, t.prefix, t.created_at, t.expires_at, t.revoked_at,
       t.last_used_at
FROM ended JOIN api_tokens t ON t.id = ended.token_id";

const SESSION: &str = "\
SELECT t.id, t.name, t.role, t.queues, t.workflows, t.prefix, t.created_at, t.expires_at, t.revoked_at,
       t.last_used_at, s.csrf, s.created_at, s.expires_at
FROM web_sessions s JOIN api_tokens t ON t.id = s.token_id
WHERE s.hash = $1";

pub(super) async fn create(pool: &Pool, t: &NewToken) -> Result<(), Error> {
    let mut client = pool.get().await?;
    let connection: &mut tokio_postgres::Client = &mut client;
    let tx = connection.transaction().await?;
    tx.execute(RELEASE_EXPIRED, &[&t.name, &t.created_at.as_micros()]).await?;
    let queues = serde_json::to_value(&t.queues)
        .map_err(|e| Error::Store(StoreError::InvalidChange(format!("token queues: {e}"))))?;
    let created = tx
        .query_opt(
            CREATE,
            &[
                &Uuid(t.id.to_bytes()),
                &t.name,
                &t.role.as_str(),
                &queues,
                &t.workflows,
                &t.prefix,
                &&t.hash[..],
                &t.created_at.as_micros(),
                &t.expires_at.map(Timestamp::as_micros),
            ],
        )
        .await?;
    if created.is_none() {
        return Err(Error::Store(tokens::name_taken(&t.name)));
    }
    tx.commit().await?;
    Ok(())
}

pub(super) async fn write(pool: &Pool, w: &TokenWrite) -> Result<Option<TokenRecord>, Error> {
    match w {
        TokenWrite::Create(t) => create(pool, t).await.map(|()| None),
        TokenWrite::Revoke { name_or_id, at } => {
            let client = pool.get().await?;
            let stmt = client.prepare_cached(REVOKE).await?;
            let id = TokenWrite::id_of(name_or_id).map(|id| Uuid(id.to_bytes()));
            client
                .query_opt(&stmt, &[name_or_id, &id, &at.as_micros()])
                .await?
                .as_ref()
                .map(token)
                .transpose()
        }
        TokenWrite::Used { id, name: _, at } => {
            let client = pool.get().await?;
            let stmt = client.prepare_cached(USED).await?;
            let event = Uuid(cairn_core::AuditId::new(*at).to_bytes());
            client
                .execute(&stmt, &[&Uuid(id.to_bytes()), &at.as_micros(), &tokens::LAST_USED_GRAIN_US, &event])
                .await?;
            Ok(None)
        }
        TokenWrite::StartSession(n) => {
            let client = pool.get().await?;
            let stmt = client.prepare_cached(START_SESSION).await?;
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 5] = [
                &&n.hash[..],
                &Uuid(n.token.to_bytes()),
                &n.csrf,
                &n.created_at.as_micros(),
                &n.expires_at.as_micros(),
            ];
            client.execute(&stmt, &params).await?;
            Ok(None)
        }
        TokenWrite::EndSession { hash, at } => {
            let client = pool.get().await?;
            let stmt = client.prepare_cached(END_SESSION).await?;
            client.query_opt(&stmt, &[&&hash[..], &at.as_micros()]).await?.as_ref().map(token).transpose()
        }
    }
}

/// Records a token's use at `now` if the last one recorded is a minute old
/// or more (`crate::tokens::use_is_news`), and says so in `token`.
pub(super) async fn note_use(pool: &Pool, token: &mut TokenRecord, now: Timestamp) -> Result<(), Error> {
    if tokens::use_is_news(token.last_used_at, now) {
        write(pool, &TokenWrite::Used { id: token.id, name: token.name.clone(), at: now }).await?;
        token.last_used_at = Some(now);
    }
    Ok(())
}

pub(super) async fn session(pool: &Pool, hash: [u8; 32]) -> Result<Option<SessionRecord>, Error> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(SESSION).await?;
    let Some(row) = client.query_opt(&stmt, &[&&hash[..]]).await? else { return Ok(None) };
    Ok(Some(SessionRecord {
        token: token(&row)?,
        csrf: row.try_get(10)?,
        created_at: Timestamp::from_micros(row.try_get(11)?),
        expires_at: Timestamp::from_micros(row.try_get(12)?),
    }))
}

pub(super) async fn list(pool: &Pool) -> Result<Vec<TokenRecord>, Error> {
    let client = pool.get().await?;
    let stmt =
        client.prepare_cached(&format!("SELECT {COLUMNS} FROM api_tokens ORDER BY token_no DESC")).await?;
    client.query(&stmt, &[]).await?.iter().map(token).collect()
}

pub(super) async fn by_hash(pool: &Pool, hash: [u8; 32]) -> Result<Option<TokenRecord>, Error> {
    let client = pool.get().await?;
    let stmt = client.prepare_cached(&format!("SELECT {COLUMNS} FROM api_tokens WHERE hash = $1")).await?;
    client.query_opt(&stmt, &[&&hash[..]]).await?.as_ref().map(token).transpose()
}

pub(super) async fn any_live(pool: &Pool, now: Timestamp) -> Result<bool, Error> {
    let client = pool.get().await?;
    let stmt = client
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM api_tokens \
             WHERE revoked_at IS NULL AND (expires_at IS NULL OR expires_at > $1))",
        )
        .await?;
    Ok(client.query_one(&stmt, &[&now.as_micros()]).await?.try_get(0)?)
}

fn token(row: &Row) -> Result<TokenRecord, Error> {
    tokens::from_columns(
        row.try_get::<_, Uuid>(0)?.0,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
        row.try_get(5)?,
        (row.try_get(6)?, row.try_get(7)?, row.try_get(8)?, row.try_get(9)?),
    )
    .map_err(|e| Error::Store(StoreError::Corrupt(e)))
}
