//! Builds with real parts: the stand-in's git server, Podman and a real registry. A push becomes
//! an image in the registry that runs; failures end as failed builds with a clear reason and the
//! failing step; a cancel kills the build at once; the agent stays up throughout.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, push_payload, spawn_app_with};
use crate::parts::{Registry, busybox, podman, start_builder_agent};

const BUILD_DEADLINE: Duration = Duration::from_secs(180);

const DOCKERFILE: &str = "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nCOPY index.html /www/index.html\n\
HEALTHCHECK CMD [\"/bin/busybox\", \"wget\", \"-q\", \"-O\", \"-\", \"http://127.0.0.1:8080/\"]\n\
CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n";

/// An app with the GitHub stand-in, an installation holding `acme/web`, and a service `web`
/// that tracks its `main` branch.
async fn app_with_repository() -> TestApp {
    let app = spawn_app_with(Options {
        github: true,
        ..Options::default()
    })
    .await;
    let github = app.github.as_ref().unwrap();
    github.add_installation(42, "acme");
    github.add_repository(42, "acme/web").unwrap();
    let installed = json!({
        "action": "created",
        "installation": {"id": 42, "account": {"login": "acme", "type": "Organization"}},
        "repositories": [{"id": 1, "full_name": "acme/web", "private": true}]
    });
    app.webhook(
        "installation",
        "install-1",
        installed.to_string().as_bytes(),
    )
    .await;
    app.create_service("web", "acme/web", "main").await;
    app
}

/// Commits files to `acme/web` on `main` and delivers the push; returns the build's id and commit.
async fn push(app: &TestApp, files: &[(&str, &[u8])], delivery: &str) -> (i64, String) {
    let github = app.github.as_ref().unwrap();
    let commit = github
        .commit_files("acme/web", "main", files, "a change")
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

async fn log_text(app: &TestApp, id: i64) -> String {
    let logs = app.get(&format!("/v1/builds/{id}/logs")).await;
    assert_eq!(logs.status, StatusCode::OK, "{}", logs.text);
    logs.body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["text"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test]
async fn a_push_becomes_an_image_in_the_registry_that_runs() {
    let app = app_with_repository().await;
    let registry = Registry::start().await;
    let agent = start_builder_agent(&app, "builder", Some(&registry.address), BUILD_DEADLINE).await;
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
    let (ran, output, stderr) = podman(&[
        "run",
        "--rm",
        &by_digest,
        "/bin/busybox",
        "cat",
        "/www/index.html",
    ])
    .await;
    assert!(ran, "{stderr}");
    assert_eq!(output, "hello from wharf\n");
    let _ = podman(&["rmi", &by_digest]).await;

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
    let app = app_with_repository().await;
    let registry = Registry::start().await;
    let _agent =
        start_builder_agent(&app, "builder", Some(&registry.address), BUILD_DEADLINE).await;

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
        "repositories_added": [{"id": 2, "full_name": "acme/docs", "private": true}],
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
            .contains("nothing to build"),
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
    let app = app_with_repository().await;
    // A port nothing listens on: bind one, learn it, and let it go.
    let address = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().to_string()
    };
    let _agent = start_builder_agent(&app, "builder", Some(&address), BUILD_DEADLINE).await;
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
async fn a_cancel_stops_the_build_within_seconds() {
    let app = app_with_repository().await;
    let registry = Registry::start().await;
    let agent = start_builder_agent(&app, "builder", Some(&registry.address), BUILD_DEADLINE).await;
    let slow = "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nRUN [\"/bin/busybox\", \"sh\", \"-c\", \"echo sleeping; sleep 600\"]\n";
    let (id, _) = push(
        &app,
        &[("Dockerfile", slow.as_bytes()), ("busybox", &busybox())],
        "push-1",
    )
    .await;
    // Wait until the RUN step is really running.
    let deadline = tokio::time::Instant::now() + BUILD_DEADLINE;
    while !log_text(&app, id)
        .await
        .lines()
        .any(|line| line == "sleeping")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the build never started sleeping"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
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
    let app = app_with_repository().await;
    let registry = Registry::start().await;
    let _agent =
        start_builder_agent(&app, "builder", Some(&registry.address), BUILD_DEADLINE).await;
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
