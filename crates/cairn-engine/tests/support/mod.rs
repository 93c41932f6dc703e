//! What the engine's tests share: waiting for the engine to reach a state.

use std::future::Future;
use std::time::{Duration, Instant};

/// How long a test waits, in real time, for the engine's own tasks and
/// threads (the SQLite writer among them) to reach a state. Never a wait
/// for one of the engine's timeouts: the manual clock drives those.
pub(crate) const PATIENCE: Duration = Duration::from_secs(30);

/// Polls `probe` until it answers `Some`, for up to [`PATIENCE`]. Between
/// polls it sleeps a millisecond rather than yielding: a loop of yields
/// keeps a core busy, and on a loaded two-core machine the thread it waits
/// for may then not get one before a fixed count of yields runs out.
pub(crate) async fn eventually<T, Fut>(what: &str, mut probe: impl FnMut() -> Fut) -> T
where
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = probe().await {
            return found;
        }
        assert!(Instant::now() < deadline, "waited {PATIENCE:?} for {what}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
