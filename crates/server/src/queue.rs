//! The wake-up signal between "a build was queued" and "an idle agent claims it".
//!
//! Claims themselves are atomic statements in the store; this only tells the claim requests
//! waiting in this process to look now instead of at their next periodic look. A version
//! counter in a `watch` channel means no wake-up is lost between a failed look and the wait.

use tokio::sync::watch;

/// Wakes waiting claimers.
#[derive(Clone)]
pub struct QueueSignal {
    sender: watch::Sender<u64>,
}

impl QueueSignal {
    pub fn new() -> QueueSignal {
        QueueSignal {
            sender: watch::channel(0).0,
        }
    }

    /// Says that there may be work to claim.
    pub fn notify(&self) {
        self.sender
            .send_modify(|version| *version = version.wrapping_add(1));
    }

    /// A receiver that sees every later [`QueueSignal::notify`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.sender.subscribe()
    }
}

impl Default for QueueSignal {
    fn default() -> QueueSignal {
        QueueSignal::new()
    }
}
