//! Real parts the build tests run against: Debian's `docker-registry` on a port of its own,
//! Podman, and an in-process agent with the real image builder.

use std::process::Stdio;
use std::time::Duration;

use secrecy::SecretString;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::watch;
use wharf_agent::{AgentConfig, BuilderConfig, ImageBuilder, Runtime, RuntimeKind};

use crate::helpers::TestApp;

/// A registry (Distribution 2.8) on 127.0.0.1, storing into a temporary directory.
pub struct Registry {
    /// `127.0.0.1:PORT`.
    pub address: String,
    _child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub async fn start() -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.yml");
        std::fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: info\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:0\n",
                dir.path().join("data").display()
            ),
        )
        .unwrap();
        let mut child = tokio::process::Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("docker-registry runs (scripts/test installs it)");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let address = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    return rest.split(['"', ' ']).next().unwrap().to_owned();
                }
            }
            panic!("docker-registry exited before listening");
        })
        .await
        .expect("the registry listens within 20 s");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Registry {
            address,
            _child: child,
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

pub async fn start_builder_agent(
    app: &TestApp,
    name: &str,
    registry: Option<&str>,
    timeout: Duration,
) -> RunningAgent {
    let token = app.create_agent(name).await;
    start_builder_agent_with_token(app, token, registry, timeout, tempfile::tempdir().unwrap())
        .await
}

pub async fn start_builder_agent_with_token(
    app: &TestApp,
    token: String,
    registry: Option<&str>,
    timeout: Duration,
    work_dir: tempfile::TempDir,
) -> RunningAgent {
    let (stop, stopped) = watch::channel(false);
    let config = AgentConfig {
        server: app.url.clone(),
        token: SecretString::from(token),
        labels: vec!["build".to_owned()],
        work_dir: work_dir.path().to_path_buf(),
        claim_wait: Duration::from_secs(5),
    };
    let builder = ImageBuilder {
        config: BuilderConfig {
            runtime: Runtime {
                kind: RuntimeKind::Podman,
                insecure_registry: true,
            },
            registry: registry.map(str::to_owned),
            timeout,
        },
    };
    let task = tokio::spawn(wharf_agent::run(config, builder, stopped));
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
