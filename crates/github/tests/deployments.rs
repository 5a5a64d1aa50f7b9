//! Deployments and their statuses against the GitHub stand-in, which checks every request
//! against GitHub's OpenAPI description: what is sent, what comes back, and how failures are
//! told apart (worth another try later, or not).

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
