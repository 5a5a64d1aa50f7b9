//! When a build or a rollout must be over: work still in progress past its deadline is *stuck*
//! (as is work whose agent has not been heard from for a lease), and the store reports it as a
//! `rollout.stuck` notification with one of the reasons here.
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
     timeout): its agent answers but has not ended it; cancel it, or it goes back to the \
     queue once its agent stops answering";

/// The reason a `rollout.stuck` event gives for a rollout past its deadline.
pub const OVERDUE_ROLLOUT_REASON: &str = "it is still rolling out past its deadline (the \
     service's health deadline and time for the pull): its agent answers but has not ended it; \
     the previous release keeps serving";

/// What the dashboard says of work whose agent has not been heard from for a lease.
pub const SILENT_AGENT_REASON: &str = "its agent has not been heard from for a lease: at the \
     next lease check a build goes back to the queue (or fails on its last attempt), and a \
     rollout's host is reported offline while the previous release keeps serving";

/// Why work still in progress at `now` is stuck, or `None` while it is not: its agent's lease
/// ran out (`lease_expires_at`, for work held under a lease), or it passed its deadline.
/// `overdue` is the reason for the second, [`OVERDUE_BUILD_REASON`] or
/// [`OVERDUE_ROLLOUT_REASON`].
pub fn stuck_reason(
    lease_expires_at: Option<i64>,
    deadline_at: Option<i64>,
    overdue: &'static str,
    now: i64,
) -> Option<&'static str> {
    if lease_expires_at.is_some_and(|expires| expires <= now) {
        Some(SILENT_AGENT_REASON)
    } else if deadline_at.is_some_and(|deadline| deadline <= now) {
        Some(overdue)
    } else {
        None
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
    fn work_is_stuck_once_its_lease_or_its_deadline_has_passed() {
        let overdue = OVERDUE_BUILD_REASON;
        assert_eq!(stuck_reason(None, None, overdue, 5), None);
        assert_eq!(stuck_reason(Some(6), Some(9), overdue, 5), None);
        assert_eq!(
            stuck_reason(Some(5), Some(9), overdue, 5),
            Some(SILENT_AGENT_REASON)
        );
        assert_eq!(stuck_reason(Some(9), Some(5), overdue, 5), Some(overdue));
        assert_eq!(
            stuck_reason(None, Some(4), OVERDUE_ROLLOUT_REASON, 5),
            Some(OVERDUE_ROLLOUT_REASON)
        );
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
