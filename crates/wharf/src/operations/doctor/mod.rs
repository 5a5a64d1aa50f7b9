//! `wharf doctor`: checks that this host can run Wharf and prints one line per check, either
//! `ok` with what was found or what to fix. The checks: the container runtime and, for Podman,
//! the containers.conf settings a host without systemd needs (`podman`); Caddy, the edge
//! (`caddy`); the registry images go to; the database; the clock, against a Wharf server's (or
//! GitHub's) `Date`; free disk space for the data directory and the images; and whether GitHub's
//! API answers. A failed check makes the command exit with 1; GitHub being out of reach is only
//! a warning (webhooks still arrive), and is given up on within seconds.
//!
//! External programs (`podman info`, `caddy version`, `df`) run only through
//! `wharf_runtime::process`, like every program Wharf starts.

mod podman;
mod probes;

use clap::Args;
use wharf_github::DEFAULT_API_URL;

use crate::config::{BuildArgs, StateArgs};

/// What `wharf doctor` checks, named as Wharf's own settings name it.
#[derive(Args, Debug, Clone)]
pub struct DoctorArgs {
    /// A Wharf server to compare this host's clock with; without one, GitHub's clock is used
    /// when GitHub answers.
    #[arg(long, env = "WHARF_SERVER")]
    pub server: Option<String>,
    #[command(flatten)]
    pub state: StateArgs,
    /// The runtime and Caddy, as the agent's flags name them.
    #[command(flatten)]
    pub agent: BuildArgs,
    /// The registry builds push to, as the server's flag names it.
    #[arg(long, env = "WHARF_REGISTRY")]
    pub registry: Option<String>,
    /// Plain HTTP to the registry.
    #[arg(long, env = "WHARF_REGISTRY_INSECURE", default_value_t = false, action = clap::ArgAction::Set)]
    pub registry_insecure: bool,
    /// GitHub's API.
    #[arg(long, env = "WHARF_GITHUB_API_URL", default_value = DEFAULT_API_URL)]
    pub github_api_url: String,
}

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Ok,
    /// Wharf works, but something is worse than it could be.
    Warning,
    /// Wharf cannot work on this host until it is fixed.
    Failed,
    /// There was nothing to check against.
    Skipped,
}

/// One check's outcome: what was found, or what to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub check: &'static str,
    pub status: Status,
    pub detail: String,
}

impl Verdict {
    pub fn ok(check: &'static str, detail: impl Into<String>) -> Verdict {
        Verdict::new(check, Status::Ok, detail)
    }
    pub fn warning(check: &'static str, detail: impl Into<String>) -> Verdict {
        Verdict::new(check, Status::Warning, detail)
    }
    pub fn failed(check: &'static str, detail: impl Into<String>) -> Verdict {
        Verdict::new(check, Status::Failed, detail)
    }
    pub fn skipped(check: &'static str, detail: impl Into<String>) -> Verdict {
        Verdict::new(check, Status::Skipped, detail)
    }
    fn new(check: &'static str, status: Status, detail: impl Into<String>) -> Verdict {
        Verdict {
            check,
            status,
            detail: detail.into(),
        }
    }
}

/// The widest check name, so that the details line up.
const CHECK_WIDTH: usize = 13;

/// One verdict as one line: `ok   podman        podman 4.3.1, runc, cgroupfs`.
pub fn line(verdict: &Verdict) -> String {
    let status = match verdict.status {
        Status::Ok => "ok",
        Status::Warning => "warn",
        Status::Failed => "FAIL",
        Status::Skipped => "skip",
    };
    let detail = verdict.detail.replace('\n', " ");
    format!("{status:<4} {:<CHECK_WIDTH$} {detail}", verdict.check)
}

/// The closing line: how many checks passed, and whether the host is ready.
pub fn closing(verdicts: &[Verdict]) -> String {
    let of = |status| verdicts.iter().filter(|v| v.status == status).count();
    let (failed, warnings) = (of(Status::Failed), of(Status::Warning));
    let plural = |count: usize, word: &str| {
        if count == 1 {
            format!("1 {word}")
        } else {
            format!("{count} {word}s")
        }
    };
    match (failed, warnings) {
        (0, 0) => format!("{}: this host is ready.", plural(verdicts.len(), "check")),
        (0, warnings) => format!(
            "{}, {}: this host can run Wharf.",
            plural(verdicts.len(), "check"),
            plural(warnings, "warning")
        ),
        (failed, _) => format!(
            "{}, {} failed: fix the lines marked FAIL.",
            plural(verdicts.len(), "check"),
            failed
        ),
    }
}

/// Runs every check, prints one line each and a closing line; an error when any check failed.
pub async fn run(args: &DoctorArgs) -> anyhow::Result<()> {
    let verdicts = probes::check_all(args).await;
    for verdict in &verdicts {
        println!("{}", line(verdict));
    }
    println!("{}", closing(&verdicts));
    let failed = verdicts
        .iter()
        .filter(|verdict| verdict.status == Status::Failed)
        .count();
    if failed > 0 {
        anyhow::bail!(
            "{failed} check{} failed",
            if failed == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_verdict_is_one_aligned_line() {
        let lines: Vec<String> = [
            Verdict::ok("podman", "podman 4.3.1 (runtime runc, cgroups cgroupfs)"),
            Verdict::warning(
                "github",
                "https://api.github.com did not answer\nwithin 5 s",
            ),
            Verdict::failed("database", "cannot connect: fix WHARF_DATABASE_URL"),
            Verdict::skipped("clock", "nothing to compare with"),
        ]
        .iter()
        .map(line)
        .collect();
        assert_eq!(
            lines,
            [
                "ok   podman        podman 4.3.1 (runtime runc, cgroups cgroupfs)",
                "warn github        https://api.github.com did not answer within 5 s",
                "FAIL database      cannot connect: fix WHARF_DATABASE_URL",
                "skip clock         nothing to compare with",
            ]
        );
    }

    #[test]
    fn the_closing_line_counts_failures_before_warnings() {
        let ok = Verdict::ok("disk", "plenty");
        let warning = Verdict::warning("github", "away");
        let failed = Verdict::failed("caddy", "missing");
        assert_eq!(
            closing(&[ok.clone(), ok.clone()]),
            "2 checks: this host is ready."
        );
        assert_eq!(
            closing(&[ok.clone(), warning.clone()]),
            "2 checks, 1 warning: this host can run Wharf."
        );
        assert_eq!(
            closing(&[ok, warning, failed]),
            "3 checks, 1 failed: fix the lines marked FAIL."
        );
    }
}
