//! Real parts the build tests run against: Debian's `docker-registry` on a port of its own,
//! Podman, and an in-process agent with the real image builder.

use std::time::Duration;

use secrecy::SecretString;
use tokio::sync::watch;
use wharf_agent::{
    AgentConfig, BuilderConfig, DeployConfig, EdgeConfig, ImageBuilder, Runtime, RuntimeKind,
};
use wharf_runtime::registry::LocalRegistry;

use crate::helpers::{Options, TestApp};

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

    /// Settings for a test server whose registry this is.
    pub fn options(&self) -> Options {
        Options {
            registry: Some(self.address.clone()),
            ..Options::default()
        }
    }
}

/// A registry that asks every request for a login (401 with a Basic challenge) and keeps the
/// `Authorization` header each request brought: what a registry learns of the logins sent.
pub struct RecordingRegistry {
    /// `127.0.0.1:PORT`.
    pub address: String,
    authorizations: std::sync::Arc<std::sync::Mutex<Vec<Option<String>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl RecordingRegistry {
    pub async fn start() -> RecordingRegistry {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let authorizations = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let recorded = authorizations.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let recorded = recorded.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buffer = [0u8; 4096];
                    let read = async {
                        while !head.windows(4).any(|window| window == b"\r\n\r\n")
                            && head.len() < 64 * 1024
                        {
                            match stream.read(&mut buffer).await {
                                Ok(0) | Err(_) => return false,
                                Ok(count) => head.extend_from_slice(&buffer[..count]),
                            }
                        }
                        true
                    };
                    let complete = tokio::time::timeout(Duration::from_secs(10), read)
                        .await
                        .unwrap_or(false);
                    // A TLS hello (the engine tries HTTPS first) is no HTTP request.
                    if !complete || !head.starts_with(b"GET ") && !head.starts_with(b"HEAD ") {
                        return;
                    }
                    let text = String::from_utf8_lossy(&head);
                    let authorization = text.lines().find_map(|line| {
                        let (name, value) = line.split_once(':')?;
                        name.eq_ignore_ascii_case("authorization")
                            .then(|| value.trim().to_owned())
                    });
                    recorded.lock().unwrap().push(authorization);
                    let _ = stream
                        .write_all(
                            b"HTTP/1.1 401 Unauthorized\r\n\
WWW-Authenticate: Basic realm=\"registry\"\r\n\
Docker-Distribution-Api-Version: registry/2.0\r\n\
Content-Type: application/json\r\n\
Content-Length: 2\r\nConnection: close\r\n\r\n{}",
                        )
                        .await;
                });
            }
        });
        RecordingRegistry {
            address,
            authorizations,
            task,
        }
    }

    /// The `Authorization` header of every HTTP request so far (None: it brought none).
    pub fn authorizations(&self) -> Vec<Option<String>> {
        self.authorizations.lock().unwrap().clone()
    }
}

impl Drop for RecordingRegistry {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An agent with the real builder, running until the returned sender says stop.
pub struct RunningAgent {
    pub stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub work_dir: tempfile::TempDir,
}

/// The builder the tests use: Podman; the registry is the server's, plain HTTP.
pub fn builder_config(timeout: Duration) -> BuilderConfig {
    BuilderConfig {
        runtime: Runtime {
            kind: RuntimeKind::Podman,
            insecure_registry: false,
        },
        timeout,
        registry_credentials: None,
        railpack: None,
    }
}

pub async fn start_builder_agent(app: &TestApp, name: &str, timeout: Duration) -> RunningAgent {
    let token = app.create_agent(name).await;
    start_agent_with(app, token, builder_config(timeout)).await
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
        deploy: None,
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

/// A free port on 127.0.0.1 (nobody listens there right now).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// An in-process agent that builds and deploys, with a Caddy of its own (started on first
/// need) whose admin API and app listener are on free ports.
pub struct DeployAgent {
    pub name: String,
    /// `127.0.0.1:PORT`, where the edge serves the apps.
    pub edge_listen: String,
    /// Its Caddy's admin API.
    pub edge_admin: String,
    pub agent: RunningAgent,
    _edge_dir: tempfile::TempDir,
}

/// How a test agent deploys: Podman, an edge on free ports (plain HTTP to the registry is the
/// server's to say).
pub fn deploy_config(edge_dir: &std::path::Path) -> (DeployConfig, String, String) {
    let admin = format!("127.0.0.1:{}", free_port());
    let listen = format!("127.0.0.1:{}", free_port());
    let config = DeployConfig {
        runtime: Runtime {
            kind: RuntimeKind::Podman,
            insecure_registry: false,
        },
        edge: EdgeConfig {
            admin: admin.clone(),
            listen: listen.clone(),
            caddy_bin: "caddy".into(),
            state_dir: edge_dir.to_path_buf(),
        },
        registry_credentials: None,
        stop_grace: Duration::from_secs(1),
        registry: None,
    };
    (config, admin, listen)
}

pub async fn start_deploy_agent(app: &TestApp, name: &str) -> DeployAgent {
    let token = app.create_agent(name).await;
    start_deploy_agent_with_token(app, name, token).await
}

/// Starts a deploy agent with a token issued before, as a restarted agent would.
pub async fn start_deploy_agent_with_token(
    app: &TestApp,
    name: &str,
    token: String,
) -> DeployAgent {
    let builder = builder_config(Duration::from_secs(180));
    start_deploy_agent_with(app, name, token, builder).await
}

/// Starts a deploy agent with the builder settings given; it pulls with their registry login.
pub async fn start_deploy_agent_with(
    app: &TestApp,
    name: &str,
    token: String,
    builder: BuilderConfig,
) -> DeployAgent {
    let edge_dir = tempfile::tempdir().unwrap();
    let (mut deploy, admin, listen) = deploy_config(edge_dir.path());
    deploy.registry_credentials = builder.registry_credentials.clone();
    let work_dir = tempfile::tempdir().unwrap();
    let (stop, stopped) = watch::channel(false);
    let agent_config = AgentConfig {
        server: app.url.clone(),
        token: SecretString::from(token),
        labels: vec!["build".to_owned(), "deploy".to_owned()],
        work_dir: work_dir.path().to_path_buf(),
        claim_wait: Duration::from_secs(5),
        deploy: Some(deploy),
    };
    let task = tokio::spawn(wharf_agent::run(
        agent_config,
        ImageBuilder { config: builder },
        stopped,
    ));
    DeployAgent {
        name: name.to_owned(),
        edge_listen: listen,
        edge_admin: admin,
        agent: RunningAgent {
            stop,
            task,
            work_dir,
        },
        _edge_dir: edge_dir,
    }
}

impl DeployAgent {
    /// Stops the agent and its Caddy, and removes the containers, networks and volumes it made.
    pub async fn stop(self) {
        let name = self.name.clone();
        self.stop_keeping_containers().await;
        remove_agent_containers(&name).await;
    }

    /// Stops the agent and leaves what it runs, as a crash would; its Caddy, which outlives
    /// an agent by design, is stopped too (a restarted test agent gets an edge on new ports).
    pub async fn stop_keeping_containers(self) {
        self.agent.stop.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(30), self.agent.task)
            .await
            .expect("the agent stops")
            .unwrap()
            .unwrap();
        stop_caddy(&self.edge_admin).await;
    }
}

/// Stops the Caddy whose admin API is at `admin` (a test's own), and waits until it is gone.
pub async fn stop_caddy(admin: &str) {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let _ = client.post(format!("http://{admin}/stop")).send().await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(admin).is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "Caddy at {admin} did not stop"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Removes every container Wharf ran for agent `name`, then the networks and volumes it made
/// for compose stacks.
pub async fn remove_agent_containers(name: &str) {
    let label = format!("label=wharf.deploy.agent={name}");
    let (_, ids, _) = podman(&["ps", "--all", "--quiet", "--filter", &label]).await;
    for id in ids.lines() {
        let _ = podman(&["rm", "--force", "--volumes", "--time", "0", id]).await;
    }
    let (_, networks, _) = podman(&["network", "ls", "--quiet", "--filter", &label]).await;
    for network in networks.lines() {
        let _ = podman(&["network", "rm", network]).await;
    }
    let (_, volumes, _) = podman(&["volume", "ls", "--quiet", "--filter", &label]).await;
    for volume in volumes.lines() {
        let _ = podman(&["volume", "rm", volume]).await;
    }
}
