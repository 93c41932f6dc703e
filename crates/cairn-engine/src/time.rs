//! Waiting on Cairn's [`Clock`]: real sleeps for the system clock, and for a
//! [`ManualClock`] a wake-up each time a test moves it — never a real sleep.

use std::sync::Arc;

use cairn_core::{Clock, ManualClock, SystemClock, Timestamp};
use tokio::sync::Notify;

#[derive(Clone)]
pub struct EngineClock {
    clock: Arc<dyn Clock>,
    /// Set for manual clocks: notified whenever the test advances time.
    moved: Option<Arc<Notify>>,
}

impl EngineClock {
    pub fn system() -> Self {
        EngineClock { clock: Arc::new(SystemClock::new()), moved: None }
    }

    pub fn manual(clock: ManualClock) -> Self {
        let moved = Arc::new(Notify::new());
        let m = moved.clone();
        clock.on_advance(move |_| m.notify_waiters());
        EngineClock { clock: Arc::new(clock), moved: Some(moved) }
    }

    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    pub fn is_manual(&self) -> bool {
        self.moved.is_some()
    }

    /// Returns once `now() >= deadline`.
    pub async fn sleep_until(&self, deadline: Timestamp) {
        match &self.moved {
            None => {
                let now = self.now();
                if deadline > now {
                    tokio::time::sleep(deadline.since(now)).await;
                }
            }
            Some(moved) => loop {
                let notified = moved.notified();
                tokio::pin!(notified);
                // Register before checking, so an advance in between is not missed.
                notified.as_mut().enable();
                if self.now() >= deadline {
                    return;
                }
                notified.await;
            },
        }
    }
}

impl std::fmt::Debug for EngineClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineClock").field("now", &self.now()).field("manual", &self.is_manual()).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn manual_sleep_wakes_only_when_time_is_moved() {
        let manual = ManualClock::at_test_epoch();
        let clock = EngineClock::manual(manual.clone());
        let deadline = clock.now().saturating_add(Duration::from_secs(60));
        let c = clock.clone();
        let waiter = tokio::spawn(async move { c.sleep_until(deadline).await });
        tokio::task::yield_now().await;
        manual.advance(Duration::from_secs(59));
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        manual.advance(Duration::from_secs(1));
        waiter.await.unwrap();
    }
}
