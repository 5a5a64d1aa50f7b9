//! Running releases on this host: pull first, start the new version, health-check it, move
//! traffic (blue-green) or replace (recreate), roll back when it is unhealthy, clean up.
//!
//! Every container Wharf starts carries `wharf.deploy.*` labels (agent, service, release,
//! replica or compose service, published port). They are the agent's only memory: a restarted
//! agent finds its containers by label and adopts them instead of starting them again, and
//! cleanup never touches a container or image without Wharf's labels.
//!
//! This module holds the [`Deployer`] and a rollout's run, its commit once the server took the
//! report, and its undo when the server refused it. The rest is by concern:
//!
//! - `reconcile`: the host made to run what is live; containers found by label;
//! - `strategy`: blue-green and recreate, and starting a release's replicas;
//! - `health`: probes and what a version that failed them left in its log;
//! - `images`: pulls and the cleanup of old images;
//! - `routes`: the service's route on the edge;
//! - `compose`: a compose release, run as a stack (one container per compose service,
//!   recreate-style, started and health-checked one by one);
//! - `teardown`: an environment removed from the host (a closed pull request's preview).

mod compose;
mod deploy_log;
mod health;
mod images;
mod reconcile;
mod routes;
mod strategy;
mod teardown;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::OnceCell;
use wharf_client::ApiClient;
use wharf_domain::compose::ReservedPort;
use wharf_domain::identity::DeployIdentity;
use wharf_runtime::edge::{Edge, EdgeConfig};
use wharf_runtime::engine::{ContainerState, EngineError, RegistryCredentials, Runtime};
use wharf_wire::{ReleaseState, ReportRollout, RolloutJob, Strategy};

use self::deploy_log::DeployLogs;
use self::health::Unhealthy;
use crate::logs::LogShipper;
use crate::names;

/// How this agent deploys.
#[derive(Clone)]
pub struct DeployConfig {
    pub runtime: Runtime,
    /// The Caddy the agent routes through (and starts when none answers).
    pub edge: EdgeConfig,
    /// The agent's own registry login, for pulls from its registry only; a release's
    /// installation login wins.
    pub registry_credentials: Option<RegistryCredentials>,
    /// How long a stopped container gets between SIGTERM and SIGKILL.
    pub stop_grace: Duration,
    /// The registry builds push to (`host:port`), whose port no compose file may publish.
    pub registry: Option<String>,
}

/// A container of this agent, as found on the host.
#[derive(Debug, Clone)]
struct Found {
    name: String,
    running: bool,
    service: String,
    /// Its environment: its label's, or for a container an earlier agent started (which named
    /// none), the environment of its release when the server named that release live here.
    environment: Option<String>,
    release: Option<i64>,
    port: Option<u16>,
    /// The compose service, for a member of a stack.
    component: Option<String>,
    order: Option<u32>,
    /// The named volumes it mounts.
    volumes: Vec<String>,
    /// The networks it is attached to.
    networks: Vec<String>,
}

impl Found {
    /// A container of Wharf's, from its state; `None` for one without Wharf's labels.
    fn from_state(state: ContainerState) -> Option<Found> {
        let labels = names::read_container_labels(&state.labels)?;
        Some(Found {
            name: state.name,
            running: state.running,
            service: labels.service,
            environment: labels.environment,
            release: labels.release,
            port: labels.port,
            component: labels.component,
            order: labels.order,
            volumes: state.volumes,
            networks: state.networks,
        })
    }

    /// Whether the container is `identity`'s, for a rollout of `release`: its service and
    /// environment are the identity's, or (an earlier agent's container, its environment
    /// unknown) it runs that very release.
    fn belongs_to(&self, identity: &DeployIdentity, release: i64) -> bool {
        self.service == identity.service()
            && match &self.environment {
                Some(environment) => environment == identity.environment(),
                None => self.release == Some(release),
            }
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

pub(crate) struct Deployer {
    config: DeployConfig,
    client: ApiClient,
    agent: String,
    work_dir: PathBuf,
    /// Shared with the background tasks that retire old versions.
    edge: Arc<OnceCell<Edge>>,
    http: reqwest::Client,
    /// Release → environment, for the containers an earlier agent started (their labels name
    /// no environment): learned when the agent reconciles, from the releases the server names
    /// live here. Rebuilt by every reconcile; nothing the server cannot give again.
    earlier_environments: Arc<Mutex<HashMap<i64, String>>>,
    /// The host ports Wharf listens on, which no compose file may publish.
    reserved_ports: Vec<ReservedPort>,
    /// Where the notes of each rollout running here go: its release's deploy log, while
    /// [`Deployer::run`] runs it.
    deploy_logs: DeployLogs,
}

impl Deployer {
    pub(crate) fn new(
        config: DeployConfig,
        client: ApiClient,
        agent: String,
        work_dir: PathBuf,
        server: &str,
    ) -> Deployer {
        Deployer {
            reserved_ports: compose::wharf_ports(server, &config.edge, config.registry.as_deref()),
            config,
            client,
            agent,
            work_dir,
            edge: Arc::new(OnceCell::new()),
            earlier_environments: Arc::default(),
            deploy_logs: DeployLogs::default(),
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

    /// Runs one claimed rollout to its end, reporting every step but the last: the caller
    /// delivers that, then calls [`Deployer::commit`] or [`Deployer::undo`].
    pub(crate) async fn run(&self, job: RolloutJob) -> Finished {
        let secrets =
            crate::masking::rollout_secrets(&job, self.config.registry_credentials.as_ref());
        let log = self.deploy_logs.open(&self.client, &job, secrets.clone());
        let strategy = job.settings.strategy_for(job.port);
        let how = match &job.compose_file {
            Some(_) => "a compose stack".to_owned(),
            None => strategy.as_str().to_owned(),
        };
        self.note(
            &job,
            format!(
                "release #{} of {} ({}) on {}: {}, {how}",
                job.release_id, job.service, job.environment, self.agent, job.image
            ),
        );
        if job.teardown {
            return self.run_teardown(job, log).await;
        }
        let outcome = match (names::identity(&job), &job.compose_file) {
            (Err(reason), _) => Err(Outcome::Refused(reason)),
            (Ok(_), Some(file)) => {
                tracing::info!(rollout = job.rollout_id, release = job.release_id, service = %job.service, images = job.compose_images.len(), "stack rollout started");
                self.deploy_stack(&job, file).await
            }
            (Ok(_), None) => {
                tracing::info!(rollout = job.rollout_id, release = job.release_id, service = %job.service, image = %job.image, strategy = strategy.as_str(), "rollout started");
                let built_here = self.built_here(&job).await;
                let run = built_here.as_ref().unwrap_or(&job);
                match strategy {
                    Strategy::BlueGreen => self.blue_green(run).await,
                    Strategy::Recreate => self.recreate(run).await,
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
        // Reasons, probe results and log tails hold what the service's programs printed.
        let report = crate::masking::mask_rollout_report(report, &secrets);
        tracing::info!(rollout = job.rollout_id, state = %report.state, reason = report.reason.as_deref().unwrap_or(""), "rollout ended");
        self.note_outcome(&job, &report, switched.as_ref());
        // The log is complete before the report that ends the rollout: readers take the
        // rollout's end as the end of its lines.
        self.deploy_logs.close(job.rollout_id, log).await;
        Finished {
            job,
            report,
            switched,
        }
    }

    /// A teardown's run: the environment removed, reported `removed` (or `failed` with what
    /// could not be removed, for the next attempt to finish).
    async fn run_teardown(&self, job: RolloutJob, log: LogShipper) -> Finished {
        tracing::info!(rollout = job.rollout_id, release = job.release_id, service = %job.service, environment = %job.environment, "teardown started");
        let report = match self.teardown(&job).await {
            Ok(()) => ReportRollout::new(job.rollout_id, ReleaseState::Removed),
            Err(error) => ReportRollout {
                reason: Some(error.to_string()),
                ..ReportRollout::new(job.rollout_id, ReleaseState::Failed)
            },
        };
        tracing::info!(rollout = job.rollout_id, state = %report.state, reason = report.reason.as_deref().unwrap_or(""), "teardown ended");
        self.note_outcome(&job, &report, None);
        self.deploy_logs.close(job.rollout_id, log).await;
        Finished {
            job,
            report,
            switched: None,
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

    /// Reports a step; a report that cannot reach the server is logged, not fatal.
    async fn step(&self, job: &RolloutJob, state: ReleaseState) {
        self.note(job, format!("step: {state}"));
        self.report(ReportRollout::new(job.rollout_id, state)).await;
    }

    async fn report(&self, report: ReportRollout) {
        let mut backoff = Duration::from_millis(200);
        for attempt in 1..=5 {
            match self.client.send(&report).await {
                Ok(_) => return,
                // The server will not take it however often it is sent (the rollout moved on):
                // the final report hears the same, and decides what the host does.
                Err(error) if crate::is_refusal(error.status()) => {
                    tracing::warn!(rollout = report.id, state = %report.state, %error, "the server refused the rollout's state");
                    return;
                }
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

    fn clone_for_background(&self) -> Deployer {
        Deployer {
            config: self.config.clone(),
            client: self.client.clone(),
            agent: self.agent.clone(),
            work_dir: self.work_dir.clone(),
            edge: self.edge.clone(),
            http: self.http.clone(),
            earlier_environments: self.earlier_environments.clone(),
            reserved_ports: self.reserved_ports.clone(),
            deploy_logs: self.deploy_logs.clone(),
        }
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

/// A port of 127.0.0.1 nobody listens on right now.
fn free_port() -> Result<u16, StepError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|error| StepError(format!("no free port: {error}")))
}
