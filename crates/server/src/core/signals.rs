//! Wake-up signals: "a build was queued" for the claims waiting on the queue, "a log or its
//! build's or release's state changed" for the readers following a log, "a release moved" for the scheduler, the
//! agents waiting for rollouts and the deploy hooks, "a build's or a release's state changed" for the
//! GitHub reporter, the notifications and the dashboard's whole pages.
//!
//! The store is the truth; a signal only tells the waiters in this process to look now instead
//! of at their next periodic look. A version counter in a `watch` channel means no wake-up is
//! lost between a look that found nothing and the wait that follows it.
//!
//! [`long_poll`] is how a request waits on a signal: agents claiming a build or a rollout, log
//! followers, deploy hooks waiting for an outcome.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// How often a long poll looks again without a wake-up, which covers changes made by another
/// server replica (builds it queued, leases it expired).
const RECHECK: Duration = Duration::from_secs(1);

/// The server's wake-up signals, one for each kind of change something waits for.
#[derive(Clone, Default)]
pub(crate) struct Signals {
    /// A build was queued or returned to the queue: wakes the agents' claims.
    pub queue: Signal,
    /// A build's or a release's log grew, or its state (or a rollout's) changed: wakes the log
    /// followers.
    pub logs: Signal,
    /// Builds completed, releases created, rollouts moved: wakes the release scheduler, the
    /// agents waiting for rollouts and the deploy hooks waiting for an outcome.
    pub releases: Signal,
    /// Ring after changing the state of a build or of a release: it wakes the GitHub reporter
    /// (the store's triggers already made the build due; this makes the reporter look now
    /// rather than at its next periodic look), the notifications' delivery loop and the
    /// dashboard's whole-page live parts.
    pub states: Signal,
    /// A test message was asked for or dead messages retried: wakes the notifications'
    /// delivery loop (which also wakes with `states`, rung whenever a build or a
    /// release changes).
    pub notifications: Signal,
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

/// Looks with `look` until what it finds is `ready` or `wait` has passed, looking again
/// whenever `signal` rings and at least every second; answers the last look.
pub(crate) async fn long_poll<T, E, Look>(
    signal: &Signal,
    wait: Duration,
    mut look: impl FnMut() -> Look,
    ready: impl Fn(&T) -> bool,
) -> Result<T, E>
where
    Look: Future<Output = Result<T, E>>,
{
    let deadline = Instant::now() + wait;
    let mut wake_ups = signal.subscribe();
    loop {
        // Marking the current version seen before looking means a change after this point
        // always wakes the wait below.
        wake_ups.borrow_and_update();
        let found = look().await?;
        let now = Instant::now();
        if ready(&found) || now >= deadline {
            return Ok(found);
        }
        let pause = (deadline - now).min(RECHECK);
        let _ = tokio::time::timeout(pause, wake_ups.changed()).await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_long_poll_answers_at_the_first_ready_look() {
        let signal = Signal::new();
        let looks = AtomicU32::new(0);
        let waiting = long_poll(
            &signal,
            Duration::from_secs(30),
            || std::future::ready(Ok::<_, ()>(looks.fetch_add(1, Ordering::SeqCst) + 1)),
            |looked| *looked == 3,
        );
        let started = Instant::now();
        assert_eq!(waiting.await, Ok(3));
        // Without a wake-up, each further look waits for the recheck.
        assert_eq!(started.elapsed(), 2 * RECHECK);
    }

    #[tokio::test(start_paused = true)]
    async fn a_wake_up_makes_a_long_poll_look_at_once() {
        let signal = Signal::new();
        let found = std::sync::Mutex::new(None);
        let started = Instant::now();
        let waiting = long_poll(
            &signal,
            Duration::from_secs(30),
            || std::future::ready(Ok::<_, ()>(*found.lock().unwrap())),
            Option::is_some,
        );
        let ringing = async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            *found.lock().unwrap() = Some(7);
            signal.notify();
        };
        let (answer, ()) = tokio::join!(waiting, ringing);
        assert_eq!(answer, Ok(Some(7)));
        assert_eq!(started.elapsed(), Duration::from_millis(300));
    }

    #[tokio::test(start_paused = true)]
    async fn a_long_poll_answers_its_last_look_when_the_wait_is_over() {
        let signal = Signal::new();
        let started = Instant::now();
        let answer = long_poll(
            &signal,
            Duration::from_millis(2500),
            || std::future::ready(Ok::<_, ()>(None::<u32>)),
            Option::is_some,
        )
        .await;
        assert_eq!(answer, Ok(None));
        assert_eq!(started.elapsed(), Duration::from_millis(2500));
    }
}
