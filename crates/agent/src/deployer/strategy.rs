//! How a new version replaces the old: blue-green (start beside, check, move traffic, retire
//! the old after its drain) or recreate (stop the old, start and check the new, start the old
//! again on failure), and starting a release's replicas.

use std::path::Path;
use std::time::Duration;

use wharf_runtime::engine::ContainerRun;
use wharf_wire::{ProbeResult, ReleaseState, RolloutJob};

use super::{Deployer, Found, Outcome, Started, StepError, Switched, free_port};
use crate::names;

impl Deployer {
    /// What both strategies do first: pull, take up what an interrupted attempt of this release
    /// left running ([`Deployer::resume`]), and report the start. Returns those containers, if
    /// any, and the service's others (the previous version).
    async fn begin(&self, job: &RolloutJob) -> Result<(Option<Vec<Started>>, Vec<Found>), Outcome> {
        // Listing the host's containers takes as long as the pull of a small image: both at once.
        let (pulled, found) = tokio::join!(self.pull(job), self.service_containers(job));
        pulled.map_err(Outcome::PullFailed)?;
        let (resumed, old) = self.resume(job, found).await;
        self.step(job, ReleaseState::Starting).await;
        Ok((resumed, old))
    }

    /// Pull; start the new beside the old; health-check; move traffic. The old drains and
    /// stops once the server took the report ([`Deployer::commit`]).
    pub(super) async fn blue_green(
        &self,
        job: &RolloutJob,
    ) -> Result<(Vec<ProbeResult>, Switched), Outcome> {
        let (resumed, old) = self.begin(job).await?;
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
            .wait_until_healthy(job, &probe, &job.settings.health, &started)
            .await;
        let probes = match healthy {
            Ok(probes) => probes,
            Err(unhealthy) => {
                drop(drain);
                // The old version never stopped serving: only the new one goes.
                self.note(
                    job,
                    format!("unhealthy: {}; removing the new version", unhealthy.reason),
                );
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
    pub(super) async fn recreate(
        &self,
        job: &RolloutJob,
    ) -> Result<(Vec<ProbeResult>, Switched), Outcome> {
        let (resumed, old) = self.begin(job).await?;
        self.stop_previous(job, &old).await;
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
                    Err(unhealthy) => {
                        self.note(job, format!("unhealthy: {}", unhealthy.reason));
                        Err((started, Outcome::RolledBack(unhealthy)))
                    }
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
    pub(super) async fn stop_previous(&self, job: &RolloutJob, old: &[Found]) {
        let mut running: Vec<&Found> = old.iter().filter(|found| found.running).collect();
        running.sort_by_key(|found| std::cmp::Reverse(found.order));
        for container in running {
            self.note(
                job,
                format!("stop the previous version: {}", container.name),
            );
            let _ = self
                .config
                .runtime
                .stop_container(&container.name, self.config.stop_grace)
                .await;
        }
    }

    /// Starts again, in their start order, the containers a failed recreate stopped (those
    /// that ran before it), and routes back to them.
    pub(super) async fn restart_previous(&self, job: &RolloutJob, old: &[Found]) {
        let mut previous: Vec<&Found> = old.iter().filter(|found| found.running).collect();
        previous.sort_by_key(|found| found.order);
        let mut restored = Vec::new();
        for container in previous {
            self.note(
                job,
                format!("start the previous version again: {}", container.name),
            );
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

    /// Starts the release's replicas, each on a free port of 127.0.0.1 when it has a port.
    pub(super) async fn start_all(&self, job: &RolloutJob) -> Result<Vec<Started>, StepError> {
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
        let identity = names::identity(job).map_err(StepError)?;
        let name = identity.container_name(&self.agent, job.release_id, &replica.to_string());
        let mut last_error = None;
        // A free port can be taken by someone else between the look and the start: try again.
        for _ in 0..3 {
            let publish = match job.port {
                Some(container_port) => Some((free_port()?, container_port)),
                None => None,
            };
            let labels = names::replica_labels(
                &identity,
                &self.agent,
                job.release_id,
                replica,
                publish.map(|(host_port, _)| host_port),
            );
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
                    let on = match publish {
                        Some((host, container)) => {
                            format!(" on 127.0.0.1:{host} (its port {container})")
                        }
                        None => String::new(),
                    };
                    self.note(job, format!("started {name}{on}"));
                    return Ok(Started {
                        name,
                        port: publish.map(|(host, _)| host),
                    });
                }
                Err(error) => {
                    self.remove(&name).await;
                    self.note(job, format!("{name} did not start: {error}"));
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

    /// After traffic moved: the old containers keep their in-flight requests for the drain
    /// time, then stop and go, and old images are pruned. Runs in the background so the next
    /// rollout need not wait; a restart in between removes them anyway (they are no live
    /// release's).
    pub(super) fn retire(&self, job: &RolloutJob, old: Vec<Found>) {
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
}
