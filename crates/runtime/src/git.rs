//! Git: fetching exactly one commit of a repository, shallowly, into an empty directory, and
//! asking a repository where a branch points.
//!
//! An installation token travels as an `Authorization` header set through git's environment
//! (`GIT_CONFIG_COUNT`…), so it is never in the URL, the process arguments or `.git/config`.
//! Git never prompts: a refused token fails at once.

use std::time::Duration;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

use crate::process::{self, CommandSpec, Ended, SpawnError};

/// The commands that fetch `commit` from `url` into `dir`, in order. Each is a separate step so
/// the caller can report which one failed.
pub fn fetch_commit_commands(
    dir: &std::path::Path,
    url: &str,
    commit: &str,
    token: Option<&SecretString>,
) -> Vec<CommandSpec> {
    let base = |spec: CommandSpec| {
        let mut spec = spec
            .cwd(dir)
            .env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ASKPASS", "/bin/false")
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GCM_INTERACTIVE", "never");
        if let Some(token) = token {
            let credentials = base64::engine::general_purpose::STANDARD
                .encode(format!("x-access-token:{}", token.expose_secret()));
            spec = spec
                .env("GIT_CONFIG_COUNT", "1")
                .env("GIT_CONFIG_KEY_0", "http.extraHeader")
                .env(
                    "GIT_CONFIG_VALUE_0",
                    format!("Authorization: Basic {credentials}"),
                );
        }
        spec
    };
    vec![
        base(CommandSpec::new("git").args(["init", "-q"])),
        base(CommandSpec::new("git").args(["remote", "add", "origin", "--", url])),
        base(CommandSpec::new("git").args([
            "-c",
            "protocol.version=2",
            "fetch",
            "--depth",
            "1",
            "--no-tags",
            "origin",
            commit,
        ])),
        base(CommandSpec::new("git").args([
            "-c",
            "advice.detachedHead=false",
            "checkout",
            "-q",
            "FETCH_HEAD",
        ])),
    ]
}

/// Why a branch's head could not be read from a repository.
#[derive(Debug, thiserror::Error)]
pub enum BranchHeadError {
    /// Git could not be started at all.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// The repository did not answer in time.
    #[error("git ls-remote {url} timed out")]
    TimedOut { url: String },
    /// Git ended without an answer; `message` is its last line of error output.
    #[error("git ls-remote {url} failed: {message}")]
    Failed { url: String, message: String },
    /// The repository answered and has no such branch.
    #[error("branch {branch} not found in {url}")]
    NoSuchBranch { url: String, branch: String },
}

/// What `git ls-remote` of one branch may print: one line, or a few error lines.
const LS_REMOTE_MAX_BYTES: usize = 64 * 1024;

/// The commit `branch` points at in the repository at `url`, asked with `git ls-remote` from
/// an argument vector, without credentials and never prompting for them, given up (the whole
/// process group killed) after `timeout`.
pub async fn branch_head(
    url: &str,
    branch: &str,
    timeout: Duration,
) -> Result<String, BranchHeadError> {
    let spec = CommandSpec::new("git")
        .args(["ls-remote", "--", url, &format!("refs/heads/{branch}")])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ASKPASS", "true");
    let output = process::output(&spec, timeout, LS_REMOTE_MAX_BYTES).await?;
    match output.ended {
        Ended::TimedOut { .. } => {
            return Err(BranchHeadError::TimedOut {
                url: url.to_owned(),
            });
        }
        ended if !ended.success() => {
            return Err(BranchHeadError::Failed {
                url: url.to_owned(),
                message: output.last_line(),
            });
        }
        _ => {}
    }
    // The answer's first word is the commit.
    output
        .stdout
        .split_whitespace()
        .next()
        .map(str::to_owned)
        .ok_or_else(|| BranchHeadError::NoSuchBranch {
            url: url.to_owned(),
            branch: branch.to_owned(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs git in `dir`, panicking when it fails.
    fn git(dir: &std::path::Path, args: &[&str]) -> String {
        let output = std::process::Command::new("git")
            .args(args)
            .current_dir(dir)
            .env("GIT_CONFIG_NOSYSTEM", "1")
            .env("GIT_AUTHOR_NAME", "Wharf")
            .env("GIT_AUTHOR_EMAIL", "wharf@example.com")
            .env("GIT_COMMITTER_NAME", "Wharf")
            .env("GIT_COMMITTER_EMAIL", "wharf@example.com")
            .output()
            .expect("git runs");
        assert!(output.status.success(), "git {args:?} failed: {output:?}");
        String::from_utf8(output.stdout).unwrap().trim().to_owned()
    }

    #[tokio::test]
    async fn a_branch_head_is_the_commit_the_branch_points_at() {
        let dir = tempfile::tempdir().unwrap();
        git(dir.path(), &["init", "-q", "-b", "main"]);
        git(
            dir.path(),
            &["commit", "-q", "--allow-empty", "-m", "first"],
        );
        let head = git(dir.path(), &["rev-parse", "HEAD"]);
        let url = dir.path().to_str().unwrap();
        let timeout = Duration::from_secs(30);

        assert_eq!(branch_head(url, "main", timeout).await.unwrap(), head);
        assert!(matches!(
            branch_head(url, "elsewhere", timeout).await,
            Err(BranchHeadError::NoSuchBranch { .. })
        ));
        let missing = dir.path().join("no-such-repository");
        let error = branch_head(missing.to_str().unwrap(), "main", timeout)
            .await
            .unwrap_err();
        assert!(
            matches!(&error, BranchHeadError::Failed { message, .. } if !message.is_empty()),
            "{error:?}"
        );
    }

    #[tokio::test]
    async fn a_repository_that_never_answers_times_out() {
        // A listener that accepts connections and never answers them.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/repository.git", listener.local_addr().unwrap());
        let started = std::time::Instant::now();
        let error = branch_head(&url, "main", Duration::from_millis(500))
            .await
            .unwrap_err();
        assert!(
            matches!(error, BranchHeadError::TimedOut { .. }),
            "{error:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10));
        drop(listener);
    }
}
