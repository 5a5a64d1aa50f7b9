//! What an agent token allows, through the real HTTP API with the test playing the agents: a
//! deploy-only token takes no build, a project's token no other project's build, registering
//! asks for no label the token lacks, a host without a label gets nothing of the services that
//! label names, and a revoked token is refused at once while its work goes back or fails and
//! what was live stays live.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::sync::watch;
use wharf_agent::AgentConfig;

use crate::helpers::{Answer, TestApp, sha, spawn_app, wait_until};

/// A service of `project` built from a public URL (no GitHub App needed), deploying to `hosts`.
async fn service(app: &TestApp, name: &str, project: &str, hosts: &[&str]) {
    let answer = app
        .post(
            "/v1/services",
            json!({
                "name": name,
                "project": project,
                "repo": format!("https://git.example.com/acme/{name}"),
                "branch": "main",
                "port": 8080,
                "deploy": {"hosts": hosts},
            }),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
}

/// Queues a build of `service` by hand and answers its id.
async fn queue_build(app: &TestApp, service: &str, digit: char) -> i64 {
    let answer = app
        .post(
            &format!("/v1/services/{service}/builds"),
            json!({"ref": sha(digit)}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    answer.body["id"].as_i64().unwrap()
}

/// Releases `image` of `service` by hand and answers the release.
async fn deploy(app: &TestApp, service: &str, image: &str) -> Value {
    let answer = app
        .post(
            &format!("/v1/services/{service}/deploy"),
            json!({"image": image}),
        )
        .await;
    assert!(answer.status.is_success(), "{}", answer.text);
    answer.body
}

/// One claim of a build without waiting.
async fn claim_build(app: &TestApp, token: &str) -> Answer {
    app.post_as(token, "/v1/agent/claim", json!({"wait_ms": 0}))
        .await
}

/// One claim of a rollout without waiting.
async fn claim_rollout(app: &TestApp, token: &str) -> Answer {
    app.post_as(token, "/v1/agent/rollouts/claim", json!({"wait_ms": 0}))
        .await
}

fn error(answer: &Answer) -> &str {
    answer.body["error"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn builds_go_only_to_tokens_that_allow_build_for_their_project() {
    let app = spawn_app().await;
    service(&app, "blog", "site", &[]).await;
    service(&app, "web", "shop", &[]).await;
    let deployer = app
        .create_scoped_agent(json!({"name": "deployer", "labels": ["deploy"]}))
        .await;
    let shop_builder = app
        .create_scoped_agent(json!({"name": "shop-builder", "projects": ["shop"]}))
        .await;
    let blog_build = queue_build(&app, "blog", 'a').await;
    let web_build = queue_build(&app, "web", 'b').await;

    // A deploy-only token is refused a build, naming the label it lacks.
    let answer = claim_build(&app, &deployer).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text);
    assert!(error(&answer).contains("build"), "{}", answer.text);
    let answer = app
        .post_as(
            &deployer,
            "/v1/agent/register",
            json!({"labels": ["build", "deploy"]}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text);
    assert!(error(&answer).contains("label build"), "{}", answer.text);

    // A token for the project `shop` takes shop's build, past the older build of `site`...
    let answer = claim_build(&app, &shop_builder).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(
        answer.body["job"]["build"]["id"], web_build,
        "{}",
        answer.text
    );
    // ...and never that one, whose secrets and registry login it has no business with.
    let answer = claim_build(&app, &shop_builder).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert!(answer.body["job"].is_null(), "{}", answer.text);
    assert_eq!(app.build(blog_build).await["state"], "pending");

    let agents = app.get("/v1/agents").await;
    let listed = agents.body.as_array().unwrap();
    let deployer = listed.iter().find(|agent| agent["name"] == "deployer");
    assert_eq!(deployer.unwrap()["allowed_labels"], json!(["deploy"]));
    let shop = listed.iter().find(|agent| agent["name"] == "shop-builder");
    assert_eq!(shop.unwrap()["allowed_labels"], json!(["build", "deploy"]));
    assert_eq!(shop.unwrap()["projects"], json!(["shop"]));
}

#[tokio::test]
async fn a_host_without_a_label_gets_nothing_of_the_services_it_names() {
    let app = spawn_app().await;
    service(&app, "gpu-jobs", "lab", &["label:gpu"]).await;
    let answer = app
        .post(
            "/v1/services/gpu-jobs/env",
            json!({"name": "API_KEY", "value": "runtime-s3cret", "secret": true}),
        )
        .await;
    assert!(answer.status.is_success(), "{}", answer.text);
    let edge = app
        .create_scoped_agent(json!({"name": "edge", "labels": ["deploy"]}))
        .await;
    let gpu = app
        .create_scoped_agent(json!({"name": "gpu-1", "labels": ["deploy", "gpu"]}))
        .await;

    // Asking for a label the token lacks is refused, naming it; asking for less is fine.
    let answer = app
        .post_as(
            &edge,
            "/v1/agent/register",
            json!({"labels": ["deploy", "gpu"]}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text);
    assert!(error(&answer).contains("label gpu"), "{}", answer.text);
    let answer = app
        .post_as(&edge, "/v1/agent/register", json!({"labels": ["deploy"]}))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.body["agent"]["labels"], json!(["deploy"]));
    let answer = app
        .post_as(
            &gpu,
            "/v1/agent/register",
            json!({"labels": ["deploy", "gpu"]}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);

    // The release goes to the host whose token allows `gpu` only.
    let release = deploy(&app, "gpu-jobs", "registry.test/lab/gpu-jobs:v1").await;
    let hosts: Vec<&Value> = release["rollouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|rollout| &rollout["agent"])
        .collect();
    assert_eq!(hosts, [&json!("gpu-1")], "{release}");
    let answer = claim_rollout(&app, &edge).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert!(answer.body["job"].is_null(), "{}", answer.text);
    app.roll_out_live(&gpu).await;
    let desired = app.get_as(&edge, "/v1/agent/desired").await;
    assert_eq!(desired.status, StatusCode::OK, "{}", desired.text);
    assert_eq!(desired.body["live"], json!([]), "{}", desired.text);
    assert!(!desired.text.contains("runtime-s3cret"));
    let desired = app.get_as(&gpu, "/v1/agent/desired").await;
    assert_eq!(
        desired.body["live"][0]["service"], "gpu-jobs",
        "{}",
        desired.text
    );
}

#[tokio::test]
async fn a_revoked_token_is_refused_and_its_work_returns_or_fails_while_the_live_release_stays() {
    let app = spawn_app().await;
    service(&app, "web", "shop", &["edge-1"]).await;
    let edge = app.create_agent("edge-1").await;
    let other = app.create_agent("other").await;
    let first = deploy(&app, "web", "registry.test/shop/web:v1").await;
    app.roll_out_live(&edge).await;
    let second = deploy(&app, "web", "registry.test/shop/web:v2").await;
    let claimed = claim_rollout(&app, &edge).await;
    let rollout = claimed.body["job"]["rollout_id"].as_i64().unwrap();
    assert_eq!(claimed.body["job"]["release_id"], second["id"]);
    let answer = app
        .post_as(
            &edge,
            &format!("/v1/agent/rollouts/{rollout}/state"),
            json!({"state": "starting"}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let build = queue_build(&app, "web", 'c').await;
    let answer = claim_build(&app, &edge).await;
    assert_eq!(answer.body["job"]["build"]["id"], build, "{}", answer.text);

    let answer = app.post("/v1/agents/edge-1/revoke", json!({})).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.body["requeued_builds"], json!([build]));
    assert_eq!(answer.body["failed_rollouts"], json!([rollout]));
    assert!(answer.body["agent"]["revoked_at"].is_string());

    // The token no longer authenticates, for anything.
    for answer in [
        app.post_as(&edge, "/v1/agent/register", json!({})).await,
        app.post_as(&edge, "/v1/agent/heartbeat", json!({"builds": [build]}))
            .await,
        app.get_as(&edge, "/v1/agent/desired").await,
        claim_build(&app, &edge).await,
    ] {
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
    }

    // Its build is back in the queue for another agent.
    let requeued = app.build(build).await;
    assert_eq!(requeued["state"], "pending", "{requeued}");
    assert!(requeued["agent"].is_null(), "{requeued}");
    let answer = claim_build(&app, &other).await;
    assert_eq!(answer.body["job"]["build"]["id"], build, "{}", answer.text);

    // Its rollout failed with the reason; the release before stays live on its host.
    let failed = app.get(&format!("/v1/releases/{}", second["id"])).await;
    assert_eq!(failed.body["state"], "failed", "{}", failed.text);
    assert_eq!(failed.body["reason"], "agent edge-1 was revoked");
    let live = app.get(&format!("/v1/releases/{}", first["id"])).await;
    assert_eq!(live.body["state"], "live", "{}", live.text);
    assert_eq!(live.body["rollouts"][0]["agent"], "edge-1");
    assert_eq!(live.body["rollouts"][0]["state"], "live");

    // Revoking again changes nothing; a name no agent has is not found.
    let again = app.post("/v1/agents/edge-1/revoke", json!({})).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body["requeued_builds"], json!([]));
    let unknown = app.post("/v1/agents/nobody/revoke", json!({})).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND, "{}", unknown.text);
}

#[tokio::test]
async fn an_agent_asking_for_a_label_its_token_lacks_stops_saying_which() {
    let app = spawn_app().await;
    let token = app
        .create_scoped_agent(json!({"name": "builder", "labels": ["build"]}))
        .await;
    let (_stop, stopped) = watch::channel(false);
    let config = AgentConfig {
        server: app.url.clone(),
        token: SecretString::from(token),
        labels: vec!["build".to_owned(), "deploy".to_owned()],
        work_dir: std::env::temp_dir(),
        claim_wait: Duration::from_secs(5),
        deploy: None,
    };
    let builder = wharf_agent::ImageBuilder {
        config: crate::parts::builder_config(Duration::from_secs(60)),
    };
    let ended = tokio::time::timeout(
        Duration::from_secs(10),
        wharf_agent::run(config, builder, stopped),
    )
    .await
    .expect("the agent stops by itself");
    let error = format!("{:#}", ended.expect_err("the agent stops with an error"));
    assert!(error.contains("does not allow the label deploy"), "{error}");
}

#[tokio::test]
async fn a_running_agent_whose_token_is_revoked_stops_saying_why() {
    let app = spawn_app().await;
    let token = app
        .create_scoped_agent(json!({"name": "builder", "labels": ["build"]}))
        .await;
    let (_stop, stopped) = watch::channel(false);
    let work_dir = tempfile::tempdir().unwrap();
    let config = AgentConfig {
        server: app.url.clone(),
        token: SecretString::from(token),
        labels: vec!["build".to_owned()],
        work_dir: work_dir.path().to_path_buf(),
        claim_wait: Duration::from_secs(5),
        deploy: None,
    };
    let builder = wharf_agent::ImageBuilder {
        config: crate::parts::builder_config(Duration::from_secs(60)),
    };
    let agent = tokio::spawn(wharf_agent::run(config, builder, stopped));
    // The agent registers, then waits in a claim.
    wait_until("the agent registers", Duration::from_secs(10), || async {
        app.get("/v1/agents").await.body[0]["last_seen_at"].is_string()
    })
    .await;
    let revoked = app.post("/v1/agents/builder/revoke", json!({})).await;
    assert_eq!(revoked.status, StatusCode::OK, "{}", revoked.text);

    // Its next claim or heartbeat is refused, and it stops instead of retrying forever.
    let ended = tokio::time::timeout(Duration::from_secs(20), agent)
        .await
        .expect("the agent stops by itself")
        .unwrap();
    let error = format!("{:#}", ended.expect_err("the agent stops with an error"));
    assert!(
        error.contains("no longer takes this agent's token"),
        "{error}"
    );
    assert!(error.contains("wharf agents create"), "{error}");
}

#[tokio::test]
async fn a_deploy_log_takes_lines_only_from_the_host_running_the_rollout_and_streams_to_its_end() {
    let app = spawn_app().await;
    service(&app, "web", "shop", &["edge-1"]).await;
    let edge = app.create_agent("edge-1").await;
    let other = app.create_agent("other").await;
    let builder = app
        .create_scoped_agent(json!({"name": "builder", "labels": ["build"]}))
        .await;
    let release = deploy(&app, "web", "registry.test/shop/web:v1").await;
    let rollout = release["rollouts"][0]["id"].as_i64().unwrap();
    let append = |token: &str, text: &str| {
        let body = json!({"lines": [{"stream": "wharf", "text": text}]});
        let path = format!("/v1/agent/rollouts/{rollout}/logs");
        let token = token.to_owned();
        let app = &app;
        async move { app.post_as(&token, &path, body).await }
    };
    // Before its host has claimed it, nobody writes; then only its host does.
    let early = append(&edge, "early").await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{}", early.text);
    let claimed = claim_rollout(&app, &edge).await;
    assert_eq!(
        claimed.body["job"]["rollout_id"], rollout,
        "{}",
        claimed.text
    );
    let forged = append(&other, "forged").await;
    assert_eq!(forged.status, StatusCode::CONFLICT, "{}", forged.text);
    let undeploying = append(&builder, "forged").await;
    assert_eq!(
        undeploying.status,
        StatusCode::FORBIDDEN,
        "{}",
        undeploying.text
    );
    let unauthenticated = app
        .post_as(
            "not-a-token",
            &format!("/v1/agent/rollouts/{rollout}/logs"),
            json!({"lines": []}),
        )
        .await;
    assert_eq!(unauthenticated.status, StatusCode::UNAUTHORIZED);
    // An admin token is no agent's.
    let admin = app
        .post(
            &format!("/v1/agent/rollouts/{rollout}/logs"),
            json!({"lines": [{"stream": "wharf", "text": "forged"}]}),
        )
        .await;
    assert_eq!(admin.status, StatusCode::UNAUTHORIZED, "{}", admin.text);
    let taken = append(&edge, "pull: registry.test/shop/web:v1").await;
    assert_eq!(taken.status, StatusCode::OK, "{}", taken.text);
    assert_eq!(taken.body["truncated"], false);

    // Followed live: the line so far, then what comes until the rollout ends, then the end.
    let id = release["id"].as_i64().unwrap();
    let mut stream = app
        .http
        .get(format!("{}/v1/releases/{id}/logs/stream", app.url))
        .bearer_auth(crate::helpers::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut read_until = async |needle: &str, seen: &mut String| {
        while !seen.contains(needle) {
            let chunk = tokio::time::timeout_at(deadline, stream.chunk())
                .await
                .unwrap_or_else(|_| panic!("no {needle:?} in the stream: {seen}"))
                .unwrap()
                .unwrap_or_else(|| panic!("the stream ended before {needle:?}: {seen}"));
            seen.push_str(&String::from_utf8_lossy(&chunk));
        }
    };
    read_until("pull: registry.test", &mut seen).await;
    assert!(seen.contains("\"host\":\"edge-1\""), "{seen}");
    assert!(!seen.contains("forged"), "{seen}");
    let later = append(&edge, "live: release").await;
    assert_eq!(later.status, StatusCode::OK, "{}", later.text);
    read_until("live: release", &mut seen).await;
    for state in ["starting", "health_checking", "live"] {
        let answer = app
            .post_as(
                &edge,
                &format!("/v1/agent/rollouts/{rollout}/state"),
                json!({"state": state}),
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    }
    read_until("event: done", &mut seen).await;
    assert!(seen.contains("\"state\":\"live\""), "{seen}");
    // The rollout is over: its host writes no more.
    let late = append(&edge, "late").await;
    assert_eq!(late.status, StatusCode::CONFLICT, "{}", late.text);
    let page = app.get(&format!("/v1/releases/{id}/logs")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    assert_eq!(page.body["complete"], true, "{}", page.text);
    let texts: Vec<&str> = page.body["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| line["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["pull: registry.test/shop/web:v1", "live: release"]);
    let missing = app.get("/v1/releases/999999/logs").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text);
}
