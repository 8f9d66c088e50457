//! The hand-off of a threat event to the sinks: the producer waits until every sink taking
//! threats holds the event in its spool, handed to the operating system, so an event the
//! gateway has reported (in its local log, on a block page) survives a SIGKILL of the gateway
//! and is delivered after the restart (at least once).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// How many sinks still have to take one event in.
#[derive(Debug)]
pub(crate) struct Handoff {
    pending: AtomicUsize,
    done: Notify,
}

impl Handoff {
    /// A hand-off to `sinks` sinks.
    pub(crate) fn new(sinks: usize) -> Arc<Self> {
        Arc::new(Handoff {
            pending: AtomicUsize::new(sinks),
            done: Notify::new(),
        })
    }

    /// One sink has the event in its spool (or file).
    pub(crate) fn taken(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_waiters();
        }
    }

    /// Waits until every sink has taken the event, at most `limit`; whether they all did.
    pub(crate) async fn wait(&self, limit: Duration) -> bool {
        let wait = async {
            loop {
                let notified = self.done.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.pending.load(Ordering::Acquire) == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(limit, wait).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn waits_for_every_sink_and_no_longer() {
        let h = Handoff::new(2);
        let h2 = Arc::clone(&h);
        let t = tokio::spawn(async move { h2.wait(Duration::from_secs(5)).await });
        tokio::time::sleep(Duration::from_millis(10)).await;
        h.taken();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!t.is_finished(), "one sink is not all");
        h.taken();
        assert!(t.await.unwrap());
        assert!(h.wait(Duration::from_millis(1)).await, "already done");
        let stuck = Handoff::new(1);
        assert!(!stuck.wait(Duration::from_millis(20)).await);
    }
}
