//! API values as a server answers them, for the unit tests of what the CLI sends and prints.

use wharf_wire::{
    Agent, Build, BuildNetwork, BuildState, BuildTrigger, DeploySettings, EnvVar, HealthSettings,
    Release, ReleaseState, ReleaseTrigger, Service, VariableMembers,
};

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
        build_network: BuildNetwork::Isolated,
        deploy: DeploySettings {
            hosts: vec!["edge-a".to_owned()],
            health: HealthSettings {
                retries: 3,
                ..HealthSettings::default()
            },
            ..DeploySettings::default()
        },
        repository_id: Some(4242),
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
        build_network: BuildNetwork::Open,
        deploy: DeploySettings {
            auto_deploy: false,
            ..DeploySettings::default()
        },
        repository_id: Some(4242),
        created_at: "2025-03-02T09:00:00Z".to_owned(),
    }
}

/// Build #7 of `web`: a push, completed on its first attempt.
pub(super) fn build() -> Build {
    Build {
        id: 7,
        service: "web".to_owned(),
        service_id: 1,
        environment: "production".to_owned(),
        commit_sha: "0123456789abcdef0123456789abcdef01234567".to_owned(),
        branch: Some("main".to_owned()),
        trigger: BuildTrigger::Push,
        state: BuildState::Completed,
        reason: None,
        attempt: 1,
        max_attempts: 3,
        agent: Some("edge-a".to_owned()),
        delivery_id: Some("d-1".to_owned()),
        retry_of: None,
        installation_id: None,
        created_at: "2025-03-01T10:00:00Z".to_owned(),
        updated_at: "2025-03-01T10:02:00Z".to_owned(),
        claimed_at: Some("2025-03-01T10:00:01Z".to_owned()),
        finished_at: Some("2025-03-01T10:02:00Z".to_owned()),
        image: Some("registry.example.com/shop/web:0123456789ab".to_owned()),
        digest: Some("sha256:5e1f".to_owned()),
        failure: None,
        log_truncated: false,
        images: Vec::new(),
        compose_file: None,
        lease_expires_at: None,
        deadline_at: None,
    }
}

/// Build #8 of `web`: a retry of #7 that failed and is held by no agent.
pub(super) fn failed_build() -> Build {
    Build {
        id: 8,
        commit_sha: "fedcba9876543210fedcba9876543210fedcba98".to_owned(),
        branch: None,
        trigger: BuildTrigger::Retry,
        state: BuildState::Failed,
        reason: Some(format!("the build step failed: {}", "x".repeat(70))),
        attempt: 3,
        agent: None,
        retry_of: Some(7),
        claimed_at: None,
        finished_at: None,
        ..build()
    }
}

/// Release #3 of `web`, from build #7, live.
pub(super) fn release() -> Release {
    Release {
        id: 3,
        service: "web".to_owned(),
        service_id: 1,
        environment: "production".to_owned(),
        build_id: Some(7),
        image: "registry.example.com/shop/web@sha256:5e1f".to_owned(),
        trigger: ReleaseTrigger::Build,
        state: ReleaseState::Live,
        reason: None,
        rollback_of: None,
        created_at: "2025-03-01T10:02:01Z".to_owned(),
        updated_at: "2025-03-01T10:02:30Z".to_owned(),
        finished_at: Some("2025-03-01T10:02:30Z".to_owned()),
        rollouts: Vec::new(),
    }
}

/// Release #4 of `web`: an image deployed by hand, rolled back.
pub(super) fn rolled_back_release() -> Release {
    Release {
        id: 4,
        build_id: None,
        image: "registry.example.com/shop/web:hotfix".to_owned(),
        trigger: ReleaseTrigger::Manual,
        state: ReleaseState::RolledBack,
        reason: Some("unhealthy: GET /healthz answered 503".to_owned()),
        ..release()
    }
}

/// `edge-a`, seen, with a token for any service, and `edge-b`, issued a token for the project
/// `shop` and the service `blog` that deploys on `label:eu`, never seen, then revoked.
pub(super) fn agents() -> Vec<Agent> {
    vec![
        Agent {
            id: 1,
            name: "edge-a".to_owned(),
            labels: vec!["build".to_owned(), "deploy".to_owned()],
            allowed_labels: vec!["build".to_owned(), "deploy".to_owned()],
            projects: Vec::new(),
            services: Vec::new(),
            version: Some("0.1.0".to_owned()),
            hostname: Some("edge-a.internal".to_owned()),
            created_at: "2025-03-01T08:00:00Z".to_owned(),
            last_seen_at: Some("2025-03-01T10:05:00Z".to_owned()),
            revoked_at: None,
        },
        Agent {
            id: 2,
            name: "edge-b".to_owned(),
            labels: Vec::new(),
            allowed_labels: vec!["deploy".to_owned(), "eu".to_owned()],
            projects: vec!["shop".to_owned()],
            services: vec!["blog".to_owned()],
            version: None,
            hostname: None,
            created_at: "2025-03-01T08:30:00Z".to_owned(),
            last_seen_at: None,
            revoked_at: Some("2025-03-01T11:00:00Z".to_owned()),
        },
    ]
}

/// A plain variable given to builds too, and a secret one whose value the server never shows.
pub(super) fn variables() -> Vec<EnvVar> {
    vec![
        EnvVar {
            name: "LOG_LEVEL".to_owned(),
            value: Some("debug".to_owned()),
            secret: false,
            build: true,
            members: VariableMembers::All,
            preview: false,
            updated_at: "2025-03-01T09:10:00Z".to_owned(),
        },
        EnvVar {
            name: "DATABASE_URL".to_owned(),
            value: None,
            secret: true,
            build: false,
            members: VariableMembers::Named(vec!["web".to_owned(), "migrate".to_owned()]),
            preview: false,
            updated_at: "2025-03-01T09:11:00Z".to_owned(),
        },
        EnvVar {
            name: "SESSION_KEY".to_owned(),
            value: None,
            secret: true,
            build: false,
            members: VariableMembers::Routed,
            preview: false,
            updated_at: "2025-03-01T09:12:00Z".to_owned(),
        },
        EnvVar {
            name: "SESSION_KEY".to_owned(),
            value: None,
            secret: true,
            build: false,
            members: VariableMembers::Routed,
            preview: true,
            updated_at: "2025-03-01T09:13:00Z".to_owned(),
        },
    ]
}
