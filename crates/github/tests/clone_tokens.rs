//! Clone tokens against the GitHub stand-in: a clone token is asked for one repository with
//! `contents: read`, is cached apart from the installation's own token, clones its repository
//! and nothing else: not another repository of the installation, not the deployments API.

use base64::Engine as _;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use wharf_github::{AppConfig, GithubApp};
use wharf_github_standin::{AppKey, GithubStandin, StandinConfig};

const APP_ID: u64 = 4242;

struct Fixture {
    standin: GithubStandin,
    app: GithubApp,
    web_id: u64,
}

async fn start() -> Fixture {
    let key = AppKey::generate().unwrap();
    let standin = GithubStandin::start(StandinConfig::new(APP_ID, &key.public_pem))
        .await
        .unwrap();
    standin.add_installation(42, "acme");
    let web_id = standin.add_repository(42, "acme/web").unwrap();
    standin.add_repository(42, "acme/secret").unwrap();
    for repository in ["acme/web", "acme/secret"] {
        standin
            .commit_files(repository, "main", &[("README", b"hi\n")], "first")
            .unwrap();
    }
    let app = GithubApp::new(&AppConfig {
        app_id: APP_ID,
        private_key: SecretString::from(key.private_pem.clone()),
        api_url: standin.api_url(),
    })
    .unwrap();
    Fixture {
        standin,
        app,
        web_id,
    }
}

/// Whether `git ls-remote` of `repository` works with `token`, as an agent's git would send it.
async fn git_can_list(standin: &GithubStandin, repository: &str, token: &str) -> bool {
    let directory = tempfile::tempdir().unwrap();
    let credentials =
        base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
    let output = tokio::process::Command::new("git")
        .current_dir(directory.path())
        .args(["ls-remote", &standin.clone_url(repository)])
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", directory.path())
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "http.extraHeader")
        .env(
            "GIT_CONFIG_VALUE_0",
            format!("Authorization: Basic {credentials}"),
        )
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    output.status.success()
}

#[tokio::test]
async fn a_clone_token_reads_its_repository_and_nothing_else() {
    let Fixture {
        standin,
        app,
        web_id,
    } = start().await;
    let clone = app.clone_token(42, web_id).await.unwrap();
    let token = clone.token.expose_secret();

    // Asked for as one repository with contents: read, and issued so.
    let asked = standin
        .requests()
        .into_iter()
        .find(|request| request.path == "/app/installations/42/access_tokens")
        .unwrap();
    assert_eq!(
        asked.body,
        Some(json!({"repository_ids": [web_id], "permissions": {"contents": "read"}}))
    );
    let scope = standin.token_scope(token).unwrap();
    assert_eq!(scope.repositories, Some(vec!["acme/web".to_owned()]));
    assert_eq!(
        scope.permissions,
        vec![("contents".to_owned(), "read".to_owned())]
    );

    assert!(git_can_list(&standin, "acme/web", token).await);
    assert!(
        !git_can_list(&standin, "acme/secret", token).await,
        "a clone token reached another repository of the installation"
    );

    // The deployments API refuses it, as GitHub does a token without that permission.
    let http = reqwest::Client::new();
    let deployment = http
        .post(format!("{}/repos/acme/web/deployments", standin.api_url()))
        .header("Authorization", format!("token {token}"))
        .header("Accept", "application/vnd.github+json")
        .header("User-Agent", "wharf-test")
        .json(&json!({"ref": "main", "environment": "production"}))
        .send()
        .await
        .unwrap();
    assert_eq!(deployment.status(), 403);
    let message: serde_json::Value = deployment.json().await.unwrap();
    assert_eq!(message["message"], "Resource not accessible by integration");
    assert!(standin.deployments().is_empty());

    // The installation's own token is another, cached apart: asking for either again reuses it.
    let own = app.installation_token(42).await.unwrap();
    assert_ne!(own.token.expose_secret(), token);
    assert!(git_can_list(&standin, "acme/secret", own.token.expose_secret()).await);
    let again = app.clone_token(42, web_id).await.unwrap();
    assert_eq!(again.token.expose_secret(), token);
    assert_eq!(
        app.installation_token(42)
            .await
            .unwrap()
            .token
            .expose_secret(),
        own.token.expose_secret()
    );
    assert_eq!(standin.issued_tokens().len(), 2);
    assert!(
        standin.schema_violations().is_empty(),
        "{:#?}",
        standin.schema_violations()
    );
}
