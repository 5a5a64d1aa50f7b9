//! A release's images: pulled with the release's registry login (else the agent's own) for
//! the images Wharf built, each login only for its own registry, and old images of a service
//! removed past the newest `keep_images`.

use wharf_domain::names::{image_registry, image_repository};
use wharf_wire::RolloutJob;

use super::{Deployer, StepError};
use crate::names;
use crate::registry_logins::login_for;

impl Deployer {
    pub(super) async fn pull(&self, job: &RolloutJob) -> Result<(), StepError> {
        if names::is_pushed_tag(&job.image) {
            // Found on this host by [`Deployer::built_here`], and named by the digest it was
            // pushed under, so it cannot have changed since.
            self.note(
                job,
                format!(
                    "pull: not needed, this host built and pushed it ({})",
                    job.image
                ),
            );
            return Ok(());
        }
        self.pull_image(job, &job.image, true).await
    }

    /// The rollout as this host runs it: when this agent built and pushed the released image
    /// and still has the tag it left on it ([`names::pushed_tag`]), the image under that tag,
    /// which needs no pull; else `None`, and the release's image is pulled.
    pub(super) async fn built_here(&self, job: &RolloutJob) -> Option<RolloutJob> {
        let tag = names::pushed_tag_of(&job.image)?;
        match self.config.runtime.has_image(&tag).await {
            Ok(true) => Some(RolloutJob {
                image: tag,
                ..job.clone()
            }),
            _ => None,
        }
    }

    /// Pulls `image`, with the release's registry login (else the agent's own) when
    /// `with_login` and the login belongs to the image's registry: only images Wharf built get
    /// one, and an image of another registry is pulled with none.
    pub(super) async fn pull_image(
        &self,
        job: &RolloutJob,
        image: &str,
        with_login: bool,
    ) -> Result<(), StepError> {
        let dir = self.job_dir(job);
        // A login from an earlier server names no registry: it was sent only with a build's
        // release, whose images are in the registry the build pushed to.
        let released = job
            .compose_images
            .first()
            .map_or(job.image.as_str(), |(_, image)| image.as_str());
        let credentials = with_login
            .then(|| {
                login_for(
                    image,
                    job.registry_login.as_ref(),
                    Some(image_registry(released)),
                    self.config.registry_credentials.as_ref(),
                )
            })
            .flatten();
        let auth_file = match &credentials {
            Some(credentials) => {
                let path = dir.join("auth").join("config.json");
                tokio::fs::create_dir_all(dir.join("auth"))
                    .await
                    .map_err(|error| {
                        StepError(format!("cannot create {}: {error}", dir.display()))
                    })?;
                wharf_runtime::files::write_private_file(
                    &path,
                    credentials.auth_file_json().as_bytes(),
                )
                .map_err(|error| StepError(format!("cannot write the registry login: {error}")))?;
                Some(path)
            }
            None => None,
        };
        let login = if credentials.is_some() {
            " with the registry login"
        } else {
            ""
        };
        self.note(job, format!("pull: {image}{login}"));
        let begun = std::time::Instant::now();
        let pulled = self.config.runtime.pull(image, auth_file.as_deref()).await;
        let _ = tokio::fs::remove_dir_all(dir.join("auth")).await;
        match &pulled {
            Ok(()) => self.note(
                job,
                format!("pulled {image} in {:.1} s", begun.elapsed().as_secs_f64()),
            ),
            Err(error) => self.note(job, format!("the pull of {image} failed: {error}")),
        }
        Ok(pulled?)
    }

    /// Keeps the images of the service's containers and the `keep_images` newest others;
    /// removes older images that carry the service's build label. Nothing without Wharf's
    /// labels is touched, and an image a container still uses stays.
    pub(super) async fn cleanup_images(&self, job: &RolloutJob) {
        let Ok(listing) = self
            .config
            .runtime
            .images_labelled(names::IMAGE_LABEL_SERVICE, &job.service)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repositories_are_read_from_image_references() {
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
