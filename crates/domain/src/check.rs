//! What a build's check on its commit should show: a GitHub Check Run `wharf/<service>`, or,
//! where the App may not write checks, a commit status of the same name.
//!
//! The check follows the build's deployment (see [`crate::deployment`]): `queued` while the
//! build waits for an agent, `in_progress` while it builds and rolls out, and `completed` with
//! `success` when live, `failure` when the build or its release failed (the reason and the
//! log's last lines in its output), `cancelled` when stopped, `skipped` when a newer build
//! replaced it before it ran. A release that was live and is later replaced keeps its
//! `success`: the commit did deploy healthily, which is what branch protection asks.

use crate::deployment::{DeploymentState, DesiredStatus, short_description};

/// Lines of the build log quoted in a failed check's output.
pub const LOG_TAIL_LINES: usize = 30;
/// The longest log line quoted, in characters; longer ones are cut.
const MAX_QUOTED_LINE_CHARS: usize = 400;
/// The longest reason quoted in a check's summary, in characters.
const MAX_SUMMARY_CHARS: usize = 2000;

/// Where a build's check stands, as Wharf records what GitHub last accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CheckState {
    Queued,
    InProgress,
    Success,
    Failure,
    Cancelled,
    Skipped,
}

impl CheckState {
    pub const ALL: [CheckState; 6] = [
        CheckState::Queued,
        CheckState::InProgress,
        CheckState::Success,
        CheckState::Failure,
        CheckState::Cancelled,
        CheckState::Skipped,
    ];

    /// The name kept in the store.
    pub fn as_str(self) -> &'static str {
        match self {
            CheckState::Queued => "queued",
            CheckState::InProgress => "in_progress",
            CheckState::Success => "success",
            CheckState::Failure => "failure",
            CheckState::Cancelled => "cancelled",
            CheckState::Skipped => "skipped",
        }
    }

    pub fn parse(name: &str) -> Option<CheckState> {
        CheckState::ALL
            .into_iter()
            .find(|state| state.as_str() == name)
    }

    /// The check run's `status`: `queued`, `in_progress` or `completed`.
    pub fn run_status(self) -> &'static str {
        match self {
            CheckState::Queued => "queued",
            CheckState::InProgress => "in_progress",
            _ => "completed",
        }
    }

    /// The check run's `conclusion`, once it is completed.
    pub fn conclusion(self) -> Option<&'static str> {
        match self {
            CheckState::Queued | CheckState::InProgress => None,
            CheckState::Success => Some("success"),
            CheckState::Failure => Some("failure"),
            CheckState::Cancelled => Some("cancelled"),
            CheckState::Skipped => Some("skipped"),
        }
    }

    /// The state of the commit status that stands in for the check run: `pending`,
    /// `success`, `failure` or `error`.
    pub fn commit_status(self) -> &'static str {
        match self {
            CheckState::Queued | CheckState::InProgress => "pending",
            CheckState::Success => "success",
            CheckState::Failure => "failure",
            CheckState::Cancelled | CheckState::Skipped => "error",
        }
    }

    fn is_completed(self) -> bool {
        self.conclusion().is_some()
    }
}

impl std::fmt::Display for CheckState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The check's name on the commit: `wharf/<service>`.
pub fn check_name(service: &str) -> String {
    format!("wharf/{service}")
}

/// The state the check should reach now, given the status the build's deployment should show
/// and the check's last state GitHub accepted; `None` when GitHub already shows it.
pub fn check_to_send(desired: DeploymentState, last: Option<CheckState>) -> Option<CheckState> {
    let next = match desired {
        DeploymentState::Queued | DeploymentState::Pending => CheckState::Queued,
        DeploymentState::InProgress => CheckState::InProgress,
        DeploymentState::Success => CheckState::Success,
        DeploymentState::Failure => CheckState::Failure,
        DeploymentState::Error => CheckState::Cancelled,
        // Replaced: an ended check keeps its end, one that never ended was skipped, and one
        // GitHub never heard of is not made just to say so.
        DeploymentState::Inactive => match last {
            Some(last) if !last.is_completed() => CheckState::Skipped,
            _ => return None,
        },
    };
    (last != Some(next)).then_some(next)
}

/// Whose log a failed check quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotedLog {
    /// The build's log: the build failed.
    Build,
    /// The new container's log, as its host reported it: the release failed or was rolled back.
    Container,
}

impl QuotedLog {
    fn heading(self) -> &'static str {
        match self {
            QuotedLog::Build => "The build log's",
            QuotedLog::Container => "The new container's log's",
        }
    }
}

/// A check run's `output`: a title, a Markdown summary and, for a failure, the log's last
/// lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOutput {
    pub title: String,
    pub summary: String,
    pub text: Option<String>,
}

/// The output of a check in `state`. `desired` is the deployment status it follows (its
/// description becomes the title); `reason` is why the build or release ended as it did, and
/// `log_tail` the last lines of the log `log` names, both quoted only for a failure, both
/// bounded, so the output stays far below GitHub's 65,535 characters. Log lines come masked
/// from the agent.
pub fn check_output(
    state: CheckState,
    desired: &DesiredStatus,
    reason: Option<&str>,
    log: QuotedLog,
    log_tail: &[String],
) -> CheckOutput {
    let title = desired.description.clone();
    if state != CheckState::Failure {
        return CheckOutput {
            summary: title.clone(),
            title,
            text: None,
        };
    }
    let summary = match reason.map(str::trim).filter(|reason| !reason.is_empty()) {
        Some(reason) => clipped(reason, MAX_SUMMARY_CHARS),
        None => title.clone(),
    };
    let lines: Vec<String> = log_tail
        .iter()
        .skip(log_tail.len().saturating_sub(LOG_TAIL_LINES))
        .map(|line| clipped(&line.replace("```", "'''"), MAX_QUOTED_LINE_CHARS))
        .collect();
    let text = (!lines.is_empty()).then(|| {
        format!(
            "{} last {} lines:\n\n```\n{}\n```\n",
            log.heading(),
            lines.len(),
            lines.join("\n")
        )
    });
    CheckOutput {
        title,
        summary,
        text,
    }
}

/// The commit status's description: the deployment's, cut to GitHub's 140 characters.
pub fn commit_status_description(desired: &DesiredStatus) -> String {
    short_description(&desired.description)
}

/// `text` cut to at most `max_chars` characters, with "…" when cut.
fn clipped(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(max_chars - 1).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use CheckState::*;

    #[test]
    fn the_check_follows_the_deployment_and_keeps_an_end_when_replaced() {
        let cases: [(DeploymentState, Option<CheckState>, Option<CheckState>); 12] = [
            (DeploymentState::Queued, None, Some(Queued)),
            (DeploymentState::Queued, Some(Queued), None),
            (DeploymentState::InProgress, Some(Queued), Some(InProgress)),
            (DeploymentState::InProgress, Some(InProgress), None),
            (DeploymentState::Success, None, Some(Success)),
            (DeploymentState::Success, Some(InProgress), Some(Success)),
            (DeploymentState::Failure, Some(InProgress), Some(Failure)),
            (DeploymentState::Error, Some(Queued), Some(Cancelled)),
            (DeploymentState::Inactive, Some(Queued), Some(Skipped)),
            (DeploymentState::Inactive, None, None),
            (DeploymentState::Inactive, Some(Success), None),
            (DeploymentState::Inactive, Some(Failure), None),
        ];
        for (desired, last, expected) in cases {
            assert_eq!(
                check_to_send(desired, last),
                expected,
                "{desired} after {last:?}"
            );
        }
    }

    #[test]
    fn states_name_their_run_status_conclusion_and_commit_status() {
        let names: Vec<_> = CheckState::ALL
            .into_iter()
            .map(|state| {
                (
                    state.run_status(),
                    state.conclusion(),
                    state.commit_status(),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                ("queued", None, "pending"),
                ("in_progress", None, "pending"),
                ("completed", Some("success"), "success"),
                ("completed", Some("failure"), "failure"),
                ("completed", Some("cancelled"), "error"),
                ("completed", Some("skipped"), "error"),
            ]
        );
        for state in CheckState::ALL {
            assert_eq!(CheckState::parse(state.as_str()), Some(state));
        }
        assert_eq!(check_name("web"), "wharf/web");
    }

    fn status(description: &str) -> DesiredStatus {
        DesiredStatus {
            state: DeploymentState::Failure,
            description: description.to_owned(),
            environment_url: None,
        }
    }

    #[test]
    fn a_failure_quotes_the_reason_and_the_logs_last_lines_bounded() {
        let log: Vec<String> = (1..=100)
            .map(|line| format!("line {line} ```{}", "x".repeat(1000)))
            .collect();
        let output = check_output(
            Failure,
            &status("Build failed: exit 1"),
            Some("step build failed: exit 1"),
            QuotedLog::Build,
            &log,
        );
        assert_eq!(output.title, "Build failed: exit 1");
        assert_eq!(output.summary, "step build failed: exit 1");
        let text = output.text.unwrap();
        assert!(text.starts_with("The build log's last 30 lines:\n\n```\nline 71 '''"));
        assert!(!text.contains("line 70 "), "{text}");
        assert!(text.contains("line 100 "));
        assert_eq!(text.matches("```").count(), 2, "only the fence");
        assert!(text.chars().count() < 30 * 401 + 100);
        let long_reason = "r".repeat(5000);
        let output = check_output(
            Failure,
            &status("x"),
            Some(&long_reason),
            QuotedLog::Build,
            &[],
        );
        assert_eq!(output.summary.chars().count(), MAX_SUMMARY_CHARS);
        assert_eq!(output.text, None);
    }

    #[test]
    fn a_release_failure_quotes_the_containers_log() {
        let output = check_output(
            Failure,
            &status("Rolled back: unhealthy"),
            Some("unhealthy"),
            QuotedLog::Container,
            &["listening on :8080".to_owned()],
        );
        assert_eq!(
            output.text.as_deref(),
            Some("The new container's log's last 1 lines:\n\n```\nlistening on :8080\n```\n")
        );
    }

    #[test]
    fn other_states_show_the_description_alone() {
        let output = check_output(
            Success,
            &status("Live"),
            Some("ignored"),
            QuotedLog::Container,
            &["a line".to_owned()],
        );
        assert_eq!(
            output,
            CheckOutput {
                title: "Live".to_owned(),
                summary: "Live".to_owned(),
                text: None
            }
        );
    }
}
