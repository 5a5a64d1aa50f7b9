//! Services on a git repository of the server's own machine (`wharf up`'s first steps): the CLI
//! turns a directory into its repository and build context, only `wharf up`'s own agent builds
//! them (with real git, Podman and a registry), and any other server refuses them.

use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{ADMIN_TOKEN, Options, TestApp, run_cli, spawn_app, spawn_app_with};
use crate::parts::{Registry, builder_config, busybox, start_agent_with};

const BUILD_DEADLINE: Duration = Duration::from_secs(180);

/// Runs the real `wharf` CLI in `dir` against the app; answers whether it succeeded and what
/// it printed.
async fn wharf_in(app: &TestApp, dir: &Path, args: &[&str]) -> (bool, String) {
    let run = run_cli(app, Some(ADMIN_TOKEN), args, b"", Some(dir)).await;
    (run.ok(), run.text())
}

fn git(dir: &Path, args: &[&str]) {
    let output = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=Wharf",
            "-c",
            "user.email=wharf@example.com",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A git repository on `main` holding an app in `app/` (a Dockerfile serving a page with
/// busybox) and, at its root, something else; answers the directory.
fn repository_with_an_app() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir(root.join("app")).unwrap();
    std::fs::write(
        root.join("app/Dockerfile"),
        "FROM scratch\nCOPY --chmod=755 busybox /bin/busybox\nCOPY index.html /www/index.html\n\
         CMD [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"8080\", \"-h\", \"/www\"]\n",
    )
    .unwrap();
    std::fs::write(root.join("app/busybox"), busybox()).unwrap();
    std::fs::write(
        root.join("app/index.html"),
        "hello from a local repository\n",
    )
    .unwrap();
    std::fs::write(root.join("README"), "not the app\n").unwrap();
    git(root, &["init", "-q", "-b", "main"]);
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "an app"]);
    dir
}

#[tokio::test]
async fn a_server_not_started_by_wharf_up_refuses_a_local_repository() {
    let app = spawn_app().await;
    let created = app
        .post(
            "/v1/services",
            json!({"name": "hello", "repo": "/srv/hello", "branch": "main"}),
        )
        .await;
    assert_eq!(created.status, StatusCode::BAD_REQUEST, "{}", created.text);
    assert!(created.text.contains("wharf up"), "{}", created.text);
}

#[tokio::test]
async fn a_local_repository_is_built_by_wharf_ups_own_agent_and_by_no_other() {
    let registry = Registry::start().await;
    let app = spawn_app_with(Options {
        local_repositories: true,
        ..registry.options()
    })
    .await;
    let repository = repository_with_an_app();
    let root = std::fs::canonicalize(repository.path()).unwrap();

    // The CLI, run in the repository, names the app's directory; the server gets the
    // repository's root with the directory as the build context.
    let (ok, created) = wharf_in(
        &app,
        &root,
        &[
            "service", "create", "hello", "--repo", "./app", "--branch", "main", "--port", "8080",
        ],
    )
    .await;
    assert!(ok, "{created}");
    let service = app.get("/v1/services/hello").await;
    assert_eq!(
        service.body["repo"],
        root.to_str().unwrap(),
        "{}",
        service.text
    );
    assert_eq!(service.body["context"], "app", "{}", service.text);
    assert_eq!(
        service.body["dockerfile"], "app/Dockerfile",
        "{}",
        service.text
    );

    // A manual build reads the branch's head from the repository itself.
    let (ok, triggered) = wharf_in(&app, &root, &["build", "trigger", "hello"]).await;
    assert!(ok, "{triggered}");
    let builds = app.builds().await;
    let id = builds[0]["id"].as_i64().unwrap();
    let head = std::process::Command::new("git")
        .args(["rev-parse", "main"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert_eq!(
        builds[0]["commit_sha"],
        String::from_utf8_lossy(&head.stdout).trim(),
        "{builds:?}"
    );

    // Any other agent, however broad its token, is never handed it: it would read its own
    // machine's files, or be given the server's.
    let outsider = app.create_agent("outsider").await;
    let claim = app
        .post_as(&outsider, "/v1/agent/claim", json!({"wait_ms": 0}))
        .await;
    assert_eq!(claim.status, StatusCode::OK, "{}", claim.text);
    assert!(claim.body["job"].is_null(), "{}", claim.text);
    let credentials = app
        .post_as(
            &outsider,
            &format!("/v1/agent/builds/{id}/clone-credentials"),
            json!({}),
        )
        .await;
    assert!(!credentials.status.is_success(), "{}", credentials.text);

    // `wharf up`'s own agent builds it, fetching the commit over git's file transport.
    let token = wharf_server::issue_local_agent_token(&app.store, "local")
        .await
        .unwrap();
    let agent = start_agent_with(&app, token, builder_config(BUILD_DEADLINE)).await;
    let build = app
        .wait_for_build_state(id, "completed", BUILD_DEADLINE)
        .await;
    assert_eq!(build["agent"], "local", "{build}");
    let image = build["image"].as_str().unwrap_or_default();
    assert!(
        image.starts_with(&format!("{}/default/hello:", registry.address)),
        "{build}"
    );
    let _ = agent.stop.send(true);
}
