//! Compose releases with real parts: Wharf builds each compose service's image from a pushed
//! repository, and the agent runs the stack with Podman behind a real Caddy. Members reach
//! each other by name; a member that fails its health check rolls the whole stack back; a
//! compose file that asks for the host is refused unless the service allows it.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use wharf_domain::identity::{DeployIdentity, labels};

use crate::helpers::{Options, TestApp, push_payload, spawn_app_with};
use crate::parts::{
    DeployAgent, Registry, busybox, podman, start_deploy_agent, start_deploy_agent_with_token,
};

const DEADLINE: Duration = Duration::from_secs(240);

/// A server with the GitHub stand-in holding `acme/{repo}`.
async fn app_with_repository_and(repo: &str, options: Options) -> TestApp {
    let app = spawn_app_with(Options {
        github: true,
        ..options
    })
    .await;
    let github = app.github.as_ref().unwrap();
    github.add_installation(42, "acme");
    let full_name = format!("acme/{repo}");
    github.add_repository(42, &full_name).unwrap();
    app.announce_installation(&[&full_name]).await;
    app
}

/// Creates a compose service of `acme/{repo}` deployed to `agent` with quick health settings;
/// `extra` goes into `deploy` and over the service's fields. Failed probes count only after a
/// start period: `web` fetches its page from `worker` before it listens, which takes longer
/// than five 100 ms probes on a loaded machine.
async fn create_stack_service(app: &TestApp, name: &str, repo: &str, agent: &str, extra: Value) {
    let mut service = json!({
        "name": name, "repo": format!("acme/{repo}"), "branch": "main", "compose": "compose.yml",
        "deploy": {
            "hosts": [agent],
            "health": {
                "interval_ms": 100, "timeout_ms": 1000, "deadline_ms": 60000, "retries": 5,
                "start_period_ms": 5000
            }
        }
    });
    if let Some(extra) = extra.as_object() {
        for (key, value) in extra {
            match key.as_str() {
                "deploy" => {
                    for (key, value) in value.as_object().unwrap() {
                        service["deploy"][key] = value.clone();
                    }
                }
                _ => service[key] = value.clone(),
            }
        }
    }
    let answer = app.post("/v1/services", service).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
}

/// Commits `files` to `acme/{repo}` and delivers the push; returns the builds it queued.
async fn push(app: &TestApp, repo: &str, files: &[(String, Vec<u8>)], delivery: &str) -> Vec<i64> {
    let github = app.github.as_ref().unwrap();
    let full_name = format!("acme/{repo}");
    let files: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(path, contents)| (path.as_str(), contents.as_slice()))
        .collect();
    let commit = github
        .commit_files(&full_name, "main", &files, delivery)
        .unwrap();
    let mut payload: Value =
        serde_json::from_slice(&push_payload(&full_name, "refs/heads/main", &commit)).unwrap();
    payload["installation"]["id"] = json!(42);
    let answer = app
        .webhook("push", delivery, payload.to_string().as_bytes())
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    answer.body["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect()
}

/// Waits until the release of build `build` is settled, and returns it.
async fn wait_for_release_of(app: &TestApp, service: &str, build: i64) -> Value {
    let started = tokio::time::Instant::now();
    loop {
        let answer = app.get(&format!("/v1/services/{service}/releases")).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        let release = answer
            .body
            .as_array()
            .unwrap()
            .iter()
            .find(|release| release["build_id"] == build)
            .cloned();
        if let Some(release) = &release
            && !["pending", "pulling", "starting", "health_checking"]
                .contains(&release["state"].as_str().unwrap())
        {
            return release.clone();
        }
        if started.elapsed() >= DEADLINE {
            panic!(
                "the release of build #{build} did not settle: {release:?}; the build: {}",
                app.build(build).await
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn release(app: &TestApp, id: &Value) -> Value {
    let answer = app.get(&format!("/v1/releases/{id}")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.body
}

/// A stack of two members, each built by Wharf: `worker` serves `worker_page` on port 9000
/// and is healthy when `/{checked}` answers; `web` (port 8080, declared by EXPOSE) starts after
/// it, fetches that page from `worker` by name over the stack's network, and serves it.
fn stack_files(worker_page: &str, checked: &str) -> Vec<(String, Vec<u8>)> {
    let compose = format!(
        r#"services:
  web:
    build: ./web
    depends_on:
      worker:
        condition: service_healthy
    command:
      - /bin/busybox
      - sh
      - -c
      - >-
        for try in 1 2 3 4 5 6 7 8 9 10; do
        /bin/busybox wget -q -O /www/index.html http://worker:9000/index.html && break;
        /bin/busybox sleep 0.5; done;
        exec /bin/busybox httpd -f -p 8080 -h /www
  worker:
    build:
      context: ./worker
    command: ["/bin/busybox", "httpd", "-f", "-p", "9000", "-h", "/www"]
    volumes:
      - cache:/cache
    healthcheck:
      test: ["CMD", "/bin/busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:9000/{checked}"]
      interval: 200ms
      timeout: 2s
      retries: 3
volumes:
  cache:
"#
    );
    let dockerfile = |expose: &str| {
        format!("FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nCOPY www /www\n{expose}")
            .into_bytes()
    };
    vec![
        ("compose.yml".to_owned(), compose.into_bytes()),
        ("web/Dockerfile".to_owned(), dockerfile("EXPOSE 8080\n")),
        ("web/busybox".to_owned(), busybox()),
        ("web/www/about.txt".to_owned(), b"web\n".to_vec()),
        ("worker/Dockerfile".to_owned(), dockerfile("")),
        ("worker/busybox".to_owned(), busybox()),
        (
            "worker/www/index.html".to_owned(),
            format!("{worker_page}\n").into_bytes(),
        ),
    ]
}

/// What the edge answers for `host`.
async fn through_edge(edge: &str, host: &str) -> Result<String, String> {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    match client
        .get(format!("http://{edge}/"))
        .header("host", host)
        .timeout(Duration::from_secs(5))
        .send()
        .await
    {
        Ok(response) if response.status() == StatusCode::OK => {
            Ok(response.text().await.unwrap_or_default().trim().to_owned())
        }
        Ok(response) => Err(format!("HTTP {}", response.status())),
        Err(error) => Err(error.to_string()),
    }
}

async fn wait_for_answer(agent: &DeployAgent, host: &str, body: &str) {
    let started = tokio::time::Instant::now();
    loop {
        let answer = through_edge(&agent.edge_listen, host).await;
        if answer.as_deref() == Ok(body) {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the edge answers {answer:?} for {host}, not {body:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The containers of `service` on agent `agent`: (id, compose service, release, running),
/// sorted by compose service and release.
async fn stack_containers(agent: &str, service: &str) -> Vec<(String, String, String, bool)> {
    let (listed, out, err) = podman(&[
        "ps",
        "--all",
        "--no-trunc",
        "--filter",
        &format!("label=wharf.deploy.agent={agent}"),
        "--filter",
        &format!("label=wharf.deploy.service={service}"),
        "--format",
        "{{.ID}} {{index .Labels \"wharf.deploy.component\"}} {{index .Labels \"wharf.deploy.release\"}} {{.State}}",
    ])
    .await;
    assert!(listed, "{err}");
    let mut containers: Vec<(String, String, String, bool)> = out
        .lines()
        .filter_map(|line| {
            let mut fields = line.split(' ');
            Some((
                fields.next()?.to_owned(),
                fields.next()?.to_owned(),
                fields.next()?.to_owned(),
                // Podman 4 shows a running container's state as "Up …", others as "running".
                matches!(fields.next()?, "Up" | "running"),
            ))
        })
        .collect();
    containers.sort_by(|a, b| (&a.1, &a.2).cmp(&(&b.1, &b.2)));
    containers
}

/// Waits until the service's containers are exactly `web` and `worker` of `release`, running.
async fn wait_for_stack(
    agent: &str,
    service: &str,
    release: &Value,
) -> Vec<(String, String, String, bool)> {
    wait_for_members(agent, service, release, &["web", "worker"]).await
}

/// Waits until the service's containers are exactly `members` (sorted) of `release`, running.
async fn wait_for_members(
    agent: &str,
    service: &str,
    release: &Value,
    members: &[&str],
) -> Vec<(String, String, String, bool)> {
    let release = release.to_string();
    let expected: Vec<(&str, &str, bool)> = members
        .iter()
        .map(|member| (*member, release.as_str(), true))
        .collect();
    let started = tokio::time::Instant::now();
    loop {
        let containers = stack_containers(agent, service).await;
        let shape: Vec<(&str, &str, bool)> = containers
            .iter()
            .map(|(_, member, release, running)| (member.as_str(), release.as_str(), *running))
            .collect();
        if shape == expected {
            return containers;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "containers of {service}: {containers:?}, expected {members:?} of release {release}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_compose_stack_goes_live_by_host_name_and_is_adopted_after_an_agent_restart() {
    let agent_name = format!("cmp-live-{:x}", rand::random::<u16>());
    let service = "stack-live";
    let registry = Registry::start().await;
    let app = app_with_repository_and("stack", registry.options()).await;
    create_stack_service(
        &app,
        service,
        "stack",
        &agent_name,
        json!({"port": 8080, "domain": "stack-live.test"}),
    )
    .await;
    let token = app.create_agent(&agent_name).await;
    let agent = start_deploy_agent_with_token(&app, &agent_name, token.clone()).await;

    let builds = push(
        &app,
        "stack",
        &stack_files("from worker one", "index.html"),
        "push-1",
    )
    .await;
    let build = app
        .wait_for_build_state(builds[0], "completed", DEADLINE)
        .await;
    assert_eq!(build["images"].as_array().unwrap().len(), 2, "{build}");
    let live = wait_for_release_of(&app, service, builds[0]).await;
    assert_eq!(live["state"], "live", "{live}");
    let image = live["image"].as_str().unwrap();
    assert!(
        image.contains("web=") && image.contains("/default/stack-live/worker@sha256:"),
        "the release names each pinned image: {image}"
    );
    // The page comes from `worker`, fetched by `web` over the stack's network by name.
    wait_for_answer(&agent, "stack-live.test", "from worker one").await;
    let containers = wait_for_stack(&agent_name, service, &live["id"]).await;
    let probes = live["rollouts"][0]["probes"].as_array().unwrap();
    assert!(
        probes.iter().any(|probe| probe["detail"]
            .as_str()
            .unwrap()
            .starts_with("worker: HEALTHCHECK passed"))
            && probes.iter().any(|probe| probe["detail"]
                .as_str()
                .unwrap()
                .starts_with("web: GET / answered 200")),
        "each member was checked: {probes:?}"
    );
    let volume = DeployIdentity::new(service, "production")
        .unwrap()
        .volume_name(&agent_name, "cache");
    let (exists, _, _) = podman(&["volume", "exists", &volume]).await;
    assert!(exists, "the named volume {volume} is the service's");

    // A restarted agent adopts the running stack: the same containers, routed again (through
    // a Caddy on new ports: the test stopped the old agent's).
    agent.stop_keeping_containers().await;
    let agent = start_deploy_agent_with_token(&app, &agent_name, token).await;
    wait_for_answer(&agent, "stack-live.test", "from worker one").await;
    assert_eq!(
        wait_for_stack(&agent_name, service, &live["id"]).await,
        containers,
        "the running members were adopted, not started again"
    );
    agent.stop().await;
    let (exists, _, _) = podman(&["volume", "exists", &volume]).await;
    assert!(!exists, "the test cleaned up {volume}");
}

#[tokio::test]
async fn a_member_that_fails_its_health_check_rolls_the_whole_stack_back() {
    let agent_name = format!("cmp-sick-{:x}", rand::random::<u16>());
    let service = "stack-sick";
    let registry = Registry::start().await;
    let app = app_with_repository_and("sick", registry.options()).await;
    create_stack_service(
        &app,
        service,
        "sick",
        &agent_name,
        json!({"port": 8080, "domain": "stack-sick.test"}),
    )
    .await;
    let agent = start_deploy_agent(&app, &agent_name).await;

    let first = push(&app, "sick", &stack_files("steady", "index.html"), "push-1").await;
    let live = wait_for_release_of(&app, service, first[0]).await;
    assert_eq!(live["state"], "live", "{live}");
    wait_for_answer(&agent, "stack-sick.test", "steady").await;
    let before = wait_for_stack(&agent_name, service, &live["id"]).await;

    // The next version's worker checks a page it does not serve.
    let second = push(
        &app,
        "sick",
        &stack_files("changed", "missing.html"),
        "push-2",
    )
    .await;
    let rolled_back = wait_for_release_of(&app, service, second[0]).await;
    assert_eq!(rolled_back["state"], "rolled_back", "{rolled_back}");
    let reason = rolled_back["reason"].as_str().unwrap();
    assert!(
        reason.contains(r#"compose service "worker" did not become healthy"#),
        "the reason names the member: {reason}"
    );
    let rollout = &rolled_back["rollouts"][0];
    assert!(
        rollout["probes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|probe| probe["healthy"] == false
                && probe["detail"].as_str().unwrap().starts_with("worker: ")),
        "{rollout}"
    );
    // The previous members run again (the same containers, stopped and started), nothing of
    // the new release is left, and the edge answers the previous version.
    let after = wait_for_stack(&agent_name, service, &live["id"]).await;
    let ids = |containers: &[(String, String, String, bool)]| -> Vec<String> {
        containers.iter().map(|(id, ..)| id.clone()).collect()
    };
    assert_eq!(ids(&after), ids(&before));
    wait_for_answer(&agent, "stack-sick.test", "steady").await;
    assert_eq!(release(&app, &live["id"]).await["state"], "live");
    agent.stop().await;
}

#[tokio::test]
async fn a_compose_file_asking_for_privileged_mode_runs_only_where_the_service_allows_it() {
    let agent_name = format!("cmp-priv-{:x}", rand::random::<u16>());
    let registry = Registry::start().await;
    let app = app_with_repository_and("root", registry.options()).await;
    // Two services of one repository, one of which allows privileged mode.
    create_stack_service(&app, "root-refused", "root", &agent_name, json!({})).await;
    create_stack_service(
        &app,
        "root-allowed",
        "root",
        &agent_name,
        json!({"deploy": {"compose_allow": ["privileged"]}}),
    )
    .await;
    let agent = start_deploy_agent(&app, &agent_name).await;
    let compose = "services:\n  tool:\n    build: ./tool\n    privileged: true\n    command: [\"/bin/busybox\", \"sleep\", \"600\"]\n";
    let files = vec![
        ("compose.yml".to_owned(), compose.as_bytes().to_vec()),
        (
            "tool/Dockerfile".to_owned(),
            b"FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\n".to_vec(),
        ),
        ("tool/busybox".to_owned(), busybox()),
    ];
    let builds = push(&app, "root", &files, "push-1").await;
    assert_eq!(builds.len(), 2);
    let mut settled = Vec::new();
    for service in ["root-refused", "root-allowed"] {
        let mut build = None;
        for id in &builds {
            if app.build(*id).await["service"] == service {
                build = Some(*id);
            }
        }
        let build = build.expect("the push built both services");
        settled.push(wait_for_release_of(&app, service, build).await);
    }

    let refused = &settled[0];
    assert_eq!(refused["state"], "failed", "{refused}");
    assert_eq!(
        refused["reason"],
        r#"compose service "tool" asks for privileged mode; Wharf refuses it unless the service's deploy settings allow "privileged""#,
        "{refused}"
    );
    assert!(
        stack_containers(&agent_name, "root-refused")
            .await
            .is_empty(),
        "nothing started for the refused file"
    );
    let network = DeployIdentity::new("root-refused", "production")
        .unwrap()
        .network_name(&agent_name);
    let (exists, _, _) = podman(&["network", "exists", &network]).await;
    assert!(!exists, "no network was made for the refused file");

    let allowed = &settled[1];
    assert_eq!(allowed["state"], "live", "{allowed}");
    let containers = stack_containers(&agent_name, "root-allowed").await;
    assert_eq!(containers.len(), 1, "{containers:?}");
    let (_, privileged, _) = podman(&[
        "container",
        "inspect",
        "--format",
        "{{.HostConfig.Privileged}}",
        &containers[0].0,
    ])
    .await;
    assert_eq!(privileged.trim(), "true");
    agent.stop().await;
}

#[tokio::test]
async fn compose_ports_are_published_on_loopback_unless_the_service_allows_publish() {
    let agent_name = format!("cmp-ports-{:x}", rand::random::<u16>());
    let registry = Registry::start().await;
    let app = app_with_repository_and("ports", registry.options()).await;
    create_stack_service(&app, "ports-local", "ports", &agent_name, json!({})).await;
    create_stack_service(
        &app,
        "ports-public",
        "ports",
        &agent_name,
        json!({"deploy": {"compose_allow": ["publish"]}}),
    )
    .await;
    let agent = start_deploy_agent(&app, &agent_name).await;
    // "9000" publishes the container's port on a host port the engine picks, on every address
    // of the host as compose reads it.
    let compose = "services:\n  tool:\n    build: ./tool\n    ports: [\"9000\"]\n    command: [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"9000\"]\n";
    let files = vec![
        ("compose.yml".to_owned(), compose.as_bytes().to_vec()),
        (
            "tool/Dockerfile".to_owned(),
            b"FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\n".to_vec(),
        ),
        ("tool/busybox".to_owned(), busybox()),
    ];
    let builds = push(&app, "ports", &files, "push-1").await;
    assert_eq!(builds.len(), 2);
    for (service, address) in [("ports-local", "127.0.0.1"), ("ports-public", "0.0.0.0")] {
        let mut build = None;
        for id in &builds {
            if app.build(*id).await["service"] == service {
                build = Some(*id);
            }
        }
        let release = wait_for_release_of(&app, service, build.unwrap()).await;
        assert_eq!(release["state"], "live", "{release}");
        let containers = stack_containers(&agent_name, service).await;
        assert_eq!(containers.len(), 1, "{containers:?}");
        let (ported, published, err) = podman(&["port", &containers[0].0, "9000/tcp"]).await;
        assert!(ported, "{err}");
        let published: Vec<&str> = published.lines().filter(|line| !line.is_empty()).collect();
        assert_eq!(published.len(), 1, "{service}: {published:?}");
        assert!(
            published[0].starts_with(&format!("{address}:")),
            "{service} publishes on {published:?}, not on {address} only"
        );
    }
    agent.stop().await;
}

/// (name, destination) of each named volume container `id` mounts.
async fn mounted_volumes(id: &str) -> Vec<(String, String)> {
    let (inspected, out, err) = podman(&[
        "container",
        "inspect",
        "--format",
        "{{range .Mounts}}{{if eq .Type \"volume\"}}{{.Name}} {{.Destination}}\n{{end}}{{end}}",
        id,
    ])
    .await;
    assert!(inspected, "{err}");
    out.lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(name, destination)| (name.to_owned(), destination.to_owned()))
        .collect()
}

/// The networks container `id` is attached to.
async fn attached_networks(id: &str) -> Vec<String> {
    let (inspected, out, err) = podman(&[
        "container",
        "inspect",
        "--format",
        "{{range $name, $_ := .NetworkSettings.Networks}}{{$name}}\n{{end}}",
        id,
    ])
    .await;
    assert!(inspected, "{err}");
    out.lines()
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn services_whose_names_run_together_never_share_a_volume() {
    let agent_name = format!("cmp-vol-{:x}", rand::random::<u16>());
    let registry = Registry::start().await;
    let app = app_with_repository_and("vols", registry.options()).await;
    // `api` with the volume `worker-db` and `api-worker` with the volume `db`: Wharf's earlier
    // names gave both `wharf-{agent}-api-worker-db`.
    create_stack_service(
        &app,
        "api",
        "vols",
        &agent_name,
        json!({"compose": "api.yml"}),
    )
    .await;
    create_stack_service(
        &app,
        "api-worker",
        "vols",
        &agent_name,
        json!({"compose": "worker.yml"}),
    )
    .await;
    let agent = start_deploy_agent(&app, &agent_name).await;
    let stack = |volume: &str| {
        format!(
            "services:\n  tool:\n    build: ./tool\n    command: [\"/bin/busybox\", \"sleep\", \"600\"]\n    volumes:\n      - {volume}:/state\nvolumes:\n  {volume}:\n"
        )
        .into_bytes()
    };
    let files = vec![
        ("api.yml".to_owned(), stack("worker-db")),
        ("worker.yml".to_owned(), stack("db")),
        (
            "tool/Dockerfile".to_owned(),
            b"FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\n".to_vec(),
        ),
        ("tool/busybox".to_owned(), busybox()),
    ];
    let builds = push(&app, "vols", &files, "push-1").await;
    assert_eq!(builds.len(), 2);
    let mut mounted = Vec::new();
    for (service, volume) in [("api", "worker-db"), ("api-worker", "db")] {
        let mut build = None;
        for id in &builds {
            if app.build(*id).await["service"] == service {
                build = Some(*id);
            }
        }
        let live = wait_for_release_of(&app, service, build.unwrap()).await;
        assert_eq!(live["state"], "live", "{live}");
        let containers = wait_for_members(&agent_name, service, &live["id"], &["tool"]).await;
        let volumes = mounted_volumes(&containers[0].0).await;
        let expected = DeployIdentity::new(service, "production")
            .unwrap()
            .volume_name(&agent_name, volume);
        assert_eq!(volumes, [(expected, "/state".to_owned())]);
        mounted.push(volumes);
    }
    assert_ne!(
        mounted[0], mounted[1],
        "each service has a volume of its own"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_stack_an_earlier_agent_named_by_service_alone_is_taken_up_without_a_restart() {
    let agent_name = format!("cmp-old-{:x}", rand::random::<u16>());
    let service = "stack-old";
    let host = "stack-old.test";
    let registry = Registry::start().await;
    let app = app_with_repository_and("old", registry.options()).await;
    create_stack_service(
        &app,
        service,
        "old",
        &agent_name,
        json!({"port": 8080, "domain": host}),
    )
    .await;
    let token = app.create_agent(&agent_name).await;
    let agent = start_deploy_agent_with_token(&app, &agent_name, token.clone()).await;
    // `web` serves its volume; the image's page fills the volume when the volume is new.
    let files = |page: &str| {
        vec![
            (
                "compose.yml".to_owned(),
                b"services:\n  web:\n    build: ./web\n    command: [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/data\"]\n    volumes:\n      - data:/data\nvolumes:\n  data:\n".to_vec(),
            ),
            (
                "web/Dockerfile".to_owned(),
                b"FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nCOPY data /data\nEXPOSE 8080\n"
                    .to_vec(),
            ),
            ("web/busybox".to_owned(), busybox()),
            ("web/data/index.html".to_owned(), format!("{page}\n").into_bytes()),
        ]
    };
    let first = push(&app, "old", &files("one"), "push-1").await;
    let live = wait_for_release_of(&app, service, first[0]).await;
    assert_eq!(live["state"], "live", "{live}");
    wait_for_answer(&agent, host, "one").await;
    let release = live["id"].to_string();
    let current = wait_for_members(&agent_name, service, &live["id"], &["web"]).await;
    agent.stop_keeping_containers().await;

    // The same release as an earlier agent ran it: names and labels keyed by the service
    // alone, no environment label, and a volume whose page says it is the old one.
    let (inspected, out, err) = podman(&[
        "container",
        "inspect",
        "--format",
        "{{.ImageName}} {{index .Config.Labels \"wharf.deploy.port\"}}",
        &current[0].0,
    ])
    .await;
    assert!(inspected, "{err}");
    let (image, port) = out.trim().split_once(' ').unwrap();
    let (image, port) = (image.to_owned(), port.to_owned());
    let (removed, _, err) = podman(&["rm", "--force", "--time", "0", &current[0].0]).await;
    assert!(removed, "{err}");
    let identity = DeployIdentity::new(service, "production").unwrap();
    let (removed, _, err) =
        podman(&["volume", "rm", &identity.volume_name(&agent_name, "data")]).await;
    assert!(removed, "{err}");
    let (removed, _, err) = podman(&["network", "rm", &identity.network_name(&agent_name)]).await;
    assert!(removed, "{err}");
    let old_network = identity.legacy_network_name(&agent_name);
    let old_volume = identity.legacy_volume_name(&agent_name, "data");
    let resource_labels = [
        format!("{}={agent_name}", labels::AGENT),
        format!("{}={service}", labels::SERVICE),
    ];
    for (kind, name) in [("network", &old_network), ("volume", &old_volume)] {
        let (created, _, err) = podman(&[
            kind,
            "create",
            "--label",
            &resource_labels[0],
            "--label",
            &resource_labels[1],
            name,
        ])
        .await;
        assert!(created, "{err}");
    }
    let old_name = format!("wharf-{agent_name}-{service}-r{release}-web");
    let (ran, old_id, err) = podman(&[
        "run",
        "--detach",
        "--name",
        &old_name,
        "--label",
        &resource_labels[0],
        "--label",
        &resource_labels[1],
        "--label",
        &format!("{}={release}", labels::RELEASE),
        "--label",
        &format!("{}=web", labels::COMPONENT),
        "--label",
        &format!("{}=0", labels::ORDER),
        "--label",
        &format!("{}={port}", labels::PORT),
        "--network",
        &old_network,
        "--network-alias",
        "web",
        "--publish",
        &format!("127.0.0.1:{port}:8080"),
        "--volume",
        &format!("{old_volume}:/data"),
        &image,
        "/bin/busybox",
        "sh",
        "-c",
        "echo kept > /data/index.html && exec /bin/busybox httpd -f -p 8080 -h /data",
    ])
    .await;
    assert!(ran, "{err}");
    let old_id = old_id.trim().to_owned();

    // The new agent adopts the running container as it is, and routes to it.
    let agent = start_deploy_agent_with_token(&app, &agent_name, token).await;
    wait_for_answer(&agent, host, "kept").await;
    let adopted = wait_for_members(&agent_name, service, &live["id"], &["web"]).await;
    assert_eq!(
        adopted[0].0, old_id,
        "the running container was adopted, not started again"
    );

    // The next release takes the old stack's volume and network over, keeping their names:
    // the page the old volume holds is what the new version serves.
    let second = push(&app, "old", &files("two"), "push-2").await;
    let next = wait_for_release_of(&app, service, second[0]).await;
    assert_eq!(next["state"], "live", "{next}");
    let members = wait_for_members(&agent_name, service, &next["id"], &["web"]).await;
    wait_for_answer(&agent, host, "kept").await;
    assert_eq!(
        mounted_volumes(&members[0].0).await,
        [(old_volume.clone(), "/data".to_owned())]
    );
    assert_eq!(attached_networks(&members[0].0).await, [old_network]);
    let (exists, _, _) = podman(&[
        "volume",
        "exists",
        &identity.volume_name(&agent_name, "data"),
    ])
    .await;
    assert!(!exists, "no second volume was made beside the adopted one");
    agent.stop().await;
}

/// The names of the variables container `id` runs with.
async fn container_variables(id: &str) -> Vec<String> {
    let (inspected, out, err) = podman(&[
        "container",
        "inspect",
        "--format",
        "{{json .Config.Env}}",
        id,
    ])
    .await;
    assert!(inspected, "{err}");
    let variables: Vec<String> = serde_json::from_str(out.trim()).unwrap();
    variables
        .into_iter()
        .filter_map(|variable| variable.split_once('=').map(|(name, _)| name.to_owned()))
        .collect()
}

/// Sets a variable of `service` through the API and returns it as the API shows it.
async fn set_variable(app: &TestApp, service: &str, body: Value) -> Value {
    let answer = app.post(&format!("/v1/services/{service}/env"), body).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.body
}

#[tokio::test]
async fn a_secret_reaches_only_the_members_it_names() {
    let agent_name = format!("cmp-env-{:x}", rand::random::<u16>());
    let service = "stack-env";
    let registry = Registry::start().await;
    let app = app_with_repository_and("scoped", registry.options()).await;
    create_stack_service(
        &app,
        service,
        "scoped",
        &agent_name,
        json!({"port": 8080, "domain": "stack-env.test"}),
    )
    .await;

    // A secret as an earlier Wharf stored it, naming no members.
    set_variable(
        &app,
        service,
        json!({"name": "EARLIER_KEY", "value": "earlier-value", "secret": true}),
    )
    .await;
    wharf_store::testing::execute(
        &app.store,
        "UPDATE service_env SET members = NULL WHERE name = 'EARLIER_KEY'",
    )
    .await
    .unwrap();
    let web_token = set_variable(
        &app,
        service,
        json!({"name": "WEB_TOKEN", "value": "web-value", "secret": true, "members": ["web"]}),
    )
    .await;
    assert_eq!(web_token["members"], json!(["web"]));
    // Set again without members, it keeps them.
    let web_token = set_variable(
        &app,
        service,
        json!({"name": "WEB_TOKEN", "value": "web-value-2", "secret": true}),
    )
    .await;
    assert_eq!(web_token["members"], json!(["web"]));
    let routed = set_variable(
        &app,
        service,
        json!({"name": "SESSION_KEY", "value": "session-value", "secret": true}),
    )
    .await;
    assert_eq!(routed["members"], "routed", "a new variable's default");
    set_variable(
        &app,
        service,
        json!({"name": "QUEUE_NAME", "value": "jobs", "members": ["worker"]}),
    )
    .await;
    let listed = app.get(&format!("/v1/services/{service}/env")).await.body;
    let members: Vec<(&str, &Value)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|variable| (variable["name"].as_str().unwrap(), &variable["members"]))
        .collect();
    assert_eq!(
        members,
        [
            ("EARLIER_KEY", &json!("all")),
            ("QUEUE_NAME", &json!(["worker"])),
            ("SESSION_KEY", &json!("routed")),
            ("WEB_TOKEN", &json!(["web"])),
        ]
    );

    let agent = start_deploy_agent(&app, &agent_name).await;
    let builds = push(
        &app,
        "scoped",
        &stack_files("from worker", "index.html"),
        "push-1",
    )
    .await;
    let live = wait_for_release_of(&app, service, builds[0]).await;
    assert_eq!(live["state"], "live", "{live}");
    let containers = wait_for_stack(&agent_name, service, &live["id"]).await;
    let wharf_variables = |mut names: Vec<String>| {
        names.retain(|name| {
            ["EARLIER_KEY", "QUEUE_NAME", "SESSION_KEY", "WEB_TOKEN"].contains(&name.as_str())
        });
        names.sort();
        names
    };
    let web = wharf_variables(container_variables(&containers[0].0).await);
    let worker = wharf_variables(container_variables(&containers[1].0).await);
    assert_eq!(
        (containers[0].1.as_str(), containers[1].1.as_str()),
        ("web", "worker")
    );
    assert_eq!(
        web,
        ["EARLIER_KEY", "SESSION_KEY", "WEB_TOKEN"],
        "web, which takes the traffic, gets its own secrets and the earlier one"
    );
    assert_eq!(
        worker,
        ["EARLIER_KEY", "QUEUE_NAME"],
        "worker gets none of web's secrets"
    );
    agent.stop().await;
}

#[tokio::test]
async fn a_stack_without_a_port_needs_its_variables_members_named() {
    let app = app_with_repository_and("portless", Options::default()).await;
    create_stack_service(&app, "portless", "portless", "local", json!({})).await;
    let answer = app
        .post(
            "/v1/services/portless/env",
            json!({"name": "TOKEN", "value": "x", "secret": true}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text);
    assert!(answer.text.contains("--member"), "{}", answer.text);
    for members in [json!("all"), json!(["worker"])] {
        let answer = app
            .post(
                "/v1/services/portless/env",
                json!({"name": "TOKEN", "value": "x", "secret": true, "members": members}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    }
    for members in [
        json!([]),
        json!(["Not_A_Name"]),
        json!(["web", "web"]),
        json!("web"),
    ] {
        let answer = app
            .post(
                "/v1/services/portless/env",
                json!({"name": "TOKEN", "value": "x", "members": members}),
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{members}: {}",
            answer.text
        );
    }
}
