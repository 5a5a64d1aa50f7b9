//! A crash right after a 2xx loses nothing: the real `wharf server` process is killed with
//! SIGKILL the moment it answers, and a new process finds every accepted delivery and build.

use std::process::Stdio;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{
    ADMIN_TOKEN, ServerProcess, listening_url, push_payload, sha, sign, spawn_app,
    start_wharf_server,
};

async fn start_server_process(database_url: &str) -> ServerProcess {
    start_wharf_server(&[
        ("WHARF_DATABASE_URL", database_url),
        ("WHARF_SECRET_KEY", &"ab".repeat(32)),
    ])
    .await
}

#[tokio::test]
async fn a_server_killed_right_after_answering_loses_no_accepted_delivery() {
    // The in-process app only prepares the database (and holds it for the test's life).
    let app = spawn_app().await;
    app.create_service("web", "acme/web", "main").await;
    let database_url = app.database_url.clone();

    let mut server = start_server_process(&database_url).await;
    let http = reqwest::Client::new();
    let mut accepted = Vec::new();
    for (index, digit) in ['a', 'b', 'c', 'd'].into_iter().enumerate() {
        let body = push_payload("acme/web", "refs/heads/main", &sha(digit));
        let response = http
            .post(format!("{}/api/webhooks/github", server.url))
            .header("x-github-event", "push")
            .header("x-github-delivery", format!("crash-{index}"))
            .header("x-hub-signature-256", sign(&body))
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        accepted.push(format!("crash-{index}"));
    }
    // SIGKILL: no shutdown code runs.
    server.child.start_kill().unwrap();
    server.child.wait().await.unwrap();

    let restarted = start_server_process(&database_url).await;
    for delivery in &accepted {
        assert!(
            app.store
                .delivery_outcome(delivery)
                .await
                .unwrap()
                .is_some(),
            "{delivery} was lost"
        );
    }
    let builds: Value = http
        .get(format!("{}/v1/builds?service=web", restarted.url))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let builds = builds.as_array().unwrap();
    assert_eq!(builds.len(), 4);
    assert_eq!(builds[0]["commit_sha"], sha('d'));
    assert_eq!(builds[0]["state"], "pending");
    // And the newest is still handed to an agent after the restart.
    let token: Value = http
        .post(format!("{}/v1/agents", restarted.url))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({"name": "after-crash"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let claim: Value = http
        .post(format!("{}/v1/agent/claim", restarted.url))
        .bearer_auth(token["token"].as_str().unwrap())
        .json(&json!({"wait_ms": 1000}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(claim["job"]["build"]["commit_sha"], sha('d'));
}

#[tokio::test]
async fn settings_come_from_a_toml_file_and_its_mistakes_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("wharf.toml");
    std::fs::write(
        &good,
        format!(
            "listen = \"127.0.0.1:0\"\ndata_dir = \"{}\"\ntoken = \"from-the-file-0123456789-0123456789\"\nmax_attempts = 5\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["server", "--config"])
        .arg(&good)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = listening_url(&mut child).await;
    let listed = reqwest::Client::new()
        .get(format!("{url}/v1/services"))
        .bearer_auth("from-the-file-0123456789-0123456789")
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), StatusCode::OK);
    assert!(dir.path().join("data/wharf.db").exists());
    child.start_kill().unwrap();

    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "listne = \"127.0.0.1:0\"\n").unwrap();
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_wharf"))
        .args(["server", "--config"])
        .arg(&bad)
        .env_clear()
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("unknown key \"listne\""), "{stderr}");
}
