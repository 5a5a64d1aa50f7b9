//! Every name the agent gives things on a host, in one place: the labels on the images it
//! builds and on the containers, networks and volumes it runs, the names of those containers,
//! networks and volumes, and the ids of the edge's routes. Labels are the agent's only memory
//! of what it runs (a restarted agent finds its containers by them), so whatever writes or
//! reads one goes through here.

/// The agent that runs a container, network or volume.
pub(crate) const LABEL_AGENT: &str = "wharf.deploy.agent";
/// The service a container, network or volume belongs to.
pub(crate) const LABEL_SERVICE: &str = "wharf.deploy.service";
/// The release a container runs.
pub(crate) const LABEL_RELEASE: &str = "wharf.deploy.release";
/// Which of a release's replicas a container is.
pub(crate) const LABEL_REPLICA: &str = "wharf.deploy.replica";
/// The loopback port a container's service port is published on, where the edge sends traffic.
pub(crate) const LABEL_PORT: &str = "wharf.deploy.port";
/// The compose service a container of a stack runs.
pub(crate) const LABEL_COMPONENT: &str = "wharf.deploy.component";
/// A stack member's place in the start order (0 first), so a stack stopped for a new one
/// starts again in order.
pub(crate) const LABEL_ORDER: &str = "wharf.deploy.order";

/// The service an image was built for; cleanup selects a service's old images by it.
pub(crate) const IMAGE_LABEL_SERVICE: &str = "wharf.service";
/// The project of the service an image was built for.
pub(crate) const IMAGE_LABEL_PROJECT: &str = "wharf.project";
/// The commit an image was built from.
pub(crate) const IMAGE_LABEL_COMMIT: &str = "wharf.commit";
/// The build that made an image.
pub(crate) const IMAGE_LABEL_BUILD: &str = "wharf.build";
/// The compose service an image of a compose build is for.
pub(crate) const IMAGE_LABEL_COMPONENT: &str = "wharf.component";

use std::collections::BTreeMap;

/// Labels as the engine takes them.
pub(crate) type Labels = Vec<(String, String)>;

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
        (IMAGE_LABEL_SERVICE.to_owned(), service.to_owned()),
        (IMAGE_LABEL_PROJECT.to_owned(), project.to_owned()),
        (IMAGE_LABEL_COMMIT.to_owned(), commit.to_owned()),
        (IMAGE_LABEL_BUILD.to_owned(), build.to_string()),
    ];
    if let Some(component) = component {
        labels.push((IMAGE_LABEL_COMPONENT.to_owned(), component.to_owned()));
    }
    labels
}

/// The labels of replica `replica` of `service`'s release `release`, run by `agent`, with
/// the loopback port it is published on.
pub(crate) fn replica_labels(
    agent: &str,
    service: &str,
    release: i64,
    replica: u32,
    port: Option<u16>,
) -> Labels {
    let mut labels = release_labels(agent, service, release);
    labels.push((LABEL_REPLICA.to_owned(), replica.to_string()));
    with_port(labels, port)
}

/// The labels of the container of compose service `member`, `order`th in its stack's start
/// order, in `service`'s release `release`, run by `agent`, with the port the service's
/// traffic reaches it on.
pub(crate) fn member_labels(
    agent: &str,
    service: &str,
    release: i64,
    member: &str,
    order: usize,
    port: Option<u16>,
) -> Labels {
    let mut labels = release_labels(agent, service, release);
    labels.push((LABEL_COMPONENT.to_owned(), member.to_owned()));
    labels.push((LABEL_ORDER.to_owned(), order.to_string()));
    with_port(labels, port)
}

/// The labels of a network or volume of `service`'s stack, run by `agent`.
pub(crate) fn resource_labels(agent: &str, service: &str) -> Labels {
    vec![
        (LABEL_AGENT.to_owned(), agent.to_owned()),
        (LABEL_SERVICE.to_owned(), service.to_owned()),
    ]
}

fn release_labels(agent: &str, service: &str, release: i64) -> Labels {
    let mut labels = resource_labels(agent, service);
    labels.push((LABEL_RELEASE.to_owned(), release.to_string()));
    labels
}

fn with_port(mut labels: Labels, port: Option<u16>) -> Labels {
    if let Some(port) = port {
        labels.push((LABEL_PORT.to_owned(), port.to_string()));
    }
    labels
}

/// What Wharf's labels on a container say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContainerLabels {
    pub(crate) service: String,
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
        service: labels.get(LABEL_SERVICE)?.clone(),
        release: labels.get(LABEL_RELEASE).and_then(|id| id.parse().ok()),
        port: labels.get(LABEL_PORT).and_then(|port| port.parse().ok()),
        component: labels.get(LABEL_COMPONENT).cloned(),
        order: labels.get(LABEL_ORDER).and_then(|order| order.parse().ok()),
    })
}

/// The container of replica `replica` of `service`'s release `release`, run by `agent`.
pub(crate) fn replica_container(agent: &str, service: &str, release: i64, replica: u32) -> String {
    format!("wharf-{agent}-{service}-r{release}-{replica}")
}

/// The container of compose service `member` in `service`'s release `release`, run by `agent`.
pub(crate) fn member_container(agent: &str, service: &str, release: i64, member: &str) -> String {
    format!("wharf-{agent}-{service}-r{release}-{member}")
}

/// The network of `service`'s stack on `agent`'s host. It outlives releases, so the old and
/// the new stack are on the same one.
pub(crate) fn stack_network(agent: &str, service: &str) -> String {
    format!("wharf-{agent}-{service}")
}

/// The named volume `volume` of `service`'s stack: it keeps its data from release to release.
/// The agent's name keeps two agents on one host (and their tests) apart, as it does for
/// containers.
pub(crate) fn stack_volume(agent: &str, service: &str, volume: &str) -> String {
    format!("wharf-{agent}-{service}-{volume}")
}

/// The edge route of `service`.
pub(crate) fn route_id(service: &str) -> String {
    format!("wharf-{service}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(labels: &Labels) -> Vec<String> {
        labels
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect()
    }

    #[test]
    fn names_carry_the_agent_service_release_and_member() {
        assert_eq!(replica_container("a1", "web", 7, 0), "wharf-a1-web-r7-0");
        assert_eq!(
            member_container("a1", "stack", 7, "web"),
            "wharf-a1-stack-r7-web"
        );
        assert_eq!(stack_network("a1", "stack"), "wharf-a1-stack");
        assert_eq!(
            stack_volume("a1", "stack", "pgdata"),
            "wharf-a1-stack-pgdata"
        );
        assert_eq!(route_id("web"), "wharf-web");
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
            pairs(&replica_labels("a1", "web", 3, 1, Some(4100))),
            [
                "wharf.deploy.agent=a1",
                "wharf.deploy.service=web",
                "wharf.deploy.release=3",
                "wharf.deploy.replica=1",
                "wharf.deploy.port=4100",
            ]
        );
        assert_eq!(
            pairs(&member_labels("a1", "stack", 4, "db", 0, None)),
            [
                "wharf.deploy.agent=a1",
                "wharf.deploy.service=stack",
                "wharf.deploy.release=4",
                "wharf.deploy.component=db",
                "wharf.deploy.order=0",
            ]
        );
        assert_eq!(
            pairs(&resource_labels("a1", "stack")),
            ["wharf.deploy.agent=a1", "wharf.deploy.service=stack"]
        );
    }

    fn read(labels: Labels) -> Option<ContainerLabels> {
        read_container_labels(&labels.into_iter().collect())
    }

    #[test]
    fn a_containers_labels_read_back_as_written() {
        assert_eq!(
            read(replica_labels("a1", "web", 3, 0, Some(4100))),
            Some(ContainerLabels {
                service: "web".to_owned(),
                release: Some(3),
                port: Some(4100),
                component: None,
                order: None,
            })
        );
        assert_eq!(
            read(member_labels("a1", "stack", 4, "db", 0, None)),
            Some(ContainerLabels {
                service: "stack".to_owned(),
                release: Some(4),
                port: None,
                component: Some("db".to_owned()),
                order: Some(0),
            })
        );
        let other = vec![("other".to_owned(), "label".to_owned())];
        assert_eq!(read(other), None);
        let unreadable = vec![
            (LABEL_SERVICE.to_owned(), "web".to_owned()),
            (LABEL_RELEASE.to_owned(), "three".to_owned()),
        ];
        assert_eq!(read(unreadable).unwrap().release, None);
    }
}
