//! Deployments and their statuses, the App's webhook deliveries and a branch's head, against
//! the GitHub stand-in, which checks every request against GitHub's OpenAPI description: what
//! is sent, what comes back, how failures are told apart (worth another try later, or not),
//! every page of deliveries read through its `cursor`, and a redelivery really sent.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::json;
use wharf_github::{
    AppConfig, DeploymentState, GithubApp, NewDeployment, NewDeploymentStatus, RetryPolicy,
};
use wharf_github_standin::{AppKey, GithubStandin, StandinConfig};

const APP_ID: u64 = 4242;

struct Fixture {
    standin: GithubStandin,
    app: GithubApp,
    sha: String,
}

async fn start() -> Fixture {
    let key = AppKey::generate().unwrap();
    let standin = GithubStandin::start(StandinConfig::new(APP_ID, &key.public_pem))
        .await
        .unwrap();
    standin.add_installation(42, "acme");
    standin.add_repository(42, "acme/web").unwrap();
    let sha = standin
        .commit_files("acme/web", "main", &[("README", b"hi\n")], "first")
        .unwrap();
    let app = GithubApp::new(&AppConfig {
        app_id: APP_ID,
        private_key: SecretString::from(key.private_pem.clone()),
        api_url: standin.api_url(),
    })
    .unwrap()
    .with_retry(RetryPolicy {
        attempts: 1,
        first_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(10),
    });
    Fixture { standin, app, sha }
}

fn assert_no_violations(standin: &GithubStandin) {
    assert!(
        standin.schema_violations().is_empty(),
        "{:#?}",
        standin.schema_violations()
    );
}

#[tokio::test]
async fn a_deployment_and_its_statuses_reach_github_as_its_api_describes() {
    let Fixture { standin, app, sha } = start().await;
    let mut new = NewDeployment::new(&sha, "staging", false);
    new.description = Some("Wharf build #7 of web".to_owned());
    new.payload = json!({"wharf_build": 7});
    let deployment = app
        .create_deployment(42, "acme", "web", &new)
        .await
        .unwrap();
    assert_eq!(deployment.sha, sha);
    assert_eq!(deployment.environment, "staging");
    assert_eq!(deployment.payload, json!({"wharf_build": 7}));

    let created = standin.requests().last().unwrap().body.clone().unwrap();
    assert_eq!(
        created,
        json!({
            "ref": sha,
            "task": "deploy",
            "auto_merge": false,
            "required_contexts": [],
            "payload": {"wharf_build": 7},
            "environment": "staging",
            "description": "Wharf build #7 of web",
            "transient_environment": false,
            "production_environment": false
        })
    );

    let mut queued = NewDeploymentStatus::new(DeploymentState::Queued);
    queued.log_url = Some("https://wharf.example.com/builds/7".to_owned());
    queued.description = Some("Queued".to_owned());
    app.create_deployment_status(42, "acme", "web", deployment.id, &queued)
        .await
        .unwrap();
    let mut success = NewDeploymentStatus::new(DeploymentState::Success);
    success.log_url = queued.log_url.clone();
    success.environment_url = Some("https://web.example.com".to_owned());
    app.create_deployment_status(42, "acme", "web", deployment.id, &success)
        .await
        .unwrap();
    let statuses = standin.deployment_statuses(deployment.id);
    let states: Vec<&str> = statuses
        .iter()
        .map(|status| status["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["queued", "success"]);
    assert_eq!(statuses[0]["log_url"], "https://wharf.example.com/builds/7");
    assert_eq!(statuses[1]["environment_url"], "https://web.example.com");
    // Absent optional fields are left out, not sent as null.
    let sent = standin.requests().last().unwrap().body.clone().unwrap();
    assert_eq!(sent.as_object().unwrap().len(), 3, "{sent}");

    let found = app
        .deployments_of_commit(42, "acme", "web", &sha, "staging")
        .await
        .unwrap();
    assert_eq!(found, vec![deployment]);
    let elsewhere = app
        .deployments_of_commit(42, "acme", "web", &sha, "production")
        .await
        .unwrap();
    assert!(elsewhere.is_empty());
    assert_no_violations(&standin);
}

#[tokio::test]
async fn failures_say_whether_a_later_try_can_work() {
    let Fixture { standin, app, sha } = start().await;
    let new = NewDeployment::new(&sha, "production", true);

    standin.fail_next("/repos/acme/web/deployments", 502, 1);
    let error = app
        .create_deployment(42, "acme", "web", &new)
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");

    standin.fail_next("/repos/acme/web/deployments", 403, 1);
    let error = app
        .create_deployment(42, "acme", "web", &new)
        .await
        .unwrap_err();
    assert!(error.is_transient(), "a rate limit: {error}");
    let wait = error.retry_after().expect("x-ratelimit-reset is honoured");
    assert!(wait <= Duration::from_secs(2), "{wait:?}");

    standin.fail_next("/repos/acme/web/deployments", 429, 1);
    let error = app
        .create_deployment(42, "acme", "web", &new)
        .await
        .unwrap_err();
    assert!(error.is_transient(), "{error}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(1)));

    // A commit GitHub does not have is refused the same way every time.
    let unknown = NewDeployment::new(&"e".repeat(40), "production", true);
    let error = app
        .create_deployment(42, "acme", "web", &unknown)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(422), "{error}");
    assert!(!error.is_transient(), "{error}");

    // A description over GitHub's limit is refused too (Wharf cuts its descriptions first).
    let deployment = app
        .create_deployment(42, "acme", "web", &new)
        .await
        .unwrap();
    let mut long = NewDeploymentStatus::new(DeploymentState::Failure);
    long.description = Some("x".repeat(141));
    let error = app
        .create_deployment_status(42, "acme", "web", deployment.id, &long)
        .await
        .unwrap_err();
    assert_eq!(error.status(), Some(422), "{error}");
    assert!(!error.is_transient());
    assert_no_violations(&standin);
}

#[tokio::test]
async fn every_page_of_deliveries_is_read_and_a_redelivery_is_sent_again() {
    let Fixture { standin, app, .. } = start().await;
    let body = br#"{"zen": "Keep it logically awesome.", "hook_id": 1}"#;
    for index in 0..150 {
        let status = if index % 2 == 0 { 202 } else { 502 };
        standin.record_webhook_attempt(&format!("guid-{index}"), "ping", body, status);
    }
    let deliveries = app.webhook_deliveries(0).await.unwrap();
    assert_eq!(deliveries.len(), 150, "two pages, the second by its cursor");
    assert_eq!(deliveries[0].guid, "guid-149", "newest first");
    assert_eq!(deliveries[149].guid, "guid-0");
    assert!(!deliveries[0].succeeded());
    assert!(deliveries[1].succeeded());
    assert_eq!(deliveries[0].event, "ping");
    let listings: Vec<Option<String>> = standin
        .requests()
        .iter()
        .filter(|request| request.path == "/app/hook/deliveries")
        .map(|request| request.query.clone())
        .collect();
    assert_eq!(listings.len(), 2);
    assert!(
        listings[1]
            .as_deref()
            .is_some_and(|query| query.contains("cursor=")),
        "{listings:?}"
    );

    // Nobody listens: the redelivery is attempted, and fails again, under the same guid.
    app.redeliver(deliveries[0].id).await.unwrap();
    let attempts = standin.webhook_attempts();
    let last = attempts.last().unwrap();
    assert_eq!((last.1.as_str(), last.2, last.3), ("guid-149", 0, true));
    // An attempt GitHub does not have is a 404.
    let missing = app.redeliver(1).await.unwrap_err();
    assert_eq!(missing.status(), Some(404));
    assert!(
        standin.schema_violations().is_empty(),
        "{:#?}",
        standin.schema_violations()
    );
}

#[tokio::test]
async fn a_branch_head_is_read_from_the_branches_endpoint() {
    let Fixture { standin, app, sha } = start().await;
    assert_eq!(
        app.branch_head(42, "acme", "web", "main").await.unwrap(),
        sha
    );
    let gone = app
        .branch_head(42, "acme", "web", "gone")
        .await
        .unwrap_err();
    assert_eq!(gone.status(), Some(404));
    assert!(
        standin.schema_violations().is_empty(),
        "{:#?}",
        standin.schema_violations()
    );
}
