//! Wake-up signals: "a build was queued" for the claims waiting on the queue, and "a build's
//! log or state changed" for the readers following a log.
//!
//! The store is the truth; a signal only tells the waiters in this process to look now instead
//! of at their next periodic look. A version counter in a `watch` channel means no wake-up is
//! lost between a look that found nothing and the wait that follows it.

use tokio::sync::watch;

/// Wakes the tasks waiting for something to change.
#[derive(Clone)]
pub struct Signal {
    sender: watch::Sender<u64>,
}

impl Signal {
    pub fn new() -> Signal {
        Signal {
            sender: watch::channel(0).0,
        }
    }

    /// Says that something may have changed.
    pub fn notify(&self) {
        self.sender
            .send_modify(|version| *version = version.wrapping_add(1));
    }

    /// A receiver that sees every later [`Signal::notify`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.sender.subscribe()
    }
}

impl Default for Signal {
    fn default() -> Signal {
        Signal::new()
    }
}
