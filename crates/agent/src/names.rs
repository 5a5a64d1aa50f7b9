//! The labels the agent writes and reads, and where a stack's network and volumes live.
//!
//! Every name a host sees derives from a release's deploy identity (a service in one
//! environment, [`DeployIdentity`]), which spells containers, networks, volumes and route ids.
//! This module puts the identity's labels on what the agent runs and builds, reads them back
//! (labels are the agent's only memory of what it runs: a restarted agent finds its containers
//! by them), and decides which names a compose stack uses on a host where an earlier agent,
//! which named things by service alone, left it running.

use std::collections::{BTreeMap, BTreeSet};

use wharf_domain::identity::{DeployIdentity, image_labels as image, labels as label};
use wharf_wire::RolloutJob;

/// Labels as the engine takes them.
pub(crate) type Labels = Vec<(String, String)>;

/// The label that finds every container, network and volume of one agent.
pub(crate) const LABEL_AGENT: &str = label::AGENT;
/// The label that finds a service's images.
pub(crate) const IMAGE_LABEL_SERVICE: &str = image::SERVICE;

/// The deploy identity a rollout is for. The server checked the service's and the
/// environment's names when it took them; a job whose names fail the check again is refused
/// before the host is touched.
pub(crate) fn identity(job: &RolloutJob) -> Result<DeployIdentity, String> {
    DeployIdentity::new(&job.service, &job.environment)
        .map_err(|error| format!("the rollout names no valid deploy identity: {error}"))
}

/// The local tag an agent leaves on an image it built and pushed, named by the digest the push
/// gave: a release of `repository@digest` on the same host runs the image under this tag rather
/// than pulling it back. `image` is any reference in the repository (by tag or by digest);
/// `None` for a digest that is not SHA-256.
pub(crate) fn pushed_tag(image: &str, digest: &str) -> Option<String> {
    let hex = digest.strip_prefix("sha256:")?;
    let valid = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    valid.then(|| {
        format!(
            "{}:wharf-pushed-{hex}",
            wharf_domain::names::image_repository(image)
        )
    })
}

/// Whether `image` is a tag [`pushed_tag`] made.
pub(crate) fn is_pushed_tag(image: &str) -> bool {
    !image.contains('@')
        && image
            .rsplit_once(':')
            .is_some_and(|(_, tag)| tag.starts_with("wharf-pushed-") && !tag.contains('/'))
}

/// The local tag [`pushed_tag`] names for an image released by digest (`repository@sha256:…`).
pub(crate) fn pushed_tag_of(released: &str) -> Option<String> {
    let (_, digest) = released.split_once('@')?;
    pushed_tag(released, digest)
}

/// The labels of an image built for `service` of `project` from `commit` by build `build`
/// (for the compose service `component`, in a compose build).
pub(crate) fn image_labels(
    project: &str,
    service: &str,
    commit: &str,
    build: i64,
    component: Option<&str>,
) -> Labels {
    let mut labels = vec![
        (image::SERVICE.to_owned(), service.to_owned()),
        (image::PROJECT.to_owned(), project.to_owned()),
        (image::COMMIT.to_owned(), commit.to_owned()),
        (image::BUILD.to_owned(), build.to_string()),
    ];
    if let Some(component) = component {
        labels.push((image::COMPONENT.to_owned(), component.to_owned()));
    }
    labels
}

/// The labels of replica `replica` of `identity`'s release `release`, run by `agent`, with the
/// loopback port it is published on.
pub(crate) fn replica_labels(
    identity: &DeployIdentity,
    agent: &str,
    release: i64,
    replica: u32,
    port: Option<u16>,
) -> Labels {
    let mut labels = release_labels(identity, agent, release);
    labels.push((label::REPLICA.to_owned(), replica.to_string()));
    with_port(labels, port)
}

/// The labels of the container of compose service `member`, `order`th in its stack's start
/// order, in `identity`'s release `release`, run by `agent`, with the port the service's
/// traffic reaches it on.
pub(crate) fn member_labels(
    identity: &DeployIdentity,
    agent: &str,
    release: i64,
    member: &str,
    order: usize,
    port: Option<u16>,
) -> Labels {
    let mut labels = release_labels(identity, agent, release);
    labels.push((label::COMPONENT.to_owned(), member.to_owned()));
    labels.push((label::ORDER.to_owned(), order.to_string()));
    with_port(labels, port)
}

/// The labels of a network or volume of `identity`'s stack, run by `agent`.
pub(crate) fn resource_labels(identity: &DeployIdentity, agent: &str) -> Labels {
    identity.labels(agent)
}

fn release_labels(identity: &DeployIdentity, agent: &str, release: i64) -> Labels {
    let mut labels = identity.labels(agent);
    labels.push((label::RELEASE.to_owned(), release.to_string()));
    labels
}

fn with_port(mut labels: Labels, port: Option<u16>) -> Labels {
    if let Some(port) = port {
        labels.push((label::PORT.to_owned(), port.to_string()));
    }
    labels
}

/// What Wharf's labels on a container say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerLabels {
    pub(crate) service: String,
    /// The environment; `None` on a container an earlier agent started, which named none.
    pub(crate) environment: Option<String>,
    pub(crate) release: Option<i64>,
    /// The loopback port the service's traffic reaches it on.
    pub(crate) port: Option<u16>,
    /// The compose service, for a member of a stack.
    pub(crate) component: Option<String>,
    /// Its place in its stack's start order.
    pub(crate) order: Option<u32>,
}

/// Reads Wharf's labels off a container's; `None` for a container that has no service label,
/// which is none of Wharf's.
pub(crate) fn read_container_labels(labels: &BTreeMap<String, String>) -> Option<ContainerLabels> {
    Some(ContainerLabels {
        service: labels.get(label::SERVICE)?.clone(),
        environment: labels.get(label::ENVIRONMENT).cloned(),
        release: labels.get(label::RELEASE).and_then(|id| id.parse().ok()),
        port: labels.get(label::PORT).and_then(|port| port.parse().ok()),
        component: labels.get(label::COMPONENT).cloned(),
        order: labels
            .get(label::ORDER)
            .and_then(|order| order.parse().ok()),
    })
}

/// Where one identity's compose stack keeps its network and named volumes on this host.
///
/// They are the identity's own names, except where an earlier agent (which named a stack's
/// network and volumes by service alone) left a stack that still runs: a network or volume of
/// the earlier name is taken over, keeping its name and its data, when a container of this
/// very identity uses it. One that no container of the identity uses could be another
/// environment's, so it is left alone (and reported by the caller).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StackNames {
    identity: DeployIdentity,
    agent: String,
    /// The network the stack's members join.
    pub(crate) network: String,
    /// The named volumes the identity's containers mount now.
    in_use: BTreeSet<String>,
}

impl StackNames {
    /// The names for `identity`'s stack run by `agent`, given what the identity's containers on
    /// the host (of any release) are attached to and mount.
    pub(crate) fn new<'a>(
        identity: &DeployIdentity,
        agent: &str,
        networks: impl IntoIterator<Item = &'a str>,
        volumes: impl IntoIterator<Item = &'a str>,
    ) -> StackNames {
        let legacy_network = identity.legacy_network_name(agent);
        let network = if networks.into_iter().any(|name| name == legacy_network) {
            legacy_network
        } else {
            identity.network_name(agent)
        };
        StackNames {
            identity: identity.clone(),
            agent: agent.to_owned(),
            network,
            in_use: volumes.into_iter().map(str::to_owned).collect(),
        }
    }

    /// The volume the compose file's named volume `volume` is on this host.
    pub(crate) fn volume(&self, volume: &str) -> String {
        let legacy = self.legacy_volume(volume);
        if self.in_use.contains(&legacy) {
            legacy
        } else {
            self.identity.volume_name(&self.agent, volume)
        }
    }

    /// The name an earlier agent gave the compose file's named volume `volume`.
    pub(crate) fn legacy_volume(&self, volume: &str) -> String {
        self.identity.legacy_volume_name(&self.agent, volume)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pushed_image_is_tagged_by_its_digest_in_its_own_repository() {
        let digest = format!("sha256:{}", "ab".repeat(32));
        let tag = format!(
            "127.0.0.1:5000/default/web:wharf-pushed-{}",
            "ab".repeat(32)
        );
        assert_eq!(
            pushed_tag("127.0.0.1:5000/default/web:0123abc", &digest).as_deref(),
            Some(tag.as_str())
        );
        assert_eq!(
            pushed_tag_of(&format!("127.0.0.1:5000/default/web@{digest}")).as_deref(),
            Some(tag.as_str())
        );
        assert_eq!(pushed_tag("r/web:1", "sha512:00"), None);
        assert_eq!(pushed_tag("r/web:1", "sha256:zz"), None);
        assert_eq!(pushed_tag_of("r/web:1"), None);
        assert!(is_pushed_tag(&tag));
        assert!(!is_pushed_tag("127.0.0.1:5000/default/web:0123abc"));
        assert!(!is_pushed_tag(&format!(
            "127.0.0.1:5000/default/web@{digest}"
        )));
    }

    fn pairs(labels: &Labels) -> Vec<String> {
        labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect()
    }

    fn web() -> DeployIdentity {
        DeployIdentity::new("web", "production").unwrap()
    }

    #[test]
    fn labels_say_whose_a_thing_is() {
        assert_eq!(
            pairs(&image_labels("default", "web", "c0ffee", 12, None)),
            [
                "wharf.service=web",
                "wharf.project=default",
                "wharf.commit=c0ffee",
                "wharf.build=12",
            ]
        );
        assert_eq!(
            pairs(&image_labels("default", "stack", "c0ffee", 12, Some("db")))[4],
            "wharf.component=db"
        );
        assert_eq!(
            pairs(&replica_labels(&web(), "a1", 3, 1, Some(4100))),
            [
                "wharf.deploy.agent=a1",
                "wharf.deploy.service=web",
                "wharf.deploy.environment=production",
                "wharf.deploy.release=3",
                "wharf.deploy.replica=1",
                "wharf.deploy.port=4100",
            ]
        );
        assert_eq!(
            pairs(&member_labels(&web(), "a1", 4, "db", 0, None)),
            [
                "wharf.deploy.agent=a1",
                "wharf.deploy.service=web",
                "wharf.deploy.environment=production",
                "wharf.deploy.release=4",
                "wharf.deploy.component=db",
                "wharf.deploy.order=0",
            ]
        );
        assert_eq!(
            pairs(&resource_labels(&web(), "a1")),
            [
                "wharf.deploy.agent=a1",
                "wharf.deploy.service=web",
                "wharf.deploy.environment=production"
            ]
        );
    }

    fn read(labels: Labels) -> Option<ContainerLabels> {
        read_container_labels(&labels.into_iter().collect())
    }

    #[test]
    fn a_containers_labels_read_back_as_written() {
        assert_eq!(
            read(replica_labels(&web(), "a1", 3, 0, Some(4100))),
            Some(ContainerLabels {
                service: "web".to_owned(),
                environment: Some("production".to_owned()),
                release: Some(3),
                port: Some(4100),
                component: None,
                order: None,
            })
        );
        assert_eq!(
            read(member_labels(&web(), "a1", 4, "db", 0, None)),
            Some(ContainerLabels {
                service: "web".to_owned(),
                environment: Some("production".to_owned()),
                release: Some(4),
                port: None,
                component: Some("db".to_owned()),
                order: Some(0),
            })
        );
        let other = vec![("other".to_owned(), "label".to_owned())];
        assert_eq!(read(other), None);
        // An earlier agent's container: no environment label.
        let earlier = vec![
            (label::SERVICE.to_owned(), "web".to_owned()),
            (label::RELEASE.to_owned(), "three".to_owned()),
        ];
        let earlier = read(earlier).unwrap();
        assert_eq!(earlier.release, None);
        assert_eq!(earlier.environment, None);
    }

    #[test]
    fn a_stack_takes_over_only_what_its_own_containers_use() {
        let identity = web();
        // Nothing of an earlier agent's runs: the identity's own names.
        let fresh = StackNames::new(&identity, "a1", [], []);
        assert_eq!(fresh.network, "wharf.a1.web.production");
        assert_eq!(fresh.volume("data"), "wharf.a1.web.production.data");

        // A container of the identity still on the earlier network and volume: both are taken
        // over under their names; a volume it does not mount gets the new name.
        let taken = StackNames::new(
            &identity,
            "a1",
            ["wharf-a1-web", "podman"],
            ["wharf-a1-web-data"],
        );
        assert_eq!(taken.network, "wharf-a1-web");
        assert_eq!(taken.volume("data"), "wharf-a1-web-data");
        assert_eq!(taken.volume("cache"), "wharf.a1.web.production.cache");
        assert_eq!(taken.legacy_volume("cache"), "wharf-a1-web-cache");

        // The earlier name `wharf-a1-api-worker-db` was both `api`'s volume `worker-db` and
        // `api-worker`'s volume `db`: whichever service's containers mount it keeps it, the
        // other gets a volume of its own.
        let api = DeployIdentity::new("api", "production").unwrap();
        let api_worker = DeployIdentity::new("api-worker", "production").unwrap();
        let mounted = StackNames::new(&api, "a1", [], ["wharf-a1-api-worker-db"]);
        assert_eq!(mounted.volume("worker-db"), "wharf-a1-api-worker-db");
        let other = StackNames::new(&api_worker, "a1", [], []);
        assert_eq!(other.volume("db"), "wharf.a1.api-worker.production.db");
    }
}
