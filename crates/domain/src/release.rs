//! Which moves a rollout may make, and what a release's state is given its rollouts.

use wharf_wire::ReleaseState;

/// A report an agent may not make.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a rollout cannot move from {from} to {to}")]
pub struct RolloutTransitionError {
    pub from: ReleaseState,
    pub to: ReleaseState,
}

/// Where a state sits on the way to `live`; settled states come after it.
fn progress(state: ReleaseState) -> u8 {
    match state {
        ReleaseState::Pending => 0,
        ReleaseState::Pulling => 1,
        ReleaseState::Starting => 2,
        ReleaseState::HealthChecking => 3,
        ReleaseState::Live => 4,
        ReleaseState::Failed
        | ReleaseState::RolledBack
        | ReleaseState::Superseded
        | ReleaseState::Removed => 5,
    }
}

/// The moves an agent may report for the rollout it runs: forward through
/// `pulling → starting → health_checking → live`, or to `failed` (the pull failed; nothing
/// was touched) or `rolled_back` (the new version was unhealthy) from any step in between.
/// A teardown's rollout goes to `removed` (or `failed`) instead. `superseded` is the server's
/// to decide, never an agent's.
pub fn check_rollout_report(
    from: ReleaseState,
    to: ReleaseState,
) -> Result<(), RolloutTransitionError> {
    let allowed = from.is_rolling_out()
        && match to {
            ReleaseState::Starting | ReleaseState::HealthChecking | ReleaseState::Live => {
                progress(to) > progress(from)
            }
            ReleaseState::Failed | ReleaseState::RolledBack | ReleaseState::Removed => true,
            ReleaseState::Pending | ReleaseState::Pulling | ReleaseState::Superseded => false,
        };
    if allowed {
        Ok(())
    } else {
        Err(RolloutTransitionError { from, to })
    }
}

/// The state of a release from those of its rollouts: while any host still works on it, the
/// least advanced of them (so `live` means live everywhere); once all are settled, `rolled_back`
/// or `failed` if any host ended so, `superseded` when every host moved on, `removed` when a
/// teardown is done, else `live`.
pub fn release_state(rollouts: &[ReleaseState]) -> ReleaseState {
    if let Some(working) = rollouts
        .iter()
        .copied()
        .filter(|state| !state.is_settled())
        .min_by_key(|state| progress(*state))
    {
        return working;
    }
    for outcome in [ReleaseState::RolledBack, ReleaseState::Failed] {
        if rollouts.contains(&outcome) {
            return outcome;
        }
    }
    if !rollouts.is_empty()
        && rollouts
            .iter()
            .all(|state| *state == ReleaseState::Superseded)
    {
        ReleaseState::Superseded
    } else if rollouts.contains(&ReleaseState::Removed) {
        ReleaseState::Removed
    } else {
        ReleaseState::Live
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReleaseState::*;

    #[test]
    fn agents_move_rollouts_forward_or_to_an_outcome() {
        assert!(check_rollout_report(Pulling, Starting).is_ok());
        assert!(check_rollout_report(Pulling, Failed).is_ok());
        assert!(check_rollout_report(Starting, HealthChecking).is_ok());
        assert!(check_rollout_report(HealthChecking, Live).is_ok());
        assert!(check_rollout_report(HealthChecking, RolledBack).is_ok());
        assert!(check_rollout_report(Starting, Pulling).is_err());
        assert!(check_rollout_report(Live, RolledBack).is_err());
        assert!(check_rollout_report(Pending, Starting).is_err());
        assert!(check_rollout_report(Pulling, Superseded).is_err());
        assert!(check_rollout_report(RolledBack, Live).is_err());
    }

    #[test]
    fn a_release_is_as_far_as_its_slowest_host() {
        assert_eq!(release_state(&[Pending]), Pending);
        assert_eq!(release_state(&[Live, HealthChecking]), HealthChecking);
        assert_eq!(release_state(&[Live, Pending]), Pending);
        assert_eq!(release_state(&[Live, Live]), Live);
        assert_eq!(release_state(&[Live, RolledBack]), RolledBack);
        assert_eq!(release_state(&[Failed, Live]), Failed);
        assert_eq!(release_state(&[Superseded, Superseded]), Superseded);
        assert_eq!(release_state(&[Superseded, Live]), Live);
    }
}
