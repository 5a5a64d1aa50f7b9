//! The moves a build may make between its states.
//!
//! `pending → claimed → cloning → building → pushing → completed`, with `failed` and
//! `cancelled` reachable from any state that is not final. A lease that runs out moves a
//! leased build back to `pending` (the store does that, guarded by the same rules).

use wharf_wire::BuildState;

/// A move the rules refuse, with the states involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a build cannot move from {from} to {to}")]
pub struct TransitionError {
    pub from: BuildState,
    pub to: BuildState,
}

/// Checks that an agent may report `to` for a build that is now `from`.
///
/// Agents move forward through the working states (skipping is allowed: a compose build
/// may push as part of building) and may end the build as completed or failed.
pub fn check_agent_report(from: BuildState, to: BuildState) -> Result<(), TransitionError> {
    use BuildState::*;
    let allowed = match (from, to) {
        (from, _) if !from.is_leased() => false,
        (_, Failed) => true,
        (_, Pending | Claimed | Cancelled) => false,
        (from, to) => rank(to) >= rank(from),
    };
    if allowed {
        Ok(())
    } else {
        Err(TransitionError { from, to })
    }
}

/// Checks that a user may cancel a build that is now `from`.
pub fn check_cancel(from: BuildState) -> Result<(), TransitionError> {
    if from.is_final() {
        Err(TransitionError {
            from,
            to: BuildState::Cancelled,
        })
    } else {
        Ok(())
    }
}

/// Checks that a user may retry a build that is now `from`: only finished builds are retried.
pub fn check_retry(from: BuildState) -> Result<(), TransitionError> {
    if from.is_final() {
        Ok(())
    } else {
        Err(TransitionError {
            from,
            to: BuildState::Pending,
        })
    }
}

/// The reason kept on a build that a newer build of its service cancelled.
pub fn superseded_reason(newer_build_id: i64) -> String {
    format!("{SUPERSEDED_PREFIX}{newer_build_id}")
}

/// True when a cancelled build's reason says a newer build superseded it.
pub fn is_superseded_reason(reason: &str) -> bool {
    reason.starts_with(SUPERSEDED_PREFIX)
}

const SUPERSEDED_PREFIX: &str = "superseded by build #";

fn rank(state: BuildState) -> usize {
    BuildState::ALL
        .iter()
        .position(|candidate| *candidate == state)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use BuildState::*;

    #[test]
    fn agents_move_forward_and_may_fail_at_any_working_step() {
        let allowed = [
            (Claimed, Cloning),
            (Cloning, Building),
            (Building, Pushing),
            (Pushing, Completed),
            (Claimed, Failed),
            (Building, Failed),
            (Building, Completed),
            (Cloning, Cloning),
        ];
        for (from, to) in allowed {
            assert_eq!(check_agent_report(from, to), Ok(()), "{from} -> {to}");
        }
        let refused = [
            (Pending, Cloning),
            (Building, Cloning),
            (Completed, Failed),
            (Cancelled, Building),
            (Failed, Completed),
            (Building, Pending),
            (Building, Cancelled),
            (Claimed, Claimed),
        ];
        for (from, to) in refused {
            assert!(check_agent_report(from, to).is_err(), "{from} -> {to}");
        }
    }

    #[test]
    fn superseded_reasons_are_recognised() {
        assert_eq!(superseded_reason(12), "superseded by build #12");
        assert!(is_superseded_reason(&superseded_reason(12)));
        assert!(!is_superseded_reason("cancelled by a user"));
    }

    #[test]
    fn only_unfinished_builds_cancel_and_only_finished_ones_retry() {
        for state in BuildState::ALL {
            assert_eq!(check_cancel(state).is_ok(), !state.is_final(), "{state}");
            assert_eq!(check_retry(state).is_ok(), state.is_final(), "{state}");
        }
    }
}
