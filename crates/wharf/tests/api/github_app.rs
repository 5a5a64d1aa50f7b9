//! The GitHub App against the stand-in: the setup callback, installation tokens (cached,
//! renewed, never leaked), clone credentials for the leasing agent (which reach the build's
//! repository and nothing else), and branch resolution.

use std::time::Duration;

use reqwest::StatusCode;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use wharf_github::{AppConfig, GithubApp};
use wharf_github_standin::{AppKey, GithubStandin, StandinConfig};

use crate::helpers::{APP_ID, Options, TestApp, push_payload, spawn_app_with};

async fn app_with_github() -> TestApp {
    spawn_app_with(Options {
        github: true,
        ..Options::default()
    })
    .await
}

fn standin(app: &TestApp) -> &GithubStandin {
    app.github.as_ref().expect("the stand-in runs")
}

#[tokio::test]
async fn the_setup_callback_records_the_installation_github_confirms() {
    let app = app_with_github().await;
    let github = standin(&app);
    github.add_installation(42, "acme");
    github.add_repository(42, "acme/web").unwrap();
    github.add_repository(42, "acme/api").unwrap();
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = client
        .get(format!(
            "{}/api/github/setup?installation_id=42&setup_action=install",
            app.url
        ))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    assert_eq!(response.headers()["location"], "/");
    // Where the browser lands: the dashboard, which asks who it is first.
    let home = client.get(format!("{}/", app.url)).send().await.unwrap();
    assert_eq!(home.status(), StatusCode::SEE_OTHER);
    assert_eq!(home.headers()["location"], "/login?next=/");
    let sign_in = client
        .get(format!("{}/login?next=/", app.url))
        .send()
        .await
        .unwrap();
    assert_eq!(sign_in.status(), StatusCode::OK);
    assert!(sign_in.text().await.unwrap().contains("Sign in to Wharf"));
    assert_eq!(
        app.store.installation_for_repo("acme/web").await.unwrap(),
        Some(42)
    );
    assert_eq!(
        app.store.installation_repositories(42).await.unwrap(),
        vec!["acme/api".to_owned(), "acme/web".to_owned()]
    );
    // The lookups went out signed as the App, and were what GitHub's API describes.
    let requests = github.requests();
    assert!(
        requests
            .iter()
            .any(|request| request.path == "/app/installations/42" && request.auth == "jwt"),
        "{:?}",
        requests
            .iter()
            .map(|request| (&request.path, &request.auth))
            .collect::<Vec<_>>()
    );
    assert!(
        github.schema_violations().is_empty(),
        "{:?}",
        github.schema_violations()
    );

    // An installation GitHub does not know is refused, and a forged id records nothing.
    let unknown = client
        .get(format!(
            "{}/api/github/setup?installation_id=77&setup_action=install",
            app.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    for query in [
        "installation_id=abc&setup_action=install",
        "setup_action=install",
        "installation_id=42&setup_action=evil",
    ] {
        let bad = client
            .get(format!("{}/api/github/setup?{query}", app.url))
            .send()
            .await
            .unwrap();
        assert_eq!(bad.status(), StatusCode::BAD_REQUEST, "{query}");
    }
    assert_eq!(app.store.list_installations().await.unwrap().len(), 1);
}

#[tokio::test]
async fn installation_tokens_are_cached_and_renewed_before_they_expire() {
    let key = AppKey::generate().unwrap();
    let mut config = StandinConfig::new(APP_ID, &key.public_pem);
    config.token_ttl = Duration::from_secs(4);
    let github = GithubStandin::start(config).await.unwrap();
    github.add_installation(42, "acme");
    let app = GithubApp::new(&AppConfig {
        app_id: APP_ID,
        // The base64 form of the key, as `base64 key.pem` gives it, works as well as PEM.
        private_key: SecretString::from(base64_lines(&key.private_pem)),
        api_url: github.api_url(),
    })
    .unwrap();
    let first = app.installation_token(42).await.unwrap();
    let second = app.installation_token(42).await.unwrap();
    assert_eq!(
        first.token.expose_secret(),
        second.token.expose_secret(),
        "the token is cached"
    );
    assert_eq!(github.issued_tokens().len(), 1);
    // With a quarter of its life left (a second of four), a new token replaces it.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let token = app.installation_token(42).await.unwrap();
        if token.token.expose_secret() != first.token.expose_secret() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the token was never renewed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(github.issued_tokens().len(), 2);
    assert!(
        github.schema_violations().is_empty(),
        "{:?}",
        github.schema_violations()
    );
}

fn base64_lines(pem: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("base64")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(pem.as_bytes())
        .unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

#[tokio::test]
async fn a_wrong_key_or_app_is_refused_by_github_with_a_clear_error() {
    let key = AppKey::generate().unwrap();
    let other = AppKey::generate().unwrap();
    let github = GithubStandin::start(StandinConfig::new(APP_ID, &key.public_pem))
        .await
        .unwrap();
    github.add_installation(42, "acme");
    for (app_id, pem) in [(APP_ID, &other.private_pem), (APP_ID + 1, &key.private_pem)] {
        let app = GithubApp::new(&AppConfig {
            app_id,
            private_key: SecretString::from(pem.clone()),
            api_url: github.api_url(),
        })
        .unwrap();
        let error = app.installation_token(42).await.unwrap_err();
        assert_eq!(error.status(), Some(401), "{error}");
    }
    let garbage = GithubApp::new(&AppConfig {
        app_id: APP_ID,
        private_key: SecretString::from("not a key".to_owned()),
        api_url: github.api_url(),
    });
    assert!(garbage.is_err());
    assert!(github.issued_tokens().is_empty());
}

#[tokio::test]
async fn github_5xx_answers_are_retried() {
    let app = app_with_github().await;
    let github = standin(&app);
    github.add_installation(42, "acme");
    github.fail_next("/app/installations/42", 502, 2);
    let response = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(format!(
            "{}/api/github/setup?installation_id=42&setup_action=install",
            app.url
        ))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_redirection(), "{}", response.status());
    let failures = github
        .requests()
        .iter()
        .filter(|request| request.status == 502)
        .count();
    assert_eq!(failures, 2);
}

#[tokio::test]
async fn the_leasing_agent_gets_clone_credentials_and_nothing_leaks() {
    let app = app_with_github().await;
    let github = standin(&app);
    github.add_installation(42, "acme");
    github.add_repository(42, "acme/web").unwrap();
    let head = github
        .commit_files(
            "acme/web",
            "main",
            &[("Dockerfile", b"FROM scratch\n")],
            "first",
        )
        .unwrap();
    app.announce_installation(&["acme/web"]).await;
    app.create_service("web", "acme/web", "main").await;

    // A manual build without --ref builds the branch head, as GitHub reports it.
    let build = app.post("/v1/services/web/builds", json!({})).await;
    assert_eq!(build.status, StatusCode::CREATED, "{}", build.text);
    assert_eq!(build.body["commit_sha"], head);
    let id = build.body["id"].as_i64().unwrap();

    let agent = app.create_agent("builder").await;
    let stranger = app.create_agent("stranger").await;
    let refused = app
        .post_as(
            &agent,
            &format!("/v1/agent/builds/{id}/clone-credentials"),
            json!({}),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::CONFLICT,
        "not claimed yet: {}",
        refused.text
    );
    app.post_as(&agent, "/v1/agent/claim", json!({"wait_ms": 1000}))
        .await;
    let credentials = app
        .post_as(
            &agent,
            &format!("/v1/agent/builds/{id}/clone-credentials"),
            json!({}),
        )
        .await;
    assert_eq!(credentials.status, StatusCode::OK, "{}", credentials.text);
    assert_eq!(credentials.body["clone_url"], github.clone_url("acme/web"));
    let token = credentials.body["token"].as_str().unwrap().to_owned();
    assert!(github.issued_tokens().contains(&token));
    let other = app
        .post_as(
            &stranger,
            &format!("/v1/agent/builds/{id}/clone-credentials"),
            json!({}),
        )
        .await;
    assert_eq!(other.status, StatusCode::CONFLICT);

    // Pushes, listings and logs never carry a token.
    app.webhook(
        "push",
        "p-1",
        &push_payload("acme/web", "refs/heads/main", &"f".repeat(40)),
    )
    .await;
    let listing = app.get("/v1/builds").await.text;
    let services = app.get("/v1/services").await.text;
    let logs = app.logs.text();
    for issued in github.issued_tokens() {
        assert!(
            !listing.contains(&issued) && !services.contains(&issued),
            "a token reached the API"
        );
        assert!(!logs.contains(&issued), "a token reached the logs");
    }
    let private_key = app
        .app_key
        .as_ref()
        .unwrap()
        .private_pem
        .lines()
        .nth(1)
        .unwrap()
        .to_owned();
    assert!(!logs.contains(&private_key));
    assert!(
        github.schema_violations().is_empty(),
        "{:?}",
        github.schema_violations()
    );
}

/// Whether the agent's own fetch of `commit` from `url` works with `token`.
async fn agent_fetch_works(url: &str, commit: &str, token: &SecretString) -> bool {
    let checkout = tempfile::tempdir().unwrap();
    for command in
        wharf_runtime::git::fetch_commit_commands(checkout.path(), url, commit, Some(token))
    {
        let output = wharf_runtime::process::output(&command, Duration::from_secs(60), 64 * 1024)
            .await
            .unwrap();
        if !output.success() {
            return false;
        }
    }
    true
}

#[tokio::test]
async fn the_clone_credentials_of_a_build_reach_its_repository_and_nothing_else() {
    let app = app_with_github().await;
    let github = standin(&app);
    github.add_installation(42, "acme");
    github.add_repository(42, "acme/web").unwrap();
    github.add_repository(42, "acme/secret").unwrap();
    let head = github
        .commit_files(
            "acme/web",
            "main",
            &[("Dockerfile", b"FROM scratch\n")],
            "first",
        )
        .unwrap();
    let secret_head = github
        .commit_files("acme/secret", "main", &[("key", b"hidden\n")], "first")
        .unwrap();
    app.announce_installation(&["acme/web", "acme/secret"])
        .await;
    app.create_service("web", "acme/web", "main").await;
    let build = app.post("/v1/services/web/builds", json!({})).await;
    assert_eq!(build.status, StatusCode::CREATED, "{}", build.text);
    let id = build.body["id"].as_i64().unwrap();
    let agent = app.create_agent("builder").await;
    app.post_as(&agent, "/v1/agent/claim", json!({"wait_ms": 1000}))
        .await;
    let credentials = app
        .post_as(
            &agent,
            &format!("/v1/agent/builds/{id}/clone-credentials"),
            json!({}),
        )
        .await;
    assert_eq!(credentials.status, StatusCode::OK, "{}", credentials.text);
    let token = SecretString::from(credentials.body["token"].as_str().unwrap());

    // The token fetches the build's commit, as the agent does, and nothing of the installation's
    // other repository.
    assert!(agent_fetch_works(&github.clone_url("acme/web"), &head, &token).await);
    assert!(
        !agent_fetch_works(&github.clone_url("acme/secret"), &secret_head, &token).await,
        "the clone token reached another repository of the installation"
    );

    // It cannot report a deployment: that is the server's own token's work.
    let deployment = reqwest::Client::new()
        .post(format!("{}/repos/acme/web/deployments", github.api_url()))
        .header("Authorization", format!("token {}", token.expose_secret()))
        .header("Accept", "application/vnd.github+json")
        .header("User-Agent", "wharf-test")
        .json(&json!({"ref": head, "environment": "production", "auto_merge": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(deployment.status(), StatusCode::FORBIDDEN);

    // GitHub issued it for that one repository, to read its contents only.
    let scope = github.token_scope(token.expose_secret()).unwrap();
    assert_eq!(scope.repositories, Some(vec!["acme/web".to_owned()]));
    assert_eq!(
        scope.permissions,
        vec![("contents".to_owned(), "read".to_owned())]
    );
    assert!(
        github.schema_violations().is_empty(),
        "{:?}",
        github.schema_violations()
    );
}

#[tokio::test]
async fn a_branch_that_does_not_exist_is_a_clear_404() {
    let app = app_with_github().await;
    let github = standin(&app);
    github.add_installation(42, "acme");
    github.add_repository(42, "acme/web").unwrap();
    github
        .commit_files("acme/web", "main", &[("README", b"hi\n")], "first")
        .unwrap();
    app.announce_installation(&["acme/web"]).await;
    app.create_service("web", "acme/web", "release").await;
    let answer = app.post("/v1/services/web/builds", json!({})).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.text);
    assert!(answer.body["error"].as_str().unwrap().contains("release"));
}
