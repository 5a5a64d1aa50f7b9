//! Running releases on this host: pull first, start the new version, health-check it, move
//! traffic (blue-green) or replace (recreate), roll back when it is unhealthy, clean up.
//!
//! Every container Wharf starts carries `wharf.deploy.*` labels (agent, service, release,
//! replica or compose service, published port). They are the agent's only memory: a restarted
//! agent finds its containers by label and adopts them instead of starting them again, and
//! cleanup never touches a container or image without Wharf's labels.
//!
//! A compose release runs as a stack (`compose.rs`): one container per compose service,
//! recreate-style, started and health-checked one by one.

mod compose;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::OnceCell;
use wharf_client::ApiClient;
use wharf_domain::names::image_repository;
use wharf_runtime::edge::{DrainAhead, Edge, EdgeConfig};
use wharf_runtime::engine::{
    ContainerRun, ContainerState, EngineError, RegistryCredentials, Runtime,
};
use wharf_runtime::process::Ended;
use wharf_wire::{
    Desired, HealthSettings, ProbeResult, ReleaseState, ReportRollout, RolloutJob, Strategy,
};

/// How this agent deploys.
#[derive(Clone)]
pub struct DeployConfig {
    pub runtime: Runtime,
    /// The Caddy the agent routes through (and starts when none answers).
    pub edge: EdgeConfig,
    /// The agent's own registry login, for pulls; a release's installation login wins.
    pub registry_credentials: Option<RegistryCredentials>,
    /// How long a stopped container gets between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
}

const LABEL_AGENT: &str = "wharf.deploy.agent";
const LABEL_SERVICE: &str = "wharf.deploy.service";
const LABEL_RELEASE: &str = "wharf.deploy.release";
const LABEL_REPLICA: &str = "wharf.deploy.replica";
const LABEL_PORT: &str = "wharf.deploy.port";
/// The compose service a container of a stack runs.
const LABEL_COMPONENT: &str = "wharf.deploy.component";
/// A stack member's place in the start order (0 first), so a stack stopped for a new one
/// starts again in order.
const LABEL_ORDER: &str = "wharf.deploy.order";
/// The label builds put on images, which cleanup selects by.
const IMAGE_LABEL_SERVICE: &str = "wharf.service";

/// Log lines of an unhealthy container kept on its rollout.
const LOG_TAIL_LINES: usize = 30;
/// The longest the edge drains ahead of a route switch while a new version starts and is
/// checked (every response on the edge closes its connection meanwhile).
const DRAIN_AHEAD: Duration = Duration::from_secs(1);
/// Probe results kept on a rollout.
const PROBES_KEPT: usize = 20;
/// A failed probe asks whether the container exited, once it has had this long to start…
const EXIT_CHECK_AFTER: Duration = Duration::from_millis(250);
/// …and then at most this often.
const EXIT_CHECK_EVERY: Duration = Duration::from_millis(500);

/// A container of this agent, as found on the host.
#[derive(Debug, Clone)]
struct Found {
    name: String,
    running: bool,
    service: String,
    release: Option<i64>,
    port: Option<u16>,
    /// The compose service, for a member of a stack.
    component: Option<String>,
    order: Option<u32>,
}

impl Found {
    /// A container of Wharf's, from its state; `None` for one without Wharf's labels.
    fn from_state(state: ContainerState) -> Option<Found> {
        let labels = &state.labels;
        Some(Found {
            service: labels.get(LABEL_SERVICE)?.clone(),
            release: labels.get(LABEL_RELEASE).and_then(|id| id.parse().ok()),
            port: labels.get(LABEL_PORT).and_then(|port| port.parse().ok()),
            component: labels.get(LABEL_COMPONENT).cloned(),
            order: labels.get(LABEL_ORDER).and_then(|order| order.parse().ok()),
            name: state.name,
            running: state.running,
        })
    }

    /// The container as one a rollout runs: its name and published port.
    fn started(&self) -> Started {
        Started {
            name: self.name.clone(),
            port: self.port,
        }
    }
}

/// A new container of a rollout.
#[derive(Debug, Clone)]
struct Started {
    name: String,
    port: Option<u16>,
}

/// Why a step failed, in one line for the rollout's reason.
#[derive(Debug)]
struct StepError(String);

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<EngineError> for StepError {
    fn from(error: EngineError) -> StepError {
        StepError(error.to_string())
    }
}

/// How a new version proves it is healthy.
#[derive(Debug, Clone)]
enum Probe {
    /// The image's own HEALTHCHECK command, run inside the container.
    Exec(Vec<String>),
    /// An HTTP GET of this path on the published port.
    Http(String),
    /// No port and no HEALTHCHECK: still running after the start period.
    Running,
}

/// A rollout that put its version in place: the previous version is still on the host until
/// the server has taken the report. Taken, it is retired; refused (the server gave up on the
/// rollout meanwhile, say after the agent stopped answering), it comes back.
struct Switched {
    /// Blue-green: the previous version still runs and serves until traffic moved, then drains.
    /// Otherwise (recreate, stacks) it is stopped, not removed.
    beside: bool,
    old: Vec<Found>,
}

/// How a rollout ended here, for the server; and what is left to do once it answered.
pub(crate) struct Finished {
    pub(crate) job: RolloutJob,
    pub(crate) report: ReportRollout,
    switched: Option<Switched>,
}

/// A version that did not become healthy.
struct Unhealthy {
    reason: String,
    probes: Vec<ProbeResult>,
    log_tail: Vec<String>,
}

pub(crate) struct Deployer {
    config: DeployConfig,
    client: ApiClient,
    agent: String,
    work_dir: PathBuf,
    /// Shared with the background tasks that retire old versions.
    edge: Arc<OnceCell<Edge>>,
    http: reqwest::Client,
}

impl Deployer {
    pub(crate) fn new(
        config: DeployConfig,
        client: ApiClient,
        agent: String,
        work_dir: PathBuf,
    ) -> Deployer {
        Deployer {
            config,
            client,
            agent,
            work_dir,
            edge: Arc::new(OnceCell::new()),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .expect("an HTTP client builds"),
        }
    }

    /// Leaves the edge running, as the containers are: the apps keep answering while the agent
    /// is away, and the next agent takes the edge over.
    pub(crate) async fn shutdown(&self) {
        if let Some(edge) = self.edge.get() {
            edge.detach().await;
        }
    }

    async fn edge(&self) -> Result<&Edge, StepError> {
        self.edge
            .get_or_try_init(|| Edge::connect_or_start(self.config.edge.clone()))
            .await
            .map_err(|error| StepError(format!("the edge (Caddy) is not available: {error}")))
    }

    /// Makes the host run what the server says is live on it: containers of live releases
    /// that still run are adopted (their routes put back), stopped ones started again,
    /// missing ones started afresh. Containers of releases still rolling out here stay for
    /// their rollout to take up; those of anything else are removed.
    pub(crate) async fn reconcile(&self, desired: Desired) {
        let Desired {
            live: desired,
            rolling_out,
        } = desired;
        let found = match self.my_containers(None).await {
            Ok(found) => found,
            Err(error) => {
                tracing::error!(%error, "cannot list this agent's containers; not reconciling");
                return;
            }
        };
        let wanted: BTreeSet<i64> = desired
            .iter()
            .map(|job| job.release_id)
            .chain(rolling_out)
            .collect();
        for stray in found.iter().filter(|found| {
            !found
                .release
                .is_some_and(|release| wanted.contains(&release))
        }) {
            tracing::info!(container = %stray.name, service = %stray.service, "removing a container of no live release");
            self.remove(&stray.name).await;
        }
        for job in desired {
            let mine: Vec<&Found> = found
                .iter()
                .filter(|found| found.release == Some(job.release_id))
                .collect();
            if job.compose_file.is_some() {
                self.reconcile_stack(&job, &mine).await;
                continue;
            }
            let mut running: Vec<Started> = Vec::new();
            for container in &mine {
                if !container.running {
                    tracing::info!(container = %container.name, "starting a stopped container of a live release");
                    if let Err(error) = self.config.runtime.start_container(&container.name).await {
                        tracing::warn!(container = %container.name, %error, "cannot start it; it will be replaced");
                        self.remove(&container.name).await;
                        continue;
                    }
                }
                running.push(container.started());
            }
            let outcome = if running.len() >= job.settings.replicas as usize {
                tracing::info!(service = %job.service, release = job.release_id, containers = running.len(), "adopted the running release");
                self.route(&job, &running).await
            } else {
                tracing::warn!(service = %job.service, release = job.release_id, "the live release is not running here; starting it");
                for container in &running {
                    self.remove(&container.name).await;
                }
                self.restore(&job).await
            };
            if let Err(error) = outcome {
                tracing::error!(service = %job.service, release = job.release_id, %error, "cannot bring the live release back");
            }
        }
    }

    /// Starts a live release that is missing from the host, with no report (it is live already).
    async fn restore(&self, job: &RolloutJob) -> Result<(), StepError> {
        self.pull(job).await?;
        let started = self.start_all(job).await?;
        match self.wait_healthy(job, &started).await {
            Ok(_) => self.route(job, &started).await,
            Err(unhealthy) => {
                for container in &started {
                    self.remove(&container.name).await;
                }
                Err(StepError(unhealthy.reason))
            }
        }
    }

    /// Runs one claimed rollout to its end, reporting every step but the last: the caller
    /// delivers that, then calls [`Deployer::commit`] or [`Deployer::undo`].
    pub(crate) async fn run(&self, job: RolloutJob) -> Finished {
        let strategy = job.settings.strategy_for(job.port);
        let outcome = match &job.compose_file {
            Some(file) => {
                tracing::info!(rollout = job.rollout_id, release = job.release_id, service = %job.service, images = job.compose_images.len(), "stack rollout started");
                self.deploy_stack(&job, file).await
            }
            None => {
                tracing::info!(rollout = job.rollout_id, release = job.release_id, service = %job.service, image = %job.image, strategy = strategy.as_str(), "rollout started");
                match strategy {
                    Strategy::BlueGreen => self.blue_green(&job).await,
                    Strategy::Recreate => self.recreate(&job).await,
                }
            }
        };
        let mut switched = None;
        let report = match outcome {
            Ok((probes, switch)) => {
                switched = Some(switch);
                ReportRollout {
                    probes,
                    ..ReportRollout::new(job.rollout_id, ReleaseState::Live)
                }
            }
            Err(Outcome::PullFailed(error)) => ReportRollout {
                reason: Some(format!("the image could not be pulled: {error}")),
                ..ReportRollout::new(job.rollout_id, ReleaseState::Failed)
            },
            Err(Outcome::Refused(reason)) => ReportRollout {
                reason: Some(reason),
                ..ReportRollout::new(job.rollout_id, ReleaseState::Failed)
            },
            Err(Outcome::RolledBack(unhealthy)) => ReportRollout {
                reason: Some(unhealthy.reason),
                probes: unhealthy.probes,
                log_tail: unhealthy.log_tail,
                ..ReportRollout::new(job.rollout_id, ReleaseState::RolledBack)
            },
        };
        tracing::info!(rollout = job.rollout_id, state = %report.state, reason = report.reason.as_deref().unwrap_or(""), "rollout ended");
        Finished {
            job,
            report,
            switched,
        }
    }

    /// The server took the rollout's report: the previous version goes (after its drain).
    pub(crate) async fn commit(&self, finished: Finished) {
        let Some(switched) = finished.switched else {
            return;
        };
        let job = &finished.job;
        if switched.beside {
            self.retire(job, switched.old);
            return;
        }
        for container in &switched.old {
            self.remove(&container.name).await;
        }
        self.cleanup_images(job).await;
    }

    /// The server refused the rollout's report: it no longer wants this version here. Traffic
    /// goes back to the previous version (started again when it was stopped), and the new
    /// version's containers go.
    pub(crate) async fn undo(&self, finished: Finished) {
        let Some(switched) = finished.switched else {
            return;
        };
        let job = &finished.job;
        tracing::warn!(rollout = job.rollout_id, service = %job.service, "the server refused the rollout; going back to the previous version");
        let new: Vec<Found> = self
            .service_containers(job)
            .await
            .into_iter()
            .filter(|found| found.release == Some(job.release_id))
            .collect();
        if switched.beside {
            let previous: Vec<Started> = switched
                .old
                .iter()
                .filter(|found| found.running)
                .map(Found::started)
                .collect();
            if !previous.is_empty()
                && let Err(error) = self.route(job, &previous).await
            {
                tracing::error!(%error, "cannot route back to the previous version");
            }
            for container in &new {
                self.remove(&container.name).await;
            }
        } else {
            for container in &new {
                self.remove(&container.name).await;
            }
            self.restart_previous(job, &switched.old).await;
        }
    }

    /// Pull; start the new beside the old; health-check; move traffic. The old drains and
    /// stops once the server took the report ([`Deployer::commit`]).
    async fn blue_green(&self, job: &RolloutJob) -> Result<(Vec<ProbeResult>, Switched), Outcome> {
        // Listing the host's containers takes as long as the pull of a small image: both at once.
        let (pulled, found) = tokio::join!(self.pull(job), self.service_containers(job));
        pulled.map_err(Outcome::PullFailed)?;
        let (resumed, old) = self.resume(job, found).await;
        self.step(job, ReleaseState::Starting).await;
        // Starting and checking take longer than the drain: the switch need not wait for it.
        let drain = self.drain_ahead(job).await;
        let starting = async {
            match resumed {
                Some(started) => Ok(started),
                None => self.start_all(job).await,
            }
        };
        let (started, probe) = tokio::join!(starting, self.probe_for(job));
        let started = started.map_err(Outcome::not_started)?;
        self.step(job, ReleaseState::HealthChecking).await;
        let healthy = self
            .wait_until_healthy(&probe, &job.settings.health, &started)
            .await;
        let probes = match healthy {
            Ok(probes) => probes,
            Err(unhealthy) => {
                drop(drain);
                // The old version never stopped serving: only the new one goes.
                for container in &started {
                    self.remove(&container.name).await;
                }
                return Err(Outcome::RolledBack(unhealthy));
            }
        };
        let routed = self.route(job, &started).await;
        drop(drain);
        if let Err(error) = routed {
            for container in &started {
                self.remove(&container.name).await;
            }
            return Err(Outcome::not_started(error));
        }
        Ok((probes, Switched { beside: true, old }))
    }

    /// Pull; stop the old; start the new; health-check; on failure start the old again. The
    /// old is removed once the server took the report ([`Deployer::commit`]).
    async fn recreate(&self, job: &RolloutJob) -> Result<(Vec<ProbeResult>, Switched), Outcome> {
        let (pulled, found) = tokio::join!(self.pull(job), self.service_containers(job));
        pulled.map_err(Outcome::PullFailed)?;
        let (resumed, old) = self.resume(job, found).await;
        self.step(job, ReleaseState::Starting).await;
        self.stop_previous(&old).await;
        let starting = match resumed {
            Some(started) => Ok(started),
            None => self.start_all(job).await,
        };
        let outcome = match starting {
            Ok(started) => {
                self.step(job, ReleaseState::HealthChecking).await;
                match self.wait_healthy(job, &started).await {
                    Ok(probes) => match self.route(job, &started).await {
                        Ok(()) => Ok(probes),
                        Err(error) => Err((started, Outcome::not_started(error))),
                    },
                    Err(unhealthy) => Err((started, Outcome::RolledBack(unhealthy))),
                }
            }
            Err(error) => Err((Vec::new(), Outcome::not_started(error))),
        };
        match outcome {
            Ok(probes) => Ok((probes, Switched { beside: false, old })),
            Err((started, failure)) => {
                // The previous version first: the new one is on a port of its own, and nothing
                // serves until the old one runs again.
                self.restart_previous(job, &old).await;
                for container in &started {
                    self.remove(&container.name).await;
                }
                Err(failure)
            }
        }
    }

    /// Stops the containers that ran before a recreate, dependents first.
    async fn stop_previous(&self, old: &[Found]) {
        let mut running: Vec<&Found> = old.iter().filter(|found| found.running).collect();
        running.sort_by_key(|found| std::cmp::Reverse(found.order));
        for container in running {
            let _ = self
                .config
                .runtime
                .stop_container(&container.name, self.config.stop_grace)
                .await;
        }
    }

    /// Starts again, in their start order, the containers a failed recreate stopped (those
    /// that ran before it), and routes back to them.
    async fn restart_previous(&self, job: &RolloutJob, old: &[Found]) {
        let mut previous: Vec<&Found> = old.iter().filter(|found| found.running).collect();
        previous.sort_by_key(|found| found.order);
        let mut restored = Vec::new();
        for container in previous {
            match self.config.runtime.start_container(&container.name).await {
                Ok(()) => restored.push(container.started()),
                Err(error) => {
                    tracing::error!(container = %container.name, %error, "cannot start the previous version again")
                }
            }
        }
        if !restored.is_empty()
            && let Err(error) = self.route(job, &restored).await
        {
            tracing::error!(%error, "cannot route back to the previous version");
        }
    }

    /// Reports a step; a report that cannot reach the server is logged, not fatal.
    async fn step(&self, job: &RolloutJob, state: ReleaseState) {
        self.report(ReportRollout::new(job.rollout_id, state)).await;
    }

    async fn report(&self, report: ReportRollout) {
        let mut backoff = Duration::from_millis(200);
        for attempt in 1..=5 {
            match self.client.send(&report).await {
                Ok(_) => return,
                Err(error) if attempt == 5 => {
                    tracing::error!(rollout = report.id, state = %report.state, %error, "cannot report the rollout's state");
                }
                Err(error) => {
                    tracing::warn!(rollout = report.id, %error, "rollout report failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
            }
        }
    }

    async fn pull(&self, job: &RolloutJob) -> Result<(), StepError> {
        self.pull_image(job, &job.image, true).await
    }

    /// Pulls `image`, with the release's registry login (else the agent's own) when
    /// `with_login`: only images Wharf built get it, so no login goes to another registry.
    async fn pull_image(
        &self,
        job: &RolloutJob,
        image: &str,
        with_login: bool,
    ) -> Result<(), StepError> {
        let dir = self.job_dir(job);
        let credentials = job
            .registry_login
            .as_ref()
            .map(|login| RegistryCredentials {
                username: login.username.clone(),
                password: login.password.expose().to_owned().into(),
            })
            .or_else(|| self.config.registry_credentials.clone())
            .filter(|_| with_login);
        let auth_file = match &credentials {
            Some(credentials) => {
                let path = dir.join("auth").join("config.json");
                tokio::fs::create_dir_all(dir.join("auth"))
                    .await
                    .map_err(|error| {
                        StepError(format!("cannot create {}: {error}", dir.display()))
                    })?;
                let registry = image_registry(image);
                wharf_runtime::files::write_private_file(
                    &path,
                    credentials.auth_file_json(registry).as_bytes(),
                )
                .map_err(|error| StepError(format!("cannot write the registry login: {error}")))?;
                Some(path)
            }
            None => None,
        };
        let pulled = self.config.runtime.pull(image, auth_file.as_deref()).await;
        let _ = tokio::fs::remove_dir_all(dir.join("auth")).await;
        Ok(pulled?)
    }

    /// Starts the release's replicas, each on a free port of 127.0.0.1 when it has a port.
    async fn start_all(&self, job: &RolloutJob) -> Result<Vec<Started>, StepError> {
        let dir = self.job_dir(job);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|error| StepError(format!("cannot create {}: {error}", dir.display())))?;
        let env_file = dir.join("env");
        let mut env = String::new();
        for variable in &job.env {
            let value = variable.value.expose();
            if value.contains('\n') {
                return Err(StepError(format!(
                    "variable {} holds a line break, which a container cannot receive",
                    variable.name
                )));
            }
            env.push_str(&format!("{}={value}\n", variable.name));
        }
        wharf_runtime::files::write_private_file(&env_file, env.as_bytes())
            .map_err(|error| StepError(format!("cannot write the variables file: {error}")))?;
        let mut started = Vec::new();
        let mut failure = None;
        for replica in 0..job.settings.replicas {
            match self.start_one(job, replica, &env_file).await {
                Ok(container) => started.push(container),
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        // The runtime read the file when it created the containers.
        let _ = tokio::fs::remove_dir_all(&dir).await;
        match failure {
            None => Ok(started),
            Some(error) => {
                for container in &started {
                    self.remove(&container.name).await;
                }
                Err(error)
            }
        }
    }

    async fn start_one(
        &self,
        job: &RolloutJob,
        replica: u32,
        env_file: &Path,
    ) -> Result<Started, StepError> {
        let name = format!(
            "wharf-{}-{}-r{}-{replica}",
            self.agent, job.service, job.release_id
        );
        let mut last_error = None;
        // A free port can be taken by someone else between the look and the start: try again.
        for _ in 0..3 {
            let publish = match job.port {
                Some(container_port) => Some((free_port()?, container_port)),
                None => None,
            };
            let mut labels = vec![
                (LABEL_AGENT.to_owned(), self.agent.clone()),
                (LABEL_SERVICE.to_owned(), job.service.clone()),
                (LABEL_RELEASE.to_owned(), job.release_id.to_string()),
                (LABEL_REPLICA.to_owned(), replica.to_string()),
            ];
            if let Some((host_port, _)) = publish {
                labels.push((LABEL_PORT.to_owned(), host_port.to_string()));
            }
            let run = ContainerRun {
                name: &name,
                image: &job.image,
                labels: &labels,
                env_file: Some(env_file),
                publish,
                ..ContainerRun::default()
            };
            match self.config.runtime.run_container(&run).await {
                Ok(()) => {
                    return Ok(Started {
                        name,
                        port: publish.map(|(host, _)| host),
                    });
                }
                Err(error) => {
                    self.remove(&name).await;
                    let retry = error.is_address_in_use();
                    last_error = Some(StepError(format!("cannot start the new version: {error}")));
                    if !retry {
                        break;
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| StepError("cannot start the new version".to_owned())))
    }

    /// Waits until every new container passes the release's probe, or decides it is unhealthy.
    async fn wait_healthy(
        &self,
        job: &RolloutJob,
        started: &[Started],
    ) -> Result<Vec<ProbeResult>, Unhealthy> {
        let probe = self.probe_for(job).await;
        self.wait_until_healthy(&probe, &job.settings.health, started)
            .await
    }

    /// Waits until every container in `started` passes `probe`, timed by `health`, or
    /// decides it is unhealthy.
    async fn wait_until_healthy(
        &self,
        probe: &Probe,
        health: &HealthSettings,
        started: &[Started],
    ) -> Result<Vec<ProbeResult>, Unhealthy> {
        let begun = Instant::now();
        let deadline = begun + Duration::from_millis(health.deadline_ms);
        let start_period = Duration::from_millis(health.start_period_ms);
        let interval = Duration::from_millis(health.interval_ms);
        let mut probes: Vec<ProbeResult> = Vec::new();
        let mut failures_in_a_row = 0u32;
        let mut healthy: BTreeSet<String> = BTreeSet::new();
        let mut exit_checked: Option<Instant> = None;
        loop {
            let round = Instant::now();
            let mut detail = String::new();
            let mut exited = None;
            for container in started {
                if healthy.contains(&container.name) {
                    continue;
                }
                match self.probe_once(probe, container, health, begun).await {
                    Ok(()) => {
                        healthy.insert(container.name.clone());
                    }
                    Err(why) => {
                        detail = why;
                        // Asking the runtime costs as much as a probe or two: not on the first
                        // probes of a container that has just started, then twice a second.
                        if begun.elapsed() >= EXIT_CHECK_AFTER
                            && exit_checked.is_none_or(|at| at.elapsed() >= EXIT_CHECK_EVERY)
                        {
                            exit_checked = Some(Instant::now());
                            if let Some(code) = self.exit_code_if_stopped(&container.name).await {
                                exited = Some((container.name.clone(), code));
                            }
                        }
                        break;
                    }
                }
            }
            let all_healthy = healthy.len() == started.len();
            let after_ms = begun.elapsed().as_millis() as u64;
            probes.push(ProbeResult {
                after_ms,
                healthy: all_healthy,
                detail: if all_healthy {
                    probe_success(probe, health)
                } else {
                    detail.clone()
                },
            });
            if probes.len() > PROBES_KEPT {
                probes.remove(0);
            }
            if all_healthy {
                return Ok(probes);
            }
            let unhealthy = |reason: String, probes: Vec<ProbeResult>| async move {
                Unhealthy {
                    log_tail: self.log_tail(started).await,
                    reason,
                    probes,
                }
            };
            if let Some((name, code)) = exited {
                return Err(unhealthy(
                    format!(
                        "the new version exited with code {code} ({name}) before it was healthy"
                    ),
                    probes,
                )
                .await);
            }
            if begun.elapsed() >= start_period {
                failures_in_a_row += 1;
                if health.retries > 0 && failures_in_a_row >= health.retries {
                    return Err(unhealthy(
                        format!(
                            "{failures_in_a_row} health probes in a row failed; last: {detail}"
                        ),
                        probes,
                    )
                    .await);
                }
            }
            if Instant::now() >= deadline {
                return Err(unhealthy(
                    format!(
                        "not healthy within {} ms; last probe: {detail}",
                        health.deadline_ms
                    ),
                    probes,
                )
                .await);
            }
            let next = (round + interval).min(deadline);
            tokio::time::sleep_until(next.into()).await;
        }
    }

    async fn probe_for(&self, job: &RolloutJob) -> Probe {
        let check = self.image_healthcheck(&job.image).await;
        match (check, job.port) {
            (Some(command), _) => Probe::Exec(command),
            (None, Some(_)) => {
                Probe::Http(job.health_path.clone().unwrap_or_else(|| "/".to_owned()))
            }
            (None, None) => Probe::Running,
        }
    }

    /// The command of the image's own `HEALTHCHECK`, if it has one.
    async fn image_healthcheck(&self, image: &str) -> Option<Vec<String>> {
        match self.config.runtime.image_healthcheck(image).await {
            Ok(check) => check,
            Err(error) => {
                tracing::debug!(image, %error, "the image's HEALTHCHECK cannot be read");
                None
            }
        }
    }

    async fn probe_once(
        &self,
        probe: &Probe,
        container: &Started,
        health: &HealthSettings,
        begun: Instant,
    ) -> Result<(), String> {
        let timeout = Duration::from_millis(health.timeout_ms);
        match probe {
            Probe::Http(path) => {
                let port = container.port.ok_or("no published port")?;
                let url = format!("http://127.0.0.1:{port}{path}");
                match self.http.get(&url).timeout(timeout).send().await {
                    Ok(response) if response.status().as_u16() == health.status => Ok(()),
                    Ok(response) => Err(format!(
                        "GET {path} answered {} (expected {})",
                        response.status().as_u16(),
                        health.status
                    )),
                    Err(error) if error.is_timeout() => Err(format!(
                        "GET {path} timed out after {} ms",
                        health.timeout_ms
                    )),
                    Err(error) if error.is_connect() => {
                        Err(format!("GET {path}: connection refused"))
                    }
                    Err(error) => Err(format!("GET {path}: {error}")),
                }
            }
            Probe::Exec(command) => {
                match self
                    .config
                    .runtime
                    .exec(&container.name, command, timeout)
                    .await
                {
                    Ok(output) => match output.ended {
                        Ended::Exited(0) => Ok(()),
                        Ended::TimedOut { .. } | Ended::Cancelled => Err(format!(
                            "HEALTHCHECK timed out after {} ms",
                            health.timeout_ms
                        )),
                        ended => Err(format!("HEALTHCHECK {ended}: {}", output.last_line())),
                    },
                    Err(error) => Err(error.to_string()),
                }
            }
            Probe::Running => {
                let settle = Duration::from_millis(health.start_period_ms.max(health.interval_ms));
                if let Some(code) = self.exit_code_if_stopped(&container.name).await {
                    return Err(format!("exited with code {code}"));
                }
                if begun.elapsed() >= settle {
                    Ok(())
                } else {
                    Err("running; waiting out the start period".to_owned())
                }
            }
        }
    }

    /// The exit code of a container that is no longer running.
    async fn exit_code_if_stopped(&self, name: &str) -> Option<i64> {
        let found = self
            .config
            .runtime
            .inspect_containers(&[name.to_owned()])
            .await
            .ok()?;
        let container = found.into_iter().next()?;
        (!container.running).then_some(container.exit_code)
    }

    async fn log_tail(&self, started: &[Started]) -> Vec<String> {
        let mut lines = Vec::new();
        for container in started {
            if let Ok(tail) = self
                .config
                .runtime
                .logs_tail(&container.name, LOG_TAIL_LINES)
                .await
            {
                lines.extend(
                    tail.into_iter()
                        .map(|line| line.chars().take(500).collect::<String>()),
                );
            }
        }
        let skip = lines.len().saturating_sub(LOG_TAIL_LINES);
        lines.split_off(skip)
    }

    /// Points the service's route at the given containers.
    /// Begins the edge's drain while the new version starts and is checked, when its route
    /// will change: a version healthy within [`DRAIN_AHEAD`] then moves traffic without the
    /// drain's wait.
    async fn drain_ahead(&self, job: &RolloutJob) -> Option<DrainAhead> {
        if job.domains.is_empty() || job.port.is_none() {
            return None;
        }
        let edge = self.edge().await.ok()?;
        Some(edge.drain_ahead(DRAIN_AHEAD))
    }

    async fn route(&self, job: &RolloutJob, containers: &[Started]) -> Result<(), StepError> {
        if job.domains.is_empty() || job.port.is_none() {
            return Ok(());
        }
        let upstreams: Vec<String> = containers
            .iter()
            .filter_map(|container| container.port)
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        self.edge()
            .await?
            .set_route(&route_id(&job.service), &job.domains, &upstreams)
            .await
            .map_err(|error| StepError(format!("cannot route traffic to the new version: {error}")))
    }

    /// After traffic moved: the old containers keep their in-flight requests for the drain
    /// time, then stop and go, and old images are pruned. Runs in the background so the next
    /// rollout need not wait; a restart in between removes them anyway (they are no live
    /// release's).
    fn retire(&self, job: &RolloutJob, old: Vec<Found>) {
        let old: Vec<Found> = old
            .into_iter()
            .filter(|found| found.release != Some(job.release_id))
            .collect();
        let drain = Duration::from_millis(job.settings.drain_ms);
        let deployer = self.clone_for_background();
        let job = job.clone();
        tokio::spawn(async move {
            if !old.is_empty() {
                tokio::time::sleep(drain).await;
            }
            for container in &old {
                let _ = deployer
                    .config
                    .runtime
                    .stop_container(&container.name, deployer.config.stop_grace)
                    .await;
                deployer.remove(&container.name).await;
                tracing::info!(container = %container.name, "old version stopped and removed");
            }
            deployer.cleanup_images(&job).await;
        });
    }

    fn clone_for_background(&self) -> Deployer {
        Deployer {
            config: self.config.clone(),
            client: self.client.clone(),
            agent: self.agent.clone(),
            work_dir: self.work_dir.clone(),
            edge: self.edge.clone(),
            http: self.http.clone(),
        }
    }

    /// Keeps the images of the service's containers and the `keep_images` newest others;
    /// removes older images that carry the service's build label. Nothing without Wharf's
    /// labels is touched, and an image a container still uses stays.
    async fn cleanup_images(&self, job: &RolloutJob) {
        let Ok(listing) = self
            .config
            .runtime
            .images_labelled(IMAGE_LABEL_SERVICE, &job.service)
            .await
        else {
            return;
        };
        // Only the service's own repository: a label alone could match another Wharf's images
        // on a shared host.
        let repository = image_repository(&job.image);
        let mut images: Vec<(String, String)> = listing
            .into_iter()
            .filter(|image| image.repository == repository)
            .map(|image| (image.id, image.created))
            .collect();
        images.sort_by(|a, b| b.1.cmp(&a.1));
        images.dedup_by(|a, b| a.0 == b.0);
        // The live image is the newest; it and `keep_images` more stay (per compose service,
        // for a stack: each release of it built one image per compose service).
        let per_release = job.compose_images.len().max(1);
        let keep = (1 + job.settings.keep_images as usize) * per_release;
        for (id, _) in images.iter().skip(keep) {
            match self.config.runtime.remove_image(id).await {
                Ok(()) => tracing::info!(service = %job.service, image = %id, "old image removed"),
                Err(error) => tracing::debug!(image = %id, %error, "old image kept"),
            }
        }
    }

    /// The service's containers on this host.
    async fn service_containers(&self, job: &RolloutJob) -> Vec<Found> {
        match self.my_containers(Some(&job.service)).await {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(%error, "cannot list the service's containers");
                Vec::new()
            }
        }
    }

    /// The service's containers on this host, split: those of this very release, left running
    /// by an interrupted attempt (an agent that died or was cut off mid-rollout), are taken up
    /// again (they may be serving already) when every replica is there and runs, else removed:
    /// nothing runs twice. The others are the previous version.
    async fn resume(
        &self,
        job: &RolloutJob,
        found: Vec<Found>,
    ) -> (Option<Vec<Started>>, Vec<Found>) {
        let (mine, old): (Vec<Found>, Vec<Found>) = found
            .into_iter()
            .partition(|found| found.release == Some(job.release_id));
        let whole = mine.len() == job.settings.replicas as usize
            && mine
                .iter()
                .all(|found| found.running && (job.port.is_none() || found.port.is_some()));
        if whole {
            tracing::info!(
                release = job.release_id,
                containers = mine.len(),
                "taking up the containers an interrupted attempt started"
            );
            let started = mine.iter().map(Found::started).collect();
            return (Some(started), old);
        }
        self.remove_leftovers(job, &mine).await;
        (None, old)
    }

    /// Containers of this very release left by an interrupted attempt: nothing runs twice.
    async fn remove_leftovers(&self, job: &RolloutJob, found: &[Found]) {
        for container in found
            .iter()
            .filter(|found| found.release == Some(job.release_id))
        {
            tracing::info!(container = %container.name, "removing what an interrupted attempt left");
            self.remove(&container.name).await;
        }
    }

    async fn my_containers(&self, service: Option<&str>) -> Result<Vec<Found>, StepError> {
        let found = self
            .config
            .runtime
            .containers_labelled(LABEL_AGENT, &self.agent)
            .await?;
        Ok(found
            .into_iter()
            .filter_map(Found::from_state)
            .filter(|found| service.is_none_or(|service| found.service == service))
            .collect())
    }

    async fn remove(&self, name: &str) {
        if let Err(error) = self.config.runtime.remove_container(name).await {
            tracing::debug!(container = name, %error, "container not removed");
        }
    }

    fn job_dir(&self, job: &RolloutJob) -> PathBuf {
        self.work_dir.join(format!("deploy-{}", job.rollout_id))
    }
}

/// How a rollout that did not go live ended.
enum Outcome {
    /// Nothing running was touched.
    PullFailed(StepError),
    /// Nothing running was touched: Wharf would not run the release (a compose file it
    /// refuses, a stack it cannot prepare); the reason says why.
    Refused(String),
    /// The new version went; the old one serves.
    RolledBack(Unhealthy),
}

impl Outcome {
    fn not_started(error: StepError) -> Outcome {
        Outcome::RolledBack(Unhealthy {
            reason: error.0,
            probes: Vec::new(),
            log_tail: Vec::new(),
        })
    }
}

/// The edge route of a service.
fn route_id(service: &str) -> String {
    format!("wharf-{service}")
}

fn probe_success(probe: &Probe, health: &HealthSettings) -> String {
    match probe {
        Probe::Http(path) => format!("GET {path} answered {}", health.status),
        Probe::Exec(_) => "HEALTHCHECK passed".to_owned(),
        Probe::Running => "running".to_owned(),
    }
}

/// The registry host of an image reference (`docker.io` when it names none).
fn image_registry(image: &str) -> &str {
    match image.split_once('/') {
        Some((first, _)) if first.contains('.') || first.contains(':') || first == "localhost" => {
            first
        }
        _ => "docker.io",
    }
}

/// A port of 127.0.0.1 nobody listens on right now.
fn free_port() -> Result<u16, StepError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|error| StepError(format!("no free port: {error}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(name: &str, running: bool, labels: &[(&str, &str)]) -> ContainerState {
        ContainerState {
            name: name.to_owned(),
            running,
            exit_code: 0,
            labels: labels
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        }
    }

    #[test]
    fn containers_are_wharfs_by_their_labels() {
        let replica = state(
            "wharf-a-web-r3-0",
            true,
            &[
                ("wharf.deploy.service", "web"),
                ("wharf.deploy.release", "3"),
                ("wharf.deploy.port", "4100"),
            ],
        );
        let found = Found::from_state(replica).unwrap();
        assert_eq!(found.name, "wharf-a-web-r3-0");
        assert!(found.running);
        assert_eq!(found.service, "web");
        assert_eq!(found.release, Some(3));
        assert_eq!(found.port, Some(4100));
        assert!(Found::from_state(state("x", false, &[("other", "label")])).is_none());
        let member = state(
            "wharf-a-stack-r4-db",
            false,
            &[
                ("wharf.deploy.service", "stack"),
                ("wharf.deploy.release", "4"),
                ("wharf.deploy.component", "db"),
                ("wharf.deploy.order", "0"),
            ],
        );
        let found = Found::from_state(member).unwrap();
        assert!(!found.running);
        assert_eq!(found.component.as_deref(), Some("db"));
        assert_eq!(found.order, Some(0));
        assert_eq!(found.port, None);
    }

    #[test]
    fn registries_are_read_from_image_references() {
        assert_eq!(
            image_registry("127.0.0.1:5000/p/web@sha256:00"),
            "127.0.0.1:5000"
        );
        assert_eq!(image_registry("ghcr.io/team/web:v1"), "ghcr.io");
        assert_eq!(image_registry("library/busybox"), "docker.io");
        assert_eq!(
            image_repository("127.0.0.1:5000/p/web:v1@sha256:00"),
            "127.0.0.1:5000/p/web"
        );
        assert_eq!(
            image_repository("127.0.0.1:5000/p/web"),
            "127.0.0.1:5000/p/web"
        );
    }
}
