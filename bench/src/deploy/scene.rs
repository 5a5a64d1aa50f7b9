//! What the deploy benchmark starts and how it reaches it: the scene (server, GitHub stand-in,
//! registry) with an agent that runs its own Caddy as the edge and the services `site`,
//! `classic` and `app`; deploying through Wharf and waiting on releases, the edge and
//! containers; and the cleanup of the host, also when the run fails.

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use super::{
    APP_ID, Args, DEADLINE, DRAIN_MS, HEALTH_INTERVAL_MS, HEALTH_RETRIES, INSTALLATION,
    STOP_GRACE_S,
};
use crate::edge_load::{self, Answer, Load, get_through_edge};
use crate::github_scene::GithubScene;
use crate::procs::{self, Child, poll};

/// The site both deploy methods swap: busybox httpd answering its version at `/`. An unhealthy
/// version has no `/` page (404), so the HTTP probe fails.
pub(super) fn site_dockerfile() -> &'static str {
    "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nCOPY www /www\n\
CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
}

/// Everything the benchmark started, reached through one value.
pub(super) struct Bench {
    /// The server, the GitHub stand-in with `acme/app`, the registry, and the run's directory.
    pub(super) scene: GithubScene,
    /// For the load: its own pool, so API calls never wait behind it.
    pub(super) edge_client: reqwest::Client,
    pub(super) agent_name: String,
    /// `127.0.0.1:PORT` of the edge's apps, and of Caddy's admin API.
    pub(super) edge_listen: String,
    pub(super) edge_admin: String,
    /// `key=value` on every container the scripts start.
    pub(super) script_label: String,
    /// Images to remove at the end, shared with [`HostCleanup`].
    pub(super) images: Arc<std::sync::Mutex<Vec<String>>>,
}

/// Removes what the benchmark started on the host when dropped, also when it fails: the agent
/// (SIGTERM), the Caddy (it outlives the agent by design), the
/// containers of the agent and of the scripts, and the images tagged for this run's registry.
pub(super) struct HostCleanup {
    pub(super) agent: Option<Child>,
    pub(super) agent_name: String,
    pub(super) edge_admin: String,
    pub(super) script_label: String,
    /// References of the images this run built or pulled (listing all images can take
    /// minutes on a machine that holds many).
    pub(super) images: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Drop for HostCleanup {
    fn drop(&mut self) {
        if let Some(mut agent) = self.agent.take() {
            let _ = agent.terminate(Duration::from_secs(20));
        }
        stop_caddy(&self.edge_admin);
        for label in [
            format!("wharf.deploy.agent={}", self.agent_name),
            self.script_label.clone(),
        ] {
            let ids = podman_blocking(&[
                "ps",
                "--all",
                "--quiet",
                "--filter",
                &format!("label={label}"),
            ]);
            for id in ids.lines().filter(|id| !id.trim().is_empty()) {
                podman_blocking(&["rm", "--force", "--time", "0", id.trim()]);
            }
        }
        let images = self
            .images
            .lock()
            .map(|images| images.clone())
            .unwrap_or_default();
        for image in images {
            podman_blocking(&["rmi", "--ignore", &image]);
        }
    }
}

/// Asks a Caddy to stop through its admin API, without an async runtime (used in `Drop`).
pub(super) fn stop_caddy(admin: &str) {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect(admin) else {
        return;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let request = format!(
        "POST /stop HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    if stream.write_all(request.as_bytes()).is_ok() {
        let mut answer = Vec::new();
        let _ = stream.read_to_end(&mut answer);
    }
}

/// Runs podman and returns its standard output (cleanup only: a failure is reported on stderr
/// and gives an empty string, so the rest of the cleanup still runs).
pub(super) fn podman_blocking(args: &[&str]) -> String {
    match std::process::Command::new("podman").args(args).output() {
        Ok(out) if out.status.success() => String::from_utf8_lossy(&out.stdout).into_owned(),
        Ok(out) => {
            eprintln!(
                "cleanup: podman {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            );
            String::new()
        }
        Err(error) => {
            eprintln!("cleanup: cannot run podman: {error}");
            String::new()
        }
    }
}

pub(super) async fn podman(args: &[&str]) -> anyhow::Result<String> {
    let out = tokio::process::Command::new("podman")
        .args(args)
        .output()
        .await
        .context("cannot run podman")?;
    if !out.status.success() {
        bail!(
            "podman {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub(super) async fn setup(args: &Args) -> anyhow::Result<(Bench, HostCleanup)> {
    let scene = GithubScene::start(&args.wharf, "deploy", APP_ID, INSTALLATION, "app").await?;
    let edge_client = edge_load::client()?;
    let agent_name = format!("bench-deploy-{}", procs::random_hex(3)?);
    let agent_token = scene.add_agent(&agent_name).await?;
    let edge_admin = format!("127.0.0.1:{}", procs::free_port()?);
    let edge_listen = format!("127.0.0.1:{}", procs::free_port()?);
    let mut agent_command = scene.agent_command(&args.wharf, &agent_token, "info");
    agent_command
        .env("WHARF_LABELS", "build,deploy")
        .env("WHARF_CADDY_ADMIN", &edge_admin)
        .env("WHARF_EDGE_LISTEN", &edge_listen)
        .env("WHARF_STOP_GRACE", STOP_GRACE_S.to_string());
    let agent = scene.spawn_agent(agent_command)?;
    let script_label = format!("wharf-bench.run={}", procs::random_hex(4)?);
    let cleanup = HostCleanup {
        agent: Some(agent),
        agent_name: agent_name.clone(),
        edge_admin: edge_admin.clone(),
        script_label: script_label.clone(),
        images: Arc::default(),
    };

    // The installation, as GitHub would announce it, then the services.
    scene.announce_installation().await?;
    let deploy = |strategy: Option<&str>, auto_deploy: bool| {
        let mut deploy = json!({
            "hosts": [agent_name],
            "auto_deploy": auto_deploy,
            "drain_ms": DRAIN_MS,
            "health": {"interval_ms": HEALTH_INTERVAL_MS, "timeout_ms": 1000,
                       "deadline_ms": 15000, "retries": HEALTH_RETRIES},
        });
        if let Some(strategy) = strategy {
            deploy["strategy"] = json!(strategy);
        }
        deploy
    };
    // `site` and `classic` get images deployed by name; only `app` builds from pushes.
    for (name, repo, domain, deploy) in [
        ("site", "acme/images", "site.test", deploy(None, false)),
        (
            "classic",
            "acme/images",
            "classic.test",
            deploy(Some("recreate"), false),
        ),
        ("app", scene.repository.as_str(), "app.test", {
            let mut deploy = deploy(None, true);
            deploy["previews"] = json!({"enabled": true, "limit": 100});
            deploy
        }),
    ] {
        scene
            .create_service(
                &json!({"name": name, "repo": repo, "branch": "main", "port": 8080,
                                    "domain": domain, "deploy": deploy}),
            )
            .await?;
    }
    let bench = Bench {
        scene,
        edge_client,
        agent_name,
        edge_listen,
        edge_admin,
        script_label,
        images: cleanup.images.clone(),
    };
    Ok((bench, cleanup))
}

impl Bench {
    /// Notes an image this run built or pulled, for the cleanup.
    pub(super) fn remember_image(&self, image: &str) {
        if let Ok(mut images) = self.images.lock() {
            images.push(image.to_owned());
        }
    }

    pub(super) fn edge_url(&self) -> String {
        format!("http://{}/", self.edge_listen)
    }

    /// Builds the site image that answers `version` (or fails its probe) and pushes it, as CI
    /// would; the local tag is removed, so deploys really pull.
    pub(super) async fn push_site_image(
        &self,
        version: &str,
        healthy: bool,
    ) -> anyhow::Result<String> {
        let context = self.scene.dir.path().join(format!("image-{version}"));
        std::fs::create_dir_all(context.join("www"))?;
        std::fs::write(context.join("Dockerfile"), site_dockerfile())?;
        std::fs::copy("/bin/busybox", context.join("busybox"))
            .context("busybox-static is needed")?;
        let page = if healthy { "index.html" } else { "other.html" };
        std::fs::write(context.join("www").join(page), format!("{version}\n"))?;
        let image = format!(
            "{}/bench/site:{}",
            self.scene.registry.address,
            version.to_lowercase()
        );
        let context = context.to_string_lossy().into_owned();
        self.remember_image(&image);
        podman(&["build", "-q", "--format", "docker", "-t", &image, &context]).await?;
        podman(&["push", "-q", "--tls-verify=false", &image]).await?;
        podman(&["untag", &image, &image]).await?;
        Ok(image)
    }

    /// Asks Wharf to deploy `image` to `service`; returns the release id.
    pub(super) async fn deploy(&self, service: &str, image: &str) -> anyhow::Result<i64> {
        let release = self
            .scene
            .wharf
            .admin_post(
                &self.scene.http,
                &format!("/v1/services/{service}/deploy"),
                &json!({"image": image}),
                reqwest::StatusCode::CREATED,
            )
            .await?;
        release["id"].as_i64().context("no release id")
    }

    /// Polls a release every 20 ms until its state is settled.
    pub(super) async fn wait_settled(&self, id: i64) -> anyhow::Result<Value> {
        poll(DEADLINE, Duration::from_millis(20), async || {
            let release = self.scene.get_json(&format!("/v1/releases/{id}")).await?;
            let state = release["state"].as_str().unwrap_or_default();
            Ok(
                if ["pending", "pulling", "starting", "health_checking"].contains(&state) {
                    ControlFlow::Continue(format!("release #{id} did not settle: {release}"))
                } else {
                    ControlFlow::Break(release)
                },
            )
        })
        .await
    }

    /// Deploys through Wharf and waits until the release is live and the edge answers it.
    pub(super) async fn deploy_live(
        &self,
        service: &str,
        host: &str,
        image: &str,
        version: &str,
    ) -> anyhow::Result<f64> {
        let started = Instant::now();
        let id = self.deploy(service, image).await?;
        let release = self.wait_settled(id).await?;
        ensure!(
            release["state"] == "live",
            "release #{id} of {image} did not go live: {release}"
        );
        let seconds = started.elapsed().as_secs_f64();
        self.wait_for_edge(host, version).await?;
        Ok(seconds)
    }

    /// What the edge answers for `host` now.
    pub(super) async fn edge_answer(&self, host: &str) -> Answer {
        get_through_edge(&self.edge_client, &self.edge_url(), host).await
    }

    /// Polls the edge every 10 ms until it answers `version` for `host`.
    pub(super) async fn wait_for_edge(&self, host: &str, version: &str) -> anyhow::Result<()> {
        poll(DEADLINE, Duration::from_millis(10), async || {
            let answer = self.edge_answer(host).await;
            Ok(if answer == Answer::Ok(version.to_owned()) {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(format!(
                    "the edge answers {answer:?} for {host}, not {version:?}"
                ))
            })
        })
        .await
    }

    /// Waits until Wharf has exactly one container of `service` (the old version stopped and
    /// removed).
    pub(super) async fn wait_for_one_container(&self, service: &str) -> anyhow::Result<()> {
        poll(DEADLINE, Duration::from_millis(100), async || {
            let ids = podman(&[
                "ps",
                "--all",
                "--quiet",
                "--filter",
                &format!("label=wharf.deploy.agent={}", self.agent_name),
                "--filter",
                &format!("label=wharf.deploy.service={service}"),
            ])
            .await?;
            let count = ids.lines().filter(|id| !id.trim().is_empty()).count();
            Ok(if count == 1 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(format!("{service} runs {count} containers, not 1"))
            })
        })
        .await
    }

    pub(super) fn start_load(&self, host: &str, rate: f64) -> Load {
        Load::start(&self.edge_client, &self.edge_url(), host, rate)
    }

    /// `bash -c SCRIPT NAME ARGS…` for a script Wharf is compared with, its container `app` on
    /// `127.0.0.1:port`, labelled for the cleanup, probing as often as Wharf does.
    pub(super) fn script(
        &self,
        script: &str,
        name: &str,
        args: &[&str],
        app: &str,
        port: u16,
    ) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("bash");
        command
            .args(["-c", script, name])
            .args(args)
            .env("APP", app)
            .env("PORT", port.to_string())
            .env("LABEL", &self.script_label)
            .env(
                "HEALTH_INTERVAL",
                format!("{:.3}", HEALTH_INTERVAL_MS as f64 / 1000.0),
            );
        command
    }
}
