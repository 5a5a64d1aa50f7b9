//! Secrets masked in everything the agent sends that may hold program output: log lines, a
//! failed build's reason, command and output tail, and a rollout's reason, probe results and
//! log tail. Each value of a secret is replaced with `***` before it leaves the agent.

use secrecy::ExposeSecret;
use wharf_runtime::engine::RegistryCredentials;
use wharf_wire::{ReportRollout, RolloutJob, StepFailure};

/// Replaces every occurrence of a secret with `***`. Values shorter than four characters are
/// left alone: masking them would hide ordinary text and protect nothing.
pub fn mask(text: &str, secrets: &[String]) -> String {
    let mut masked = text.to_owned();
    for secret in secrets.iter().filter(|secret| secret.len() >= 4) {
        if masked.contains(secret.as_str()) {
            masked = masked.replace(secret.as_str(), "***");
        }
    }
    masked
}

/// A failed step with its command and output tail masked.
pub fn mask_failure(failure: StepFailure, secrets: &[String]) -> StepFailure {
    StepFailure {
        command: failure.command.map(|command| mask(&command, secrets)),
        output_tail: failure
            .output_tail
            .iter()
            .map(|line| mask(line, secrets))
            .collect(),
        ..failure
    }
}

/// A rollout's report with its reason, probe results and log tail masked.
pub fn mask_rollout_report(report: ReportRollout, secrets: &[String]) -> ReportRollout {
    ReportRollout {
        reason: report.reason.map(|reason| mask(&reason, secrets)),
        probes: report
            .probes
            .into_iter()
            .map(|mut probe| {
                probe.detail = mask(&probe.detail, secrets);
                probe
            })
            .collect(),
        log_tail: report
            .log_tail
            .iter()
            .map(|line| mask(line, secrets))
            .collect(),
        ..report
    }
}

/// The secrets a rollout's containers and pulls see: the service's secret variables, the
/// registry login of its installation and the agent's own.
pub fn rollout_secrets(job: &RolloutJob, own: Option<&RegistryCredentials>) -> Vec<String> {
    let mut secrets: Vec<String> = job
        .env
        .iter()
        .filter(|variable| variable.secret)
        .map(|variable| variable.value.expose().to_owned())
        .chain(
            job.scoped_env
                .iter()
                .filter(|variable| variable.secret)
                .map(|variable| variable.value.expose().to_owned()),
        )
        .collect();
    if let Some(login) = &job.registry_login {
        secrets.push(login.password.expose().to_owned());
    }
    if let Some(credentials) = own {
        secrets.push(credentials.password.expose_secret().to_owned());
    }
    secrets
}

#[cfg(test)]
mod tests {
    use wharf_wire::{ProbeResult, ReleaseState};

    use super::*;

    const SECRETS: [&str; 2] = ["ghs_abcdef", "hunter22"];

    fn secrets() -> Vec<String> {
        SECRETS.iter().map(|secret| (*secret).to_owned()).collect()
    }

    #[test]
    fn masks_every_occurrence_of_every_secret() {
        assert_eq!(
            mask("token ghs_abcdef and ghs_abcdef, pw hunter22", &secrets()),
            "token *** and ***, pw ***"
        );
        assert_eq!(mask("nothing here", &secrets()), "nothing here");
    }

    #[test]
    fn a_failed_steps_command_and_output_tail_are_masked() {
        let failure = StepFailure {
            step: "build".to_owned(),
            command: Some("podman build --build-arg NOTE=hunter22 -- .".to_owned()),
            exit_code: Some(1),
            output_tail: vec![
                "STEP 2/2: RUN echo $TOKEN".to_owned(),
                "the token is ghs_abcdef".to_owned(),
                "Error: exit status 1".to_owned(),
            ],
        };
        let masked = mask_failure(failure, &secrets());
        assert_eq!(
            masked,
            StepFailure {
                step: "build".to_owned(),
                command: Some("podman build --build-arg NOTE=*** -- .".to_owned()),
                exit_code: Some(1),
                output_tail: vec![
                    "STEP 2/2: RUN echo $TOKEN".to_owned(),
                    "the token is ***".to_owned(),
                    "Error: exit status 1".to_owned(),
                ],
            }
        );
    }

    #[test]
    fn a_rollouts_reason_probes_and_log_tail_are_masked() {
        let report = ReportRollout {
            reason: Some("unhealthy: hunter22 refused".to_owned()),
            probes: vec![ProbeResult {
                after_ms: 10,
                healthy: false,
                detail: "exit 1: bad password hunter22".to_owned(),
            }],
            log_tail: vec!["connecting with ghs_abcdef".to_owned()],
            ..ReportRollout::new(7, ReleaseState::RolledBack)
        };
        let masked = mask_rollout_report(report, &secrets());
        assert_eq!(masked.reason.as_deref(), Some("unhealthy: *** refused"));
        assert_eq!(masked.probes[0].detail, "exit 1: bad password ***");
        assert_eq!(masked.log_tail, vec!["connecting with ***".to_owned()]);
        assert_eq!(masked.state, ReleaseState::RolledBack);
    }
}
