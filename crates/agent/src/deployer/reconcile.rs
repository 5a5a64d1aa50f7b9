//! Making the host run what the server says is live on it, and finding what runs: a
//! restarted agent adopts its containers by label (their routes put back), starts stopped ones
//! again and missing ones afresh, and removes those of no live release. A rollout takes up
//! the containers an interrupted attempt of its own release left.

use std::collections::BTreeSet;

use wharf_domain::identity::DeployIdentity;
use wharf_wire::{Desired, RolloutJob};

use super::{Deployer, Found, Started, StepError};
use crate::names;

impl Deployer {
    /// Makes the host run what the server says is live on it: containers of live releases
    /// that still run are adopted (their routes put back), stopped ones started again,
    /// missing ones started afresh. Containers of releases still rolling out here stay for
    /// their rollout to take up; those of anything else are removed.
    pub(crate) async fn reconcile(&self, desired: Desired) {
        let Desired {
            live: desired,
            rolling_out,
        } = desired;
        let found = match self.my_containers().await {
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
        self.learn_earlier_environments(&desired, &found);
        let found: Vec<Found> = found
            .into_iter()
            .map(|found| self.with_environment(found))
            .collect();
        for stray in found.iter().filter(|found| {
            !found
                .release
                .is_some_and(|release| wanted.contains(&release))
        }) {
            tracing::info!(container = %stray.name, service = %stray.service, "removing a container of no live release");
            self.remove(&stray.name).await;
        }
        let mut routed = Vec::new();
        for job in desired {
            let identity = match names::identity(&job) {
                Ok(identity) => identity,
                Err(error) => {
                    tracing::error!(service = %job.service, release = job.release_id, %error, "not reconciling this release");
                    continue;
                }
            };
            if job.port.is_some() && !job.domains.is_empty() {
                routed.push(identity.clone());
            }
            let mine: Vec<&Found> = found
                .iter()
                .filter(|found| found.release == Some(job.release_id))
                .collect();
            if job.compose_file.is_some() {
                self.reconcile_stack(&job, &identity, &mine).await;
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
        self.remove_earlier_routes(&routed).await;
    }

    /// Remembers the environment of each release whose containers an earlier agent started
    /// (no environment label): the server's live job for that release names it.
    fn learn_earlier_environments(&self, desired: &[RolloutJob], found: &[Found]) {
        let mut earlier = self
            .earlier_environments
            .lock()
            .expect("the lock is never held across a panic");
        earlier.clear();
        for job in desired {
            if found
                .iter()
                .any(|found| found.environment.is_none() && found.release == Some(job.release_id))
            {
                earlier.insert(job.release_id, job.environment.clone());
            }
        }
    }

    /// The container with its environment: its label's, else the one learned for its release.
    fn with_environment(&self, mut found: Found) -> Found {
        if found.environment.is_none()
            && let Some(release) = found.release
        {
            found.environment = self
                .earlier_environments
                .lock()
                .expect("the lock is never held across a panic")
                .get(&release)
                .cloned();
        }
        found
    }

    /// An earlier agent named a service's route by the service alone. Once the live releases
    /// are routed under their identities' names, such a route would only shadow them.
    async fn remove_earlier_routes(&self, routed: &[DeployIdentity]) {
        let Some(edge) = self.edge.get() else {
            return;
        };
        let earlier: BTreeSet<String> =
            routed.iter().map(DeployIdentity::legacy_route_id).collect();
        for route in earlier {
            if !matches!(edge.route_upstreams(&route).await, Ok(Some(_))) {
                continue;
            }
            match edge.remove_route(&route).await {
                Ok(()) => {
                    tracing::info!(%route, "removed a route an earlier agent named by service alone")
                }
                Err(error) => {
                    tracing::warn!(%route, %error, "cannot remove an earlier agent's route")
                }
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

    /// This agent's containers on the host, as their labels say (an earlier agent's without
    /// the environment it did not label).
    pub(super) async fn my_containers(&self) -> Result<Vec<Found>, StepError> {
        let found = self
            .config
            .runtime
            .containers_labelled(names::LABEL_AGENT, &self.agent)
            .await?;
        Ok(found.into_iter().filter_map(Found::from_state).collect())
    }

    /// The containers of the rollout's deploy identity on this host: of any of its releases,
    /// never another service's or another environment's.
    pub(super) async fn service_containers(&self, job: &RolloutJob) -> Vec<Found> {
        let identity = match names::identity(job) {
            Ok(identity) => identity,
            Err(error) => {
                tracing::warn!(%error, "not looking for the rollout's containers");
                return Vec::new();
            }
        };
        match self.my_containers().await {
            Ok(found) => found
                .into_iter()
                .map(|found| self.with_environment(found))
                .filter(|found| found.belongs_to(&identity, job.release_id))
                .collect(),
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
    pub(super) async fn resume(
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
            self.note(
                job,
                format!(
                    "taking up the {} container(s) an interrupted attempt started",
                    mine.len()
                ),
            );
            let started = mine.iter().map(Found::started).collect();
            return (Some(started), old);
        }
        self.remove_leftovers(job, &mine).await;
        (None, old)
    }

    /// Containers of this very release left by an interrupted attempt: nothing runs twice.
    pub(super) async fn remove_leftovers(&self, job: &RolloutJob, found: &[Found]) {
        for container in found
            .iter()
            .filter(|found| found.release == Some(job.release_id))
        {
            tracing::info!(container = %container.name, "removing what an interrupted attempt left");
            self.note(
                job,
                format!(
                    "removing {}, left by an interrupted attempt",
                    container.name
                ),
            );
            self.remove(&container.name).await;
        }
    }
}
