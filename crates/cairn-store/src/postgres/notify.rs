//! Notices across servers ([`Notice`]). The write statements call
//! `pg_notify('cairn', payload)` inside their transaction; PostgreSQL
//! delivers them when (and only if) it commits, merging identical payloads of
//! one transaction. Each store keeps one session (`session`) that LISTENs and
//! publishes what arrives on a broadcast channel.
//!
//! Payloads are short text: `o:<queue>` ([`Notice::Offered`]),
//! `c:<run>:<task>` ([`Notice::Claimed`]), `p:<run>:<task>`
//! ([`Notice::Posted`]), `x:<run>` ([`Notice::CancelRequested`]) and
//! `a:<alert>` ([`Notice::Alert`]), ids in
//! PostgreSQL's uuid text form. One the store does not know (a newer
//! server's) is ignored.
//!
//! When the listening connection breaks, notices committed meanwhile are lost
//! for good: the task reconnects with backoff (at most 2 s between tries),
//! LISTENs again and publishes [`Notice::Resync`], so that whoever waits
//! reads the state again. The task ends when the store closes or is dropped.

use std::sync::Mutex;

use cairn_core::{RunId, TaskId};
use tokio::sync::{broadcast, oneshot};
use tokio_postgres::Config;

use super::describe;
use super::session::{self, FIRST_BACKOFF, Session};
use crate::dispatch::Notice;

/// The channel every notice is sent on.
const CHANNEL: &str = "cairn";

/// Notices a receiver may fall behind by before it lags (and must resync).
const BACKLOG: usize = 4096;

/// The store's listener: the broadcast channel and the task that feeds it.
pub(super) struct Listener {
    notices: broadcast::Sender<Notice>,
    /// Dropping it (at close, or with the store) ends the task.
    stop: Mutex<Option<oneshot::Sender<()>>>,
}

impl Listener {
    /// Connects and LISTENs before returning, so every notice committed
    /// after a receiver subscribes reaches it.
    pub(super) async fn start(config: Config) -> Result<Listener, tokio_postgres::Error> {
        let (notices, _) = broadcast::channel(BACKLOG);
        let session = listen(&config, notices.clone()).await?;
        let (stop, stopped) = oneshot::channel();
        tokio::spawn(keep_listening(config, notices.clone(), session, stopped));
        Ok(Listener { notices, stop: Mutex::new(Some(stop)) })
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<Notice> {
        self.notices.subscribe()
    }

    pub(super) fn stop(&self) {
        self.stop.lock().unwrap_or_else(|e| e.into_inner()).take();
    }
}

async fn listen(
    config: &Config,
    notices: broadcast::Sender<Notice>,
) -> Result<Session, tokio_postgres::Error> {
    let session = session::open(config, move |n| {
        if n.channel() != CHANNEL {
            return;
        }
        match parse(n.payload()) {
            // No receiver is fine: nobody is waiting.
            Some(notice) => drop(notices.send(notice)),
            None => tracing::debug!(payload = n.payload(), "ignoring a notice of an unknown kind"),
        }
    })
    .await?;
    session.client.batch_execute(&format!("LISTEN {CHANNEL}")).await?;
    Ok(session)
}

async fn keep_listening(
    config: Config,
    notices: broadcast::Sender<Notice>,
    mut session: Session,
    mut stopped: oneshot::Receiver<()>,
) {
    loop {
        tokio::select! {
            _ = &mut stopped => {
                session.close().await;
                return;
            }
            _ = &mut session.connection => {}
        }
        tracing::warn!("the connection listening for notices was lost; reconnecting");
        let mut wait = FIRST_BACKOFF;
        session = loop {
            tokio::select! {
                _ = &mut stopped => return,
                _ = tokio::time::sleep(wait) => {}
            }
            let attempt = tokio::select! {
                _ = &mut stopped => return,
                attempt = listen(&config, notices.clone()) => attempt,
            };
            match attempt {
                Ok(session) => break session,
                Err(e) => tracing::debug!(error = %describe(&e), "cannot listen for notices yet"),
            }
            wait = session::backoff(wait);
        };
        tracing::info!("listening for notices again; whoever waits reads the state again");
        let _ = notices.send(Notice::Resync);
    }
}

/// The notice a payload stands for, if the store knows its kind.
fn parse(payload: &str) -> Option<Notice> {
    let (kind, rest) = payload.split_once(':')?;
    let ids = || -> Option<(RunId, TaskId)> {
        let (run, task) = rest.split_once(':')?;
        Some((RunId::from_bytes(uuid(run)?), TaskId::from_bytes(uuid(task)?)))
    };
    match kind {
        "o" => Some(Notice::Offered { queue: rest.to_owned() }),
        "c" => ids().map(|(run, task)| Notice::Claimed { run, task }),
        "p" => ids().map(|(run, task)| Notice::Posted { run, task }),
        "x" => uuid(rest).map(|run| Notice::CancelRequested { run: RunId::from_bytes(run) }),
        "a" => uuid(rest).map(|id| Notice::Alert { id: cairn_core::AlertId::from_bytes(id) }),
        _ => None,
    }
}

/// The 16 bytes of a uuid in text form (`8-4-4-4-12` hex digits).
fn uuid(text: &str) -> Option<[u8; 16]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 {
        return None;
    }
    u128::from_str_radix(&hex, 16).ok().map(u128::to_be_bytes)
}

#[cfg(test)]
mod tests {
    use cairn_core::Timestamp;

    use super::*;

    fn text(bytes: [u8; 16]) -> String {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
    }

    #[test]
    fn payloads_become_notices() {
        let run = RunId::new(Timestamp::from_micros(1_000));
        let task = TaskId::new(Timestamp::from_micros(2_000));
        let ids = format!("{}:{}", text(run.to_bytes()), text(task.to_bytes()));
        assert_eq!(parse("o:gpu"), Some(Notice::Offered { queue: "gpu".into() }));
        assert_eq!(parse("o:a:b"), Some(Notice::Offered { queue: "a:b".into() }), "a queue may hold ':'");
        assert_eq!(parse(&format!("c:{ids}")), Some(Notice::Claimed { run, task }));
        assert_eq!(parse(&format!("p:{ids}")), Some(Notice::Posted { run, task }));
        assert_eq!(parse(&format!("x:{}", text(run.to_bytes()))), Some(Notice::CancelRequested { run }));
        for unknown in
            ["", "o", "x:1", "x", &format!("x:{ids}"), "c:1:2", "p:not-a-uuid:at-all", &format!("z:{ids}")]
        {
            assert_eq!(parse(unknown), None, "{unknown:?}");
        }
    }
}
