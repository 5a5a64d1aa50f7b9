//! The drain around every admin change: while the marker file exists, every response on the
//! edge says `Connection: close`, so busy keep-alive connections are closed by their clients
//! rather than by the reload (see the edge's module docs). Changes and drains ahead share one
//! marker, held by whoever needs it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::config::DRAIN_FILE;
use super::{DRAIN, Shared};

/// The drain marker exists while anyone holds it: a change in progress, or a caller that
/// drains ahead of a change it expects ([`Edge::drain_ahead`](super::Edge::drain_ahead)).
#[derive(Default)]
pub(super) struct DrainState {
    holders: usize,
    /// When the marker was written; `None` while nobody holds it or it could not be written.
    since: Option<Instant>,
}

impl Shared {
    /// Takes a hold on the drain marker, writing it for the first holder; returns since when
    /// responses have been closing their connections (`None` when the marker cannot be written).
    fn hold_drain(&self) -> Option<Instant> {
        let mut state = self
            .drain
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if state.holders == 0 {
            let marker = self.state_dir.join(DRAIN_FILE);
            state.since = match std::fs::write(&marker, b"") {
                Ok(()) => Some(Instant::now()),
                Err(error) => {
                    tracing::warn!(
                        %error,
                        marker = %marker.display(),
                        "cannot drain keep-alive connections"
                    );
                    None
                }
            };
        }
        state.holders += 1;
        state.since
    }

    /// Lets go of a hold; the last one removes the marker.
    fn release_drain(&self) {
        let mut state = self
            .drain
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        state.holders = state.holders.saturating_sub(1);
        if state.holders == 0 && state.since.take().is_some() {
            let _ = std::fs::remove_file(self.state_dir.join(DRAIN_FILE));
        }
    }
}

/// While it lives, the drain marker exists and responses close their connections. Dropping it
/// (also when the change is cancelled) lets go of the marker.
pub(super) struct Drain<'a> {
    shared: &'a Shared,
}

impl Drain<'_> {
    /// Holds the marker and returns once it has existed for [`DRAIN`] (at once when a drain
    /// ahead began long enough ago).
    pub(super) async fn begin(shared: &Shared) -> Drain<'_> {
        let drain = Drain { shared };
        if let Some(since) = shared.hold_drain() {
            tokio::time::sleep_until(since + DRAIN).await;
        }
        drain
    }
}

impl Drop for Drain<'_> {
    fn drop(&mut self) {
        self.shared.release_drain();
    }
}

/// A drain begun ahead of a change the caller expects: see [`Edge::drain_ahead`](super::Edge::drain_ahead).
pub struct DrainAhead {
    shared: Arc<Shared>,
    released: Arc<AtomicBool>,
}

impl DrainAhead {
    /// Holds the drain for `shared` until the guard is dropped, or for `at_most`.
    pub(super) fn begin(shared: Arc<Shared>, at_most: Duration) -> DrainAhead {
        shared.hold_drain();
        let released = Arc::new(AtomicBool::new(false));
        let guard = DrainAhead {
            shared: shared.clone(),
            released: released.clone(),
        };
        tokio::spawn(async move {
            tokio::time::sleep(at_most).await;
            DrainAhead::release(&shared, &released);
        });
        guard
    }

    fn release(shared: &Shared, released: &AtomicBool) {
        if !released.swap(true, Ordering::SeqCst) {
            shared.release_drain();
        }
    }
}

impl Drop for DrainAhead {
    fn drop(&mut self) {
        DrainAhead::release(&self.shared, &self.released);
    }
}
