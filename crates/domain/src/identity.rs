//! The deploy identity: a service in one environment, and every name a host gives it.
//!
//! A service runs in its production environment and, later, in preview environments
//! (`<service>-pr-<n>`), several at once on one host. Everything the agent creates for one of
//! them (containers, the compose stack's network and volumes, the Caddy route) and the labels it
//! finds them by are named here and nowhere else, so two services or two environments can never
//! reach each other's things.
//!
//! Names join their parts with `.`, which none of the parts can hold (agents, services and
//! environments are DNS labels), so a name decodes one way only: the service `api` with the
//! volume `worker-db` is `wharf.{agent}.api.production.worker-db`, never the same as the service
//! `api-worker` with the volume `db`. Podman and Docker accept `.` in container, network and
//! volume names.
//!
//! Wharf's earlier names (`wharf-{agent}-{service}…`, keyed by service alone) are spelled here
//! too, as `legacy_*`, so that an agent can take up what an earlier agent left running.

use crate::names::{DnsLabel, NameError};

/// Label keys on every container Wharf runs.
pub mod labels {
    /// The agent that runs the container.
    pub const AGENT: &str = "wharf.deploy.agent";
    /// The service the container belongs to.
    pub const SERVICE: &str = "wharf.deploy.service";
    /// The environment the container belongs to (absent on containers of earlier agents).
    pub const ENVIRONMENT: &str = "wharf.deploy.environment";
    /// The release the container runs.
    pub const RELEASE: &str = "wharf.deploy.release";
    /// The replica's index, for a service run as replicas.
    pub const REPLICA: &str = "wharf.deploy.replica";
    /// The loopback port the container is published on, when it is routed.
    pub const PORT: &str = "wharf.deploy.port";
    /// The compose service a stack member runs.
    pub const COMPONENT: &str = "wharf.deploy.component";
    /// A stack member's place in the start order.
    pub const ORDER: &str = "wharf.deploy.order";
}

/// Label keys on every image Wharf builds. Images belong to a service, not an environment: one
/// image serves every environment that releases its build.
pub mod image_labels {
    /// The service the image was built for.
    pub const SERVICE: &str = "wharf.service";
    /// The service's project.
    pub const PROJECT: &str = "wharf.project";
    /// The commit the image was built from.
    pub const COMMIT: &str = "wharf.commit";
    /// The build that made the image.
    pub const BUILD: &str = "wharf.build";
    /// The compose service, for an image of a compose stack.
    pub const COMPONENT: &str = "wharf.component";
}

/// A service in one environment: what a release is for and what a host runs.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeployIdentity {
    service: DnsLabel,
    environment: DnsLabel,
}

impl DeployIdentity {
    /// The identity of `service` in `environment`; both must be DNS labels.
    pub fn new(service: &str, environment: &str) -> Result<DeployIdentity, NameError> {
        Ok(DeployIdentity {
            service: DnsLabel::parse("service name", service)?,
            environment: DnsLabel::parse("environment", environment)?,
        })
    }

    pub fn service(&self) -> &str {
        self.service.as_str()
    }

    pub fn environment(&self) -> &str {
        self.environment.as_str()
    }

    /// The labels that mark a container as this identity's on `agent`'s host.
    pub fn labels(&self, agent: &str) -> Vec<(String, String)> {
        vec![
            (labels::AGENT.to_owned(), agent.to_owned()),
            (labels::SERVICE.to_owned(), self.service().to_owned()),
            (
                labels::ENVIRONMENT.to_owned(),
                self.environment().to_owned(),
            ),
        ]
    }

    /// The container of one part of a release: a replica's index, or a stack member's compose
    /// name.
    pub fn container_name(&self, agent: &str, release: i64, part: &str) -> String {
        format!("{}.r{release}.{part}", self.prefix(agent))
    }

    /// The network of this identity's compose stack on `agent`'s host. It outlives releases, so
    /// the old and the new stack share it.
    pub fn network_name(&self, agent: &str) -> String {
        self.prefix(agent)
    }

    /// A named volume of this identity's compose stack: it keeps its data from release to
    /// release, and no other service or environment reaches it.
    pub fn volume_name(&self, agent: &str, volume: &str) -> String {
        format!("{}.{volume}", self.prefix(agent))
    }

    /// The id of the Caddy route that sends this identity's host names to its containers.
    pub fn route_id(&self) -> String {
        format!("wharf.{}.{}", self.service(), self.environment())
    }

    /// The network an earlier agent gave the service's stack, whatever its environment.
    pub fn legacy_network_name(&self, agent: &str) -> String {
        format!("wharf-{agent}-{}", self.service())
    }

    /// The name an earlier agent gave a named volume of the service's stack.
    pub fn legacy_volume_name(&self, agent: &str, volume: &str) -> String {
        format!("wharf-{agent}-{}-{volume}", self.service())
    }

    /// The id an earlier agent gave the service's Caddy route.
    pub fn legacy_route_id(&self) -> String {
        format!("wharf-{}", self.service())
    }

    fn prefix(&self, agent: &str) -> String {
        format!("wharf.{agent}.{}.{}", self.service(), self.environment())
    }
}

impl std::fmt::Display for DeployIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.service(), self.environment())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(service: &str, environment: &str) -> DeployIdentity {
        DeployIdentity::new(service, environment).unwrap()
    }

    #[test]
    fn volumes_of_different_services_never_share_a_name() {
        // Under the earlier names both were `wharf-a-api-worker-db`.
        let api = identity("api", "production");
        let api_worker = identity("api-worker", "production");
        assert_eq!(
            api.legacy_volume_name("a", "worker-db"),
            api_worker.legacy_volume_name("a", "db")
        );
        assert_ne!(
            api.volume_name("a", "worker-db"),
            api_worker.volume_name("a", "db")
        );
        assert_eq!(
            api.volume_name("a", "worker-db"),
            "wharf.a.api.production.worker-db"
        );
    }

    #[test]
    fn environments_of_one_service_get_names_of_their_own() {
        let production = identity("web", "production");
        let preview = identity("web", "web-pr-7");
        for (a, b) in [
            (production.network_name("a"), preview.network_name("a")),
            (production.route_id(), preview.route_id()),
            (
                production.container_name("a", 3, "0"),
                preview.container_name("a", 3, "0"),
            ),
            (
                production.volume_name("a", "data"),
                preview.volume_name("a", "data"),
            ),
        ] {
            assert_ne!(a, b);
        }
        // The earlier names knew the service only.
        assert_eq!(
            production.legacy_network_name("a"),
            preview.legacy_network_name("a")
        );
        assert_eq!(production.legacy_route_id(), preview.legacy_route_id());
    }

    #[test]
    fn names_decode_one_way() {
        // Every part before the last is a DNS label, which cannot hold a dot: splitting on the
        // first dots gives the parts back.
        let cases = [
            ("api", "production", "worker-db"),
            ("api-worker", "production", "db"),
            ("api", "production-worker", "db"),
            ("web", "web-pr-12", "data.v2"),
        ];
        let mut seen = std::collections::HashSet::new();
        for (service, environment, volume) in cases {
            let name = identity(service, environment).volume_name("agent-1", volume);
            let parts: Vec<&str> = name.splitn(5, '.').collect();
            assert_eq!(parts, ["wharf", "agent-1", service, environment, volume]);
            assert!(seen.insert(name));
        }
    }

    #[test]
    fn identities_are_dns_labels() {
        assert!(DeployIdentity::new("web", "production").is_ok());
        assert!(DeployIdentity::new("web.evil", "production").is_err());
        assert!(DeployIdentity::new("web", "prod.x").is_err());
        assert!(DeployIdentity::new("Web", "production").is_err());
    }

    #[test]
    fn labels_name_agent_service_and_environment() {
        assert_eq!(
            identity("web", "web-pr-3").labels("a"),
            [
                (labels::AGENT.to_owned(), "a".to_owned()),
                (labels::SERVICE.to_owned(), "web".to_owned()),
                (labels::ENVIRONMENT.to_owned(), "web-pr-3".to_owned()),
            ]
        );
    }
}
