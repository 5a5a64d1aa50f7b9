//! A teardown: an environment removed from this host (a preview whose pull request closed).
//! Its containers go, of every release, then its route, its stack's network and named
//! volumes (unless it is only stopped), and the images only it ran. Nothing of another environment or service is touched:
//! everything is found by the deploy identity's labels and names.

use wharf_wire::RolloutJob;

use super::{Deployer, StepError};
use crate::names;

impl Deployer {
    /// Removes the job's environment from the host. Removing what is already gone is no
    /// error, so a teardown that runs again (after a restart) ends the same way.
    pub(super) async fn teardown(&self, job: &RolloutJob) -> Result<(), StepError> {
        let identity = names::identity(job).map_err(StepError)?;
        let containers: Vec<String> = self
            .my_containers()
            .await?
            .into_iter()
            .filter(|found| {
                found.service == identity.service()
                    && found.environment.as_deref() == Some(identity.environment())
            })
            .map(|found| found.name)
            .collect();
        // Traffic goes first: nothing is sent to containers that are going.
        if let Ok(edge) = self.edge().await {
            let route = identity.route_id();
            if matches!(edge.route_upstreams(&route).await, Ok(Some(_))) {
                edge.remove_route(&route).await.map_err(|error| {
                    StepError(format!("cannot remove the route {route}: {error}"))
                })?;
                self.note(job, format!("removed the route {route}"));
            }
        }
        for container in &containers {
            self.config
                .runtime
                .remove_container(container)
                .await
                .map_err(|error| StepError(format!("cannot remove {container}: {error}")))?;
            self.note(job, format!("removed the container {container}"));
        }
        let labels = names::resource_labels(&identity, &self.agent);
        for network in self.config.runtime.networks_labelled(&labels).await? {
            self.config
                .runtime
                .remove_network(&network)
                .await
                .map_err(|error| {
                    StepError(format!("cannot remove the network {network}: {error}"))
                })?;
            self.note(job, format!("removed the network {network}"));
        }
        let volumes = match job.keep_volumes {
            true => Vec::new(),
            false => self.config.runtime.volumes_labelled(&labels).await?,
        };
        for volume in volumes {
            self.config
                .runtime
                .remove_volume(&volume)
                .await
                .map_err(|error| {
                    StepError(format!("cannot remove the volume {volume}: {error}"))
                })?;
            self.note(job, format!("removed the volume {volume}"));
        }
        // An image another container still runs stays: the engine refuses to remove it.
        for image in &job.remove_images {
            let references = names::pushed_tag_of(image)
                .into_iter()
                .chain([image.clone()]);
            for reference in references {
                if self
                    .config
                    .runtime
                    .has_image(&reference)
                    .await
                    .unwrap_or(false)
                {
                    match self.config.runtime.remove_image(&reference).await {
                        Ok(()) => self.note(job, format!("removed the image {reference}")),
                        Err(error) => {
                            tracing::info!(image = %reference, %error, "image kept");
                            self.note(job, format!("kept the image {reference}: it is in use"));
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
