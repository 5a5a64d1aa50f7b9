//! The App's webhook deliveries against the GitHub stand-in, which checks every request
//! against GitHub's OpenAPI description: every page read through its `cursor`, a redelivery
//! really sent, and a branch's head.

use std::time::Duration;

use secrecy::SecretString;
use wharf_github::{AppConfig, GithubApp, RetryPolicy};
use wharf_github_standin::{AppKey, GithubStandin, StandinConfig};

const APP_ID: u64 = 4242;

async fn start() -> (GithubStandin, GithubApp) {
    let key = AppKey::generate().unwrap();
    let standin = GithubStandin::start(StandinConfig::new(APP_ID, &key.public_pem))
        .await
        .unwrap();
    standin.add_installation(42, "acme");
    standin.add_repository(42, "acme/web").unwrap();
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
    (standin, app)
}

#[tokio::test]
async fn every_page_of_deliveries_is_read_and_a_redelivery_is_sent_again() {
    let (standin, app) = start().await;
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
    let (standin, app) = start().await;
    let sha = standin
        .commit_files("acme/web", "main", &[("README", b"hi\n")], "first")
        .unwrap();
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
