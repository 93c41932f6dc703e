//! The servers sharing one database: who is alive and who leads, on
//! PostgreSQL's session advisory locks (no table, nothing to expire).
//!
//! A server that joins opens a session of its own (`session`, outside the
//! pool) and takes its liveness lock. The lock lives exactly as long as the
//! session: when the server stops, crashes or loses its connection,
//! PostgreSQL releases it, and [`server_alive`] (asked on any pooled
//! connection: take the lock and give it back at once, in one statement)
//! finds it free. The session also tries the one leader lock every
//! [`LEADER_POLL`] until it holds it; when the leader's session ends, the
//! next try of another member takes it. A session that breaks stops leading
//! at once, and the member reconnects with backoff (at most 2 s between
//! tries) and takes its locks again.
//!
//! Lock keys: PostgreSQL keeps the advisory locks taken with one `bigint`
//! key apart from those taken with two `int` keys. The migration lock and
//! [`LEADER_LOCK`] are single `bigint` keys spelled in ASCII ("cairn_mg",
//! "cairn_ld"); a server's liveness lock is the pair of `int`s made of the
//! 64-bit FNV-1a hash of its id ([`server_lock`]). No server id can collide
//! with either of the others, and two ids collide with odds of 2^-64.

use std::time::Duration;

use deadpool_postgres::Pool;
use tokio::sync::{oneshot, watch};
use tokio::time::MissedTickBehavior;
use tokio_postgres::{Client, Config};

use super::session::{self, FIRST_BACKOFF, Session};
use super::{Error, describe};
use crate::dispatch::Membership;
use crate::error::StoreError;

/// The advisory lock key of the leader ("cairn_ld" in ASCII).
pub(super) const LEADER_LOCK: i64 = 0x6361_6972_6e5f_6c64;

/// How often a member that does not lead tries the leader lock (and the
/// leader checks its session).
const LEADER_POLL: Duration = Duration::from_millis(500);

/// A session that does not answer a probe within this is taken as lost.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How long a join waits for its liveness lock, held by a session of the
/// same id that is still closing (a server restarting with its old id).
const JOIN_WAIT: Duration = Duration::from_secs(5);

const TAKE_SERVER_LOCK: &str = include_str!("sql/take_server_lock.sql");
const TAKE_LEADER_LOCK: &str = include_str!("sql/take_leader_lock.sql");
const SERVER_ALIVE: &str = include_str!("sql/server_alive.sql");

/// The statements run on pooled connections, prepared when the store connects.
pub(super) const STATEMENTS: &[&str] = &[SERVER_ALIVE];

/// 64-bit FNV-1a: small, stable across builds and platforms (unlike std's
/// hasher), and well spread for short ids.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes.iter().fold(OFFSET, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(PRIME))
}

/// The two-`int` advisory lock key of `server`'s liveness: the high and the
/// low half of its FNV-1a hash.
pub(super) fn server_lock(server: &str) -> (i32, i32) {
    let [a, b, c, d, e, f, g, h] = fnv1a64(server.as_bytes()).to_be_bytes();
    (i32::from_be_bytes([a, b, c, d]), i32::from_be_bytes([e, f, g, h]))
}

/// Whether `owner`'s liveness lock is held by a session (its own).
pub(super) async fn server_alive(pool: &Pool, owner: &str) -> Result<bool, Error> {
    let (class, object) = server_lock(owner);
    let client = pool.get().await?;
    let stmt = client.prepare_cached(SERVER_ALIVE).await?;
    Ok(client.query_one(&stmt, &[&class, &object]).await?.try_get(0)?)
}

/// Joins as `server`: returns once its liveness lock is held, leading if the
/// leader lock was free.
pub(super) async fn join(config: &Config, server: &str) -> Result<Membership, StoreError> {
    let key = server_lock(server);
    let failed = |e: tokio_postgres::Error| {
        StoreError::Database(format!("joining the servers as {server}: {}", describe(&e)))
    };
    let Some(session) = open(config, key, JOIN_WAIT).await.map_err(failed)? else {
        return Err(StoreError::Database(format!(
            "cannot join as {server}: a live session already holds that server id (is another server \
             running with the same id?)"
        )));
    };
    let leading = take_leader(&session.client).await.map_err(failed)?;
    if leading {
        tracing::info!(server, "this server leads");
    }
    let (leader_tx, leader) = watch::channel(leading);
    let (leave, left) = oneshot::channel::<()>();
    tokio::spawn(keep(config.clone(), server.to_owned(), key, session, leader_tx, left));
    // Dropping the membership drops `leave`, which ends the task and its session.
    Ok(Membership { leader, _session: Some(Box::new(leave)) })
}

/// A session holding the liveness lock `key`, or `None` when another
/// session still holds it after `wait`.
async fn open(
    config: &Config,
    key: (i32, i32),
    wait: Duration,
) -> Result<Option<Session>, tokio_postgres::Error> {
    let session = session::open(config, |_| {}).await?;
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let taken: bool = session.client.query_one(TAKE_SERVER_LOCK, &[&key.0, &key.1]).await?.try_get(0)?;
        if taken {
            return Ok(Some(session));
        }
        if tokio::time::Instant::now() >= deadline {
            session.close().await;
            return Ok(None);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn take_leader(client: &Client) -> Result<bool, tokio_postgres::Error> {
    client.query_one(TAKE_LEADER_LOCK, &[&LEADER_LOCK]).await?.try_get(0)
}

/// Why a member's session ended.
enum Ended {
    /// The membership was dropped.
    Left,
    /// The session broke or stopped answering.
    Lost(String),
}

/// Keeps `server`'s membership until it is dropped (`left`): tries the
/// leader lock while not leading, and rejoins when the session is lost.
async fn keep(
    config: Config,
    server: String,
    key: (i32, i32),
    mut session: Session,
    leader: watch::Sender<bool>,
    mut left: oneshot::Receiver<()>,
) {
    loop {
        let ended = serve(&mut session, &leader, &mut left).await;
        let was_leading = leader.send_replace(false);
        session.close().await;
        let why = match ended {
            Ended::Left => return,
            Ended::Lost(why) => why,
        };
        tracing::warn!(server, was_leading, %why, "lost the membership session; rejoining");
        let mut wait = FIRST_BACKOFF;
        session = loop {
            tokio::select! {
                _ = &mut left => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let attempt = tokio::select! {
                _ = &mut left => return,
                attempt = open(&config, key, Duration::ZERO) => attempt,
            };
            match attempt {
                Ok(Some(session)) => break session,
                // The lost session may not have ended on the server yet.
                Ok(None) => tracing::debug!(server, "the liveness lock is still held; waiting"),
                Err(e) => tracing::debug!(server, error = %describe(&e), "cannot rejoin yet"),
            }
            wait = session::backoff(wait);
        };
        tracing::info!(server, "rejoined the servers");
    }
}

/// Runs one session until the membership is dropped or the session is lost.
async fn serve(
    session: &mut Session,
    leader: &watch::Sender<bool>,
    left: &mut oneshot::Receiver<()>,
) -> Ended {
    let mut tick = tokio::time::interval(LEADER_POLL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut *left => return Ended::Left,
            _ = &mut session.connection => return Ended::Lost("the connection closed".to_owned()),
            _ = tick.tick() => {}
        }
        let leading = *leader.borrow();
        // The leader checks that its session (and so its lock) lives; the
        // others try to take the lead.
        let probe = async {
            if leading {
                session.client.simple_query("SELECT 1").await.map(|_| true)
            } else {
                take_leader(&session.client).await
            }
        };
        match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(true)) if !leading => {
                tracing::info!("this server leads now");
                leader.send_replace(true);
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Ended::Lost(describe(&e)),
            Err(_) => return Ended::Lost(format!("no answer within {PROBE_TIMEOUT:?}")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_matches_its_reference_values() {
        // From the FNV reference (draft-eastlake-fnv), 64-bit FNV-1a.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn server_locks_are_the_halves_of_the_hash_and_stable() {
        assert_eq!(server_lock("a"), (0xaf63_dc4c_u32 as i32, 0x8601_ec8c_u32 as i32));
        let one = server_lock("server:host-1:4242:1767225600");
        assert_eq!(one, server_lock("server:host-1:4242:1767225600"), "the same id, the same key");
        assert_ne!(one, server_lock("server:host-1:4243:1767225600"));
    }
}
