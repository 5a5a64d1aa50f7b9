//! Networks and named volumes: whether one exists, one made to exist with labels, those with
//! given labels found and removed.

use super::{COMMAND_TIMEOUT, EngineError, Runtime};
use crate::process::CommandSpec;

/// How a network or volume came to exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    /// It was there already (or someone else created it meanwhile).
    Existing,
    /// It was created now.
    Created,
}

/// A kind of thing the engine keeps by name.
#[derive(Debug, Clone, Copy)]
enum Resource {
    Network,
    Volume,
}

impl Resource {
    fn noun(self) -> &'static str {
        match self {
            Resource::Network => "network",
            Resource::Volume => "volume",
        }
    }
}

impl Runtime {
    /// Whether the network `name` exists.
    pub async fn network_exists(&self, name: &str) -> Result<bool, EngineError> {
        self.ask(self.inspect_command(Resource::Network, name))
            .await
    }

    /// Makes the bridge network `name`, whose containers reach each other by name, exist;
    /// a new one gets `labels`.
    pub async fn ensure_network(
        &self,
        name: &str,
        labels: &[(String, String)],
    ) -> Result<Ensured, EngineError> {
        self.ensure(Resource::Network, name, labels).await
    }

    /// Whether the named volume `name` exists.
    pub async fn volume_exists(&self, name: &str) -> Result<bool, EngineError> {
        self.ask(self.inspect_command(Resource::Volume, name)).await
    }

    /// Makes the named volume `name` (local driver) exist; a new one gets `labels`.
    pub async fn ensure_volume(
        &self,
        name: &str,
        labels: &[(String, String)],
    ) -> Result<Ensured, EngineError> {
        self.ensure(Resource::Volume, name, labels).await
    }

    /// The networks that carry every one of `labels`.
    pub async fn networks_labelled(
        &self,
        labels: &[(String, String)],
    ) -> Result<Vec<String>, EngineError> {
        self.labelled(Resource::Network, labels).await
    }

    /// The named volumes that carry every one of `labels`.
    pub async fn volumes_labelled(
        &self,
        labels: &[(String, String)],
    ) -> Result<Vec<String>, EngineError> {
        self.labelled(Resource::Volume, labels).await
    }

    /// Removes the network `name`; it must have no containers left.
    pub async fn remove_network(&self, name: &str) -> Result<(), EngineError> {
        self.execute(
            self.remove_resource_command(Resource::Network, name),
            COMMAND_TIMEOUT,
        )
        .await
        .map(drop)
    }

    /// Removes the named volume `name` and its data; no container may use it.
    pub async fn remove_volume(&self, name: &str) -> Result<(), EngineError> {
        self.execute(
            self.remove_resource_command(Resource::Volume, name),
            COMMAND_TIMEOUT,
        )
        .await
        .map(drop)
    }

    async fn labelled(
        &self,
        resource: Resource,
        labels: &[(String, String)],
    ) -> Result<Vec<String>, EngineError> {
        Ok(self
            .query(self.list_command(resource, labels))
            .await?
            .lines()
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect())
    }

    fn list_command(&self, resource: Resource, labels: &[(String, String)]) -> CommandSpec {
        let mut spec = self
            .command()
            .args([resource.noun(), "ls", "--format", "{{.Name}}"]);
        for (key, value) in labels {
            spec = spec.arg("--filter").arg(format!("label={key}={value}"));
        }
        spec
    }

    fn remove_resource_command(&self, resource: Resource, name: &str) -> CommandSpec {
        self.command().args([resource.noun(), "rm", "--"]).arg(name)
    }

    async fn ensure(
        &self,
        resource: Resource,
        name: &str,
        labels: &[(String, String)],
    ) -> Result<Ensured, EngineError> {
        let exists = || self.ask(self.inspect_command(resource, name));
        if exists().await? {
            return Ok(Ensured::Existing);
        }
        match self
            .execute(self.create_command(resource, name, labels), COMMAND_TIMEOUT)
            .await
        {
            Ok(_) => Ok(Ensured::Created),
            // Created meanwhile by someone else: as good.
            Err(_) if exists().await.unwrap_or(false) => Ok(Ensured::Existing),
            Err(error) => Err(error),
        }
    }

    fn inspect_command(&self, resource: Resource, name: &str) -> CommandSpec {
        self.command()
            .args([resource.noun(), "inspect", "--format", "{{.Name}}", "--"])
            .arg(name)
    }

    fn create_command(
        &self,
        resource: Resource,
        name: &str,
        labels: &[(String, String)],
    ) -> CommandSpec {
        let mut spec = self.command().args([resource.noun(), "create"]);
        for (key, value) in labels {
            spec = spec.arg("--label").arg(format!("{key}={value}"));
        }
        spec.arg("--").arg(name)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{args, podman};
    use super::*;

    #[test]
    fn networks_and_volumes_are_created_with_labels() {
        let labels = [("wharf.deploy.agent".to_owned(), "a".to_owned())];
        assert_eq!(
            args(&podman().create_command(Resource::Network, "wharf-a-stack", &labels)).join(" "),
            "podman network create --label wharf.deploy.agent=a -- wharf-a-stack"
        );
        assert_eq!(
            args(&podman().create_command(Resource::Volume, "wharf-a-stack-data", &labels))
                .join(" "),
            "podman volume create --label wharf.deploy.agent=a -- wharf-a-stack-data"
        );
        assert_eq!(
            args(&podman().inspect_command(Resource::Volume, "wharf-a-stack-data")).join(" "),
            "podman volume inspect --format {{.Name}} -- wharf-a-stack-data"
        );
    }

    #[test]
    fn networks_and_volumes_are_found_by_every_label_and_removed_by_name() {
        let labels = [
            ("wharf.deploy.agent".to_owned(), "a".to_owned()),
            ("wharf.deploy.environment".to_owned(), "web-pr-7".to_owned()),
        ];
        assert_eq!(
            args(&podman().list_command(Resource::Volume, &labels)).join(" "),
            "podman volume ls --format {{.Name}} --filter label=wharf.deploy.agent=a \
             --filter label=wharf.deploy.environment=web-pr-7"
        );
        assert_eq!(
            args(&podman().remove_resource_command(Resource::Network, "wharf.a.web.web-pr-7"))
                .join(" "),
            "podman network rm -- wharf.a.web.web-pr-7"
        );
    }
}
