//! Real parts the build tests run against: Debian's `docker-registry` on a port of its own,
//! Podman, and an in-process agent with the real image builder.

use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::watch;
use wharf_agent::{AgentConfig, BuilderConfig, ImageBuilder, Runtime, RuntimeKind};
use wharf_runtime::registry::LocalRegistry;

use crate::helpers::TestApp;

/// A registry (Distribution 2.8) on 127.0.0.1, storing into a temporary directory.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub address: String,
    _registry: LocalRegistry,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub async fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let registry = LocalRegistry::start(dir.path(), "127.0.0.1:0")
            .await
            .expect("docker-registry runs (scripts/test installs it)");
        Registry {
            address: registry.address.clone(),
            _registry: registry,
            _dir: dir,
        }
    }
}

/// An agent with the real builder, running until the returned sender says stop.
pub struct RunningAgent {
    pub stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub work_dir: tempfile::TempDir,
}

/// The builder the tests use: Podman, plain HTTP to the test registry.
pub fn builder_config(registry: Option<&str>, timeout: Duration) -> BuilderConfig {
    BuilderConfig {
        runtime: Runtime {
            kind: RuntimeKind::Podman,
            insecure_registry: true,
        },
        registry: registry.map(str::to_owned),
        timeout,
        registry_credentials: None,
    }
}

pub async fn start_builder_agent(
    app: &TestApp,
    name: &str,
    registry: Option<&str>,
    timeout: Duration,
) -> RunningAgent {
    let token = app.create_agent(name).await;
    start_agent_with(app, token, builder_config(registry, timeout)).await
}

/// Starts an agent with its own token and builder settings.
pub async fn start_agent_with(app: &TestApp, token: String, config: BuilderConfig) -> RunningAgent {
    let work_dir = tempfile::tempdir().unwrap();
    let (stop, stopped) = watch::channel(false);
    let agent_config = AgentConfig {
        server: app.url.clone(),
        token: SecretString::from(token),
        labels: vec!["build".to_owned()],
        work_dir: work_dir.path().to_path_buf(),
        claim_wait: Duration::from_secs(5),
    };
    let task = tokio::spawn(wharf_agent::run(
        agent_config,
        ImageBuilder { config },
        stopped,
    ));
    RunningAgent {
        stop,
        task,
        work_dir,
    }
}

/// Runs podman and returns (success, stdout, stderr).
pub async fn podman(args: &[&str]) -> (bool, String, String) {
    let output = tokio::process::Command::new("podman")
        .args(args)
        .output()
        .await
        .expect("podman runs");
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Debian's static busybox, the only program test images contain.
pub fn busybox() -> Vec<u8> {
    std::fs::read("/bin/busybox").expect("busybox-static is installed (scripts/test installs it)")
}
