//! A connection of its own, outside the pool, for what lives as long as a
//! session does: LISTEN (`notify`) and the advisory locks of membership
//! (`members`). Its connection is driven on a task of its own, which ends
//! when the connection does; that task's handle tells the owner so.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, Client, Config, NoTls, Notification};

use super::describe;

pub(super) struct Session {
    pub(super) client: Client,
    /// Ends when the connection does (closed or broken).
    pub(super) connection: JoinHandle<()>,
}

/// Connects; each notification the server sends goes to `on_notification`.
pub(super) async fn open(
    config: &Config,
    mut on_notification: impl FnMut(Notification) + Send + 'static,
) -> Result<Session, tokio_postgres::Error> {
    let (client, mut connection) = config.connect(NoTls).await?;
    let connection = tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(n))) => on_notification(n),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!(error = %describe(&e), "a session connection ended");
                    break;
                }
                None => break,
            }
        }
    });
    Ok(Session { client, connection })
}

impl Session {
    /// Ends the session: the server releases what it held (its advisory
    /// locks, its LISTEN) as it closes.
    pub(super) async fn close(self) {
        let Session { client, mut connection } = self;
        // Without a client the connection says goodbye and ends (unless it
        // already has: a finished task must not be awaited again).
        drop(client);
        if !connection.is_finished()
            && tokio::time::timeout(Duration::from_secs(1), &mut connection).await.is_err()
        {
            connection.abort();
        }
    }
}

/// How long to wait before the next reconnection: doubling, at most 2 s.
pub(super) fn backoff(previous: Duration) -> Duration {
    (previous * 2).min(Duration::from_secs(2))
}

/// The first wait before reconnecting.
pub(super) const FIRST_BACKOFF: Duration = Duration::from_millis(50);
