//! When a build or a rollout is *stuck*, one definition for every place that says so (the
//! notifications' `rollout.stuck`, the pages that show work in progress): its agent has not been
//! heard from for a lease, or it has passed its deadline and is still not over.
//!
//! The deadline is fixed when an agent takes the work. A build's is the agent's build timeout
//! (the agent stops a build that reaches it) and a lease's grace for that stop to be reported. A
//! rollout's is the service's health deadline and the time a pull of its image may take (the
//! same room the deploy hook waits for an outcome).

use std::time::Duration;

/// How long pulling a release's image may take, on top of its health deadline.
pub const PULL_ALLOWANCE: Duration = Duration::from_secs(600);

/// The reason a `rollout.stuck` event gives for a build past its deadline.
pub const OVERDUE_BUILD_REASON: &str = "it is still running past its deadline (the agent's build \
     timeout): its agent answers but has not ended it; cancel it, or it fails when its agent \
     stops answering";

/// The reason a `rollout.stuck` event gives for a rollout past its deadline.
pub const OVERDUE_ROLLOUT_REASON: &str = "it is still rolling out past its deadline (the \
     service's health deadline and time for the pull): its agent answers but has not ended it; \
     the previous release keeps serving";

/// Why a build or rollout is stuck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stuck {
    /// Its agent has not been heard from for a lease: a build goes back to the queue when its
    /// lease runs out, a rollout fails and the previous release stays.
    Silent,
    /// Its agent is heard from, but it has run past its deadline.
    Overdue,
}

impl Stuck {
    /// Whether work whose agent's lease (or, for a rollout, whose agent's last sign of life and a
    /// lease) ends at `heard_until`, and whose deadline is `deadline_at`, is stuck at `now`; all
    /// in milliseconds since the epoch. Work with no deadline is stuck only when silent.
    pub fn at(now: i64, heard_until: i64, deadline_at: Option<i64>) -> Option<Stuck> {
        if now > heard_until {
            Some(Stuck::Silent)
        } else if deadline_at.is_some_and(|deadline| now > deadline) {
            Some(Stuck::Overdue)
        } else {
            None
        }
    }
}

/// The deadline of a build an agent with a build timeout of `timeout` takes at `claimed_at`,
/// under leases of `lease`.
pub fn build_deadline(claimed_at: i64, timeout: Duration, lease: Duration) -> i64 {
    claimed_at
        .saturating_add(millis(timeout))
        .saturating_add(millis(lease))
}

/// The deadline of a rollout taken at `claimed_at` for a service whose health deadline is
/// `health_deadline`.
pub fn rollout_deadline(claimed_at: i64, health_deadline: Duration) -> i64 {
    claimed_at
        .saturating_add(millis(health_deadline))
        .saturating_add(millis(PULL_ALLOWANCE))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_comes_before_the_deadline() {
        assert_eq!(Stuck::at(100, 200, Some(50)), Some(Stuck::Overdue));
        assert_eq!(Stuck::at(300, 200, Some(50)), Some(Stuck::Silent));
        assert_eq!(Stuck::at(300, 200, None), Some(Stuck::Silent));
    }

    #[test]
    fn work_heard_from_and_within_its_deadline_is_not_stuck() {
        assert_eq!(Stuck::at(100, 200, Some(100)), None);
        assert_eq!(Stuck::at(100, 200, None), None);
        assert_eq!(Stuck::at(200, 200, Some(150)), Some(Stuck::Overdue));
    }

    #[test]
    fn deadlines_add_the_timeout_and_its_grace() {
        assert_eq!(
            build_deadline(1_000, Duration::from_secs(30), Duration::from_secs(15)),
            46_000
        );
        assert_eq!(
            rollout_deadline(1_000, Duration::from_secs(30)),
            1_000 + 30_000 + 600_000
        );
        assert_eq!(
            build_deadline(i64::MAX - 1, Duration::from_secs(1), Duration::ZERO),
            i64::MAX
        );
    }
}
