//! Fetching exactly one commit of a repository, shallowly, into an empty directory.
//!
//! An installation token travels as an `Authorization` header set through git's environment
//! (`GIT_CONFIG_COUNT`…), so it is never in the URL, the process arguments or `.git/config`.
//! Git never prompts: a refused token fails at once.

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

use crate::process::CommandSpec;

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
