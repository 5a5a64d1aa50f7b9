//! `deploy`: what users of a deployed service see while Wharf deploys it.
//!
//! Everything is real and on 127.0.0.1: the `wharf server` and `wharf agent` binaries (the agent
//! builds, deploys, and runs its own Caddy as the edge), Debian's `docker-registry`, Podman, and
//! the GitHub stand-in serving a repository over git's smart HTTP. Requests go through the
//! edge with a `Host` header at a fixed rate (an open loop: request i is due at t0 + i/rate and
//! sent in its own task, so a stalled edge cannot slow the sender down).
//!
//! 1. Failed requests while the service swaps between two versions, deployed (a) by Wharf
//!    (blue-green, `POST /v1/services/NAME/deploy`) and (b) by the stop-then-start script of a
//!    plain deploy hook (`bench/stop-start-deploy.sh`), behind the same Caddy route.
//! 2. An unhealthy version, blue-green and recreate: from Wharf's `rolled_back` verdict to the
//!    last request the old version did not serve.
//! 3. Push received to the new version answering through the edge, against the raw shell
//!    pipeline (`bench/push-pipeline.sh`: fetch, build, push, pull, run, probe).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use serde_json::{Value, json};

use crate::edge_load::{
    self, Answer, HELD_MS, Load, REQUEST_TIMEOUT, Sample, Summary, before, get_through_edge,
    wall_ms,
};
use crate::github_scene::GithubScene;
use crate::procs::{self, Child, time_from_rfc3339};
use crate::report::{self, median};

#[derive(clap::Args)]
pub struct Args {
    /// The `wharf` binary to measure.
    #[arg(long)]
    wharf: PathBuf,
    /// Requests per second sent through the edge while deploys run.
    #[arg(long, default_value_t = 200.0)]
    rate: f64,
    /// Version swaps under load, for each way of deploying.
    #[arg(long, default_value_t = 5)]
    swaps: usize,
    /// Timed push-to-live runs of each kind (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Where the Markdown report goes.
    #[arg(long, default_value = "bench/results/deploy.md")]
    out: PathBuf,
    /// Also write every request (due, answered, outcome) as CSV, when each deploy started,
    /// and the logs of the server, the agent and Caddy, to this directory.
    #[arg(long)]
    samples: Option<PathBuf>,
}

const APP_ID: u64 = 9002;
const INSTALLATION: u64 = 78;
/// Seconds a stopping container gets between SIGTERM and SIGKILL, for Wharf and the script.
const STOP_GRACE_S: u64 = 1;
/// How long Wharf's old version keeps serving in-flight requests after traffic moved.
const DRAIN_MS: u64 = 1000;
/// Health probes, for Wharf and the scripts alike: every 100 ms, five failures in a row.
const HEALTH_INTERVAL_MS: u64 = 100;
const HEALTH_RETRIES: u32 = 5;
/// Any wait for Wharf or a container.
const DEADLINE: Duration = Duration::from_secs(120);

const STOP_START_SCRIPT: &str = include_str!("../stop-start-deploy.sh");
const PUSH_PIPELINE_SCRIPT: &str = include_str!("../push-pipeline.sh");

/// The site both deploy methods swap: busybox httpd answering its version at `/`. An unhealthy
/// version has no `/` page (404), so the HTTP probe fails.
fn site_dockerfile() -> &'static str {
    "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nCOPY www /www\n\
CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n"
}

/// Requests the old version did not serve: they failed, or another version answered them.
/// (A request held up but then answered 200 by the old version was served by it, late.)
fn not_served_by<'a>(samples: &'a [Sample], old: &'a str) -> impl Iterator<Item = &'a Sample> {
    samples
        .iter()
        .filter(move |sample| sample.answer != Answer::Ok(old.to_owned()))
}

/// A deploy of an unhealthy version under load, and what the load saw.
struct Rollback {
    old: String,
    /// The deploy request was sent, and the server recorded `rolled_back` (its `finished_at`).
    deploy_sent_ms: f64,
    verdict_ms: f64,
    reason: String,
    summary: Summary,
    /// Requests the old version did not serve, and of those, the ones another version served.
    not_served: usize,
    other_version: usize,
    /// When the first and the last request the old version did not serve were due.
    not_served_span: Option<(f64, f64)>,
    /// Requests due after the verdict that were held more than [`HELD_MS`].
    held_after_verdict: usize,
    /// The requests due before the deploy was sent: the machine's own noise.
    before: Summary,
    samples: Vec<Sample>,
}

impl Rollback {
    fn new(
        old: String,
        deploy_sent_ms: f64,
        release: &Value,
        samples: Vec<Sample>,
    ) -> anyhow::Result<Rollback> {
        let verdict_ms = release["finished_at"]
            .as_str()
            .and_then(time_from_rfc3339)
            .context("the rolled-back release has no finished_at")? as f64;
        let bad: Vec<&Sample> = not_served_by(&samples, &old).collect();
        let span = match (
            bad.iter().map(|s| s.due_ms).reduce(f64::min),
            bad.iter().map(|s| s.due_ms).reduce(f64::max),
        ) {
            (Some(first), Some(last)) => Some((first, last)),
            _ => None,
        };
        Ok(Rollback {
            deploy_sent_ms,
            verdict_ms,
            reason: release["reason"].as_str().unwrap_or_default().to_owned(),
            summary: Summary::of(&samples),
            not_served: bad.len(),
            other_version: bad
                .iter()
                .filter(|s| matches!(&s.answer, Answer::Ok(body) if *body != old))
                .count(),
            not_served_span: span,
            held_after_verdict: samples
                .iter()
                .filter(|s| s.due_ms >= verdict_ms && s.held())
                .count(),
            old,
            before: before(&samples, deploy_sent_ms),
            samples,
        })
    }

    /// From the verdict to the due time of the last request the old version did not serve
    /// (every later request it served); `None` when it served all of them. Negative: it served
    /// everything sent from before the verdict on.
    fn verdict_to_restored_ms(&self) -> Option<f64> {
        self.not_served_span.map(|(_, last)| last - self.verdict_ms)
    }

    /// The goal: within 1 s of the verdict every request is served by the old version.
    fn goal_met(&self) -> bool {
        self.verdict_to_restored_ms().is_none_or(|ms| ms < 1000.0)
    }
}

/// One version swap of a deploy method: which version, and how long the deploy took.
struct Swap {
    version: String,
    /// When it was asked for, in milliseconds since the epoch.
    started_ms: f64,
    seconds: f64,
}

/// The stop-then-start script's swaps or Wharf's, with the load they ran under.
struct SwapRun {
    swaps: Vec<Swap>,
    summary: Summary,
    /// The requests due before the first deploy started: the machine's own noise.
    before: Summary,
    samples: Vec<Sample>,
}

impl SwapRun {
    /// The swaps done and the requests that ran while they did.
    fn of(swaps: Vec<Swap>, samples: Vec<Sample>) -> SwapRun {
        let first = swaps.first().map_or(f64::MAX, |swap| swap.started_ms);
        SwapRun {
            swaps,
            summary: Summary::of(&samples),
            before: before(&samples, first),
            samples,
        }
    }
}

/// One push-to-live run of Wharf, timed by the benchmark and broken down by the server's own
/// timestamps (milliseconds).
struct PushRun {
    build_id: i64,
    /// Webhook sent → the edge answers the new version.
    seconds: f64,
    /// Webhook sent → build created (the server accepted the push).
    to_queued_ms: f64,
    /// Build created → claimed by the agent.
    to_claimed_ms: f64,
    /// Build claimed → image pushed (the build's `finished_at`).
    build_ms: f64,
    /// Build finished → release created.
    to_release_ms: f64,
    /// Release created → rollout `live` (the release's `finished_at`).
    rollout_ms: f64,
}

/// Everything the benchmark started, reached through one value.
struct Bench {
    /// The server, the GitHub stand-in with `acme/app`, the registry, and the run's directory.
    scene: GithubScene,
    /// For the load: its own pool, so API calls never wait behind it.
    edge_client: reqwest::Client,
    agent_name: String,
    /// `127.0.0.1:PORT` of the edge's apps, and of Caddy's admin API.
    edge_listen: String,
    edge_admin: String,
    /// `key=value` on every container the scripts start.
    script_label: String,
    /// Images to remove at the end, shared with [`HostCleanup`].
    images: Arc<std::sync::Mutex<Vec<String>>>,
}

/// Removes what the benchmark started on the host when dropped, also when it fails: the agent
/// (SIGTERM), the Caddy (it outlives the agent by design), the
/// containers of the agent and of the scripts, and the images tagged for this run's registry.
struct HostCleanup {
    agent: Option<Child>,
    agent_name: String,
    edge_admin: String,
    script_label: String,
    /// References of the images this run built or pulled (listing all images can take
    /// minutes on a machine that holds many).
    images: Arc<std::sync::Mutex<Vec<String>>>,
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
fn stop_caddy(admin: &str) {
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
fn podman_blocking(args: &[&str]) -> String {
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

async fn podman(args: &[&str]) -> anyhow::Result<String> {
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

async fn setup(args: &Args) -> anyhow::Result<(Bench, HostCleanup)> {
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
        (
            "app",
            scene.repository.as_str(),
            "app.test",
            deploy(None, true),
        ),
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
    fn remember_image(&self, image: &str) {
        if let Ok(mut images) = self.images.lock() {
            images.push(image.to_owned());
        }
    }

    fn edge_url(&self) -> String {
        format!("http://{}/", self.edge_listen)
    }

    /// Builds the site image that answers `version` (or fails its probe) and pushes it, as CI
    /// would; the local tag is removed, so deploys really pull.
    async fn push_site_image(&self, version: &str, healthy: bool) -> anyhow::Result<String> {
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
    async fn deploy(&self, service: &str, image: &str) -> anyhow::Result<i64> {
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
    async fn wait_settled(&self, id: i64) -> anyhow::Result<Value> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let release = self.scene.get_json(&format!("/v1/releases/{id}")).await?;
            let state = release["state"].as_str().unwrap_or_default();
            if !["pending", "pulling", "starting", "health_checking"].contains(&state) {
                return Ok(release);
            }
            ensure!(
                Instant::now() < deadline,
                "release #{id} did not settle: {release}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Deploys through Wharf and waits until the release is live and the edge answers it.
    async fn deploy_live(
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
    async fn edge_answer(&self, host: &str) -> Answer {
        get_through_edge(&self.edge_client, &self.edge_url(), host).await
    }

    /// Polls the edge every 10 ms until it answers `version` for `host`.
    async fn wait_for_edge(&self, host: &str, version: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let answer = self.edge_answer(host).await;
            if answer == Answer::Ok(version.to_owned()) {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the edge answers {answer:?} for {host}, not {version:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits until Wharf has exactly one container of `service` (the old version stopped and
    /// removed).
    async fn wait_for_one_container(&self, service: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + DEADLINE;
        loop {
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
            if count == 1 {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "{service} runs {count} containers, not 1"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn start_load(&self, host: &str, rate: f64) -> Load {
        Load::start(&self.edge_client, &self.edge_url(), host, rate)
    }

    /// (a): Wharf swaps `site` between the two versions `swaps` times under load. Each swap
    /// waits for the old version to drain and stop before the next, so the whole of every
    /// deploy is inside the window.
    async fn wharf_swaps(
        &self,
        images: &[(String, String); 2],
        swaps: usize,
        rate: f64,
    ) -> anyhow::Result<SwapRun> {
        let (first_version, first_image) = &images[0];
        self.deploy_live("site", "site.test", first_image, first_version)
            .await?;
        self.wait_for_one_container("site").await?;
        self.swaps_under_load(
            "Wharf blue-green",
            images,
            swaps,
            rate,
            async |version, image| {
                let seconds = self
                    .deploy_live("site", "site.test", image, version)
                    .await?;
                self.wait_for_one_container("site").await?;
                Ok(seconds)
            },
        )
        .await
    }

    /// Swaps `site` between the two versions `swaps` times under load, starting with the
    /// second, each swap by `swap_to(version, image)`, which returns how long the deploy took
    /// in seconds. The load starts 1 s before the first swap and ends 1 s after the last.
    async fn swaps_under_load(
        &self,
        method: &str,
        images: &[(String, String); 2],
        swaps: usize,
        rate: f64,
        swap_to: impl AsyncFn(&str, &str) -> anyhow::Result<f64>,
    ) -> anyhow::Result<SwapRun> {
        let load = self.start_load("site.test", rate);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mut done = Vec::new();
        for swap in 0..swaps {
            let (version, image) = &images[(swap + 1) % 2];
            eprintln!("==> {method}: swap {} of {swaps} to {version}", swap + 1);
            let started_ms = wall_ms();
            let seconds = swap_to(version, image).await?;
            done.push(Swap {
                version: version.clone(),
                started_ms,
                seconds,
            });
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        Ok(SwapRun::of(done, load.finish().await))
    }

    /// `bash -c SCRIPT NAME ARGS…` for a script Wharf is compared with, its container `app` on
    /// `127.0.0.1:port`, labelled for the cleanup, probing as often as Wharf does.
    fn script(
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

    /// Runs the stop-then-start script for `image`, the app on `port`; returns its exit code.
    async fn stop_start(&self, image: &str, port: u16) -> anyhow::Result<i32> {
        let app = format!("bench-stop-start-{}", self.agent_name);
        let out = self
            .script(
                STOP_START_SCRIPT,
                "stop-start-deploy.sh",
                &[image],
                &app,
                port,
            )
            .env("STOP_GRACE", STOP_GRACE_S.to_string())
            .env("HEALTH_RETRIES", HEALTH_RETRIES.to_string())
            .output()
            .await
            .context("cannot run bash")?;
        let code = out.status.code().unwrap_or(-1);
        if code != 0 {
            eprintln!(
                "stop-start-deploy.sh exited {code}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(code)
    }

    /// Points Wharf's route for `site` at `127.0.0.1:port` through Caddy's admin API, keeping
    /// everything else of the route (its host match, its retry settings).
    async fn point_route_at(&self, port: u16) -> anyhow::Result<()> {
        let url = format!("http://{}/id/wharf-site", self.edge_admin);
        let mut route: Value = self.scene.http.get(&url).send().await?.json().await?;
        route["handle"][0]["upstreams"] = json!([{"dial": format!("127.0.0.1:{port}")}]);
        let response = self.scene.http.patch(&url).json(&route).send().await?;
        ensure!(
            response.status().is_success(),
            "Caddy refused the route: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
        Ok(())
    }

    /// (b): the stop-then-start script swaps the same two versions behind the same route.
    async fn script_swaps(
        &self,
        images: &[(String, String); 2],
        swaps: usize,
        rate: f64,
    ) -> anyhow::Result<SwapRun> {
        let port = procs::free_port()?;
        let (first_version, first_image) = &images[0];
        ensure!(
            self.stop_start(first_image, port).await? == 0,
            "the script could not start {first_version}"
        );
        self.point_route_at(port).await?;
        self.wait_for_edge("site.test", first_version).await?;
        let swap_to = async |version: &str, image: &str| {
            let started = Instant::now();
            let code = self.stop_start(image, port).await?;
            ensure!(code == 0, "the script's deploy of {version} exited {code}");
            let seconds = started.elapsed().as_secs_f64();
            self.wait_for_edge("site.test", version).await?;
            Ok(seconds)
        };
        self.swaps_under_load("stop-then-start script", images, swaps, rate, swap_to)
            .await
    }

    /// Deploys the unhealthy image to `service` under load and measures the way back.
    async fn unhealthy(
        &self,
        service: &str,
        host: &str,
        sick_image: &str,
        rate: f64,
    ) -> anyhow::Result<Rollback> {
        let old = match self.edge_answer(host).await {
            Answer::Ok(body) => body,
            other => bail!("{host} does not answer before the unhealthy deploy: {other:?}"),
        };
        let load = self.start_load(host, rate);
        tokio::time::sleep(Duration::from_secs(1)).await;
        let sent = wall_ms();
        let id = self.deploy(service, sick_image).await?;
        let release = self.wait_settled(id).await?;
        ensure!(
            release["state"] == "rolled_back",
            "the unhealthy release was not rolled back: {release}"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        let samples = load.finish().await;
        Rollback::new(old, sent, &release, samples)
    }

    /// Commits a new version of the app to `acme/app` (`main`), the page saying `version`.
    fn commit_app(&self, version: &str) -> anyhow::Result<String> {
        let busybox = std::fs::read("/bin/busybox").context("busybox-static is needed")?;
        let page = format!("{version}\n");
        let files: Vec<(&str, &[u8])> = vec![
            ("Dockerfile", site_dockerfile().as_bytes()),
            ("busybox", &busybox),
            ("www/index.html", page.as_bytes()),
        ];
        self.scene
            .standin
            .commit_files(&self.scene.repository, "main", &files, version)
    }

    /// Pushes a new version of the app as GitHub would, and times until the edge answers it.
    async fn wharf_push_to_live(&self, version: &str) -> anyhow::Result<PushRun> {
        let commit = self.commit_app(version)?;
        let zero = "0".repeat(40);
        let payload = json!({
            "ref": "refs/heads/main", "before": zero, "after": commit,
            "created": false, "deleted": false, "forced": false, "base_ref": null,
            "compare": format!("https://github.com/acme/app/compare/{}", &commit[..12]),
            "commits": [], "head_commit": null,
            "repository": {"id": 1, "name": "app", "full_name": "acme/app", "private": true,
                           "owner": {"login": "acme", "id": 1},
                           "clone_url": "https://github.com/acme/app.git", "default_branch": "main"},
            "pusher": {"name": "octocat", "email": "octocat@example.com"},
            "sender": {"login": "octocat", "id": 1},
            "installation": {"id": INSTALLATION}
        });
        let push = self.scene.delivery("push", &payload)?;
        let sent_ms = wall_ms();
        let started = Instant::now();
        let response = push.send().await?;
        ensure!(
            response.status() == reqwest::StatusCode::ACCEPTED,
            "the push answered {}",
            response.status()
        );
        let answer: Value = response.json().await?;
        let build_id = answer["builds"][0]
            .as_i64()
            .with_context(|| format!("the push queued no build: {answer}"))?;
        self.wait_for_edge("app.test", version).await?;
        let seconds = started.elapsed().as_secs_f64();

        let build = self
            .scene
            .get_json(&format!("/v1/builds/{build_id}"))
            .await?;
        // The edge moves to the new version just before the agent reports it live.
        let deadline = Instant::now() + DEADLINE;
        let release = loop {
            let releases = self.scene.get_json("/v1/services/app/releases").await?;
            let release = releases
                .as_array()
                .and_then(|all| all.iter().find(|r| r["build_id"] == build_id))
                .with_context(|| format!("no release of build #{build_id}"))?
                .clone();
            if release["state"] == "live" {
                break release;
            }
            ensure!(
                Instant::now() < deadline
                    && !["failed", "rolled_back", "superseded"]
                        .contains(&release["state"].as_str().unwrap_or_default()),
                "the release is not live: {release}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        self.remember_image(release["image"].as_str().unwrap_or_default());
        let time = |value: &Value, field: &str| -> anyhow::Result<f64> {
            value[field]
                .as_str()
                .and_then(time_from_rfc3339)
                .map(|ms| ms as f64)
                .with_context(|| format!("no {field} in {value}"))
        };
        let queued = time(&build, "created_at")?;
        let claimed = time(&build, "claimed_at")?;
        let built = time(&build, "finished_at")?;
        let released = time(&release, "created_at")?;
        let live = time(&release, "finished_at")?;
        self.wait_for_one_container("app").await?;
        Ok(PushRun {
            build_id,
            seconds,
            to_queued_ms: queued - sent_ms,
            to_claimed_ms: claimed - queued,
            build_ms: built - claimed,
            to_release_ms: released - built,
            rollout_ms: live - released,
        })
    }

    /// The raw pipeline for a new version of the app; returns its wall time in seconds.
    async fn script_push_to_live(&self, version: &str, run: usize) -> anyhow::Result<f64> {
        let commit = self.commit_app(version)?;
        let work = tempfile::tempdir()?;
        let name = format!("bench-pipeline-{}-{run}", self.agent_name);
        let port = procs::free_port()?;
        let tag = format!(
            "{}/bench/app-pipeline:{commit}",
            self.scene.registry.address
        );
        self.remember_image(&tag);
        let mut pipeline = self.script(PUSH_PIPELINE_SCRIPT, "push-pipeline.sh", &[], &name, port);
        pipeline
            .env("WORK", work.path())
            .env("URL", self.scene.clone_url())
            .env("COMMIT", &commit)
            .env("TAG", &tag);
        // The installation token is minted before the timing starts.
        self.scene.git_credentials(&mut pipeline).await?;
        let started = Instant::now();
        let out = pipeline.output().await.context("cannot run bash")?;
        let seconds = started.elapsed().as_secs_f64();
        ensure!(
            out.status.success(),
            "push-pipeline.sh failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        let answer = reqwest::get(format!("http://127.0.0.1:{port}/"))
            .await?
            .text()
            .await?;
        ensure!(
            answer.trim() == version,
            "the pipeline's container answers {answer:?}"
        );
        // The previous run's container goes after the timing (Wharf retires its old version in
        // the background too).
        if run > 0 {
            let previous = format!("bench-pipeline-{}-{}", self.agent_name, run - 1);
            let _ = podman(&["rm", "--force", "--time", "0", &previous]).await;
        }
        Ok(seconds)
    }
}

pub async fn run(args: Args) -> anyhow::Result<()> {
    ensure!(args.rate >= 1.0, "--rate must be at least 1");
    ensure!(
        args.swaps >= 1 && args.runs >= 1,
        "--swaps and --runs must be at least 1"
    );
    let (bench, cleanup) = setup(&args).await?;
    let outcome = measure(&args, &bench).await;
    if outcome.is_err() {
        eprintln!(
            "the agent's log ends:\n{}",
            cleanup
                .agent
                .as_ref()
                .map(Child::log_tail)
                .unwrap_or_default()
        );
    }
    drop(cleanup);
    if let Some(dir) = &args.samples {
        write_samples(dir, &bench, outcome.as_ref().ok()).await?;
    }
    let measured = outcome?;
    let text = render(&args, &bench, &measured);
    report::publish(&args.out, &text)
}

/// What one run measured.
struct Measured {
    wharf: SwapRun,
    script: SwapRun,
    /// Blue-green, then recreate.
    rollbacks: [Rollback; 2],
    wharf_runs: Vec<PushRun>,
    pipeline_runs: Vec<f64>,
}

/// The raw data behind the report, for a closer look: the logs, and every request as CSV
/// (`due_ms,sent_ms,done_ms,latency_ms,outcome`; times in milliseconds since the epoch).
async fn write_samples(
    dir: &Path,
    bench: &Bench,
    measured: Option<&Measured>,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (from, to) in [
        ("wharf-deploy.log", "wharf-server.log"),
        ("agent.log", "wharf-agent.log"),
        ("work/edge/caddy.log", "caddy.log"),
    ] {
        let _ = std::fs::copy(bench.scene.dir.path().join(from), dir.join(to));
    }
    let Some(measured) = measured else {
        return Ok(());
    };
    let csv = |samples: &[Sample]| {
        let mut text = String::from("due_ms,sent_ms,done_ms,latency_ms,outcome\n");
        for sample in samples {
            let outcome = match &sample.answer {
                Answer::Ok(body) => format!("200 {body}"),
                Answer::Status(status) => status.to_string(),
                Answer::Failed(kind) => kind.replace(',', ";"),
            };
            let _ = writeln!(
                text,
                "{:.1},{:.1},{:.1},{:.1},{outcome}",
                sample.due_ms,
                sample.sent_ms,
                sample.done_ms,
                sample.latency_ms()
            );
        }
        text
    };
    let swaps = |run: &SwapRun| {
        let mut text = String::from("started_ms,seconds,version\n");
        for swap in &run.swaps {
            let _ = writeln!(
                text,
                "{:.1},{:.3},{}",
                swap.started_ms, swap.seconds, swap.version
            );
        }
        text
    };
    let [blue_green, recreate] = &measured.rollbacks;
    let files = [
        ("wharf-swaps-requests.csv", csv(&measured.wharf.samples)),
        ("wharf-swaps.csv", swaps(&measured.wharf)),
        ("script-swaps-requests.csv", csv(&measured.script.samples)),
        ("script-swaps.csv", swaps(&measured.script)),
        (
            "unhealthy-blue-green-requests.csv",
            csv(&blue_green.samples),
        ),
        ("unhealthy-recreate-requests.csv", csv(&recreate.samples)),
        (
            "unhealthy.csv",
            format!(
                "strategy,deploy_sent_ms,verdict_ms\nblue-green,{:.1},{:.1}\nrecreate,{:.1},{:.1}\n",
                blue_green.deploy_sent_ms,
                blue_green.verdict_ms,
                recreate.deploy_sent_ms,
                recreate.verdict_ms
            ),
        ),
    ];
    for (name, text) in files {
        report::write(&dir.join(name), &text)?;
    }
    // Wharf's build logs, with the time of every line.
    for run in &measured.wharf_runs {
        let logs = bench
            .scene
            .get_json(&format!("/v1/builds/{}/logs", run.build_id))
            .await?;
        let mut text = String::new();
        for line in logs["lines"].as_array().into_iter().flatten() {
            let _ = writeln!(
                text,
                "{} {}",
                line["at"].as_str().unwrap_or_default(),
                line["text"].as_str().unwrap_or_default()
            );
        }
        report::write(
            &dir.join(format!("wharf-build-{}.log", run.build_id)),
            &text,
        )?;
    }
    Ok(())
}

async fn measure(args: &Args, bench: &Bench) -> anyhow::Result<Measured> {
    eprintln!("==> images A, B and an unhealthy C, pushed to the registry");
    let images = [
        ("A".to_owned(), bench.push_site_image("A", true).await?),
        ("B".to_owned(), bench.push_site_image("B", true).await?),
    ];
    let sick = bench.push_site_image("C", false).await?;

    eprintln!("==> (a) Wharf blue-green under load");
    let wharf = bench.wharf_swaps(&images, args.swaps, args.rate).await?;
    eprintln!("==> unhealthy version, blue-green");
    let blue_green = bench
        .unhealthy("site", "site.test", &sick, args.rate)
        .await?;
    eprintln!("==> unhealthy version, recreate");
    bench
        .deploy_live("classic", "classic.test", &images[0].1, &images[0].0)
        .await?;
    let recreate = bench
        .unhealthy("classic", "classic.test", &sick, args.rate)
        .await?;
    eprintln!("==> (b) stop-then-start script under load");
    let script = bench.script_swaps(&images, args.swaps, args.rate).await?;

    eprintln!("==> push to live: one untimed run of each, then interleaved runs");
    bench.wharf_push_to_live("wharf warm-up").await?;
    bench.script_push_to_live("pipeline warm-up", 0).await?;
    let mut wharf_runs = Vec::new();
    let mut pipeline_runs = Vec::new();
    for run in 0..args.runs {
        eprintln!("==> push to live: run {} of {}", run + 1, args.runs);
        wharf_runs.push(bench.wharf_push_to_live(&format!("wharf {run}")).await?);
        pipeline_runs.push(
            bench
                .script_push_to_live(&format!("pipeline {run}"), run + 1)
                .await?,
        );
    }
    Ok(Measured {
        wharf,
        script,
        rollbacks: [blue_green, recreate],
        wharf_runs,
        pipeline_runs,
    })
}

fn fmt_ms(value: Option<f64>) -> String {
    report::ms(value)
}

fn seconds_list(values: &[f64]) -> String {
    values
        .iter()
        .map(|v| format!("{v:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn render(args: &Args, bench: &Bench, measured: &Measured) -> String {
    let Measured {
        wharf,
        script,
        rollbacks,
        wharf_runs,
        pipeline_runs,
    } = measured;
    let mut out = String::new();
    report::header(
        &mut out,
        "Deploy: failed requests, rollback, push to live",
        &args.wharf,
        &format!(
            "`wharf server` and one `wharf agent` (labels build,deploy; Podman; its own Caddy {} as the edge on {}), registry: Debian `docker-registry` on loopback, repository served by the GitHub stand-in over git's smart HTTP",
            report::version_of(Path::new("caddy"), &["version"]),
            bench.edge_listen
        ),
    );
    let _ = writeln!(
        out,
        "- Load: `GET /` through the edge with a `Host` header, open loop at {rate} requests/s (request i due at t0 + i/rate, each in its own task on a keep-alive pool, {timeout} s client timeout). A request **fails** when it gets no answer (timeout, refused, reset) or a status other than 200; latency counts from its due time. *Held*: answered 200, but more than {held} ms after it was due.\n\
- Services: port 8080, health probe `GET /` every {interval} ms, unhealthy after {retries} failures in a row, drain {drain} ms, stop grace {grace} s (busybox ignores SIGTERM, so every stop takes the full grace). The scripts use the same probe interval, failure count and stop grace.\n\
- Images: `FROM scratch` + busybox httpd answering `A` or `B` at `/`; `C` has no `/` page (404), so its probe fails.\n",
        rate = args.rate,
        timeout = REQUEST_TIMEOUT.as_secs(),
        held = HELD_MS,
        interval = HEALTH_INTERVAL_MS,
        retries = HEALTH_RETRIES,
        drain = DRAIN_MS,
        grace = STOP_GRACE_S,
    );

    // Failed requests during swaps.
    let _ = writeln!(
        out,
        "## Failed requests while the version changes\n\n\
{swaps} swaps between A and B under load, (a) by Wharf (`POST /v1/services/site/deploy`, blue-green; each swap waits until the old container has drained and stopped, so all of every deploy is inside the window) and (b) by `bench/stop-start-deploy.sh` (the seed's deploy script: pull, stop the old container, start the new one on the same published port, probe, roll back on failure). Both behind the same Caddy route `wharf-site` (for (b) its upstream is pointed at the script's fixed port through Caddy's admin API, keeping Wharf's retry settings: `try_duration` 5 s, `try_interval` 100 ms). One load run per method, 1 s of load before the first swap and after the last.\n\n\
| | (a) Wharf blue-green | (b) stop-then-start script |\n|---|---:|---:|",
        swaps = args.swaps
    );
    let row = |out: &mut String, name: &str, a: String, b: String| {
        let _ = writeln!(out, "| {name} | {a} | {b} |");
    };
    let (a, b) = (&wharf.summary, &script.summary);
    row(
        &mut out,
        "requests sent",
        a.requests.to_string(),
        b.requests.to_string(),
    );
    row(
        &mut out,
        "achieved rate",
        format!("{:.0} req/s over {:.1} s", a.rate(), a.seconds),
        format!("{:.0} req/s over {:.1} s", b.rate(), b.seconds),
    );
    row(
        &mut out,
        "**failed requests**",
        format!("**{}**", a.failed()),
        format!("**{}**", b.failed()),
    );
    row(
        &mut out,
        "failures by kind",
        a.failures_text(),
        b.failures_text(),
    );
    row(
        &mut out,
        "200 answers by version",
        a.versions_text(),
        b.versions_text(),
    );
    row(
        &mut out,
        "latency p50 / p99 / max",
        format!(
            "{} / {} / {}",
            fmt_ms(a.p50_ms),
            fmt_ms(a.p99_ms),
            fmt_ms(a.max_ms)
        ),
        format!(
            "{} / {} / {}",
            fmt_ms(b.p50_ms),
            fmt_ms(b.p99_ms),
            fmt_ms(b.max_ms)
        ),
    );
    row(
        &mut out,
        &format!("held (> {HELD_MS} ms)"),
        a.held.to_string(),
        b.held.to_string(),
    );
    row(
        &mut out,
        "longest time without a 200 answer",
        fmt_ms(Some(a.longest_gap_ms)),
        fmt_ms(Some(b.longest_gap_ms)),
    );
    row(
        &mut out,
        "before the first deploy: latency p99 / max",
        format!(
            "{} / {}",
            fmt_ms(wharf.before.p99_ms),
            fmt_ms(wharf.before.max_ms)
        ),
        format!(
            "{} / {}",
            fmt_ms(script.before.p99_ms),
            fmt_ms(script.before.max_ms)
        ),
    );
    row(
        &mut out,
        "load generator's send lag p99 / max",
        format!(
            "{} / {}",
            fmt_ms(a.send_lag_p99_ms),
            fmt_ms(a.send_lag_max_ms)
        ),
        format!(
            "{} / {}",
            fmt_ms(b.send_lag_p99_ms),
            fmt_ms(b.send_lag_max_ms)
        ),
    );
    let swap_seconds = |run: &SwapRun| {
        let mut all: Vec<f64> = run.swaps.iter().map(|swap| swap.seconds).collect();
        let listed = seconds_list(&all);
        format!("{:.2} s ({listed})", median(&mut all))
    };
    row(
        &mut out,
        "deploy time per swap, median (all)",
        swap_seconds(wharf),
        swap_seconds(script),
    );
    let _ = writeln!(
        out,
        "\nWharf's deploy time is `POST …/deploy` → the release `live` (pull, start beside the old, probe, route); the script's is its wall time (pull, stop, start, probe, remove the old). Versions deployed in order: {}.\n\n\
Goal (a): 0 failed requests — {}. (b) is reported, not judged: {} failed.\n",
        wharf
            .swaps
            .iter()
            .map(|swap| swap.version.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        report::met(a.failed() == 0),
        b.failed(),
    );
    if b.failed() == 0 && b.held > 0 {
        let _ = writeln!(
            out,
            "The script's stop-then-start leaves nothing listening on the port for a while; Caddy's route retries a refused upstream for up to 5 s, so those requests were held (see the max latency and the longest time without an answer) rather than failed. A route without retries would have failed them.\n"
        );
    }

    // Unhealthy version.
    let _ = writeln!(
        out,
        "## An unhealthy version: from the verdict to every request served by the old version\n\n\
Under the same load, image C (404 at `/`) is deployed to a service running a healthy version. The *verdict* is the time the server recorded the rollout `rolled_back` (the release's `finished_at`; server and benchmark share this machine's clock). A request is *not served by the old version* when it failed or another version answered it; one held up and then answered 200 by the old version counts as served, late (held requests are counted on their own row). **Verdict → restored** is from the verdict to the due time of the last request the old version did not serve, so every request sent after that was served by it; negative means that happened before the verdict was recorded, *all served* means the old version served every request of the window.\n\n\
| | blue-green (`site`) | recreate (`classic`) |\n|---|---:|---:|"
    );
    let (g, r) = (&rollbacks[0], &rollbacks[1]);
    let both = |out: &mut String, name: &str, f: &dyn Fn(&Rollback) -> String| {
        let _ = writeln!(out, "| {name} | {} | {} |", f(g), f(r));
    };
    both(&mut out, "old version", &|x| x.old.clone());
    both(&mut out, "deploy sent → verdict", &|x| {
        fmt_ms(Some(x.verdict_ms - x.deploy_sent_ms))
    });
    both(&mut out, "requests in the window", &|x| {
        x.summary.requests.to_string()
    });
    both(&mut out, "**failed requests**", &|x| {
        format!("**{}**", x.summary.failed())
    });
    both(&mut out, "answered by another version", &|x| {
        x.other_version.to_string()
    });
    both(&mut out, "not served by the old version", &|x| {
        x.not_served.to_string()
    });
    both(
        &mut out,
        "those were due from … to (relative to the verdict)",
        &|x| match x.not_served_span {
            Some((first, last)) => format!(
                "{} … {}",
                fmt_ms(Some(first - x.verdict_ms)),
                fmt_ms(Some(last - x.verdict_ms))
            ),
            None => "—".to_owned(),
        },
    );
    both(
        &mut out,
        "**verdict → restored**",
        &|x| match x.verdict_to_restored_ms() {
            Some(ms) => format!("**{}**", fmt_ms(Some(ms))),
            None => "**all served**".to_owned(),
        },
    );
    both(
        &mut out,
        &format!("held (> {HELD_MS} ms), all / due after the verdict"),
        &|x| format!("{} / {}", x.summary.held, x.held_after_verdict),
    );
    both(&mut out, "latency p50 / p99 / max", &|x| {
        format!(
            "{} / {} / {}",
            fmt_ms(x.summary.p50_ms),
            fmt_ms(x.summary.p99_ms),
            fmt_ms(x.summary.max_ms)
        )
    });
    both(&mut out, "longest time without a 200 answer", &|x| {
        fmt_ms(Some(x.summary.longest_gap_ms))
    });
    both(&mut out, "before the deploy: latency p99 / max", &|x| {
        format!("{} / {}", fmt_ms(x.before.p99_ms), fmt_ms(x.before.max_ms))
    });
    both(&mut out, "load generator's send lag p99 / max", &|x| {
        format!(
            "{} / {}",
            fmt_ms(x.summary.send_lag_p99_ms),
            fmt_ms(x.summary.send_lag_max_ms)
        )
    });
    both(&mut out, "goal: restored within 1 s of the verdict", &|x| {
        report::met(x.goal_met()).to_owned()
    });
    let _ = writeln!(
        out,
        "\nRollback reasons: blue-green: {:?}; recreate: {:?}.\n\n\
What this measures: with blue-green the old version is never stopped and the route never leaves it, so the expected result is that it serves every request; the numbers show whether that holds under load. With recreate the old container is stopped before C starts and started again after C fails, and only then is the verdict reported, while the route keeps pointing at the old port: the outage lies before the verdict. Caddy retries a refused port for 5 s, so during it requests are held, then answered 502; what happens once the old container is starting again is in the failure kinds below. The goal as the issue words it (from the verdict) can be met while requests failed for seconds before the verdict: read the failed-request and longest-gap rows with it.\n\n\
Failures by kind: blue-green: {}; recreate: {}.\n",
        g.reason,
        r.reason,
        g.summary.failures_text(),
        r.summary.failures_text()
    );

    // Push to live.
    let mut wharf_seconds: Vec<f64> = wharf_runs.iter().map(|run| run.seconds).collect();
    let mut pipeline_seconds = pipeline_runs.to_vec();
    let wharf_all = seconds_list(&wharf_seconds);
    let pipeline_all = seconds_list(&pipeline_seconds);
    let wharf_median = median(&mut wharf_seconds);
    let pipeline_median = median(&mut pipeline_seconds);
    let ratio = wharf_median / pipeline_median;
    let part = |f: &dyn Fn(&PushRun) -> f64| {
        let mut values: Vec<f64> = wharf_runs.iter().map(f).collect();
        median(&mut values)
    };
    let _ = writeln!(
        out,
        "## Push received → new version live\n\n\
A new commit of a small repository (the same busybox site; each run changes `index.html`) on `acme/app`, served by the GitHub stand-in. **Wharf**: a signed `push` webhook → build on the agent (fetch the commit, `podman build`, push) → release → blue-green rollout; timed from sending the webhook to the edge answering the new page (polled every 10 ms). **Pipeline**: `bench/push-pipeline.sh` — `git fetch --depth 1` of the commit (installation token minted before timing), `podman build`, `podman push`, `podman untag`, `podman pull`, `podman run`, `curl` every {interval} ms until 200 — timed by its wall time. One untimed run of each first, then {runs} interleaved runs of each; medians.\n\n\
| | seconds (median) | all runs |\n|---|---:|---|\n\
| Wharf: push sent → edge answers the new version | {wharf_median:.2} | {wharf_all} |\n\
| Pipeline: fetch, build, push, pull, run, probe | {pipeline_median:.2} | {pipeline_all} |\n\n\
Wharf ÷ pipeline: **{ratio:.2}×** (goal: at most 1.10×) — {met}.\n\n\
Where Wharf's time goes (medians, from the server's own timestamps; they need not add up exactly to the total, which also holds the edge poll):\n\n\
| step | ms |\n|---|---:|\n\
| push sent → build queued (webhook stored) | {queued:.0} |\n\
| build queued → claimed by the agent | {claimed:.0} |\n\
| build claimed → image pushed | {build:.0} |\n\
| image pushed → release created | {release:.0} |\n\
| release created → live (claim, pull, start, probe, route) | {rollout:.0} |\n",
        interval = HEALTH_INTERVAL_MS,
        runs = args.runs,
        met = report::met(ratio <= 1.10),
        queued = part(&|run| run.to_queued_ms),
        claimed = part(&|run| run.to_claimed_ms),
        build = part(&|run| run.build_ms),
        release = part(&|run| run.to_release_ms),
        rollout = part(&|run| run.rollout_ms),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edge_load::tests::sample;

    #[test]
    fn the_way_back_is_measured_from_the_verdict() {
        let release = json!({"finished_at": "1970-01-01T00:00:01.000Z", "reason": "404"});
        let samples = vec![
            sample(900.0, 901.0, Answer::Ok("A".to_owned())),
            sample(950.0, 2300.0, Answer::Ok("A".to_owned())),
            sample(1500.0, 11500.0, Answer::Failed("timeout".to_owned())),
            sample(2400.0, 2401.0, Answer::Ok("A".to_owned())),
        ];
        let failed = Rollback::new("A".to_owned(), 0.0, &release, samples).unwrap();
        assert_eq!(failed.not_served, 1);
        assert_eq!(failed.held_after_verdict, 0);
        assert_eq!(failed.verdict_to_restored_ms(), Some(500.0));
        assert!(failed.goal_met());
        let held = vec![sample(950.0, 2300.0, Answer::Ok("A".to_owned()))];
        let held = Rollback::new("A".to_owned(), 0.0, &release, held).unwrap();
        assert_eq!(held.verdict_to_restored_ms(), None);
        let clean = vec![sample(900.0, 901.0, Answer::Ok("A".to_owned()))];
        let clean = Rollback::new("A".to_owned(), 0.0, &release, clean).unwrap();
        assert_eq!(clean.verdict_to_restored_ms(), None);
        assert!(clean.goal_met());
        let late = vec![sample(2000.0, 2001.0, Answer::Ok("C".to_owned()))];
        let late = Rollback::new("A".to_owned(), 0.0, &release, late).unwrap();
        assert_eq!(late.other_version, 1);
        assert!(!late.goal_met());
    }
}
