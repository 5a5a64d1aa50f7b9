//! Wake-up signals: "a build was queued" for the claims waiting on the queue, "a build's log or
//! state changed" for the readers following a log, "a release moved" for the scheduler, the
//! agents waiting for rollouts and the deploy hooks, "a reported build changed" for the GitHub
//! reporter.
//!
//! The store is the truth; a signal only tells the waiters in this process to look now instead
//! of at their next periodic look. A version counter in a `watch` channel means no wake-up is
//! lost between a look that found nothing and the wait that follows it.

use tokio::sync::watch;

/// The server's wake-up signals, one for each kind of change something waits for.
#[derive(Clone, Default)]
pub(crate) struct Signals {
    /// A build was queued or returned to the queue: wakes the agents' claims.
    pub queue: Signal,
    /// A build's log grew or its state changed: wakes the log followers.
    pub logs: Signal,
    /// Builds completed, releases created, rollouts moved: wakes the release scheduler, the
    /// agents waiting for rollouts and the deploy hooks waiting for an outcome.
    pub releases: Signal,
    /// Ring after changing the state of a build or of a release: it wakes the GitHub reporter.
    /// (The store's triggers already made the build due; this makes the reporter look now
    /// rather than at its next periodic look.)
    pub github_reports: Signal,
}

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
