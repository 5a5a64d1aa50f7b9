//! Deploys with real parts: Podman, a real registry, a real Caddy started by the agent, and
//! the stand-in's git server. A push goes live by host name; an unhealthy version is rolled
//! back while the old one answers every request; a failed pull touches nothing; a killed agent
//! converges without duplicates; the CI hook answers by outcome.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use crate::helpers::{Options, TestApp, push_payload, spawn_app_with};
use crate::parts::{
    DeployAgent, RecordingRegistry, Registry, builder_config, busybox, free_port, podman,
    remove_agent_containers, start_deploy_agent, start_deploy_agent_with, stop_caddy,
};

const DEADLINE: Duration = Duration::from_secs(180);

/// A busybox web server whose `/` answers `body`; `healthy: false` serves nothing at `/`
/// (404), so the HTTP probe fails.
fn site_files(body: &str, healthy: bool) -> Vec<(String, Vec<u8>)> {
    slow_site_files(body, healthy, 0)
}

/// The site, serving only after `delay` seconds.
fn slow_site_files(body: &str, healthy: bool, delay: u32) -> Vec<(String, Vec<u8>)> {
    let serve = "/bin/busybox httpd -f -v -p 8080 -h /www";
    let command = if delay == 0 {
        serve
            .split(' ')
            .map(|word| format!("\"{word}\""))
            .collect::<Vec<_>>()
            .join(", ")
    } else {
        format!("\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox sleep {delay}; exec {serve}\"")
    };
    let mut files = vec![
        (
            "Dockerfile".to_owned(),
            format!(
                "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nCOPY www /www\nCMD [{command}]\n"
            )
            .into_bytes(),
        ),
        ("busybox".to_owned(), busybox()),
    ];
    let page = if healthy {
        "www/index.html"
    } else {
        "www/other.html"
    };
    files.push((page.to_owned(), format!("{body}\n").into_bytes()));
    files
}

/// Builds the site image with Podman, as a CI system would, and pushes it to the registry.
async fn push_image(registry: &Registry, name: &str, body: &str, healthy: bool) -> String {
    push_files(registry, name, site_files(body, healthy)).await
}

async fn push_files(registry: &Registry, name: &str, files: Vec<(String, Vec<u8>)>) -> String {
    let dir = tempfile::tempdir().unwrap();
    for (path, contents) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
    let image = format!("{}/ci/{name}:{}", registry.address, rand::random::<u32>());
    let context = dir.path().to_str().unwrap();
    let (built, _, stderr) = podman(&["build", "--format", "docker", "-t", &image, context]).await;
    assert!(built, "{stderr}");
    let (pushed, _, stderr) = podman(&["push", "--tls-verify=false", &image]).await;
    assert!(pushed, "{stderr}");
    let _ = podman(&["untag", &image]).await;
    image
}

/// A server with the GitHub stand-in holding `acme/site`, and a service `site` on it with a
/// port, a domain and quick health settings.
async fn app_with_site_and(agent: &str, extra: Value, options: Options) -> TestApp {
    let app = spawn_app_with(Options {
        github: true,
        ..options
    })
    .await;
    let github = app.github.as_ref().unwrap();
    github.add_installation(42, "acme");
    github.add_repository(42, "acme/site").unwrap();
    app.announce_installation(&["acme/site"]).await;
    let mut deploy = json!({
        "hosts": [agent],
        "drain_ms": 300,
        "health": {"interval_ms": 100, "timeout_ms": 1000, "deadline_ms": 15000, "retries": 5}
    });
    if let (Some(deploy), Some(extra)) = (deploy.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            deploy.insert(key.clone(), value.clone());
        }
    }
    let answer = app
        .post(
            "/v1/services",
            json!({"name": "site", "repo": "acme/site", "branch": "main", "port": 8080,
                   "domain": "site.test", "deploy": deploy}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    app
}

/// Commits the site to `acme/site` and delivers the push.
async fn push_site(app: &TestApp, body: &str, delivery: &str) -> i64 {
    let github = app.github.as_ref().unwrap();
    let files = site_files(body, true);
    let files: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(path, contents)| (path.as_str(), contents.as_slice()))
        .collect();
    let commit = github
        .commit_files("acme/site", "main", &files, body)
        .unwrap();
    let mut payload: Value =
        serde_json::from_slice(&push_payload("acme/site", "refs/heads/main", &commit)).unwrap();
    payload["installation"]["id"] = json!(42);
    let answer = app
        .webhook("push", delivery, payload.to_string().as_bytes())
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    answer.body["builds"][0].as_i64().unwrap()
}

async fn releases(app: &TestApp) -> Vec<Value> {
    let answer = app.get("/v1/services/site/releases").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.body.as_array().unwrap().clone()
}

/// Waits until the release matching `pick` reaches a settled state, and returns it.
async fn wait_for_release(app: &TestApp, pick: impl Fn(&Value) -> bool) -> Value {
    let started = tokio::time::Instant::now();
    loop {
        if let Some(release) = releases(app)
            .await
            .into_iter()
            .find(|release| pick(release))
            && !["pending", "pulling", "starting", "health_checking"]
                .contains(&release["state"].as_str().unwrap())
        {
            return release;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "no settled release: {:?}",
            releases(app).await
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn deploy_image(app: &TestApp, image: &str) -> Value {
    let answer = app
        .post("/v1/services/site/deploy", json!({"image": image}))
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    let id = answer.body["id"].as_i64().unwrap();
    wait_for_release(app, |release| release["id"] == id).await
}

/// The release's deploy log, complete (the release has settled): each line's host and text.
async fn release_log(app: &TestApp, id: i64) -> Vec<(String, String)> {
    let answer = app.get(&format!("/v1/releases/{id}/logs")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.body["complete"], true, "{}", answer.text);
    answer.body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            (
                line["host"].as_str().unwrap().to_owned(),
                line["text"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The local tag under which the agent that built a release's image keeps it, named by the
/// digest the release pins (`REPOSITORY@sha256:HEX` → `REPOSITORY:wharf-pushed-HEX`).
fn built_here(release: &Value) -> String {
    let image = release["image"].as_str().unwrap();
    let (repository, digest) = image.split_once("@sha256:").expect("a release by digest");
    format!("{repository}:wharf-pushed-{digest}")
}

/// Asserts that `log` holds lines starting with each of `starts`, in that order, each written by
/// `host`.
fn assert_log_tells(log: &[(String, String)], host: &str, starts: &[&str]) {
    assert!(log.iter().all(|(by, _)| by == host), "{log:?}");
    let mut rest = log.iter();
    for start in starts {
        assert!(
            rest.any(|(_, text)| text.starts_with(start)),
            "no {start:?} in order in the deploy log: {log:#?}"
        );
    }
}

#[tokio::test]
async fn a_registry_login_goes_only_to_the_registry_it_belongs_to() {
    let name = format!("dep-login-{:x}", rand::random::<u16>());
    // Wharf's registry, whose login the agent holds, and another one; both want a login and
    // keep what each request brought.
    let own = RecordingRegistry::start().await;
    let other = RecordingRegistry::start().await;
    let app = app_with_site_and(
        &name,
        json!({}),
        Options {
            registry: Some(own.address.clone()),
            ..Options::default()
        },
    )
    .await;
    let login = wharf_agent::RegistryCredentials {
        registry: own.address.clone(),
        username: "agent".to_owned(),
        password: secrecy::SecretString::from("agent-login-6502"),
    };
    // The header the login makes, as the engine sends it: `Basic` and the auth file's entry.
    let auth_file: Value = serde_json::from_str(&login.auth_file_json()).unwrap();
    let with_login = format!(
        "Basic {}",
        auth_file["auths"][&own.address]["auth"].as_str().unwrap()
    );
    // The engine answers a challenge it has no login for with an empty one (`:`).
    let without_login =
        |header: &Option<String>| header.is_none() || header.as_deref() == Some("Basic Og==");
    let mut builder = builder_config(DEADLINE);
    builder.registry_credentials = Some(login);
    let token = app.create_agent(&name).await;
    let agent = start_deploy_agent_with(&app, &name, token, builder).await;

    // A deploy of another registry's image pulls it with no login: that registry never sees one.
    let elsewhere = deploy_image(&app, &format!("{}/team/web:1", other.address)).await;
    assert_ne!(elsewhere["state"], "live", "{elsewhere}");
    let sent = other.authorizations();
    assert!(!sent.is_empty(), "the other registry was never asked");
    assert!(
        sent.iter().all(without_login),
        "a login reached another registry: {sent:?}"
    );

    // The agent's own registry gets its login when asked for it.
    let home = deploy_image(&app, &format!("{}/default/site:1", own.address)).await;
    assert_ne!(home["state"], "live", "{home}");
    let sent = own.authorizations();
    assert!(
        sent.contains(&Some(with_login)),
        "the agent's own registry never got its login: {sent:?}"
    );
    agent.stop().await;
}

/// What the edge answers for `site.test`.
async fn through_edge(edge: &str) -> Result<String, String> {
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    through_edge_with(&client, edge).await
}

/// The same, on `client`'s kept-alive connections (as browsers and load balancers reuse them).
async fn through_edge_with(client: &reqwest::Client, edge: &str) -> Result<String, String> {
    match client
        .get(format!("http://{edge}/"))
        .header("host", "site.test")
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

async fn wait_for_answer(agent: &DeployAgent, body: &str) {
    wait_for_answer_at(&agent.edge_listen, body).await
}

async fn wait_for_answer_at(edge: &str, body: &str) {
    let started = tokio::time::Instant::now();
    loop {
        let answer = through_edge(edge).await;
        if answer.as_deref() == Ok(body) {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "the edge answers {answer:?}, not {body:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Requests through the edge without pause, from two loops, recording every answer.
struct Load {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
    failures: Arc<Mutex<Vec<String>>>,
    bodies: Arc<Mutex<std::collections::BTreeMap<String, usize>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(agent: &DeployAgent) -> Load {
        let load = Load {
            stop: Arc::new(AtomicBool::new(false)),
            sent: Arc::new(AtomicUsize::new(0)),
            failures: Arc::default(),
            bodies: Arc::default(),
            tasks: Vec::new(),
        };
        let tasks = (0..2)
            .map(|_| {
                let (stop, sent, failures, bodies) = (
                    load.stop.clone(),
                    load.sent.clone(),
                    load.failures.clone(),
                    load.bodies.clone(),
                );
                let edge = agent.edge_listen.clone();
                tokio::spawn(async move {
                    let client = reqwest::Client::builder().no_proxy().build().unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        sent.fetch_add(1, Ordering::Relaxed);
                        match through_edge_with(&client, &edge).await {
                            Ok(body) => *bodies.lock().await.entry(body).or_default() += 1,
                            Err(error) => failures.lock().await.push(error),
                        }
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                })
            })
            .collect();
        Load { tasks, ..load }
    }

    async fn finish(
        self,
    ) -> (
        usize,
        Vec<String>,
        std::collections::BTreeMap<String, usize>,
    ) {
        self.stop.store(true, Ordering::Relaxed);
        for task in self.tasks {
            task.await.unwrap();
        }
        let failures = self.failures.lock().await.clone();
        let bodies = self.bodies.lock().await.clone();
        (self.sent.load(Ordering::Relaxed), failures, bodies)
    }
}

/// The containers Wharf runs for `site` on this agent: (name, release) of the running ones.
async fn running_site_containers(agent: &str) -> Vec<(String, String)> {
    let (_, names, _) = podman(&[
        "ps",
        "--filter",
        &format!("label=wharf.deploy.agent={agent}"),
        "--format",
        "{{.Names}} {{index .Labels \"wharf.deploy.release\"}}",
    ])
    .await;
    names
        .lines()
        .filter_map(|line| line.split_once(' '))
        .map(|(name, release)| (name.to_owned(), release.to_owned()))
        .collect()
}

/// The ids of the containers of release `release` that agent `agent` runs.
async fn container_ids(agent: &str, release: i64) -> Vec<String> {
    let (listed, ids, stderr) = podman(&[
        "ps",
        "--quiet",
        "--no-trunc",
        "--filter",
        &format!("label=wharf.deploy.agent={agent}"),
        "--filter",
        &format!("label=wharf.deploy.release={release}"),
    ])
    .await;
    assert!(listed, "{stderr}");
    ids.lines().map(str::to_owned).collect()
}

async fn wait_for_containers(agent: &str, expected: &[i64]) {
    let started = tokio::time::Instant::now();
    loop {
        let running = running_site_containers(agent).await;
        let mut releases: Vec<String> =
            running.iter().map(|(_, release)| release.clone()).collect();
        releases.sort();
        let mut want: Vec<String> = expected.iter().map(i64::to_string).collect();
        want.sort();
        if releases == want {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "containers {running:?}, expected releases {expected:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A server with the site service, a registry, and an in-process agent (named after
/// `prefix`, unique per run: tests share Podman) that deploys it.
struct Scene {
    name: String,
    app: TestApp,
    registry: Registry,
    agent: DeployAgent,
}

async fn scene(prefix: &str, extra: Value) -> Scene {
    let name = format!("{prefix}-{:x}", rand::random::<u16>());
    let registry = Registry::start().await;
    let app = app_with_site_and(&name, extra, registry.options()).await;
    let agent = start_deploy_agent(&app, &name).await;
    Scene {
        name,
        app,
        registry,
        agent,
    }
}

#[tokio::test]
async fn a_push_goes_live_by_host_name_and_the_next_replaces_it_without_a_failed_request() {
    let agent_name = format!("dep-push-{:x}", rand::random::<u16>());
    let registry = Registry::start().await;
    let app = app_with_site_and(&agent_name, json!({"keep_images": 0}), registry.options()).await;
    let agent = start_deploy_agent(&app, &agent_name).await;

    let first_build = push_site(&app, "version one", "push-1").await;
    app.wait_for_build_state(first_build, "completed", DEADLINE)
        .await;
    let first = wait_for_release(&app, |release| release["build_id"] == first_build).await;
    assert_eq!(first["state"], "live", "{first}");
    assert_eq!(first["trigger"], "build");
    assert!(
        first["image"]
            .as_str()
            .unwrap()
            .contains("/default/site@sha256:"),
        "the release pins the pushed digest: {first}"
    );
    assert_eq!(first["rollouts"][0]["agent"], agent_name.as_str());
    assert_eq!(
        through_edge(&agent.edge_listen).await.as_deref(),
        Ok("version one")
    );

    let load = Load::start(&agent);
    let second_build = push_site(&app, "version two", "push-2").await;
    app.wait_for_build_state(second_build, "completed", DEADLINE)
        .await;
    let second = wait_for_release(&app, |release| release["build_id"] == second_build).await;
    assert_eq!(second["state"], "live", "{second}");
    wait_for_answer(&agent, "version two").await;
    // The old version drains, then stops: one container left, the new one.
    wait_for_containers(&agent_name, &[second["id"].as_i64().unwrap()]).await;
    let (sent, failures, bodies) = load.finish().await;
    assert!(sent > 50, "the load ran: {sent} requests");
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {failures:?}",
        failures.len()
    );
    assert_eq!(
        bodies.keys().collect::<Vec<_>>(),
        vec!["version one", "version two"],
        "{bodies:?}"
    );
    let first = wait_for_release(&app, |release| release["id"] == first["id"]).await;
    assert_eq!(first["state"], "superseded");
    // The agent built each image on this host: it ran it as built, with no pull back from
    // the registry, under the tag it left naming the pushed digest.
    let log = release_log(&app, second["id"].as_i64().unwrap()).await;
    assert_log_tells(
        &log,
        &agent_name,
        &[
            "release #",
            "pull: not needed, this host built and pushed it",
            "started ",
            "live: release #",
        ],
    );
    assert!(
        !log.iter().any(|(_, text)| text.starts_with("pulled ")),
        "{log:#?}"
    );
    // Host cleanup: with no image kept for rollback, the replaced version's image goes (it
    // carries the build's service label) and the live one stays.
    let old_image = built_here(&first);
    let live_image = built_here(&second);
    let started = tokio::time::Instant::now();
    while podman(&["image", "exists", &old_image]).await.0 {
        assert!(
            started.elapsed() < DEADLINE,
            "the old image stays: {old_image}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        podman(&["image", "exists", &live_image]).await.0,
        "the live image stays: {live_image}"
    );
    agent.stop().await;
}

#[tokio::test]
async fn an_unhealthy_version_is_rolled_back_while_the_old_one_answers_every_request() {
    let Scene {
        name: agent_name,
        app,
        registry,
        agent,
    } = scene("dep-sick", json!({})).await;
    let good = push_image(&registry, "site", "steady", true).await;
    let sick = push_image(&registry, "site", "broken", false).await;

    let live = deploy_image(&app, &good).await;
    assert_eq!(live["state"], "live", "{live}");
    wait_for_answer(&agent, "steady").await;
    let log = release_log(&app, live["id"].as_i64().unwrap()).await;
    assert_log_tells(
        &log,
        &agent_name,
        &[
            "release #",
            &format!("pull: {good}"),
            "pulled ",
            "step: starting",
            "started ",
            "step: health_checking",
            "probe after ",
            "traffic for site.test goes to 127.0.0.1:",
            "live: release #",
        ],
    );

    let load = Load::start(&agent);
    let rolled_back = deploy_image(&app, &sick).await;
    let (sent, failures, bodies) = load.finish().await;
    assert_eq!(rolled_back["state"], "rolled_back", "{rolled_back}");
    let reason = rolled_back["reason"].as_str().unwrap();
    assert!(
        reason.contains("404"),
        "the reason names the failing probe: {reason}"
    );
    // The deploy log tells every probe and why the new version went.
    let log = release_log(&app, rolled_back["id"].as_i64().unwrap()).await;
    assert_log_tells(
        &log,
        &agent_name,
        &[
            &format!("pull: {sick}"),
            "started ",
            "probe after ",
            "unhealthy: ",
            "rolled back: ",
        ],
    );
    assert!(
        log.iter()
            .any(|(_, text)| text.starts_with("probe after ") && text.contains("404")),
        "{log:#?}"
    );
    assert!(
        !log.iter().any(|(_, text)| text.starts_with("traffic for")),
        "traffic never moved to the unhealthy version: {log:#?}"
    );
    let rollout = &rolled_back["rollouts"][0];
    assert!(
        rollout["probes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|probe| probe["healthy"] == false),
        "{rollout}"
    );
    assert!(
        rollout["log_tail"]
            .as_array()
            .unwrap()
            .iter()
            .any(|line| line.as_str().unwrap().contains("404")
                || line.as_str().unwrap().contains("GET")),
        "the new container's last log lines are kept: {rollout}"
    );
    assert!(
        failures.is_empty(),
        "{} of {sent} requests failed: {failures:?}",
        failures.len()
    );
    assert_eq!(
        bodies.keys().collect::<Vec<_>>(),
        vec!["steady"],
        "{bodies:?}"
    );
    // Only the old version runs; the live release is still the first.
    wait_for_containers(&agent_name, &[live["id"].as_i64().unwrap()]).await;
    let first = wait_for_release(&app, |release| release["id"] == live["id"]).await;
    assert_eq!(first["state"], "live");

    // A pull that fails changes nothing either.
    let missing = format!("{}/ci/site:does-not-exist", registry.address);
    let failed = deploy_image(&app, &missing).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("could not be pulled"),
        "{failed}"
    );
    wait_for_containers(&agent_name, &[live["id"].as_i64().unwrap()]).await;

    // A version that exits at once is not waited for until the deadline: its exit is the reason.
    let exiting = push_files(
        &registry,
        "site",
        vec![
            (
                "Dockerfile".to_owned(),
                b"FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nCMD [\"/bin/busybox\", \"sh\", \"-c\", \"echo cannot start; exit 3\"]\n".to_vec(),
            ),
            ("busybox".to_owned(), busybox()),
        ],
    )
    .await;
    let exited = deploy_image(&app, &exiting).await;
    assert_eq!(exited["state"], "rolled_back", "{exited}");
    let reason = exited["reason"].as_str().unwrap();
    assert!(
        reason.contains("exited with code 3") && reason.contains("before it was healthy"),
        "{reason}"
    );
    assert!(
        exited["rollouts"][0]["log_tail"]
            .as_array()
            .unwrap()
            .iter()
            .any(|line| line == "cannot start"),
        "{exited}"
    );
    wait_for_containers(&agent_name, &[live["id"].as_i64().unwrap()]).await;
    assert_eq!(
        through_edge(&agent.edge_listen).await.as_deref(),
        Ok("steady")
    );
    agent.stop().await;
}

/// The edge addresses of agents run as processes. The Caddy there outlives them by design: it
/// is stopped when the test ends, also when the test fails.
struct EdgePorts {
    admin: String,
    listen: String,
}

impl EdgePorts {
    fn new() -> EdgePorts {
        EdgePorts {
            admin: format!("127.0.0.1:{}", free_port()),
            listen: format!("127.0.0.1:{}", free_port()),
        }
    }
}

impl Drop for EdgePorts {
    fn drop(&mut self) {
        use std::io::Write;
        if let Ok(mut stream) = std::net::TcpStream::connect(&self.admin) {
            let _ = write!(
                stream,
                "POST /stop HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                self.admin
            );
        }
    }
}

/// Starts the real `wharf agent` binary, deploying only, with the given edge.
fn spawn_deploy_agent(
    app: &TestApp,
    token: &str,
    work_dir: &std::path::Path,
    edge: &EdgePorts,
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("agent")
        .env("WHARF_SERVER", &app.url)
        .env("WHARF_AGENT_TOKEN", token)
        .env("WHARF_LABELS", "deploy")
        .env("WHARF_WORK_DIR", work_dir)
        .env("WHARF_CADDY_ADMIN", &edge.admin)
        .env("WHARF_EDGE_LISTEN", &edge.listen)
        .env("WHARF_STOP_GRACE", "1")
        .env("WHARF_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("wharf agent starts")
}

/// A site on agents run as `wharf agent` processes (so a test can kill, freeze or restart
/// them) behind an edge of the test's own, with version "before" live.
struct ProcessScene {
    name: String,
    app: TestApp,
    registry: Registry,
    token: String,
    work_dir: tempfile::TempDir,
    edge: EdgePorts,
    live: Value,
}

impl ProcessScene {
    /// The scene and its first agent; `extra` goes into the service's deploy settings.
    async fn start(
        prefix: &str,
        extra: Value,
        options: Options,
    ) -> (ProcessScene, tokio::process::Child) {
        let name = format!("{prefix}-{:x}", rand::random::<u16>());
        let registry = Registry::start().await;
        let app = app_with_site_and(
            &name,
            extra,
            Options {
                registry: Some(registry.address.clone()),
                ..options
            },
        )
        .await;
        let token = app.create_agent(&name).await;
        let first = push_image(&registry, "site", "before", true).await;
        let mut scene = ProcessScene {
            name,
            app,
            registry,
            token,
            work_dir: tempfile::tempdir().unwrap(),
            edge: EdgePorts::new(),
            live: Value::Null,
        };
        let agent = scene.spawn_agent();
        scene.live = deploy_image(&scene.app, &first).await;
        assert_eq!(scene.live["state"], "live", "{}", scene.live);
        wait_for_answer_at(&scene.edge.listen, "before").await;
        (scene, agent)
    }

    /// Starts an agent with the scene's token, work directory and edge, as a restart would.
    fn spawn_agent(&self) -> tokio::process::Child {
        spawn_deploy_agent(&self.app, &self.token, self.work_dir.path(), &self.edge)
    }

    /// Deploys `image` and waits until the new version is being health-checked; returns the
    /// release's id.
    async fn deploy_until_checked(&self, image: &str) -> i64 {
        let answer = self
            .app
            .post("/v1/services/site/deploy", json!({"image": image}))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        let release = answer.body["id"].as_i64().unwrap();
        wait_for_health_check(&self.app, release).await;
        release
    }

    /// Kills the agent and removes what the scene ran; the Caddy outlived the agents by
    /// design, and this test started it, so it stops it.
    async fn finish(self, mut agent: tokio::process::Child) {
        agent.start_kill().unwrap();
        agent.wait().await.unwrap();
        remove_agent_containers(&self.name).await;
        stop_caddy(&self.edge.admin).await;
    }
}

/// Health settings for a new version that answers only after a few seconds: the start period
/// forgives that.
fn slow_start_health() -> Value {
    json!({"health": {"interval_ms": 100, "timeout_ms": 1000, "retries": 5,
                      "start_period_ms": 20000, "deadline_ms": 60000}})
}

#[tokio::test]
async fn an_agent_killed_during_a_rollout_converges_without_duplicate_containers() {
    let (scene, mut agent) =
        ProcessScene::start("dep-kill", slow_start_health(), Options::default()).await;
    let slow = push_files(&scene.registry, "site", slow_site_files("after", true, 4)).await;
    let edge_listen = &scene.edge.listen;

    // The new version takes a few seconds to answer: kill the agent while it is checked.
    let second = scene.deploy_until_checked(&slow).await;
    let checked = container_ids(&scene.name, second).await;
    assert_eq!(checked.len(), 1, "{checked:?}");
    agent.start_kill().unwrap();
    agent.wait().await.unwrap();
    // The edge (a Caddy of its own) keeps serving the old version meanwhile.
    assert_eq!(through_edge(edge_listen).await.as_deref(), Ok("before"));

    let agent = scene.spawn_agent();
    let release = wait_for_release(&scene.app, |release| release["id"] == second).await;
    assert_eq!(release["state"], "live", "{release}");
    wait_for_answer_at(edge_listen, "after").await;
    wait_for_containers(&scene.name, &[second]).await;
    assert_eq!(
        container_ids(&scene.name, second).await,
        checked,
        "the restarted agent took up the container it had started, not a new one"
    );
    scene.finish(agent).await;
}

#[tokio::test]
async fn apps_keep_answering_while_their_agent_restarts_and_the_next_one_takes_the_edge_over() {
    let (scene, mut agent) =
        ProcessScene::start("dep-restart", json!({}), Options::default()).await;
    let second = push_image(&scene.registry, "site", "after", true).await;
    let edge_listen = scene.edge.listen.clone();

    // Requests every 20 ms while the agent stops (SIGTERM, as a service manager would) and a
    // new one starts: every one is answered by the app.
    let (stop_load, mut load_stopped) = tokio::sync::watch::channel(false);
    let load = tokio::spawn({
        let edge_listen = edge_listen.clone();
        async move {
            let client = reqwest::Client::builder().no_proxy().build().unwrap();
            let mut answers = Vec::new();
            loop {
                answers.push(through_edge_with(&client, &edge_listen).await);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(20)) => {}
                    _ = load_stopped.wait_for(|stop| *stop) => return answers,
                }
            }
        }
    });
    signal(&agent, "TERM");
    let status = agent.wait().await.unwrap();
    assert!(status.success(), "the agent stopped cleanly: {status}");
    assert_eq!(through_edge(&edge_listen).await.as_deref(), Ok("before"));
    let agent = scene.spawn_agent();
    // The new agent deploys through the same edge.
    let next = deploy_image(&scene.app, &second).await;
    assert_eq!(next["state"], "live", "{next}");
    wait_for_answer_at(&edge_listen, "after").await;
    stop_load.send(true).unwrap();
    let answers = load.await.unwrap();
    let failed: Vec<&Result<String, String>> = answers
        .iter()
        .filter(|answer| !matches!(answer.as_deref(), Ok("before") | Ok("after")))
        .collect();
    assert!(
        answers.len() > 20 && failed.is_empty(),
        "{} of {} requests failed: {failed:?}",
        failed.len(),
        answers.len()
    );
    scene.finish(agent).await;
}

/// Waits until release `id` is being health-checked.
async fn wait_for_health_check(app: &TestApp, id: i64) {
    let started = tokio::time::Instant::now();
    loop {
        let release = releases(app)
            .await
            .into_iter()
            .find(|r| r["id"] == id)
            .unwrap();
        if release["state"] == "health_checking" {
            return;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "never health-checked: {release}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Sends `signal` (`STOP`, `CONT`) to a process.
fn signal(child: &tokio::process::Child, signal: &str) {
    let pid = child.id().expect("the agent runs").to_string();
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &pid])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {pid}");
}

#[tokio::test]
async fn a_rollout_the_server_gave_up_on_is_undone_by_its_agent_when_it_answers_again() {
    let options = Options {
        lease: Some(Duration::from_secs(2)),
        ..Options::default()
    };
    let (scene, agent) = ProcessScene::start("dep-lost", slow_start_health(), options).await;
    let slow = push_files(&scene.registry, "site", slow_site_files("after", true, 3)).await;
    let edge_listen = &scene.edge.listen;

    // The agent freezes while it checks the new version: to the server it stopped answering,
    // and after a lease without a word the rollout fails. The old version keeps serving.
    let second = scene.deploy_until_checked(&slow).await;
    signal(&agent, "STOP");
    let failed = wait_for_release(&scene.app, |release| release["id"] == second).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(
        failed["reason"],
        format!("agent {} stopped answering during the rollout", scene.name)
    );
    assert_eq!(through_edge(edge_listen).await.as_deref(), Ok("before"));

    // Thawed, the agent finds the new version healthy and moves traffic to it, but the server
    // refuses its report: the agent moves traffic back and removes the new version.
    signal(&agent, "CONT");
    let live = &scene.live;
    wait_for_containers(&scene.name, &[live["id"].as_i64().unwrap()]).await;
    wait_for_answer_at(edge_listen, "before").await;
    let all = releases(&scene.app).await;
    let state = |id: &Value| {
        all.iter()
            .find(|release| &release["id"] == id)
            .map(|release| release["state"].clone())
    };
    assert_eq!(state(&live["id"]), Some(json!("live")));
    assert_eq!(state(&json!(second)), Some(json!("failed")));
    scene.finish(agent).await;
}

#[tokio::test]
async fn the_deploy_hook_answers_by_outcome() {
    let Scene {
        name: _,
        app,
        registry,
        agent,
    } = scene("dep-hook", json!({})).await;
    let good = push_image(&registry, "site", "hooked", true).await;
    let sick = push_image(&registry, "site", "sick", false).await;
    let secret = app.post("/v1/services/site/deploy-secret", json!({})).await;
    assert_eq!(secret.status, StatusCode::OK, "{}", secret.text);
    let secret = secret.body["secret"].as_str().unwrap().to_owned();
    let hook = |body: Value, key: String| {
        let client = reqwest::Client::new();
        let url = format!("{}/deploy", app.url);
        async move {
            let body = body.to_string();
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs() as i64;
            let signature =
                wharf_domain::signature::sign_timestamped(key.as_bytes(), now, body.as_bytes());
            let response = client
                .post(url)
                .header("x-wharf-timestamp", now.to_string())
                .header("x-hub-signature-256", signature)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap();
            let status = response.status();
            let text = response.text().await.unwrap();
            (
                status,
                serde_json::from_str::<Value>(&text).unwrap_or(Value::Null),
                text,
            )
        }
    };

    let (status, body, text) =
        hook(json!({"service": "site", "image": good}), secret.clone()).await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(body["state"], "live");
    assert!(
        body["log_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/v1/releases/{}", body["release"])),
        "{text}"
    );
    assert_eq!(
        through_edge(&agent.edge_listen).await.as_deref(),
        Ok("hooked")
    );

    let missing = format!("{}/ci/site:nope", registry.address);
    let (status, body, text) =
        hook(json!({"service": "site", "image": missing}), secret.clone()).await;
    assert!(status.is_client_error(), "{status} {text}");
    assert_eq!(body["state"], "failed");

    let (status, body, text) =
        hook(json!({"service": "site", "image": sick}), secret.clone()).await;
    assert!(status.is_server_error(), "{status} {text}");
    assert_eq!(body["state"], "rolled_back");
    assert_eq!(
        through_edge(&agent.edge_listen).await.as_deref(),
        Ok("hooked")
    );

    // A wrong signature is a 401, a broken body a 400, before anything happens.
    let (status, _, text) = hook(
        json!({"service": "site", "image": good}),
        "wrong".to_owned(),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    let (status, _, text) = hook(json!({"service": "nobody", "image": good}), secret.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{text}");
    let (status, _, text) = hook(json!({"service": "site"}), secret.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let (status, _, text) = hook(json!("not a deploy request"), secret.clone()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert_eq!(
        releases(&app).await.len(),
        3,
        "refused hooks made no release"
    );
    agent.stop().await;
}

#[tokio::test]
async fn recreate_restores_the_previous_version_when_the_new_one_fails() {
    let Scene {
        name: agent_name,
        app,
        registry,
        agent,
    } = scene("dep-recr", json!({"strategy": "recreate"})).await;
    let good = push_image(&registry, "site", "first", true).await;
    let sick = push_image(&registry, "site", "second", false).await;
    let live = deploy_image(&app, &good).await;
    assert_eq!(live["state"], "live", "{live}");
    wait_for_answer(&agent, "first").await;
    let failed = deploy_image(&app, &sick).await;
    assert_eq!(failed["state"], "rolled_back", "{failed}");
    // The previous container was stopped for the new one and is running again.
    wait_for_containers(&agent_name, &[live["id"].as_i64().unwrap()]).await;
    wait_for_answer(&agent, "first").await;
    agent.stop().await;
}

#[tokio::test]
async fn the_cli_deploys_lists_and_rolls_back_without_a_rebuild() {
    let Scene {
        name,
        app,
        registry,
        agent,
    } = scene("dep-cli", json!({})).await;
    let one = push_image(&registry, "site", "one", true).await;
    let two = push_image(&registry, "site", "two", true).await;
    let wharf = |args: &[&str]| {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_wharf"));
        command
            .args(args)
            .env("WHARF_SERVER", &app.url)
            .env("WHARF_TOKEN", crate::helpers::ADMIN_TOKEN);
        async move { command.output().await.unwrap() }
    };
    // Variables reach the containers; a secret one is shown masked and never in a log.
    for args in [
        &["env", "set", "site", "GREETING=hello"][..],
        &["env", "set", "site", "API_KEY=s3cr3t-value-42", "--secret"][..],
    ] {
        let output = wharf(args).await;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let output = wharf(&["deploy", "site", "--image", &one]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("live"), "progress is shown: {printed}");
    let output = wharf(&["deploy", "site", "--image", &two]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    wait_for_answer(&agent, "two").await;

    wait_for_containers(&name, &[2]).await;
    let (container, _) = running_site_containers(&name).await.remove(0);
    let (_, environment, stderr) = podman(&["exec", &container, "/bin/busybox", "env"]).await;
    assert!(
        environment.contains("GREETING=hello"),
        "{container}: {environment} {stderr}"
    );
    assert!(
        environment.contains("API_KEY=s3cr3t-value-42"),
        "{environment}"
    );
    let listed = wharf(&["env", "list", "site"]).await;
    assert!(!String::from_utf8_lossy(&listed.stdout).contains("s3cr3t"));
    assert!(
        !app.logs.text().contains("s3cr3t"),
        "a secret reached the server log"
    );
    assert!(
        std::fs::read_dir(agent.agent.work_dir.path())
            .unwrap()
            .next()
            .is_none(),
        "the variables file is gone once the containers exist"
    );

    // The rollback target's image is gone from the host (a cleanup, a disk emptied by hand):
    // the rollback pulls it again from the registry rather than failing.
    let _ = podman(&["rmi", "--force", &one]).await;
    let (still_there, _, _) = podman(&["image", "exists", &one]).await;
    assert!(!still_there, "{one} is still on the host");
    let output = wharf(&["rollback", "site"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    wait_for_answer(&agent, "one").await;
    let rolled_back = wharf(&["logs", "--release", "3"]).await;
    let printed = String::from_utf8_lossy(&rolled_back.stdout);
    assert!(printed.contains(&format!("==> pull: {one}")), "{printed}");

    // Each release's deploy log, every line after its host.
    let output = wharf(&["logs", "--release", "1"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(
        printed.contains(&format!("[{name}] ==> pull: {one}"))
            && printed.contains(&format!("[{name}] ==> live: release #1")),
        "{printed}"
    );
    assert!(!printed.contains("s3cr3t"), "{printed}");

    let output = wharf(&["releases", "site", "--json"]).await;
    assert!(output.status.success());
    let listed: Vec<Value> = serde_json::from_slice(&output.stdout).unwrap();
    let states: Vec<(&str, &str)> = listed
        .iter()
        .map(|release| {
            (
                release["trigger"].as_str().unwrap(),
                release["state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        states,
        vec![
            ("rollback", "live"),
            ("manual", "superseded"),
            ("manual", "superseded")
        ]
    );
    assert_eq!(listed[0]["image"], one.as_str());
    assert_eq!(listed[0]["rollback_of"], listed[2]["id"]);

    // More host names, changed on the service, are routed from its next release on.
    let output = wharf(&["service", "update", "site", "--alias", "www.site.test"]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = wharf(&["deploy", "site", "--image", &two]).await;
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    for host in ["site.test", "www.site.test"] {
        let answer = client
            .get(format!("http://{}/", agent.edge_listen))
            .header("host", host)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), StatusCode::OK, "{host}");
        assert_eq!(answer.text().await.unwrap().trim(), "two", "{host}");
    }

    // A deploy that fails is a non-zero exit with the reason.
    let output = wharf(&[
        "deploy",
        "site",
        "--image",
        &format!("{}/ci/site:gone", registry.address),
    ])
    .await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("could not be pulled"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    agent.stop().await;
}
