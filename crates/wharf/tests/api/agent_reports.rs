//! What the server takes from agents' reports: a completed build's images must be the ones that
//! build pushes, to the server's registry, with sha256 digests, and a compose file only for a
//! compose service, or the build fails with the reason; a rollout report that changed nothing
//! (the rollout moved meanwhile) is refused with 409.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TEST_REGISTRY, TestApp, sha, spawn_app, wait_until};

fn digest(digit: char) -> String {
    format!("sha256:{}", digit.to_string().repeat(64))
}

/// Reports build `id` completed with `body`'s fields; answers the build as the server keeps it.
async fn complete(app: &TestApp, agent: &str, id: i64, mut body: Value) -> Value {
    body["state"] = json!("completed");
    let answer = app
        .post_as(agent, &format!("/v1/agent/builds/{id}/state"), body)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let build = app.build(id).await;
    assert_eq!(answer.body["state"], build["state"], "{}", answer.text);
    build
}

#[tokio::test]
async fn a_completed_build_must_report_its_own_images_in_the_servers_registry() {
    let app = spawn_app().await;
    app.create_service("web", "https://git.example.com/acme/web", "main")
        .await;
    let stack = app
        .post(
            "/v1/services",
            json!({"name": "stack", "repo": "https://git.example.com/acme/stack",
                   "branch": "main", "compose": "deploy/compose.yml"}),
        )
        .await;
    assert_eq!(stack.status, StatusCode::CREATED, "{}", stack.text);
    let agent = app.create_agent("builder").await;
    let compose = "services:\n  web:\n    build: ../web\n  worker:\n    build: ../worker\n  db:\n    image: postgres:15\n";

    let commit = sha('a');
    let own = format!("{TEST_REGISTRY}/default/web:{commit}");
    let cases = [
        (
            json!({"image": format!("{TEST_REGISTRY}/default/api:{commit}"), "digest": digest('1')}),
            format!(
                "the agent reported the image {TEST_REGISTRY}/default/api:{commit}, but this build pushes {own}"
            ),
        ),
        (
            json!({"image": format!("evil.test/default/web:{commit}"), "digest": digest('1')}),
            format!("but this build pushes {own}"),
        ),
        (
            json!({"image": format!("{TEST_REGISTRY}/default/web:{}", sha('b')), "digest": digest('1')}),
            format!("but this build pushes {own}"),
        ),
        (
            json!({"image": own, "digest": "sha256:00"}),
            "which is not sha256: and 64 lowercase hex digits".to_owned(),
        ),
        (
            json!({"images": [{"image": own, "digest": digest('1')}], "compose_file": compose}),
            "a compose file for web, which is not built from one".to_owned(),
        ),
        (json!({}), "completed without an image".to_owned()),
    ];
    for (body, reason) in cases {
        let id = app.claimed_build(&agent, "web", &commit).await;
        let build = complete(&app, &agent, id, body.clone()).await;
        assert_eq!(build["state"], "failed", "{body}: {build}");
        let kept = build["reason"].as_str().unwrap();
        assert!(
            kept.starts_with("the agent's report was refused: ") && kept.contains(&reason),
            "{body}: {kept}"
        );
        assert!(
            build["image"].is_null() && build["compose_file"].is_null(),
            "{build}"
        );
        assert_eq!(build["images"], json!([]), "{build}");
    }
    // Nothing of those became a release; the build's own image completes it.
    let id = app.claimed_build(&agent, "web", &commit).await;
    let build = complete(
        &app,
        &agent,
        id,
        json!({"image": own, "digest": digest('2'), "images": [{"image": own, "digest": digest('2')}]}),
    )
    .await;
    assert_eq!(build["state"], "completed", "{build}");
    assert_eq!(build["image"], own);

    // A compose build pushes one image per compose service with a build: section.
    let member = |component: &str| json!({"component": component, "image": format!("{TEST_REGISTRY}/default/stack/{component}:{commit}"), "digest": digest('3')});
    for (images, compose_file, reason) in [
        (
            json!([member("web"), member("worker"), member("db")]),
            Some(compose),
            "\"db\", which is not a service with a build: section",
        ),
        (
            json!([member("web")]),
            Some(compose),
            "no image for the compose service worker",
        ),
        (
            json!([member("web"), member("worker")]),
            None,
            "no compose file",
        ),
    ] {
        let id = app.claimed_build(&agent, "stack", &commit).await;
        let build = complete(
            &app,
            &agent,
            id,
            json!({"images": images, "compose_file": compose_file}),
        )
        .await;
        assert_eq!(build["state"], "failed", "{build}");
        assert!(
            build["reason"].as_str().unwrap().contains(reason),
            "{build}"
        );
    }
    let id = app.claimed_build(&agent, "stack", &commit).await;
    let build = complete(
        &app,
        &agent,
        id,
        json!({"images": [member("web"), member("worker")], "compose_file": compose}),
    )
    .await;
    assert_eq!(build["state"], "completed", "{build}");

    // Another agent still cannot report on a build it does not hold.
    let other = app.create_agent("other").await;
    let id = app.claimed_build(&agent, "web", &commit).await;
    let answer = app
        .post_as(
            &other,
            &format!("/v1/agent/builds/{id}/state"),
            json!({"state": "completed", "image": own, "digest": digest('4')}),
        )
        .await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.text);
    assert_eq!(app.build(id).await["state"], "claimed");
}

#[tokio::test]
async fn registering_agents_learn_the_servers_registry() {
    let app = spawn_app().await;
    let agent = app.create_agent("builder").await;
    let settings = app
        .post_as(&agent, "/v1/agent/register", json!({"labels": ["build"]}))
        .await;
    assert_eq!(settings.status, StatusCode::OK, "{}", settings.text);
    assert_eq!(settings.body["registry"], TEST_REGISTRY);
    assert_eq!(settings.body["registry_insecure"], true);
}

fn now_millis() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

async fn report_rollout(
    app: &TestApp,
    agent: &str,
    rollout: i64,
    state: &str,
) -> crate::helpers::Answer {
    app.post_as(
        agent,
        &format!("/v1/agent/rollouts/{rollout}/state"),
        json!({"state": state}),
    )
    .await
}

#[tokio::test]
async fn a_live_report_racing_the_lease_job_is_refused_and_the_previous_release_stays_live() {
    let app = spawn_app().await;
    app.create_service("web", "https://git.example.com/acme/web", "main")
        .await;
    let agent = app.create_agent("local").await;
    let first = app
        .post(
            "/v1/services/web/deploy",
            json!({"image": "registry.test/default/web:v1"}),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    app.roll_out_live(&agent).await;
    let second = app
        .post(
            "/v1/services/web/deploy",
            json!({"image": "registry.test/default/web:v2"}),
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.text);
    let claimed = app
        .post_as(
            &agent,
            "/v1/agent/rollouts/claim",
            json!({"wait_ms": 10000}),
        )
        .await;
    let rollout = claimed.body["job"]["rollout_id"].as_i64().unwrap();
    for state in ["starting", "health_checking"] {
        let answer = report_rollout(&app, &agent, rollout, state).await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    }

    // The lease job fails the rollout in a transaction that commits while the agent's report
    // of it going live is under way: the report read the rollout before that commit.
    let held = wharf_store::testing::fail_rollout_uncommitted(&app.store, rollout, now_millis())
        .await
        .unwrap();
    let report = {
        let app_url = app.url.clone();
        let agent = agent.clone();
        tokio::spawn(async move {
            let response = reqwest::Client::new()
                .post(format!("{app_url}/v1/agent/rollouts/{rollout}/state"))
                .bearer_auth(agent)
                .json(&json!({"state": "live"}))
                .send()
                .await
                .unwrap();
            crate::helpers::Answer::read(response).await
        })
    };
    wait_until(
        "the report waits for the rollout the lease job holds",
        Duration::from_secs(10),
        || async {
            wharf_store::testing::statement_waits_for_lock(&app.store)
                .await
                .unwrap()
        },
    )
    .await;
    held.commit().await.unwrap();
    let answer = report.await.unwrap();
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.text);

    // The host keeps the release that was live: the refused report retired nothing.
    let first = app.get(&format!("/v1/releases/{}", first.body["id"])).await;
    assert_eq!(first.body["state"], "live", "{}", first.text);
    let second = app
        .get(&format!("/v1/releases/{}", second.body["id"]))
        .await;
    assert_eq!(
        second.body["rollouts"][0]["state"], "failed",
        "{}",
        second.text
    );

    // A report after the lease job gave up is refused the same way.
    let answer = report_rollout(&app, &agent, rollout, "live").await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.text);
}
