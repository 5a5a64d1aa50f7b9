//! What a build's GitHub deployment should show: the status that matches where the build and
//! its release stand, the statuses to send to get there from the last one GitHub accepted, and
//! the links and descriptions that go with them.
//!
//! GitHub shows a deployment's statuses in the order they were created. Wharf reports
//! `queued` (build queued) → `in_progress` (claimed, building, releasing) → `success` (live),
//! or `failure` / `error`, and `inactive` when a newer build or release replaced it.

use serde::{Deserialize, Serialize};
use wharf_wire::{BuildState, ReleaseState};

use crate::build::is_superseded_reason;

/// GitHub's limit on a deployment status description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 140;

/// The states of a GitHub deployment status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeploymentState {
    Error,
    Failure,
    Inactive,
    InProgress,
    Queued,
    Pending,
    Success,
}

impl DeploymentState {
    pub const ALL: [DeploymentState; 7] = [
        DeploymentState::Error,
        DeploymentState::Failure,
        DeploymentState::Inactive,
        DeploymentState::InProgress,
        DeploymentState::Queued,
        DeploymentState::Pending,
        DeploymentState::Success,
    ];

    /// GitHub's name of the state.
    pub fn as_str(self) -> &'static str {
        match self {
            DeploymentState::Error => "error",
            DeploymentState::Failure => "failure",
            DeploymentState::Inactive => "inactive",
            DeploymentState::InProgress => "in_progress",
            DeploymentState::Queued => "queued",
            DeploymentState::Pending => "pending",
            DeploymentState::Success => "success",
        }
    }

    pub fn parse(name: &str) -> Option<DeploymentState> {
        DeploymentState::ALL
            .into_iter()
            .find(|state| state.as_str() == name)
    }

    /// Where the state stands in a deployment's life: waiting (0), running (1) or ended (2).
    fn stage(self) -> u8 {
        match self {
            DeploymentState::Queued | DeploymentState::Pending => 0,
            DeploymentState::InProgress => 1,
            DeploymentState::Error
            | DeploymentState::Failure
            | DeploymentState::Inactive
            | DeploymentState::Success => 2,
        }
    }

    /// True for the ends that mean the work ran: it succeeded, or it failed while running.
    fn means_it_ran(self) -> bool {
        matches!(self, DeploymentState::Success | DeploymentState::Failure)
    }

    /// What a status sent only to fill the sequence says.
    fn step_description(self) -> &'static str {
        match self {
            DeploymentState::Queued | DeploymentState::Pending => "Queued",
            DeploymentState::InProgress => "In progress",
            DeploymentState::Success => "Succeeded",
            DeploymentState::Failure => "Failed",
            DeploymentState::Error => "Stopped",
            DeploymentState::Inactive => "Replaced",
        }
    }
}

impl std::fmt::Display for DeploymentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a build stands, as far as its GitHub deployment is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildProgress<'a> {
    pub build_state: BuildState,
    /// Why the build ended as it did (failed, cancelled).
    pub build_reason: Option<&'a str>,
    /// The newest release made from the build, if any: its state and reason.
    pub release: Option<(ReleaseState, Option<&'a str>)>,
    /// Whether a completed build becomes a release by itself.
    pub auto_deploy: bool,
    /// Where the live service answers (see [`environment_url`]), when it has a domain.
    pub environment_url: Option<&'a str>,
}

/// The status a deployment should show now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DesiredStatus {
    pub state: DeploymentState,
    /// One line of at most [`MAX_DESCRIPTION_CHARS`] characters.
    pub description: String,
    /// Only on `success`, and only when the service has a domain.
    pub environment_url: Option<String>,
}

impl DesiredStatus {
    fn new(state: DeploymentState, description: &str) -> DesiredStatus {
        DesiredStatus {
            state,
            description: short_description(description),
            environment_url: None,
        }
    }

    /// The description and link a status of `state` carries on the way to this one: this
    /// status's own when `state` is this status's state, a generic one otherwise.
    pub fn for_step(&self, state: DeploymentState) -> DesiredStatus {
        if state == self.state {
            self.clone()
        } else {
            DesiredStatus::new(state, state.step_description())
        }
    }
}

/// The status GitHub should show for a build and its newest release.
///
/// A release that was live and was later replaced shows `inactive`, like one replaced before
/// it went live: GitHub marks older deployments inactive by itself only in environments that
/// are not production, so Wharf says it in every environment.
pub fn desired_status(progress: &BuildProgress<'_>) -> DesiredStatus {
    use DeploymentState::*;
    let reason = |prefix: &str, reason: Option<&str>, fallback: &str| match reason {
        Some(reason) if !reason.trim().is_empty() => format!("{prefix}: {reason}"),
        _ => format!("{prefix}: {fallback}"),
    };
    match progress.build_state {
        BuildState::Pending => {
            DesiredStatus::new(Queued, "Queued: waiting for an agent to build it")
        }
        BuildState::Claimed => DesiredStatus::new(InProgress, "An agent claimed the build"),
        BuildState::Cloning => DesiredStatus::new(InProgress, "Fetching the commit"),
        BuildState::Building => DesiredStatus::new(InProgress, "Building the image"),
        BuildState::Pushing => DesiredStatus::new(InProgress, "Pushing the image"),
        BuildState::Failed => DesiredStatus::new(
            Failure,
            &reason("Build failed", progress.build_reason, "no reason given"),
        ),
        BuildState::Cancelled => match progress.build_reason {
            Some(why) if is_superseded_reason(why) => {
                DesiredStatus::new(Inactive, &capitalized(why))
            }
            Some(why) if why.starts_with("cancelled") => {
                DesiredStatus::new(Error, &capitalized(why))
            }
            why => DesiredStatus::new(Error, &reason("Cancelled", why, "no reason given")),
        },
        BuildState::Completed => match progress.release {
            None if progress.auto_deploy => {
                DesiredStatus::new(InProgress, "Built; waiting for its release")
            }
            None => DesiredStatus::new(
                Success,
                "Built; auto-deploy is off, so it is not released until someone deploys it",
            ),
            Some((ReleaseState::Pending, _)) => {
                DesiredStatus::new(InProgress, "Released; waiting for its hosts")
            }
            Some((ReleaseState::Pulling, _)) => DesiredStatus::new(InProgress, "Pulling the image"),
            Some((ReleaseState::Starting, _)) => {
                DesiredStatus::new(InProgress, "Starting the new version")
            }
            Some((ReleaseState::HealthChecking, _)) => {
                DesiredStatus::new(InProgress, "Checking the new version's health")
            }
            Some((ReleaseState::Live, _)) => DesiredStatus {
                environment_url: progress.environment_url.map(str::to_owned),
                ..DesiredStatus::new(Success, "Live")
            },
            Some((ReleaseState::Failed, why)) => DesiredStatus::new(
                Failure,
                &reason("Release failed", why, "the image could not be pulled"),
            ),
            Some((ReleaseState::RolledBack, why)) => DesiredStatus::new(
                Failure,
                &reason("Rolled back", why, "the new version was unhealthy"),
            ),
            Some((ReleaseState::Superseded, _)) => {
                DesiredStatus::new(Inactive, "Replaced by a newer release")
            }
            Some((ReleaseState::Removed, _)) => {
                DesiredStatus::new(Inactive, "Removed from its hosts")
            }
        },
    }
}

/// The statuses to send, in order, to move a deployment from the last status GitHub accepted
/// (`None`: none yet) to `desired`, so GitHub shows the whole sequence: a build seen only once
/// it was live still gets `queued` and `in_progress` first. `in_progress` is filled in only
/// before an end that means the work ran (`success`, `failure`); a deployment moving back (a
/// build returned to the queue, an old build deployed again) just gets the new status.
pub fn statuses_to_send(
    last: Option<DeploymentState>,
    desired: DeploymentState,
) -> Vec<DeploymentState> {
    if last == Some(desired) {
        return Vec::new();
    }
    let mut statuses = Vec::new();
    if last.is_none() && desired.stage() > 0 {
        statuses.push(DeploymentState::Queued);
    }
    let started = last.is_some_and(|last| last.stage() >= 1);
    if !started && desired.stage() > 1 && desired.means_it_ran() {
        statuses.push(DeploymentState::InProgress);
    }
    statuses.push(desired);
    statuses
}

/// A description GitHub accepts: one line, at most [`MAX_DESCRIPTION_CHARS`] characters, cut
/// on a character boundary with "…" when longer.
pub fn short_description(text: &str) -> String {
    let line = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if line.chars().count() <= MAX_DESCRIPTION_CHARS {
        return line;
    }
    let mut cut: String = line.chars().take(MAX_DESCRIPTION_CHARS - 1).collect();
    cut.push('…');
    cut
}

/// Where a service answers, `{scheme}://{domain}`, when it has a domain.
pub fn environment_url(scheme: &str, domain: Option<&str>) -> Option<String> {
    domain
        .filter(|domain| !domain.is_empty())
        .map(|domain| format!("{scheme}://{domain}"))
}

/// The page of a build under the server's public URL: `{public_url}/builds/{id}`.
pub fn build_log_url(public_url: &str, build_id: i64) -> String {
    format!("{}/builds/{build_id}", public_url.trim_end_matches('/'))
}

fn capitalized(text: &str) -> String {
    let mut characters = text.chars();
    match characters.next() {
        Some(first) => first.to_uppercase().chain(characters).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeploymentState::*;

    fn progress(build_state: BuildState) -> BuildProgress<'static> {
        BuildProgress {
            build_state,
            build_reason: None,
            release: None,
            auto_deploy: true,
            environment_url: Some("https://web.example.com"),
        }
    }

    fn released(state: ReleaseState, reason: Option<&'static str>) -> BuildProgress<'static> {
        BuildProgress {
            release: Some((state, reason)),
            ..progress(BuildState::Completed)
        }
    }

    /// Each case: what the build and its release say, and the state and description expected.
    #[test]
    fn every_build_and_release_state_has_its_status() {
        let superseded = BuildProgress {
            build_reason: Some("superseded by build #7"),
            ..progress(BuildState::Cancelled)
        };
        let cancelled = BuildProgress {
            build_reason: Some("cancelled by a user"),
            ..progress(BuildState::Cancelled)
        };
        let failed = BuildProgress {
            build_reason: Some("step build failed: exit 1"),
            ..progress(BuildState::Failed)
        };
        let manual_only = BuildProgress {
            auto_deploy: false,
            ..progress(BuildState::Completed)
        };
        // Work under way: the build's steps, then the release's on its hosts.
        let building = [
            (BuildState::Claimed, "An agent claimed the build"),
            (BuildState::Cloning, "Fetching the commit"),
            (BuildState::Building, "Building the image"),
            (BuildState::Pushing, "Pushing the image"),
            (BuildState::Completed, "Built; waiting for its release"),
        ]
        .map(|(state, description)| (progress(state), InProgress, description));
        let releasing = [
            (ReleaseState::Pending, "Released; waiting for its hosts"),
            (ReleaseState::Pulling, "Pulling the image"),
            (ReleaseState::Starting, "Starting the new version"),
            (
                ReleaseState::HealthChecking,
                "Checking the new version's health",
            ),
        ]
        .map(|(state, description)| (released(state, None), InProgress, description));
        let waiting_or_ended = [
            (
                progress(BuildState::Pending),
                Queued,
                "Queued: waiting for an agent to build it",
            ),
            (
                manual_only,
                Success,
                "Built; auto-deploy is off, so it is not released until someone deploys it",
            ),
            (failed, Failure, "Build failed: step build failed: exit 1"),
            (superseded, Inactive, "Superseded by build #7"),
            (cancelled, Error, "Cancelled by a user"),
            (
                progress(BuildState::Cancelled),
                Error,
                "Cancelled: no reason given",
            ),
            (released(ReleaseState::Live, None), Success, "Live"),
            (
                released(ReleaseState::Failed, Some("pull failed: manifest unknown")),
                Failure,
                "Release failed: pull failed: manifest unknown",
            ),
            (
                released(ReleaseState::RolledBack, None),
                Failure,
                "Rolled back: the new version was unhealthy",
            ),
            (
                released(ReleaseState::Superseded, None),
                Inactive,
                "Replaced by a newer release",
            ),
        ];
        let cases = waiting_or_ended
            .into_iter()
            .chain(building)
            .chain(releasing);
        for (progress, state, description) in cases {
            let desired = desired_status(&progress);
            assert_eq!(desired.state, state, "{progress:?}");
            assert_eq!(desired.description, description, "{progress:?}");
            let url = (state == Success && progress.release.is_some())
                .then(|| "https://web.example.com".to_owned());
            assert_eq!(desired.environment_url, url, "{progress:?}");
        }
    }

    #[test]
    fn a_live_release_without_a_domain_has_no_environment_url() {
        let live = BuildProgress {
            environment_url: None,
            ..released(ReleaseState::Live, None)
        };
        assert_eq!(desired_status(&live).environment_url, None);
        assert_eq!(environment_url("https", None), None);
        assert_eq!(environment_url("https", Some("")), None);
        assert_eq!(
            environment_url("https", Some("web.example.com")).as_deref(),
            Some("https://web.example.com")
        );
    }

    #[test]
    fn missing_steps_are_filled_in_order() {
        let cases: [(Option<DeploymentState>, DeploymentState, &[DeploymentState]); 12] = [
            (None, Queued, &[Queued]),
            (None, InProgress, &[Queued, InProgress]),
            (None, Success, &[Queued, InProgress, Success]),
            (None, Failure, &[Queued, InProgress, Failure]),
            (None, Error, &[Queued, Error]),
            (Some(Queued), Queued, &[]),
            (Some(Queued), Success, &[InProgress, Success]),
            (Some(Queued), Inactive, &[Inactive]),
            (Some(InProgress), Failure, &[Failure]),
            (Some(InProgress), Queued, &[Queued]),
            (Some(Success), InProgress, &[InProgress]),
            (Some(Success), Inactive, &[Inactive]),
        ];
        for (last, desired, expected) in cases {
            assert_eq!(
                statuses_to_send(last, desired),
                expected,
                "{last:?} -> {desired}"
            );
        }
    }

    #[test]
    fn descriptions_are_one_line_of_at_most_140_characters() {
        assert_eq!(short_description("  built\nfine \t "), "built fine");
        let exact = "x".repeat(140);
        assert_eq!(short_description(&exact), exact);
        let long = "é".repeat(300);
        let cut = short_description(&long);
        assert_eq!(cut.chars().count(), 140);
        assert!(cut.ends_with("é…"), "{cut}");
        // Multi-byte characters are never split: the cut is on a character boundary.
        let mixed = format!("{}🚢{}", "a".repeat(138), "b".repeat(10));
        assert_eq!(short_description(&mixed), format!("{}🚢…", "a".repeat(138)));
        let failed = BuildProgress {
            build_reason: Some(&"z".repeat(500)),
            ..progress(BuildState::Failed)
        };
        assert_eq!(desired_status(&failed).description.chars().count(), 140);
    }

    #[test]
    fn filled_in_steps_say_what_they_are() {
        let desired = desired_status(&released(ReleaseState::Live, None));
        let step = desired.for_step(InProgress);
        assert_eq!(step.state, InProgress);
        assert_eq!(step.description, "In progress");
        assert_eq!(step.environment_url, None);
        assert_eq!(desired.for_step(Success), desired);
    }

    #[test]
    fn state_names_are_githubs() {
        for state in DeploymentState::ALL {
            assert_eq!(DeploymentState::parse(state.as_str()), Some(state));
            assert_eq!(
                serde_json::to_string(&state).unwrap(),
                format!("\"{}\"", state.as_str())
            );
        }
        assert_eq!(
            build_log_url("https://wharf.example.com/", 12),
            "https://wharf.example.com/builds/12"
        );
    }
}
