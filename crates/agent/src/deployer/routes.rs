//! The service's route on the edge (Caddy): its host names to the containers that serve it,
//! and the edge's drain begun ahead of a switch.

use std::time::Duration;

use wharf_runtime::edge::{DrainAhead, Edge};
use wharf_wire::RolloutJob;

use super::{Deployer, Started, StepError};
use crate::names;

/// The longest the edge drains ahead of a route switch while a new version starts and is
/// checked (every response on the edge closes its connection meanwhile).
const DRAIN_AHEAD: Duration = Duration::from_secs(1);

impl Deployer {
    /// The edge, connected (or its Caddy started) on first use.
    pub(super) async fn edge(&self) -> Result<&Edge, StepError> {
        self.edge
            .get_or_try_init(|| Edge::connect_or_start(self.config.edge.clone()))
            .await
            .map_err(|error| StepError(format!("the edge (Caddy) is not available: {error}")))
    }

    /// Begins the edge's drain while the new version starts and is checked, when its route
    /// will change: a version healthy within [`DRAIN_AHEAD`] then moves traffic without the
    /// drain's wait.
    pub(super) async fn drain_ahead(&self, job: &RolloutJob) -> Option<DrainAhead> {
        if job.domains.is_empty() || job.port.is_none() {
            return None;
        }
        let edge = self.edge().await.ok()?;
        Some(edge.drain_ahead(DRAIN_AHEAD))
    }

    /// Points the service's route at the given containers (those with a published port).
    pub(super) async fn route(
        &self,
        job: &RolloutJob,
        containers: &[Started],
    ) -> Result<(), StepError> {
        if job.domains.is_empty() || job.port.is_none() {
            return Ok(());
        }
        let identity = names::identity(job).map_err(StepError)?;
        let upstreams: Vec<String> = containers
            .iter()
            .filter_map(|container| container.port)
            .map(|port| format!("127.0.0.1:{port}"))
            .collect();
        self.edge()
            .await?
            .set_route(&identity.route_id(), &job.domains, &upstreams)
            .await
            .map_err(|error| {
                StepError(format!("cannot route traffic to the new version: {error}"))
            })?;
        self.note(
            job,
            format!(
                "traffic for {} goes to {}",
                job.domains.join(", "),
                upstreams.join(", ")
            ),
        );
        Ok(())
    }
}
