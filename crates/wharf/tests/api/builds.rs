//! Builds with real parts: the stand-in's git server, Podman and a real registry. A push becomes
//! an image in the registry that runs; failures end as failed builds with a clear reason and the
//! failing step; a cancel kills the build at once; the agent stays up throughout.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, push_payload, repository_id, spawn_app_with};
use wharf_agent::BuilderConfig;

use crate::parts::{
    Registry, builder_config, busybox, podman, start_agent_with, start_builder_agent,
};

const BUILD_DEADLINE: Duration = Duration::from_secs(180);

const DOCKERFILE: &str = "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nCOPY index.html /www/index.html\n\
HEALTHCHECK CMD [\"/bin/busybox\", \"wget\", \"-q\", \"-O\", \"-\", \"http://127.0.0.1:8080/\"]\n\
CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n";

/// An app with the GitHub stand-in, an installation holding `acme/web`, and a service `web`
/// that tracks its `main` branch ([`app_with_repository_and`] with other settings).
async fn app_with_repository() -> TestApp {
    app_with_repository_and(Options::default()).await
}

pub(crate) async fn app_with_repository_and(options: Options) -> TestApp {
    let app = spawn_app_with(Options {
        github: true,
        ..options
    })
    .await;
    let github = app.github.as_ref().unwrap();
    github.add_installation(42, "acme");
    github.add_repository(42, "acme/web").unwrap();
    app.announce_installation(&["acme/web"]).await;
    app.create_service("web", "acme/web", "main").await;
    app
}

/// Commits files to `acme/web` on `main` and delivers the push; returns the build's id and commit.
async fn push(app: &TestApp, files: &[(&str, &[u8])], delivery: &str) -> (i64, String) {
    let github = app.github.as_ref().unwrap();
    let files = uncached(files);
    let files: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(path, contents)| (path.as_str(), contents.as_slice()))
        .collect();
    let commit = github
        .commit_files("acme/web", "main", &files, "a change")
        .unwrap();
    let mut body: Value =
        serde_json::from_slice(&push_payload("acme/web", "refs/heads/main", &commit)).unwrap();
    body["installation"]["id"] = json!(42);
    let answer = app
        .webhook("push", delivery, body.to_string().as_bytes())
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    (answer.body["builds"][0].as_i64().unwrap(), commit)
}

/// The files with a label of their own in every Dockerfile, right after `FROM`: builds keep
/// Podman's layer cache, and a test whose RUN steps must really run (and print) cannot share
/// cached layers with another test or an earlier run.
fn uncached(files: &[(&str, &[u8])]) -> Vec<(String, Vec<u8>)> {
    let nonce: u64 = rand::random();
    files
        .iter()
        .map(|(path, contents)| {
            let text = String::from_utf8_lossy(contents);
            let contents = match text.split_once('\n') {
                Some((from, rest)) if path.ends_with("Dockerfile") && from.starts_with("FROM ") => {
                    format!("{from}\nLABEL wharf.test.nonce=\"{nonce:016x}\"\n{rest}").into_bytes()
                }
                _ => contents.to_vec(),
            };
            ((*path).to_owned(), contents)
        })
        .collect()
}

/// Waits until build `id` has logged exactly `line` (a RUN step is really running).
async fn wait_for_log_line(app: &TestApp, id: i64, line: &str) {
    let deadline = tokio::time::Instant::now() + BUILD_DEADLINE;
    while !log_text(app, id).await.lines().any(|logged| logged == line) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "build #{id} never logged {line:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every stored line of a build's log, page by page.
async fn log_lines(app: &TestApp, id: i64) -> Vec<Value> {
    let mut lines = Vec::new();
    loop {
        let after = lines
            .last()
            .map_or(0, |line: &Value| line["seq"].as_i64().unwrap());
        let page = app
            .get(&format!("/v1/builds/{id}/logs?after={after}"))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let batch = page.body["lines"].as_array().unwrap().clone();
        if batch.is_empty() {
            return lines;
        }
        lines.extend(batch);
    }
}

/// Pulls the image of a completed build of `web` back from the registry by its digest; returns
/// that reference.
async fn pull_by_digest(registry: &Registry, build: &Value) -> String {
    let by_digest = format!(
        "{}/default/web@{}",
        registry.address,
        build["digest"].as_str().unwrap()
    );
    let (pulled, _, stderr) = podman(&["pull", "--tls-verify=false", &by_digest]).await;
    assert!(pulled, "{stderr}");
    by_digest
}

/// The file at `path` in a container of `image`.
async fn read_in_image(image: &str, path: &str) -> String {
    let (ran, contents, stderr) =
        podman(&["run", "--rm", image, "/bin/busybox", "cat", path]).await;
    assert!(ran, "{stderr}");
    contents
}

async fn log_text(app: &TestApp, id: i64) -> String {
    log_lines(app, id)
        .await
        .iter()
        .map(|line| line["text"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_push_becomes_an_image_in_the_registry_that_runs() {
    let registry = Registry::start().await;
    let app = app_with_repository_and(registry.options()).await;
    let agent = start_builder_agent(&app, "builder", BUILD_DEADLINE).await;
    let busybox = busybox();
    let (id, commit) = push(
        &app,
        &[
            ("Dockerfile", DOCKERFILE.as_bytes()),
            ("busybox", &busybox),
            ("index.html", b"hello from wharf\n"),
        ],
        "push-1",
    )
    .await;
    let build = app
        .wait_for_build_state(id, "completed", BUILD_DEADLINE)
        .await;
    let image = format!("{}/default/web:{commit}", registry.address);
    assert_eq!(build["image"], image);
    let digest = build["digest"].as_str().unwrap().to_owned();
    assert!(digest.starts_with("sha256:"), "{digest}");
    assert_eq!(build["agent"], "builder");

    // The log was streamed and stored, with the steps and without any token.
    let log = log_text(&app, id).await;
    assert!(log.contains("$ git"), "{log}");
    assert!(log.contains("Pushed"), "{log}");
    for token in app.github.as_ref().unwrap().issued_tokens() {
        assert!(!log.contains(&token), "a token reached the build log");
        assert!(
            !app.logs.text().contains(&token),
            "a token reached the server log"
        );
    }

    // The local tag is gone; the image comes back from the registry by digest, keeps its
    // labels and health check, and runs.
    let (exists, _, _) = podman(&["image", "exists", &image]).await;
    assert!(!exists, "the local tag should have been removed");
    let by_digest = format!("{}/default/web@{digest}", registry.address);
    let (pulled, _, stderr) = podman(&["pull", "--tls-verify=false", &by_digest]).await;
    assert!(pulled, "{stderr}");
    let (_, labels, _) = podman(&[
        "image",
        "inspect",
        "--format",
        "{{index .Labels \"wharf.build\"}} {{.HealthCheck}}",
        &by_digest,
    ])
    .await;
    assert!(labels.starts_with(&id.to_string()), "{labels}");
    assert!(labels.contains("wget"), "HEALTHCHECK kept: {labels}");
    let output = read_in_image(&by_digest, "/www/index.html").await;
    assert_eq!(output, "hello from wharf\n");

    // The work directory is gone.
    let leftovers: Vec<_> = std::fs::read_dir(agent.work_dir.path()).unwrap().collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    agent.stop.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), agent.task)
        .await
        .expect("the agent stops")
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn failures_are_kept_on_the_build_and_the_agent_takes_the_next_one() {
    let registry = Registry::start().await;
    let app = app_with_repository_and(registry.options()).await;
    let _agent = start_builder_agent(&app, "builder", BUILD_DEADLINE).await;

    // A Dockerfile whose RUN step fails.
    let broken = "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo about to fail; exit 7\"]\n";
    let (id, _) = push(
        &app,
        &[("Dockerfile", broken.as_bytes()), ("busybox", &busybox())],
        "push-1",
    )
    .await;
    let build = app.wait_for_build_state(id, "failed", BUILD_DEADLINE).await;
    assert_eq!(build["failure"]["step"], "build", "{build}");
    assert!(
        build["failure"]["command"]
            .as_str()
            .unwrap()
            .starts_with("podman build"),
        "{build}"
    );
    assert!(build["failure"]["exit_code"].as_i64().unwrap() != 0);
    let tail = build["failure"]["output_tail"].to_string();
    assert!(
        tail.contains("\"about to fail\""),
        "the RUN step's own output: {tail}"
    );
    assert!(
        build["reason"]
            .as_str()
            .unwrap()
            .starts_with("build failed"),
        "{build}"
    );

    // A repository with nothing to build.
    let github = app.github.as_ref().unwrap();
    github.add_repository(42, "acme/docs").unwrap();
    let added = json!({
        "action": "added",
        "installation": {"id": 42, "account": {"login": "acme", "type": "Organization"}},
        "repositories_added": [{"id": repository_id("acme/docs"), "full_name": "acme/docs", "private": true}],
        "repositories_removed": []
    });
    app.webhook(
        "installation_repositories",
        "added-1",
        added.to_string().as_bytes(),
    )
    .await;
    app.create_service("docs", "acme/docs", "main").await;
    let commit = github
        .commit_files(
            "acme/docs",
            "main",
            &[("README.md", b"no Dockerfile here\n")],
            "docs",
        )
        .unwrap();
    let mut body: Value =
        serde_json::from_slice(&push_payload("acme/docs", "refs/heads/main", &commit)).unwrap();
    body["installation"]["id"] = json!(42);
    let answer = app
        .webhook("push", "push-2", body.to_string().as_bytes())
        .await;
    let id = answer.body["builds"][0].as_i64().unwrap();
    let build = app.wait_for_build_state(id, "failed", BUILD_DEADLINE).await;
    assert!(
        build["reason"]
            .as_str()
            .unwrap()
            .contains("nothing to build: the repository has no Dockerfile or Containerfile at its root; add one, name it with --dockerfile, or install Railpack"),
        "{build}"
    );

    // A commit that does not exist.
    let missing = "e".repeat(40);
    let mut body: Value =
        serde_json::from_slice(&push_payload("acme/web", "refs/heads/main", &missing)).unwrap();
    body["installation"]["id"] = json!(42);
    let answer = app
        .webhook("push", "push-3", body.to_string().as_bytes())
        .await;
    let id = answer.body["builds"][0].as_i64().unwrap();
    let build = app.wait_for_build_state(id, "failed", BUILD_DEADLINE).await;
    assert_eq!(build["failure"]["step"], "clone", "{build}");

    // And a good build still goes through afterwards.
    let (id, _) = push(
        &app,
        &[
            ("Dockerfile", DOCKERFILE.as_bytes()),
            ("busybox", &busybox()),
            ("index.html", b"ok\n"),
        ],
        "push-4",
    )
    .await;
    app.wait_for_build_state(id, "completed", BUILD_DEADLINE)
        .await;
}

#[tokio::test]
async fn a_registry_that_is_down_fails_the_push_step() {
    // A port nothing listens on: bind one, learn it, and let it go.
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let app = app_with_repository_and(Options {
        registry: Some(address),
        ..Options::default()
    })
    .await;
    let _agent = start_builder_agent(&app, "builder", BUILD_DEADLINE).await;
    let (id, _) = push(
        &app,
        &[
            ("Dockerfile", DOCKERFILE.as_bytes()),
            ("busybox", &busybox()),
            ("index.html", b"x\n"),
        ],
        "push-1",
    )
    .await;
    let build = app.wait_for_build_state(id, "failed", BUILD_DEADLINE).await;
    assert_eq!(build["failure"]["step"], "push", "{build}");
}

#[tokio::test]
async fn an_installation_token_that_expires_during_a_long_build_is_renewed_for_the_next() {
    // Tokens live 3 s here (an hour on GitHub); the build takes longer than that.
    let registry = Registry::start().await;
    let app = app_with_repository_and(Options {
        registry: Some(registry.address.clone()),
        github_token_ttl: Some(Duration::from_secs(3)),
        ..Options::default()
    })
    .await;
    let _agent = start_builder_agent(&app, "builder", BUILD_DEADLINE).await;
    let long = "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\n\
RUN [\"/bin/busybox\", \"sleep\", \"4\"]\nCOPY index.html /index.html\n";
    let (first, _) = push(
        &app,
        &[
            ("Dockerfile", long.as_bytes()),
            ("busybox", &busybox()),
            ("index.html", b"one\n"),
        ],
        "push-1",
    )
    .await;
    app.wait_for_build_state(first, "completed", BUILD_DEADLINE)
        .await;
    let github = app.github.as_ref().unwrap();
    let first_token = github.issued_tokens()[0].clone();

    // The token the first build fetched with has expired by now (the stand-in refuses expired
    // tokens, as GitHub does): the next build's fetch gets a renewed one and works.
    let (second, _) = push(
        &app,
        &[
            ("Dockerfile", long.as_bytes()),
            ("busybox", &busybox()),
            ("index.html", b"two\n"),
        ],
        "push-2",
    )
    .await;
    app.wait_for_build_state(second, "completed", BUILD_DEADLINE)
        .await;
    let issued = github.issued_tokens();
    assert!(issued.len() >= 2 && issued[0] == first_token, "{issued:?}");
    let log = log_text(&app, second).await;
    for token in &issued {
        assert!(
            !log.contains(token.as_str()),
            "a token reached the build log"
        );
    }
}

#[tokio::test]
async fn a_cancel_stops_the_build_within_seconds() {
    let registry = Registry::start().await;
    let app = app_with_repository_and(registry.options()).await;
    let agent = start_builder_agent(&app, "builder", BUILD_DEADLINE).await;
    // A sleep of a length no other test uses, so its process can be looked for.
    let slow = "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo sleeping; sleep 6071\"]\n";
    let (id, _) = push(
        &app,
        &[("Dockerfile", slow.as_bytes()), ("busybox", &busybox())],
        "push-1",
    )
    .await;
    // Wait until the RUN step is really running.
    wait_for_log_line(&app, id, "sleeping").await;
    let cancelled_at = tokio::time::Instant::now();
    let cancel = app
        .post(&format!("/v1/builds/{id}/cancel"), json!({}))
        .await;
    assert_eq!(cancel.body["state"], "cancelled");
    // The agent learns it at its next heartbeat and kills the build's process tree; the work
    // directory goes with it.
    let build_dir = agent.work_dir.path().join(format!("build-{id}"));
    while build_dir.exists() {
        assert!(
            cancelled_at.elapsed() < Duration::from_secs(5),
            "the build kept running after the cancel"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, running, _) =
        podman(&["ps", "--external", "--format", "{{.Names}} {{.Command}}"]).await;
    assert!(!running.contains("sleep 600"), "{running}");
    assert_eq!(app.build(id).await["state"], "cancelled");
}

#[tokio::test]
async fn logs_follow_live_over_sse_and_the_cli() {
    let registry = Registry::start().await;
    let app = app_with_repository_and(registry.options()).await;
    let _agent = start_builder_agent(&app, "builder", BUILD_DEADLINE).await;
    let (id, _) = push(
        &app,
        &[
            ("Dockerfile", DOCKERFILE.as_bytes()),
            ("busybox", &busybox()),
            ("index.html", b"x\n"),
        ],
        "push-1",
    )
    .await;
    // SSE from the start: line events, then one done event with the final state.
    let response = app
        .http
        .get(format!("{}/v1/builds/{id}/logs/stream", app.url))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let body = tokio::time::timeout(BUILD_DEADLINE, response.text())
        .await
        .expect("the stream ends when the build does")
        .unwrap();
    assert!(body.contains("event: line"), "{body}");
    assert!(body.contains("event: done"), "{body}");
    assert!(body.contains("\"state\":\"completed\""), "{body}");
    // The CLI prints the finished log and exits 0.
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["logs", &id.to_string(), "-f"])
        .env("WHARF_SERVER", &app.url)
        .env("WHARF_TOKEN", crate::helpers::ADMIN_TOKEN)
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8_lossy(&output.stdout);
    assert!(printed.contains("==> Pushed"), "{printed}");
    // Resuming after the last line gives nothing but the end.
    let last = app.get(&format!("/v1/builds/{id}/logs")).await.body["lines"]
        .as_array()
        .unwrap()
        .len();
    let resumed = app
        .http
        .get(format!("{}/v1/builds/{id}/logs/stream", app.url))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .header("last-event-id", last.to_string())
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!resumed.contains("event: line"), "{resumed}");
    assert!(resumed.contains("event: done"), "{resumed}");
}

/// True when a process whose command line is `command` runs on this machine.
fn process_running(command: &str) -> bool {
    std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
        std::fs::read(entry.path().join("cmdline"))
            .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " ").trim() == command)
            .unwrap_or(false)
    })
}

/// Starts the real `wharf agent` binary.
fn spawn_agent_process(
    app: &TestApp,
    token: &str,
    work_dir: &std::path::Path,
) -> tokio::process::Child {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .arg("agent")
        .env("WHARF_SERVER", &app.url)
        .env("WHARF_AGENT_TOKEN", token)
        .env("WHARF_WORK_DIR", work_dir)
        .env("WHARF_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("wharf agent starts")
}

#[tokio::test]
async fn an_agent_killed_mid_build_loses_its_lease_and_cleans_up_when_it_restarts() {
    let registry = Registry::start().await;
    let app = app_with_repository_and(Options {
        registry: Some(registry.address.clone()),
        lease: Some(Duration::from_secs(2)),
        max_attempts: Some(1),
        ..Options::default()
    })
    .await;
    let token = app.create_agent("mortal").await;
    let work_dir = tempfile::tempdir().unwrap();

    let mut agent = spawn_agent_process(&app, &token, work_dir.path());
    let slow = "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo sleeping; sleep 6072\"]\n";
    let (id, _) = push(
        &app,
        &[("Dockerfile", slow.as_bytes()), ("busybox", &busybox())],
        "push-1",
    )
    .await;
    wait_for_log_line(&app, id, "sleeping").await;
    agent.start_kill().unwrap();
    agent.wait().await.unwrap();
    // Nobody renews the lease: with one attempt allowed, the build fails instead of running forever.
    let failed = app
        .wait_for_build_state(id, "failed", Duration::from_secs(20))
        .await;
    assert!(
        failed["reason"].as_str().unwrap().contains("lease expired"),
        "{failed}"
    );
    assert!(
        process_running("sleep 6072"),
        "the killed agent's build step is still running, as expected"
    );

    // The restarted agent kills what its dead self left running and removes its work directory,
    // then takes new builds.
    let _agent = spawn_agent_process(&app, &token, work_dir.path());
    let leftover = work_dir.path().join(format!("build-{id}"));
    let started = tokio::time::Instant::now();
    while leftover.exists() || process_running("sleep 6072") {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the restarted agent did not clean up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (id, _) = push(
        &app,
        &[
            ("Dockerfile", DOCKERFILE.as_bytes()),
            ("busybox", &busybox()),
            ("index.html", b"back\n"),
        ],
        "push-2",
    )
    .await;
    app.wait_for_build_state(id, "completed", BUILD_DEADLINE)
        .await;
}

#[tokio::test]
async fn a_build_that_prints_100_mb_keeps_a_capped_log_and_the_agent_stays_up() {
    let registry = Registry::start().await;
    let app = app_with_repository_and(Options {
        registry: Some(registry.address.clone()),
        max_log_bytes: Some(1024 * 1024),
        ..Options::default()
    })
    .await;
    let _agent = start_builder_agent(&app, "builder", BUILD_DEADLINE).await;
    let loud = "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\n\
RUN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox yes 0123456789abcdef0123456789abcdef0123456789abcdef | /bin/busybox head -c 100000000\"]\n";
    let (id, _) = push(
        &app,
        &[("Dockerfile", loud.as_bytes()), ("busybox", &busybox())],
        "push-1",
    )
    .await;
    let build = app
        .wait_for_build_state(id, "completed", BUILD_DEADLINE)
        .await;
    assert_eq!(build["log_truncated"], true, "{build}");
    let lines = log_lines(&app, id).await;
    let stored: usize = lines
        .iter()
        .map(|line| line["text"].as_str().unwrap().len() + 1)
        .sum();
    assert!(stored <= 1024 * 1024 + 200, "{stored} bytes stored");
    assert!(
        lines.last().unwrap()["text"]
            .as_str()
            .unwrap()
            .contains("limit"),
        "the note says the log was cut"
    );
    // The agent is still there for the next build.
    let (id, _) = push(
        &app,
        &[
            ("Dockerfile", DOCKERFILE.as_bytes()),
            ("busybox", &busybox()),
            ("index.html", b"quiet\n"),
        ],
        "push-2",
    )
    .await;
    app.wait_for_build_state(id, "completed", BUILD_DEADLINE)
        .await;
}

#[tokio::test]
async fn build_arguments_and_secrets_reach_the_build_and_secrets_go_nowhere_else() {
    let registry = Registry::start().await;
    let app = app_with_repository_and(registry.options()).await;
    let _agent = start_builder_agent(&app, "builder", BUILD_DEADLINE).await;
    let secret = "s3cret-value-0123";
    for (body, expected) in [
        (
            json!({"name": "GREETING", "value": "hello", "build": true}),
            StatusCode::OK,
        ),
        (
            json!({"name": "TOKEN", "value": secret, "secret": true, "build": true}),
            StatusCode::OK,
        ),
        (
            json!({"name": "RUNTIME_ONLY", "value": "x"}),
            StatusCode::OK,
        ),
        (
            json!({"name": "1BAD", "value": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"name": "A-B", "value": "x"}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let answer = app.post("/v1/services/web/env", body.clone()).await;
        assert_eq!(answer.status, expected, "{body}: {}", answer.text);
        assert!(
            !answer.text.contains(secret),
            "a secret came back from the API"
        );
    }
    let listed = app.get("/v1/services/web/env").await;
    assert!(!listed.text.contains(secret));
    let token = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|var| var["name"] == "TOKEN")
        .unwrap()
        .clone();
    assert_eq!(token["secret"], true);
    assert!(token["value"].is_null());
    // At rest the secret is sealed.
    let service_id = app.get("/v1/services/web").await.body["id"]
        .as_i64()
        .unwrap();
    let stored = app.store.list_env(service_id).await.unwrap();
    let sealed = stored.iter().find(|var| var.name == "TOKEN").unwrap();
    assert!(sealed.value.is_none());
    assert!(!sealed.sealed.as_ref().unwrap().contains(secret));

    let dockerfile = "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nARG GREETING\n\
RUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo $GREETING > /greeting\"]\n\
RUN --mount=type=secret,id=TOKEN [\"/bin/busybox\", \"sh\", \"-c\", \"/bin/busybox wc -c < /run/secrets/TOKEN > /secret-length; echo the secret is $(/bin/busybox cat /run/secrets/TOKEN)\"]\n";
    let (id, _) = push(
        &app,
        &[
            ("Dockerfile", dockerfile.as_bytes()),
            ("busybox", &busybox()),
        ],
        "push-1",
    )
    .await;
    let build = app
        .wait_for_build_state(id, "completed", BUILD_DEADLINE)
        .await;
    let log = log_text(&app, id).await;
    assert!(
        log.contains("the secret is ***"),
        "the secret is masked in the log: {log}"
    );
    assert!(!log.contains(secret));
    assert!(
        !app.logs.text().contains(secret),
        "a secret reached the server's log"
    );

    let by_digest = pull_by_digest(&registry, &build).await;
    let greeting = read_in_image(&by_digest, "/greeting").await;
    assert_eq!(greeting, "hello\n");
    let length = read_in_image(&by_digest, "/secret-length").await;
    assert_eq!(length.trim(), secret.len().to_string());
    let (_, history, _) = podman(&[
        "history",
        "--no-trunc",
        "--format",
        "{{.CreatedBy}}",
        &by_digest,
    ])
    .await;
    assert!(
        !history.contains(secret),
        "the secret is in the image history: {history}"
    );
    let (_, listing, _) = podman(&[
        "run",
        "--rm",
        &by_digest,
        "/bin/busybox",
        "ls",
        "/run/secrets",
    ])
    .await;
    assert!(
        !listing.contains("TOKEN"),
        "the secret stayed in the image: {listing}"
    );

    let removed = reqwest::Client::new()
        .delete(format!("{}/v1/services/web/env/RUNTIME_ONLY", app.url))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::OK);
    let listed = app.get("/v1/services/web/env").await.body;
    assert_eq!(listed.as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_failed_build_that_prints_a_secret_keeps_it_masked_in_its_failure() {
    // The build fails before it pushes: the server's registry need not answer.
    let app = app_with_repository().await;
    let _agent = start_builder_agent(&app, "builder", BUILD_DEADLINE).await;
    let secret = "leaky-s3cret-4711";
    let answer = app
        .post(
            "/v1/services/web/env",
            json!({"name": "TOKEN", "value": secret, "secret": true, "build": true}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let dockerfile = "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\n\
RUN --mount=type=secret,id=TOKEN [\"/bin/busybox\", \"sh\", \"-c\", \"echo the secret is $(/bin/busybox cat /run/secrets/TOKEN); exit 3\"]\n";
    let (id, _) = push(
        &app,
        &[
            ("Dockerfile", dockerfile.as_bytes()),
            ("busybox", &busybox()),
        ],
        "push-1",
    )
    .await;
    let build = app.wait_for_build_state(id, "failed", BUILD_DEADLINE).await;
    assert_eq!(build["failure"]["step"], "build", "{build}");
    let tail = build["failure"]["output_tail"].to_string();
    assert!(tail.contains("the secret is ***"), "{tail}");
    assert!(
        !build.to_string().contains(secret),
        "the secret is in the failed build: {build}"
    );
    assert!(!log_text(&app, id).await.contains(secret));
}

#[tokio::test]
async fn paths_that_lead_out_of_the_repository_fail_the_build() {
    let registry = Registry::start().await;
    let app = app_with_repository_and(registry.options()).await;
    let _agent = start_builder_agent(&app, "builder", BUILD_DEADLINE).await;
    let github = app.github.as_ref().unwrap();
    // A Dockerfile that is a symbolic link to a file outside the repository.
    let commit = github
        .commit_symlink("acme/web", "main", "Dockerfile", "/etc/passwd", "escape")
        .unwrap();
    let mut body: Value =
        serde_json::from_slice(&push_payload("acme/web", "refs/heads/main", &commit)).unwrap();
    body["installation"]["id"] = json!(42);
    let answer = app
        .webhook("push", "push-1", body.to_string().as_bytes())
        .await;
    let id = answer.body["builds"][0].as_i64().unwrap();
    let build = app.wait_for_build_state(id, "failed", BUILD_DEADLINE).await;
    assert!(
        build["reason"]
            .as_str()
            .unwrap()
            .contains("outside the repository"),
        "{build} {}",
        log_text(&app, id).await
    );
}

#[tokio::test]
async fn a_service_that_asks_for_it_has_its_running_build_cancelled_by_a_newer_push() {
    let registry = Registry::start().await;
    let app = app_with_repository_and(registry.options()).await;
    app.post(
        "/v1/services",
        json!({"name": "eager", "repo": "acme/web", "branch": "main", "cancel_running": true}),
    )
    .await;
    let _agent = start_builder_agent(&app, "builder", BUILD_DEADLINE).await;
    let slow = "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo sleeping; sleep 6073\"]\n";
    let github = app.github.as_ref().unwrap();
    let commit = github
        .commit_files(
            "acme/web",
            "main",
            &[("Dockerfile", slow.as_bytes()), ("busybox", &busybox())],
            "slow",
        )
        .unwrap();
    let mut body: Value =
        serde_json::from_slice(&push_payload("acme/web", "refs/heads/main", &commit)).unwrap();
    body["installation"]["id"] = json!(42);
    let answer = app
        .webhook("push", "push-1", body.to_string().as_bytes())
        .await;
    // The push builds both services; the agent takes `web` first, then `eager`. Wait for
    // `eager`'s build to be running.
    let ids: Vec<i64> = answer.body["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_i64().unwrap())
        .collect();
    let web = ids[0];
    let eager = ids[1];
    app.post(&format!("/v1/builds/{web}/cancel"), json!({}))
        .await;
    wait_for_log_line(&app, eager, "sleeping").await;
    let fast = github
        .commit_files(
            "acme/web",
            "main",
            &[
                ("Dockerfile", DOCKERFILE.as_bytes()),
                ("index.html", b"new\n"),
            ],
            "fast",
        )
        .unwrap();
    let mut body: Value =
        serde_json::from_slice(&push_payload("acme/web", "refs/heads/main", &fast)).unwrap();
    body["installation"]["id"] = json!(42);
    let answer = app
        .webhook("push", "push-2", body.to_string().as_bytes())
        .await;
    let newer = answer.body["builds"][1].as_i64().unwrap();
    let cancelled = app
        .wait_for_build_state(eager, "cancelled", Duration::from_secs(10))
        .await;
    assert_eq!(cancelled["reason"], format!("superseded by build #{newer}"));
    app.wait_for_build_state(newer, "completed", BUILD_DEADLINE)
        .await;
    assert!(!process_running("sleep 6073"));
}

#[tokio::test]
async fn a_registry_that_wants_credentials_gets_them_and_refuses_an_agent_without() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let password = "registry-pass-4711";
    let output = std::process::Command::new("htpasswd")
        .args(["-Bbn", "pusher", password])
        .output()
        .expect("htpasswd runs (scripts/test installs apache2-utils)");
    std::fs::write(&htpasswd, &output.stdout).unwrap();
    let registry = wharf_runtime::registry::LocalRegistry::start_with_auth(
        &dir.path().join("registry"),
        "127.0.0.1:0",
        Some(&htpasswd),
    )
    .await
    .unwrap();
    let app = app_with_repository_and(Options {
        registry: Some(registry.address.clone()),
        ..Options::default()
    })
    .await;

    // Without credentials the push is refused, and the build says so.
    let anonymous = start_builder_agent(&app, "anonymous", BUILD_DEADLINE).await;
    let files: [(&str, &[u8]); 3] = [
        ("Dockerfile", DOCKERFILE.as_bytes()),
        ("busybox", &busybox()),
        ("index.html", b"a\n"),
    ];
    let (id, _) = push(&app, &files, "push-1").await;
    let build = app.wait_for_build_state(id, "failed", BUILD_DEADLINE).await;
    assert_eq!(build["failure"]["step"], "push", "{build}");
    anonymous.stop.send(true).unwrap();
    let _ = anonymous.task.await;

    let mut config = builder_config(BUILD_DEADLINE);
    config.registry_credentials = Some(wharf_agent::RegistryCredentials {
        registry: registry.address.clone(),
        username: "pusher".to_owned(),
        password: secrecy::SecretString::from(password),
    });
    let token = app.create_agent("authorised").await;
    let _agent = start_agent_with(&app, token, config).await;
    let retried = app.post(&format!("/v1/builds/{id}/retry"), json!({})).await;
    let retry = retried.body["id"].as_i64().unwrap();
    app.wait_for_build_state(retry, "completed", BUILD_DEADLINE)
        .await;
    assert!(!log_text(&app, retry).await.contains(password));
}

#[tokio::test]
async fn a_compose_service_builds_every_service_with_a_build_section() {
    let registry = Registry::start().await;
    let app = app_with_repository_and(registry.options()).await;
    app.post(
        "/v1/services",
        json!({"name": "stack", "repo": "acme/web", "branch": "main", "compose": "deploy/compose.yml"}),
    )
    .await;
    // Only the compose service runs here: the plain `web` service is cancelled below.
    let _agent = start_builder_agent(&app, "builder", BUILD_DEADLINE).await;
    let compose = "services:\n  web:\n    build: ../web\n  worker:\n    build:\n      context: ../worker\n      dockerfile: Worker.Dockerfile\n      args:\n        ROLE: worker\n  db:\n    image: docker.io/library/postgres:15\n";
    let web = "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nCMD [\"/bin/busybox\", \"echo\", \"web\"]\n";
    let worker = "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nARG ROLE\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo $ROLE > /role\"]\n";
    let busybox = busybox();
    let (web_build, commit) = push(
        &app,
        &[
            ("deploy/compose.yml", compose.as_bytes()),
            ("web/Dockerfile", web.as_bytes()),
            ("web/busybox", &busybox),
            ("worker/Worker.Dockerfile", worker.as_bytes()),
            ("worker/busybox", &busybox),
        ],
        "push-1",
    )
    .await;
    app.post(&format!("/v1/builds/{web_build}/cancel"), json!({}))
        .await;
    let stack = app.get("/v1/builds?service=stack").await.body[0]["id"]
        .as_i64()
        .unwrap();
    let build = app
        .wait_for_build_state(stack, "completed", BUILD_DEADLINE)
        .await;
    let images = build["images"].as_array().unwrap();
    assert_eq!(images.len(), 2, "{build}");
    assert_eq!(images[0]["component"], "web");
    assert_eq!(
        images[0]["image"],
        format!("{}/default/stack/web:{commit}", registry.address)
    );
    assert_eq!(images[1]["component"], "worker");
    assert_eq!(build["compose_file"], compose);
    let worker_image = format!(
        "{}/default/stack/worker@{}",
        registry.address,
        images[1]["digest"].as_str().unwrap()
    );
    let (pulled, _, stderr) = podman(&["pull", "--tls-verify=false", &worker_image]).await;
    assert!(pulled, "{stderr}");
    let (_, role, _) =
        podman(&["run", "--rm", &worker_image, "/bin/busybox", "cat", "/role"]).await;
    assert_eq!(role, "worker\n");

    // A compose file whose context leaves the repository fails with that reason.
    let escaping = "services:\n  web:\n    build: ../../../etc\n";
    let (next_web, _) = push(
        &app,
        &[("deploy/compose.yml", escaping.as_bytes())],
        "push-2",
    )
    .await;
    app.post(&format!("/v1/builds/{next_web}/cancel"), json!({}))
        .await;
    let stack = app.get("/v1/builds?service=stack").await.body[0]["id"]
        .as_i64()
        .unwrap();
    let failed = app
        .wait_for_build_state(stack, "failed", BUILD_DEADLINE)
        .await;
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("leaves the repository"),
        "{failed}"
    );
}

#[tokio::test]
async fn an_installations_registry_login_is_used_for_its_builds() {
    let dir = tempfile::tempdir().unwrap();
    let htpasswd = dir.path().join("htpasswd");
    let password = "installation-pass-2718";
    let output = std::process::Command::new("htpasswd")
        .args(["-Bbn", "acme-builds", password])
        .output()
        .expect("htpasswd runs (scripts/test installs apache2-utils)");
    std::fs::write(&htpasswd, &output.stdout).unwrap();
    let registry = wharf_runtime::registry::LocalRegistry::start_with_auth(
        &dir.path().join("registry"),
        "127.0.0.1:0",
        Some(&htpasswd),
    )
    .await
    .unwrap();
    let app = app_with_repository_and(Options {
        registry: Some(registry.address.clone()),
        ..Options::default()
    })
    .await;
    for (body, expected) in [
        (
            json!({"username": "", "password": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"username": "a:b", "password": "x"}),
            StatusCode::BAD_REQUEST,
        ),
        (
            json!({"username": "acme-builds", "password": password}),
            StatusCode::OK,
        ),
    ] {
        let answer = app
            .post("/v1/installations/42/registry-login", body.clone())
            .await;
        assert_eq!(answer.status, expected, "{body}: {}", answer.text);
        assert!(!answer.text.contains(password));
    }
    // The agent itself has no credentials: the installation's login is what opens the registry.
    // The host `local`, where releases go by default, is played through the agent API below.
    let host = app.create_agent("local").await;
    let _agent = start_builder_agent(&app, "builder", BUILD_DEADLINE).await;
    let files: [(&str, &[u8]); 3] = [
        ("Dockerfile", DOCKERFILE.as_bytes()),
        ("busybox", &busybox()),
        ("index.html", b"b\n"),
    ];
    let (id, _) = push(&app, &files, "push-1").await;
    app.wait_for_build_state(id, "completed", BUILD_DEADLINE)
        .await;
    assert!(!log_text(&app, id).await.contains(password));
    assert!(!app.logs.text().contains(password));

    // The build's release carries the login for the registry the build pushed to, and a
    // release of an image alone (here of another registry) carries none.
    let claimed = app
        .post_as(&host, "/v1/agent/rollouts/claim", json!({"wait_ms": 10000}))
        .await;
    let login = &claimed.body["job"]["registry_login"];
    assert_eq!(
        login["registry"],
        registry.address.as_str(),
        "{}",
        claimed.text
    );
    assert_eq!(login["username"], "acme-builds");
    let rollout = claimed.body["job"]["rollout_id"].as_i64().unwrap();
    for state in ["starting", "health_checking", "live"] {
        app.post_as(
            &host,
            &format!("/v1/agent/rollouts/{rollout}/state"),
            json!({"state": state}),
        )
        .await;
    }
    let deployed = app
        .post(
            "/v1/services/web/deploy",
            json!({"image": "other.example/acme/web:1"}),
        )
        .await;
    assert_eq!(deployed.status, StatusCode::CREATED, "{}", deployed.text);
    let claimed = app
        .post_as(&host, "/v1/agent/rollouts/claim", json!({"wait_ms": 10000}))
        .await;
    assert_eq!(claimed.body["job"]["image"], "other.example/acme/web:1");
    assert!(
        claimed.body["job"]["registry_login"].is_null(),
        "{}",
        claimed.text
    );

    // Without it, the push is refused again.
    let removed = reqwest::Client::new()
        .delete(format!("{}/v1/installations/42/registry-login", app.url))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    let (id, _) = push(&app, &files, "push-2").await;
    let build = app.wait_for_build_state(id, "failed", BUILD_DEADLINE).await;
    assert_eq!(build["failure"]["step"], "push", "{build}");
}

/// Stands in for Railpack's CLI, which cannot be installed on the machines Wharf is tested on
/// (it needs BuildKit): it takes `build --name IMAGE --progress plain [--env NAME=VALUE]... DIR`
/// as the real one does, records its arguments beside itself, and leaves IMAGE among Podman's
/// images as the real one's `docker load` would, built from DIR's `busybox` and `www/`.
const RAILPACK_STAND_IN: &str = r#"#!/bin/sh
set -eu
printf '%s\n' "$@" > "$0.args"
[ "$1" = build ] || { echo "railpack: unknown command $1" >&2; exit 2; }
shift
name='' dir='' greeting=''
while [ $# -gt 0 ]; do
    case "$1" in
        --name) name=$2; shift 2 ;;
        --progress) shift 2 ;;
        --env) case "$2" in GREETING=*) greeting=${2#GREETING=} ;; esac; shift 2 ;;
        -*) echo "railpack: unknown option $1" >&2; exit 2 ;;
        *) dir=$1; shift ;;
    esac
done
echo "railpack: detected a static site in $dir"
printf 'FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nCOPY www /www\nENV GREETING="%s"\nCMD ["/bin/busybox", "httpd", "-f", "-p", "8080", "-h", "/www"]\n' "$greeting" > "$0.Dockerfile"
exec podman build --format docker --file "$0.Dockerfile" --tag "$name" "$dir"
"#;

#[tokio::test]
async fn a_repository_without_a_dockerfile_is_built_by_railpack_where_the_agent_has_it() {
    use std::os::unix::fs::PermissionsExt;
    let registry = Registry::start().await;
    let app = app_with_repository_and(registry.options()).await;
    let tools = tempfile::tempdir().unwrap();
    let railpack = tools.path().join("railpack");
    std::fs::write(&railpack, RAILPACK_STAND_IN).unwrap();
    std::fs::set_permissions(&railpack, std::fs::Permissions::from_mode(0o755)).unwrap();
    let token = app.create_agent("railpacker").await;
    let _agent = start_agent_with(
        &app,
        token,
        BuilderConfig {
            railpack: Some(railpack.clone()),
            ..builder_config(BUILD_DEADLINE)
        },
    )
    .await;
    let answer = app
        .post(
            "/v1/services/web/env",
            json!({"name": "GREETING", "value": "hello", "build": true}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let nonce = format!("{:016x}", rand::random::<u64>());
    let (id, commit) = push(
        &app,
        &[
            ("busybox", &busybox()),
            ("www/index.html", nonce.as_bytes()),
        ],
        "push-1",
    )
    .await;
    let build = app
        .wait_for_build_state(id, "completed", BUILD_DEADLINE)
        .await;
    let image = format!("{}/default/web:{commit}", registry.address);
    assert_eq!(build["image"], image);
    let log = log_text(&app, id).await;
    assert!(
        log.contains(&format!(
            "$ {} build --name {image} --progress plain --env GREETING=hello /",
            railpack.display()
        )),
        "{log}"
    );
    assert!(log.contains("railpack: detected a static site"), "{log}");
    let args = std::fs::read_to_string(tools.path().join("railpack.args")).unwrap();
    let context = args.lines().last().unwrap();
    assert!(
        context.ends_with(&format!("build-{id}/src")),
        "Railpack builds the repository's root: {args}"
    );

    // The image in the registry is Railpack's, with Wharf's labels on top.
    let by_digest = pull_by_digest(&registry, &build).await;
    let (_, inspected, _) = podman(&[
        "image",
        "inspect",
        "--format",
        "{{index .Labels \"wharf.build\"}} {{index .Labels \"wharf.commit\"}} {{.Config.Env}}",
        &by_digest,
    ])
    .await;
    assert!(
        inspected.starts_with(&format!("{id} {commit} ")) && inspected.contains("GREETING=hello"),
        "{inspected}"
    );
    let page = read_in_image(&by_digest, "/www/index.html").await;
    assert_eq!(page, nonce);

    // A build secret never goes on Railpack's command line: the build fails and says why.
    let secret = "railpack-secret-4711";
    let answer = app
        .post(
            "/v1/services/web/env",
            json!({"name": "TOKEN", "value": secret, "secret": true, "build": true}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let (id, _) = push(
        &app,
        &[("busybox", &busybox()), ("www/index.html", b"two")],
        "push-2",
    )
    .await;
    let build = app.wait_for_build_state(id, "failed", BUILD_DEADLINE).await;
    let reason = build["reason"].as_str().unwrap();
    assert!(
        reason.contains("the build secret TOKEN cannot be given to Railpack"),
        "{build}"
    );
    let args = std::fs::read_to_string(tools.path().join("railpack.args")).unwrap();
    assert!(!args.contains(secret), "{args}");
}

/// An interface (one end of a veth pair: this machine's kernel has no dummy interfaces)
/// holding the cloud metadata address, 169.254.169.254, as a cloud host answers it; removed
/// when dropped.
struct MetadataAddress {
    interface: String,
}

impl MetadataAddress {
    fn add() -> MetadataAddress {
        let interface = format!("wmeta{:x}", rand::random::<u16>());
        let peer = format!("{interface}p");
        for args in [
            vec![
                "link", "add", &interface, "type", "veth", "peer", "name", &peer,
            ],
            vec!["addr", "add", "169.254.169.254/32", "dev", &interface],
            vec!["link", "set", &peer, "up"],
            vec!["link", "set", &interface, "up"],
        ] {
            let status = std::process::Command::new("ip")
                .args(&args)
                .status()
                .unwrap();
            assert!(status.success(), "ip {args:?}");
        }
        MetadataAddress { interface }
    }
}

impl Drop for MetadataAddress {
    fn drop(&mut self) {
        let _ = std::process::Command::new("ip")
            .args(["link", "delete", &self.interface])
            .status();
    }
}

/// A `containers.conf` like this host's, whose containers get `NET_RAW` by default, as some
/// hosts' do: a build must drop it itself.
fn containers_conf_granting_net_raw(dir: &std::path::Path) -> std::path::PathBuf {
    let host = std::fs::read_to_string("/etc/containers/containers.conf").unwrap_or_default();
    let capabilities = "default_capabilities = [\"CHOWN\", \"DAC_OVERRIDE\", \"FOWNER\", \"FSETID\", \"KILL\", \"NET_BIND_SERVICE\", \"SETFCAP\", \"SETGID\", \"SETPCAP\", \"SETUID\", \"SYS_CHROOT\", \"NET_RAW\"]";
    let conf = if host.contains("[containers]") {
        host.replacen("[containers]", &format!("[containers]\n{capabilities}"), 1)
    } else {
        format!("{host}\n[containers]\n{capabilities}\n")
    };
    let path = dir.join("containers.conf");
    std::fs::write(&path, conf).unwrap();
    path
}

#[tokio::test]
async fn run_steps_have_no_raw_sockets_and_reach_the_host_only_on_the_open_build_network() {
    let conf_dir = tempfile::tempdir().unwrap();
    let conf = containers_conf_granting_net_raw(conf_dir.path());
    // SAFETY: nextest runs each test in a process of its own, and nothing in this one reads
    // the environment yet: the app, the agent and their podman commands start below.
    unsafe { std::env::set_var("CONTAINERS_CONF", &conf) };
    // A service listening on every address of the host, as Wharf's API, Caddy's admin API or
    // a registry might, and the metadata address cloud hosts answer on.
    let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut connection, _)) = listener.accept().await {
            use tokio::io::AsyncWriteExt;
            let _ = connection.write_all(b"wharf-test-host\n").await;
        }
    });
    let _metadata = MetadataAddress::add();

    let registry = Registry::start().await;
    let app = app_with_repository_and(registry.options()).await;
    let _agent = start_builder_agent(&app, "builder", BUILD_DEADLINE).await;
    let probe = format!(
        "probe() {{ if echo | /bin/busybox nc -w 5 \"$2\" {port} | /bin/busybox grep -q wharf-test-host; then echo \"$1 reached\"; else echo \"$1 unreachable\"; fi; }}\n\
         gateway=$(/bin/busybox ip route | /bin/busybox awk '/^default/ {{print $3}}')\n\
         probe host \"$gateway\"\n\
         probe metadata 169.254.169.254\n\
         if /bin/busybox ping -c 1 -W 2 127.0.0.1 >/dev/null 2>&1; then echo 'raw sockets: yes'; else echo 'raw sockets: no'; fi\n"
    );
    let dockerfile = "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nCOPY probe.sh /probe.sh\n\
RUN [\"/bin/busybox\", \"sh\", \"/probe.sh\"]\n";
    let files = [
        ("Dockerfile", dockerfile.as_bytes()),
        ("probe.sh", probe.as_bytes()),
        ("busybox", &busybox()),
    ];

    // By default a build is isolated: the internet, not the host nor link-local addresses.
    let service = app.get("/v1/services/web").await;
    assert_eq!(
        service.body["build_network"], "isolated",
        "{}",
        service.text
    );
    let (id, _) = push(&app, &files, "push-isolated").await;
    let build = app
        .wait_for_build_state(id, "completed", BUILD_DEADLINE)
        .await;
    let log = log_text(&app, id).await;
    for line in [
        "host unreachable",
        "metadata unreachable",
        "raw sockets: no",
    ] {
        assert!(
            log.lines().any(|logged| logged == line),
            "{line:?} missing from build #{id}: {build}\n{log}"
        );
    }

    // `open` gives the engine's default network, the host included; raw sockets stay off.
    let mut open = service.body.clone();
    open["build_network"] = json!("open");
    let changed = app.put("/v1/services/web", open).await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.text);
    assert_eq!(changed.body["build_network"], "open");
    let (id, _) = push(&app, &files, "push-open").await;
    let build = app
        .wait_for_build_state(id, "completed", BUILD_DEADLINE)
        .await;
    let log = log_text(&app, id).await;
    for line in ["host reached", "metadata reached", "raw sockets: no"] {
        assert!(
            log.lines().any(|logged| logged == line),
            "{line:?} missing from build #{id}: {build}\n{log}"
        );
    }
}
