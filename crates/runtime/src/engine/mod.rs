//! The container engine: Podman by default, Docker as an alternative. The engine builds its own
//! command lines, runs them and returns what they say as data: container states, an image's
//! health check and exposed ports, a pushed digest, labelled containers and images, networks
//! and volumes found or created. Each `--format` string sits beside the parser of its output.
//! Commands whose output users read while they run (build, push) stream it line by line.
//!
//! - `images`: build, push and its digest, pull, tags, what an image declares, cleanup.
//! - `containers`: run, stop, start, remove, inspect, exec and logs.
//! - `resources`: networks and volumes.

mod build_network;
mod containers;
mod images;
mod resources;

use std::path::Path;
use std::time::Duration;

pub use build_network::BUILD_NETWORK;
pub use containers::{
    ContainerNetwork, ContainerRun, ContainerState, Mount, MountSource, PortPublish,
};
pub use images::{ImageBuild, LabelledImage};
pub use resources::Ensured;

use crate::process::{self, CommandFailed, CommandOutput, CommandSpec, Ended, SpawnError};

/// How long one engine command may take, pulls and streamed commands aside.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a pull may take.
pub const PULL_TIMEOUT: Duration = Duration::from_secs(900);
/// The most a command whose output is data may print; more is an error.
const MAX_DATA_BYTES: usize = 4 * 1024 * 1024;

/// Which program manages containers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeKind {
    Podman,
    Docker,
}

impl RuntimeKind {
    pub fn parse(name: &str) -> Option<RuntimeKind> {
        match name {
            "podman" => Some(RuntimeKind::Podman),
            "docker" => Some(RuntimeKind::Docker),
            _ => None,
        }
    }

    pub fn program(self) -> &'static str {
        match self {
            RuntimeKind::Podman => "podman",
            RuntimeKind::Docker => "docker",
        }
    }
}

/// A login for one registry; the password never appears in `Debug` output.
#[derive(Clone)]
pub struct RegistryCredentials {
    /// The registry host (`host[:port]`) the login belongs to: the only one its auth file names.
    pub registry: String,
    pub username: String,
    pub password: secrecy::SecretString,
}

impl std::fmt::Debug for RegistryCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryCredentials")
            .field("registry", &self.registry)
            .field("username", &self.username)
            .field("password", &"[redacted]")
            .finish()
    }
}

impl RegistryCredentials {
    /// The auth file podman (`--authfile`) and docker (`config.json`) read: this login for its
    /// own registry, and nothing else.
    pub fn auth_file_json(&self) -> String {
        use base64::Engine;
        use secrecy::ExposeSecret;
        let auth = base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.username,
            self.password.expose_secret()
        ));
        format!(
            "{{\"auths\":{{\"{}\":{{\"auth\":\"{auth}\"}}}}}}",
            self.registry.replace(['"', '\\'], "")
        )
    }
}

/// A container engine and how to reach the registry.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub kind: RuntimeKind,
    /// Plain HTTP to the registry (a local registry only).
    pub insecure_registry: bool,
}

/// Why the engine could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The engine's program could not be started.
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// The command ran and did not succeed; the outcome says how it ended.
    #[error(transparent)]
    Failed(#[from] CommandFailed),
    #[error("`{command}` printed more than the {limit} bytes Wharf reads")]
    TooMuchOutput { command: String, limit: usize },
    #[error("`{command}` printed what Wharf cannot read: {reason}")]
    Unreadable { command: String, reason: String },
}

impl EngineError {
    /// True when the command failed because a port it was to publish is taken: a free port
    /// can be taken by someone else between the look and the start.
    pub fn is_address_in_use(&self) -> bool {
        match self {
            EngineError::Failed(CommandFailed(output)) => {
                output.stderr.contains("address already in use")
                    || output.stdout.contains("address already in use")
            }
            _ => false,
        }
    }
}

impl Runtime {
    fn command(&self) -> CommandSpec {
        CommandSpec::new(self.kind.program())
    }

    /// `verb` with the registry login in `auth_file`, when given: Podman takes the file itself,
    /// Docker reads `config.json` from a directory of its own.
    fn registry_command(&self, verb: &str, auth_file: Option<&Path>) -> CommandSpec {
        match (self.kind, auth_file) {
            (_, None) => self.command().arg(verb),
            (RuntimeKind::Podman, Some(file)) => {
                self.command().arg(verb).arg("--authfile").arg(file)
            }
            (RuntimeKind::Docker, Some(file)) => self
                .command()
                .arg("--config")
                .arg(file.parent().unwrap_or(Path::new(".")))
                .arg(verb),
        }
    }

    /// Runs a short command to its end; a failure says how it ended.
    async fn execute(
        &self,
        spec: CommandSpec,
        timeout: Duration,
    ) -> Result<CommandOutput, EngineError> {
        let output = process::output(&spec, timeout, MAX_DATA_BYTES).await?;
        tracing::debug!(command = %output.command, ms = output.took.as_millis() as u64, "ran");
        Ok(output.succeeded()?)
    }

    /// Runs a short command whose output is data, and returns all of it.
    async fn query(&self, spec: CommandSpec) -> Result<String, EngineError> {
        let output = self.execute(spec, COMMAND_TIMEOUT).await?;
        if output.truncated {
            return Err(EngineError::TooMuchOutput {
                command: output.command,
                limit: MAX_DATA_BYTES,
            });
        }
        Ok(output.stdout)
    }

    /// Runs an inspect whose exit code answers a question ("is there such a thing?"): zero is
    /// yes, another code no; a command that did not finish answers nothing.
    async fn ask(&self, spec: CommandSpec) -> Result<bool, EngineError> {
        let output = process::output(&spec, COMMAND_TIMEOUT, MAX_DATA_BYTES).await?;
        tracing::debug!(command = %output.command, ms = output.took.as_millis() as u64, "ran");
        match output.ended {
            Ended::Exited(code) => Ok(code == 0),
            _ => Err(CommandFailed(Box::new(output)).into()),
        }
    }
}

/// An error for output that does not read as the format asked for.
fn unreadable(spec: &CommandSpec, reason: impl std::fmt::Display) -> EngineError {
    EngineError::Unreadable {
        command: spec.display(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn args(spec: &CommandSpec) -> Vec<String> {
        std::iter::once(spec.program.clone())
            .chain(
                spec.args
                    .iter()
                    .map(|arg| arg.to_string_lossy().into_owned()),
            )
            .collect()
    }

    pub(super) fn podman() -> Runtime {
        Runtime {
            kind: RuntimeKind::Podman,
            insecure_registry: false,
        }
    }

    pub(super) fn docker() -> Runtime {
        Runtime {
            kind: RuntimeKind::Docker,
            insecure_registry: false,
        }
    }

    #[test]
    fn registry_logins_go_where_each_engine_reads_them() {
        let file = Some(Path::new("/w/auth/config.json"));
        assert_eq!(
            args(&podman().registry_command("pull", file)).join(" "),
            "podman pull --authfile /w/auth/config.json"
        );
        assert_eq!(
            args(&docker().registry_command("pull", file)).join(" "),
            "docker --config /w/auth pull"
        );
        assert_eq!(
            args(&docker().registry_command("push", None)).join(" "),
            "docker push"
        );
    }

    #[tokio::test]
    async fn a_port_taken_is_told_apart_from_other_failures() {
        let failed = |script: &str| {
            let spec = CommandSpec::new("sh").args(["-c", script]);
            async move {
                let output = process::output(&spec, Duration::from_secs(10), 1024)
                    .await
                    .unwrap();
                EngineError::from(output.succeeded().unwrap_err())
            }
        };
        let taken = failed("echo 'Error: rootlessport listen tcp 127.0.0.1:4100: bind: address already in use' >&2; exit 126").await;
        assert!(taken.is_address_in_use());
        let other = failed("echo 'Error: no such image' >&2; exit 125").await;
        assert!(!other.is_address_in_use());
        assert_eq!(
            other.to_string(),
            "`sh -c \"echo 'Error: no such image' >&2; exit 125\"` exited 125: Error: no such image"
        );
    }
}
