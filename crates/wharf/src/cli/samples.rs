//! API values as a server answers them, for the unit tests of what the CLI sends and prints.

use wharf_wire::{DeploySettings, HealthSettings, Service};

/// `web` of project `shop`: a Dockerfile service with a port, a domain and one host.
pub(super) fn service() -> Service {
    Service {
        id: 1,
        name: "web".to_owned(),
        project: "shop".to_owned(),
        repo: "acme/web".to_owned(),
        branch: "main".to_owned(),
        dockerfile: Some("docker/Dockerfile".to_owned()),
        context: Some("docker".to_owned()),
        compose: None,
        port: Some(8080),
        health_path: Some("/healthz".to_owned()),
        domain: Some("web.example.com".to_owned()),
        cancel_running: false,
        deploy: DeploySettings {
            hosts: vec!["edge-a".to_owned()],
            health: HealthSettings {
                retries: 3,
                ..HealthSettings::default()
            },
            ..DeploySettings::default()
        },
        created_at: "2025-03-01T09:00:00Z".to_owned(),
    }
}

/// `worker`: a compose service of the default project, with no port and no domain.
pub(super) fn compose_service() -> Service {
    Service {
        id: 2,
        name: "worker".to_owned(),
        project: "default".to_owned(),
        repo: "https://git.example.com/acme/worker".to_owned(),
        branch: "release".to_owned(),
        dockerfile: None,
        context: None,
        compose: Some("compose.yml".to_owned()),
        port: None,
        health_path: None,
        domain: None,
        cancel_running: true,
        deploy: DeploySettings {
            auto_deploy: false,
            ..DeploySettings::default()
        },
        created_at: "2025-03-02T09:00:00Z".to_owned(),
    }
}
