//! End-to-end tests of the GitHub stand-in over real HTTP: App JWT checks, installation tokens and
//! their expiry, repository scoping, commits, deployments and their statuses, check runs and commit
//! statuses, pull requests with their comments and labels, injected failures, schema
//! checking against @octokit/openapi, and git fetches through `git http-backend`.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use wharf_github_standin::{AppKey, GithubStandin, StandinConfig, openapi_spec_path};

const APP_ID: u64 = 4242;
const INSTALLATION: u64 = 77;
const OTHER_INSTALLATION: u64 = 78;

struct Fixture {
    key: AppKey,
    standin: GithubStandin,
    client: reqwest::Client,
}

async fn start(token_ttl: Duration) -> Fixture {
    let key = AppKey::generate().unwrap();
    let standin = GithubStandin::start(StandinConfig {
        app_id: APP_ID,
        app_public_key_pem: key.public_pem.clone(),
        token_ttl,
        openapi_path: Some(openapi_spec_path()),
    })
    .await
    .unwrap();
    standin.add_installation(INSTALLATION, "acme");
    standin.add_installation_with_type(OTHER_INSTALLATION, "someone", "User");
    let client = reqwest::Client::builder()
        .user_agent("wharf-github-standin-tests")
        .no_proxy()
        .build()
        .unwrap();
    Fixture {
        key,
        standin,
        client,
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn sign(private_pem: &str, claims: Value) -> String {
    let key = EncodingKey::from_rsa_pem(private_pem.as_bytes()).unwrap();
    jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &key).unwrap()
}

fn valid_jwt(fixture: &Fixture) -> String {
    sign(
        &fixture.key.private_pem,
        json!({"iat": now() - 30, "exp": now() + 570, "iss": APP_ID}),
    )
}

impl Fixture {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.standin.api_url())
    }

    /// Asks for an installation token with a valid App JWT.
    async fn request_token(&self, installation_id: u64) -> reqwest::Response {
        self.post_with_jwt(
            &format!("/app/installations/{installation_id}/access_tokens"),
            &valid_jwt(self),
            None,
        )
        .await
    }

    async fn create_token(&self, installation_id: u64) -> String {
        let response = self.request_token(installation_id).await;
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        body["token"].as_str().unwrap().to_string()
    }

    /// Gets `path` with the App's `jwt`.
    async fn get_with_jwt(&self, path: &str, jwt: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .bearer_auth(jwt)
            .send()
            .await
            .unwrap()
    }

    /// Posts `body` as JSON, or nothing, with the App's `jwt`.
    async fn post_with_jwt(&self, path: &str, jwt: &str, body: Option<Value>) -> reqwest::Response {
        let request = self.client.post(self.url(path)).bearer_auth(jwt);
        let request = match body {
            Some(body) => request.json(&body),
            None => request,
        };
        request.send().await.unwrap()
    }

    /// Creates a repository in the organisation's installation and returns its id.
    fn add_repository(&self, full_name: &str) -> u64 {
        self.standin
            .add_repository(INSTALLATION, full_name)
            .unwrap()
    }

    async fn get_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        self.client
            .get(self.url(path))
            .header("authorization", format!("token {token}"))
            .send()
            .await
            .unwrap()
    }

    async fn post_with_token(&self, path: &str, token: &str, body: Value) -> reqwest::Response {
        self.client
            .post(self.url(path))
            .header("authorization", format!("token {token}"))
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    fn assert_no_violations(&self) {
        let violations = self.standin.schema_violations();
        assert!(violations.is_empty(), "schema violations: {violations:#?}");
    }
}

#[tokio::test]
async fn a_correctly_signed_jwt_gets_a_schema_valid_token() {
    let fixture = start(Duration::from_secs(3600)).await;
    let response = fixture.request_token(INSTALLATION).await;
    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    assert!(token.starts_with("ghs_"));
    assert_eq!(token.len(), 40);
    assert!(token[4..].chars().all(|c| c.is_ascii_alphanumeric()));
    let expires_at = body["expires_at"].as_str().unwrap();
    assert!(expires_at.ends_with('Z'), "{expires_at}");
    assert_eq!(body["repository_selection"], "all");
    assert_eq!(body["permissions"]["deployments"], "write");
    assert_eq!(fixture.standin.issued_tokens(), vec![token.to_string()]);

    // The App and installation objects validate too, and a string `iss` is accepted.
    let string_issuer = sign(
        &fixture.key.private_pem,
        json!({"iat": now() - 30, "exp": now() + 570, "iss": APP_ID.to_string()}),
    );
    let app = fixture.get_with_jwt("/app", &string_issuer).await;
    assert_eq!(app.status(), 200);
    let installation = fixture
        .get_with_jwt("/app/installations/77", &string_issuer)
        .await;
    assert_eq!(installation.status(), 200);
    let installation: Value = installation.json().await.unwrap();
    assert_eq!(installation["account"]["login"], "acme");
    assert_eq!(installation["account"]["type"], "Organization");
    assert_eq!(installation["app_id"], APP_ID);
    assert_eq!(installation["suspended_at"], Value::Null);

    let requests = fixture.standin.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, "/app/installations/77/access_tokens");
    assert_eq!(requests[0].auth, "jwt");
    assert_eq!(requests[0].installation_id, Some(INSTALLATION));
    assert_eq!(requests[0].status, 201);
    assert_eq!(
        requests[0].header("authorization"),
        Some("Bearer <redacted>")
    );
    fixture.assert_no_violations();
}

#[tokio::test]
async fn jwts_github_would_refuse_get_401() {
    let fixture = start(Duration::from_secs(3600)).await;
    let other_key = AppKey::generate().unwrap();
    let cases = [
        (
            "signed with another key",
            sign(
                &other_key.private_pem,
                json!({"iat": now() - 30, "exp": now() + 570, "iss": APP_ID}),
            ),
            "A JSON web token could not be decoded",
        ),
        (
            "issued by another app",
            sign(
                &fixture.key.private_pem,
                json!({"iat": now() - 30, "exp": now() + 570, "iss": APP_ID + 1}),
            ),
            "A JSON web token could not be decoded",
        ),
        (
            "expired",
            sign(
                &fixture.key.private_pem,
                json!({"iat": now() - 700, "exp": now() - 100, "iss": APP_ID}),
            ),
            "'Expiration time' claim ('exp') must be a numeric value",
        ),
        (
            "living longer than ten minutes",
            sign(
                &fixture.key.private_pem,
                json!({"iat": now() - 60, "exp": now() + 600, "iss": APP_ID}),
            ),
            "'Expiration time' claim ('exp') is too far in the future",
        ),
        (
            "issued in the future",
            sign(
                &fixture.key.private_pem,
                json!({"iat": now() + 120, "exp": now() + 300, "iss": APP_ID}),
            ),
            "'Issued at' claim ('iat')",
        ),
        (
            "signed with HS256",
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &json!({"iat": now() - 30, "exp": now() + 570, "iss": APP_ID}),
                &EncodingKey::from_secret(fixture.key.public_pem.as_bytes()),
            )
            .unwrap(),
            "A JSON web token could not be decoded",
        ),
    ];
    for (case, jwt, message) in cases {
        let response = fixture
            .post_with_jwt("/app/installations/77/access_tokens", &jwt, None)
            .await;
        assert_eq!(response.status(), 401, "{case}");
        let body: Value = response.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap().starts_with(message),
            "{case}: {body}"
        );
        assert_eq!(body["documentation_url"], "https://docs.github.com/rest");
    }
    let anonymous = fixture
        .client
        .get(fixture.url("/app"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    assert!(fixture.standin.issued_tokens().is_empty());
    let auths: Vec<String> = fixture
        .standin
        .requests()
        .into_iter()
        .map(|request| request.auth)
        .collect();
    assert_eq!(
        auths,
        [
            "invalid", "invalid", "invalid", "invalid", "invalid", "invalid", "none"
        ]
    );
    fixture.assert_no_violations();
}

#[tokio::test]
async fn unknown_and_suspended_installations_are_refused() {
    let fixture = start(Duration::from_secs(3600)).await;
    let unknown = fixture.request_token(999).await;
    assert_eq!(unknown.status(), 404);

    let token = fixture.create_token(INSTALLATION).await;
    fixture.standin.suspend_installation(INSTALLATION);
    let suspended = fixture.request_token(INSTALLATION).await;
    assert_eq!(suspended.status(), 403);
    let listing = fixture
        .get_with_token("/installation/repositories", &token)
        .await;
    assert_eq!(listing.status(), 403);

    let installation = fixture
        .get_with_jwt("/app/installations/77", &valid_jwt(&fixture))
        .await;
    let installation: Value = installation.json().await.unwrap();
    assert!(installation["suspended_at"].is_string());
    fixture.assert_no_violations();
}

#[tokio::test]
async fn installation_tokens_stop_working_when_they_expire() {
    let fixture = start(Duration::from_secs(1)).await;
    let token = fixture.create_token(INSTALLATION).await;
    let first = fixture
        .get_with_token("/installation/repositories", &token)
        .await;
    assert_eq!(first.status(), 200);

    let deadline = Instant::now() + Duration::from_secs(15);
    let mut poll = tokio::time::interval(Duration::from_millis(50));
    let expired = loop {
        poll.tick().await;
        let response = fixture
            .get_with_token("/installation/repositories", &token)
            .await;
        if response.status() != 200 {
            break response;
        }
        assert!(
            Instant::now() < deadline,
            "the token still worked after its lifetime"
        );
    };
    assert_eq!(expired.status(), 401);
    let body: Value = expired.json().await.unwrap();
    assert_eq!(body["message"], "Bad credentials");
    assert_eq!(fixture.standin.requests().last().unwrap().auth, "invalid");
}

#[tokio::test]
async fn tokens_only_reach_their_installations_repositories() {
    let fixture = start(Duration::from_secs(3600)).await;
    let web = fixture.add_repository("acme/web");
    fixture.add_repository("acme/api");
    fixture
        .standin
        .add_repository(OTHER_INSTALLATION, "someone/private")
        .unwrap();
    assert!(
        fixture
            .standin
            .add_repository(INSTALLATION, "other/x")
            .is_err()
    );
    let token = fixture.create_token(INSTALLATION).await;

    let repository = fixture.get_with_token("/repos/acme/web", &token).await;
    assert_eq!(repository.status(), 200);
    let repository: Value = repository.json().await.unwrap();
    assert_eq!(repository["id"], web);
    assert_eq!(repository["full_name"], "acme/web");
    assert_eq!(repository["default_branch"], "main");
    assert_eq!(
        repository["clone_url"],
        fixture.standin.clone_url("acme/web")
    );
    assert_eq!(
        fixture.standin.clone_url("acme/web"),
        format!("{}/git/acme/web.git", fixture.standin.api_url())
    );

    let foreign = fixture
        .get_with_token("/repos/someone/private", &token)
        .await;
    assert_eq!(foreign.status(), 404);
    let anonymous = fixture
        .client
        .get(fixture.url("/repos/acme/web"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 404);

    let first_page = fixture
        .get_with_token("/installation/repositories?per_page=1", &token)
        .await;
    assert_eq!(first_page.status(), 200);
    let link = first_page
        .headers()
        .get("link")
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert!(link.contains("page=2>; rel=\"next\""), "{link}");
    let first_page: Value = first_page.json().await.unwrap();
    assert_eq!(first_page["total_count"], 2);
    assert_eq!(first_page["repositories"].as_array().unwrap().len(), 1);
    assert_eq!(first_page["repositories"][0]["full_name"], "acme/web");
    let second_page: Value = fixture
        .get_with_token("/installation/repositories?per_page=1&page=2", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(second_page["repositories"][0]["full_name"], "acme/api");

    // A token limited to one repository sees only that one.
    let limited = fixture
        .post_with_jwt(
            "/app/installations/77/access_tokens",
            &valid_jwt(&fixture),
            Some(json!({"repositories": ["api"], "permissions": {"contents": "read"}})),
        )
        .await;
    assert_eq!(limited.status(), 201);
    let limited: Value = limited.json().await.unwrap();
    assert_eq!(limited["repository_selection"], "selected");
    let limited_token = limited["token"].as_str().unwrap();
    assert_eq!(
        fixture
            .get_with_token("/repos/acme/web", limited_token)
            .await
            .status(),
        404
    );
    assert_eq!(
        fixture
            .get_with_token("/repos/acme/api", limited_token)
            .await
            .status(),
        200
    );
    let requests = fixture.standin.requests();
    let with_token: Vec<_> = requests.iter().filter(|r| r.auth == "token").collect();
    assert!(
        with_token
            .iter()
            .all(|r| r.installation_id == Some(INSTALLATION))
    );
    fixture.assert_no_violations();
}

#[tokio::test]
async fn commits_are_resolved_like_github() {
    let fixture = start(Duration::from_secs(3600)).await;
    fixture.add_repository("acme/web");
    let token = fixture.create_token(INSTALLATION).await;
    let empty = fixture
        .get_with_token("/repos/acme/web/commits/main", &token)
        .await;
    assert_eq!(empty.status(), 409);

    let first = fixture
        .standin
        .commit_files("acme/web", "main", &[("README.md", b"hello\n")], "first")
        .unwrap();
    let second = fixture
        .standin
        .commit_files("acme/web", "main", &[("app.txt", b"v2\n")], "second")
        .unwrap();
    assert_eq!(second.len(), 40);
    assert!(second.chars().all(|c| c.is_ascii_hexdigit()));

    let sha = fixture
        .client
        .get(fixture.url("/repos/acme/web/commits/main"))
        .header("authorization", format!("Bearer {token}"))
        .header("accept", "application/vnd.github.sha")
        .send()
        .await
        .unwrap();
    assert_eq!(sha.status(), 200);
    assert_eq!(sha.text().await.unwrap(), second);

    let commit = fixture
        .get_with_token(&format!("/repos/acme/web/commits/{first}"), &token)
        .await;
    assert_eq!(commit.status(), 200);
    let commit: Value = commit.json().await.unwrap();
    assert_eq!(commit["sha"], first);
    assert_eq!(commit["commit"]["message"], "first");
    assert_eq!(commit["parents"].as_array().unwrap().len(), 0);

    let unknown = fixture
        .get_with_token("/repos/acme/web/commits/nope", &token)
        .await;
    assert_eq!(unknown.status(), 422);
    let unknown: Value = unknown.json().await.unwrap();
    assert_eq!(unknown["message"], "No commit found for SHA: nope");

    // The first branch committed to an empty repository becomes its default branch.
    fixture.add_repository("acme/trunk");
    fixture
        .standin
        .commit_files("acme/trunk", "trunk", &[("a", b"b")], "first")
        .unwrap();
    let repository: Value = fixture
        .get_with_token("/repos/acme/trunk", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(repository["default_branch"], "trunk");
    fixture.assert_no_violations();
}

#[tokio::test]
async fn deployments_and_statuses_are_stored_and_listed() {
    let fixture = start(Duration::from_secs(3600)).await;
    fixture.add_repository("acme/web");
    let sha = fixture
        .standin
        .commit_files("acme/web", "main", &[("index.html", b"<p>hi</p>")], "init")
        .unwrap();
    let token = fixture.create_token(INSTALLATION).await;

    let created = fixture
        .post_with_token(
            "/repos/acme/web/deployments",
            &token,
            json!({
                "ref": sha,
                "environment": "production",
                "description": "Deploy by Wharf",
                "auto_merge": false,
                "required_contexts": [],
                "payload": {"wharf_deploy_id": 12}
            }),
        )
        .await;
    assert_eq!(created.status(), 201);
    let deployment: Value = created.json().await.unwrap();
    let deployment_id = deployment["id"].as_u64().unwrap();
    assert_eq!(deployment["sha"], sha);
    assert_eq!(deployment["task"], "deploy");
    assert_eq!(deployment["payload"]["wharf_deploy_id"], 12);
    assert_eq!(deployment["production_environment"], true);

    let statuses_path = format!("/repos/acme/web/deployments/{deployment_id}/statuses");
    for (state, description) in [("in_progress", "Building"), ("success", "Live")] {
        let response = fixture
            .post_with_token(
                &statuses_path,
                &token,
                json!({
                    "state": state,
                    "description": description,
                    "log_url": "http://127.0.0.1:9/logs/1",
                    "environment_url": "http://127.0.0.1:9/"
                }),
            )
            .await;
        assert_eq!(response.status(), 201);
        let status: Value = response.json().await.unwrap();
        assert_eq!(status["state"], state);
        assert_eq!(status["target_url"], "http://127.0.0.1:9/logs/1");
        assert_eq!(status["environment"], "production");
    }

    let listed = fixture.get_with_token(&statuses_path, &token).await;
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().await.unwrap();
    let listed_states: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|status| status["state"].as_str().unwrap())
        .collect();
    assert_eq!(listed_states, ["success", "in_progress"]);

    let stored_states: Vec<Value> = fixture
        .standin
        .deployment_statuses(deployment_id)
        .into_iter()
        .map(|status| status["state"].clone())
        .collect();
    assert_eq!(stored_states, [json!("in_progress"), json!("success")]);
    assert_eq!(fixture.standin.deployments().len(), 1);
    assert_eq!(fixture.standin.deployments()[0]["id"], deployment_id);

    let unknown = fixture
        .post_with_token(
            "/repos/acme/web/deployments/1/statuses",
            &token,
            json!({"state": "success"}),
        )
        .await;
    assert_eq!(unknown.status(), 404);
    fixture.assert_no_violations();

    // A body without `ref` breaks GitHub's schema: 422, and the violation is recorded.
    let missing_ref = fixture
        .post_with_token(
            "/repos/acme/web/deployments",
            &token,
            json!({"environment": "production"}),
        )
        .await;
    assert_eq!(missing_ref.status(), 422);
    let missing_ref: Value = missing_ref.json().await.unwrap();
    assert_eq!(
        missing_ref["message"],
        "Invalid request.\n\n\"ref\" wasn't supplied."
    );
    let violations = fixture.standin.schema_violations();
    assert_eq!(violations.len(), 1, "{violations:#?}");
    assert_eq!(
        violations[0],
        "POST /repos/{owner}/{repo}/deployments request: $.ref: required property is missing"
    );

    let bad_state = fixture
        .post_with_token(&statuses_path, &token, json!({"state": "done"}))
        .await;
    assert_eq!(bad_state.status(), 422);
    assert_eq!(fixture.standin.schema_violations().len(), 2);
    assert_eq!(fixture.standin.deployment_statuses(deployment_id).len(), 2);

    // Query parameters are checked too: a misspelt filter is recorded as a violation.
    let listing = fixture
        .get_with_token("/repos/acme/web/deployments?shas=abc&per_page=100", &token)
        .await;
    assert_eq!(listing.status(), 200);
    let violations = fixture.standin.schema_violations();
    assert_eq!(
        violations.last().unwrap(),
        "GET /repos/{owner}/{repo}/deployments query: unknown parameter \"shas\""
    );
    assert_eq!(violations.len(), 3, "{violations:#?}");
}

#[tokio::test]
async fn check_runs_and_commit_statuses_follow_githubs_rules_and_permissions() {
    let fixture = start(Duration::from_secs(3600)).await;
    fixture.add_repository("acme/web");
    let sha = fixture
        .standin
        .commit_files("acme/web", "main", &[("index.html", b"<p>hi</p>")], "init")
        .unwrap();
    let token = fixture.create_token(INSTALLATION).await;

    let created = fixture
        .post_with_token(
            "/repos/acme/web/check-runs",
            &token,
            json!({"name": "wharf/web", "head_sha": sha, "external_id": "7",
                   "details_url": "http://127.0.0.1:9/builds/7", "status": "in_progress",
                   "output": {"title": "Building", "summary": "Building the image"}}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let run: Value = created.json().await.unwrap();
    assert_eq!(run["status"], "in_progress");
    assert_eq!(run["conclusion"], Value::Null);
    let run_path = format!("/repos/acme/web/check-runs/{}", run["id"]);

    // A conclusion completes the run.
    let patch = |body: Value| {
        fixture
            .client
            .patch(fixture.url(&run_path))
            .header("authorization", format!("token {token}"))
            .json(&body)
            .send()
    };
    let done =
        patch(json!({"conclusion": "success", "output": {"title": "Live", "summary": "Live"}}))
            .await
            .unwrap();
    assert_eq!(done.status(), 200);
    let done: Value = done.json().await.unwrap();
    assert_eq!(
        (&done["status"], &done["conclusion"]),
        (&json!("completed"), &json!("success"))
    );
    assert_eq!(done["output"]["title"], "Live");
    let history: Vec<Value> = fixture
        .standin
        .check_run_history(run["id"].as_u64().unwrap())
        .iter()
        .map(|run| run["status"].clone())
        .collect();
    assert_eq!(history, [json!("in_progress"), json!("completed")]);

    // Listed by commit and name.
    let listed = fixture
        .get_with_token(
            &format!("/repos/acme/web/commits/{sha}/check-runs?check_name=wharf%2Fweb&filter=all"),
            &token,
        )
        .await;
    assert_eq!(listed.status(), 200);
    let listed: Value = listed.json().await.unwrap();
    assert_eq!(listed["total_count"], 1);
    assert_eq!(listed["check_runs"][0]["external_id"], "7");
    let other = fixture
        .get_with_token(
            &format!("/repos/acme/web/commits/{sha}/check-runs?check_name=other"),
            &token,
        )
        .await;
    assert_eq!(other.json::<Value>().await.unwrap()["total_count"], 0);

    let status = fixture
        .post_with_token(
            &format!("/repos/acme/web/statuses/{sha}"),
            &token,
            json!({"state": "pending", "target_url": "http://127.0.0.1:9/builds/7",
                   "description": "Building", "context": "wharf/web"}),
        )
        .await;
    assert_eq!(status.status(), 201);
    let statuses = fixture.standin.commit_statuses("acme/web", &sha);
    assert_eq!(statuses.len(), 1);
    assert_eq!(statuses[0]["context"], "wharf/web");
    let unknown = fixture
        .post_with_token(
            &format!("/repos/acme/web/statuses/{}", "0".repeat(40)),
            &token,
            json!({"state": "pending"}),
        )
        .await;
    assert_eq!(unknown.status(), 422);

    // Without the checks permission: GitHub's 403, while statuses still work.
    fixture.standin.set_installation_permissions(
        INSTALLATION,
        &[
            ("contents", "read"),
            ("metadata", "read"),
            ("statuses", "write"),
        ],
    );
    let narrow = fixture.create_token(INSTALLATION).await;
    let refused = fixture
        .post_with_token(
            "/repos/acme/web/check-runs",
            &narrow,
            json!({"name": "wharf/web", "head_sha": sha}),
        )
        .await;
    assert_eq!(refused.status(), 403);
    let refused: Value = refused.json().await.unwrap();
    assert_eq!(refused["message"], "Resource not accessible by integration");
    let status = fixture
        .post_with_token(
            &format!("/repos/acme/web/statuses/{sha}"),
            &narrow,
            json!({"state": "success", "context": "wharf/web"}),
        )
        .await;
    assert_eq!(status.status(), 201);
    fixture.assert_no_violations();

    // `completed` needs a conclusion: 422, and the schema check says why.
    let incomplete = patch(json!({"status": "completed"})).await.unwrap();
    assert_eq!(incomplete.status(), 422);
    let violations = fixture.standin.schema_violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].contains("conclusion"), "{violations:?}");
}

#[tokio::test]
async fn pull_requests_comments_and_labels_follow_githubs_rules() {
    let fixture = start(Duration::from_secs(3600)).await;
    fixture.add_repository("acme/web");
    let sha = fixture
        .standin
        .commit_files("acme/web", "main", &[("a.txt", b"a")], "init")
        .unwrap();
    for number in 1..=3 {
        fixture.standin.open_pull_request("acme/web", number);
    }
    fixture.standin.close_pull_request("acme/web", 2);
    let token = fixture.create_token(INSTALLATION).await;

    // The list: open ones by default, newest first, and each page's links keep the filter.
    let open: Value = fixture
        .get_with_token("/repos/acme/web/pulls", &token)
        .await
        .json()
        .await
        .unwrap();
    let numbers: Vec<u64> = open
        .as_array()
        .unwrap()
        .iter()
        .map(|pull| pull["number"].as_u64().unwrap())
        .collect();
    assert_eq!(numbers, [3, 1]);
    assert_eq!(open[0]["state"], "open");
    assert_eq!(open[0]["base"]["sha"], sha);
    assert_eq!(open[0]["base"]["ref"], "main");
    let closed = fixture
        .get_with_token("/repos/acme/web/pulls?state=closed", &token)
        .await;
    let closed: Value = closed.json().await.unwrap();
    assert_eq!(closed[0]["number"], 2);
    assert!(closed[0]["closed_at"].is_string());
    let first_page = fixture
        .get_with_token("/repos/acme/web/pulls?state=all&per_page=2", &token)
        .await;
    let link = first_page.headers()["link"].to_str().unwrap().to_string();
    assert!(
        link.contains("/repos/acme/web/pulls?state=all&per_page=2&page=2>; rel=\"next\""),
        "{link}"
    );

    // Comments: made, edited, listed; an unknown id is a 404.
    let created = fixture
        .post_with_token(
            "/repos/acme/web/issues/3/comments",
            &token,
            json!({"body": "first"}),
        )
        .await;
    assert_eq!(created.status(), 201);
    let location = created.headers()["location"].to_str().unwrap().to_string();
    let created: Value = created.json().await.unwrap();
    let id = created["id"].as_u64().unwrap();
    assert_eq!(created["url"], location);
    assert_eq!(created["user"]["login"], "wharf-test-app[bot]");
    assert!(
        created["html_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/acme/web/pull/3#issuecomment-{id}"))
    );
    let patch = |path: String, body: Value| {
        fixture
            .client
            .patch(fixture.url(&path))
            .header("authorization", format!("token {token}"))
            .json(&body)
            .send()
    };
    let edited = patch(
        format!("/repos/acme/web/issues/comments/{id}"),
        json!({"body": "second"}),
    )
    .await
    .unwrap();
    assert_eq!(edited.status(), 200);
    let unknown = patch(
        "/repos/acme/web/issues/comments/1".to_string(),
        json!({"body": "second"}),
    )
    .await
    .unwrap();
    assert_eq!(unknown.status(), 404);
    let listed: Value = fixture
        .get_with_token("/repos/acme/web/issues/3/comments", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["body"], "second");
    assert_eq!(fixture.standin.comment_history(id), ["first", "second"]);
    assert_eq!(
        fixture.standin.issue_comments("acme/web", 3),
        listed.as_array().unwrap().clone()
    );

    // Labels: taken off one at a time, the rest answered; one not there is GitHub's 404.
    fixture.standin.add_label("acme/web", 3, "safe to preview");
    fixture.standin.add_label("acme/web", 3, "Bug");
    let delete = |path: &str| {
        fixture
            .client
            .delete(fixture.url(path))
            .header("authorization", format!("token {token}"))
            .send()
    };
    let removed = delete("/repos/acme/web/issues/3/labels/safe%20to%20preview")
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    let left: Value = removed.json().await.unwrap();
    assert_eq!(left.as_array().unwrap().len(), 1);
    assert_eq!(left[0]["name"], "Bug");
    let gone = delete("/repos/acme/web/issues/3/labels/safe%20to%20preview")
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
    let gone: Value = gone.json().await.unwrap();
    assert_eq!(gone["message"], "Label does not exist");
    fixture.assert_no_violations();

    // A comment needs a body: 422, and the schema check says why.
    let empty = fixture
        .post_with_token("/repos/acme/web/issues/3/comments", &token, json!({}))
        .await;
    assert_eq!(empty.status(), 422);
    let violations = fixture.standin.schema_violations();
    assert_eq!(violations.len(), 1, "{violations:?}");
    assert!(violations[0].contains("body"), "{violations:?}");
}

#[tokio::test]
async fn injected_failures_answer_the_next_matching_requests() {
    let fixture = start(Duration::from_secs(3600)).await;
    fixture.standin.fail_next("/app/installations", 502, 1);
    fixture.standin.fail_next("/installation/", 403, 1);
    let failed = fixture.request_token(INSTALLATION).await;
    assert_eq!(failed.status(), 502);
    let token = fixture.create_token(INSTALLATION).await;

    let limited = fixture
        .get_with_token("/installation/repositories", &token)
        .await;
    assert_eq!(limited.status(), 403);
    assert_eq!(limited.headers()["x-ratelimit-remaining"], "0");
    let body: Value = limited.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("API rate limit exceeded")
    );
    let recovered = fixture
        .get_with_token("/installation/repositories", &token)
        .await;
    assert_eq!(recovered.status(), 200);
    let statuses: Vec<u16> = fixture
        .standin
        .requests()
        .iter()
        .map(|request| request.status)
        .collect();
    assert_eq!(statuses, [502, 201, 403, 200]);
    fixture.assert_no_violations();
}

#[tokio::test]
async fn dropping_the_standin_stops_the_server() {
    let fixture = start(Duration::from_secs(3600)).await;
    let url = fixture.url("/app");
    let jwt = valid_jwt(&fixture);
    let client = fixture.client.clone();
    // A first request leaves a keep-alive connection in the client's pool.
    let before = client.get(&url).bearer_auth(&jwt).send().await.unwrap();
    assert_eq!(before.status(), 200);
    drop(fixture);

    let deadline = Instant::now() + Duration::from_secs(10);
    let mut poll = tokio::time::interval(Duration::from_millis(20));
    loop {
        poll.tick().await;
        if client.get(&url).bearer_auth(&jwt).send().await.is_err() {
            break;
        }
        assert!(Instant::now() < deadline, "the server still answered");
    }
}

#[tokio::test]
async fn unknown_paths_and_requests_without_user_agent_are_refused() {
    let fixture = start(Duration::from_secs(3600)).await;
    let token = fixture.create_token(INSTALLATION).await;
    let unknown = fixture.get_with_token("/wharf/nothing", &token).await;
    assert_eq!(unknown.status(), 404);
    let body: Value = unknown.json().await.unwrap();
    assert_eq!(body["message"], "Not Found");
    assert_eq!(
        fixture.standin.schema_violations(),
        vec!["GET /wharf/nothing: no such operation in GitHub's API".to_string()]
    );

    let bare_client = reqwest::Client::builder().no_proxy().build().unwrap();
    let without_agent = bare_client
        .get(fixture.url("/installation/repositories"))
        .header("authorization", format!("token {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(without_agent.status(), 403);
}

#[tokio::test]
async fn the_other_endpoints_answer_schema_valid_json() {
    let fixture = start(Duration::from_secs(3600)).await;
    fixture.add_repository("acme/web");
    let sha = fixture
        .standin
        .commit_files("acme/web", "main", &[("a.txt", b"a")], "init")
        .unwrap();
    let jwt = valid_jwt(&fixture);
    for path in [
        "/app/installations",
        "/repos/acme/web/installation",
        "/orgs/acme/installation",
        "/users/someone/installation",
    ] {
        let response = fixture.get_with_jwt(path, &jwt).await;
        assert_eq!(response.status(), 200, "{path}");
    }
    let token = fixture.create_token(INSTALLATION).await;
    let staging = fixture
        .post_with_token(
            "/repos/acme/web/deployments",
            &token,
            json!({"ref": "main", "environment": "staging", "payload": "{\"a\": 1}"}),
        )
        .await;
    assert_eq!(staging.status(), 201);
    let staging: Value = staging.json().await.unwrap();
    assert_eq!(staging["sha"], sha);
    assert_eq!(staging["payload"], json!({"a": 1}));
    assert_eq!(staging["production_environment"], false);
    let staging_id = staging["id"].as_u64().unwrap();
    let status_path = format!("/repos/acme/web/deployments/{staging_id}/statuses");
    let success = fixture
        .post_with_token(&status_path, &token, json!({"state": "success"}))
        .await;
    assert_eq!(success.status(), 201);

    // A later successful deployment to the same non-production environment marks the earlier one
    // inactive (GitHub's auto_inactive).
    let newer: Value = fixture
        .post_with_token(
            "/repos/acme/web/deployments",
            &token,
            json!({"ref": "main", "environment": "staging"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let newer_id = newer["id"].as_u64().unwrap();
    let newer_success = fixture
        .post_with_token(
            &format!("/repos/acme/web/deployments/{newer_id}/statuses"),
            &token,
            json!({"state": "success", "description": "x".repeat(141)}),
        )
        .await;
    assert_eq!(
        newer_success.status(),
        422,
        "descriptions over 140 characters"
    );
    let newer_success = fixture
        .post_with_token(
            &format!("/repos/acme/web/deployments/{newer_id}/statuses"),
            &token,
            json!({"state": "success"}),
        )
        .await;
    assert_eq!(newer_success.status(), 201);
    let earlier_states: Vec<Value> = fixture
        .standin
        .deployment_statuses(staging_id)
        .into_iter()
        .map(|status| status["state"].clone())
        .collect();
    assert_eq!(earlier_states, [json!("success"), json!("inactive")]);

    for path in [
        "/repos/acme/web/deployments".to_string(),
        "/repos/acme/web/deployments?environment=staging&per_page=1".to_string(),
        format!("/repos/acme/web/deployments/{staging_id}"),
        status_path.clone(),
    ] {
        let response = fixture.get_with_token(&path, &token).await;
        assert_eq!(response.status(), 200, "{path}");
    }
    let listed: Value = fixture
        .get_with_token("/repos/acme/web/deployments", &token)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed[0]["id"], newer_id, "newest first");

    let not_json = fixture
        .client
        .post(fixture.url("/repos/acme/web/deployments"))
        .header("authorization", format!("token {token}"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    // The 140-character limit is GitHub's rule, not part of its schema, so only the broken JSON is
    // a schema violation.
    assert_eq!(
        fixture.standin.schema_violations(),
        vec![
            "POST /repos/{owner}/{repo}/deployments request: the body is not valid JSON"
                .to_string()
        ]
    );

    let revoke = fixture
        .client
        .delete(fixture.url("/installation/token"))
        .header("authorization", format!("token {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 204);
    let after_revoke = fixture.get_with_token("/repos/acme/web", &token).await;
    assert_eq!(after_revoke.status(), 401);
}

/// Runs git with an isolated configuration and, when given, the token as an extra HTTP header
/// (the way Wharf's agent passes it), failing the test if git does not finish within a minute.
async fn run_git(
    directory: &Path,
    token: Option<&str>,
    arguments: &[&str],
) -> std::process::Output {
    let mut command = tokio::process::Command::new("git");
    command
        .current_dir(directory)
        .args(arguments)
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("HOME", directory)
        .env_remove("GIT_ASKPASS")
        .env_remove("SSH_ASKPASS")
        .kill_on_drop(true);
    if let Some(token) = token {
        let credentials =
            base64::engine::general_purpose::STANDARD.encode(format!("x-access-token:{token}"));
        command
            .env("GIT_CONFIG_COUNT", "1")
            .env("GIT_CONFIG_KEY_0", "http.extraHeader")
            .env(
                "GIT_CONFIG_VALUE_0",
                format!("Authorization: Basic {credentials}"),
            );
    } else {
        command.env("GIT_CONFIG_COUNT", "0");
    }
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("git did not finish within its deadline")
        .unwrap()
}

#[tokio::test]
async fn git_fetches_a_commit_by_sha_with_an_installation_token() {
    let fixture = start(Duration::from_secs(3600)).await;
    fixture.add_repository("acme/web");
    let first = fixture
        .standin
        .commit_files(
            "acme/web",
            "main",
            &[
                ("site/index.html", b"<h1>one</h1>\n"),
                ("scripts/build.sh", b"#!/bin/sh\necho build\n"),
            ],
            "first",
        )
        .unwrap();
    let second = fixture
        .standin
        .commit_files(
            "acme/web",
            "main",
            &[("site/index.html", b"<h1>two</h1>\n")],
            "second",
        )
        .unwrap();
    assert_ne!(first, second);
    let token = fixture.create_token(INSTALLATION).await;
    let workspace = tempfile::tempdir().unwrap();
    let checkout = workspace.path().join("checkout");
    std::fs::create_dir(&checkout).unwrap();
    let clone_url = fixture.standin.clone_url("acme/web");

    let init = run_git(&checkout, None, &["init", "-q"]).await;
    assert!(init.status.success());
    let remote = run_git(&checkout, None, &["remote", "add", "origin", &clone_url]).await;
    assert!(remote.status.success());

    // The first commit is no longer the branch tip: fetching it by SHA needs protocol v2 and the
    // upload-pack settings of the bare repository.
    let fetch = run_git(
        &checkout,
        Some(&token),
        &["fetch", "-q", "--depth", "1", "origin", &first],
    )
    .await;
    assert!(
        fetch.status.success(),
        "git fetch failed: {}",
        String::from_utf8_lossy(&fetch.stderr)
    );
    let switch = run_git(&checkout, None, &["checkout", "-q", "--detach", &first]).await;
    assert!(
        switch.status.success(),
        "{}",
        String::from_utf8_lossy(&switch.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(checkout.join("site/index.html")).unwrap(),
        "<h1>one</h1>\n"
    );
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(checkout.join("scripts/build.sh"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o111, 0o111, "build.sh is not executable: {mode:o}");
    }

    let git_requests: Vec<_> = fixture
        .standin
        .requests()
        .into_iter()
        .filter(|request| request.path.starts_with("/git/"))
        .collect();
    assert!(!git_requests.is_empty());
    assert!(git_requests.iter().all(|request| request.auth == "basic"));
    assert!(
        git_requests
            .iter()
            .any(|request| request.header("git-protocol") == Some("version=2"))
    );

    // Without a token, or with a wrong one, git fails fast instead of prompting.
    for (case, credentials) in [("no token", None), ("wrong token", Some("ghs_wrong"))] {
        let started = Instant::now();
        let refused = run_git(
            &checkout,
            credentials,
            &["fetch", "-q", "--depth", "1", "origin", &second],
        )
        .await;
        assert!(!refused.status.success(), "{case}: git fetch succeeded");
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{case}: git took {:?}",
            started.elapsed()
        );
    }
    let refused_statuses: Vec<(String, u16)> = fixture
        .standin
        .requests()
        .into_iter()
        .filter(|request| request.path.starts_with("/git/") && request.auth != "basic")
        .map(|request| (request.auth, request.status))
        .collect();
    assert!(refused_statuses.contains(&("none".to_string(), 401)));
    assert!(refused_statuses.contains(&("invalid".to_string(), 401)));

    // A token of another installation cannot see the repository.
    let foreign_token = fixture.create_token(OTHER_INSTALLATION).await;
    let foreign = run_git(
        &checkout,
        Some(&foreign_token),
        &["fetch", "-q", "--depth", "1", "origin", &second],
    )
    .await;
    assert!(!foreign.status.success());
    assert_eq!(fixture.standin.requests().last().unwrap().status, 404);
}

#[tokio::test]
async fn git_negotiation_with_a_gzip_encoded_body_works() {
    let fixture = start(Duration::from_secs(3600)).await;
    fixture.add_repository("acme/history");
    fixture.add_repository("acme/web");
    for number in 0..60 {
        let contents = format!("{number}\n");
        fixture
            .standin
            .commit_files(
                "acme/history",
                "main",
                &[("counter.txt", contents.as_bytes())],
                &format!("commit {number}"),
            )
            .unwrap();
    }
    let web = fixture
        .standin
        .commit_files("acme/web", "main", &[("index.html", b"web\n")], "web")
        .unwrap();
    let token = fixture.create_token(INSTALLATION).await;
    let workspace = tempfile::tempdir().unwrap();
    let checkout = workspace.path().join("checkout");
    std::fs::create_dir(&checkout).unwrap();
    assert!(
        run_git(&checkout, None, &["init", "-q"])
            .await
            .status
            .success()
    );
    let history_url = fixture.standin.clone_url("acme/history");
    let history = run_git(
        &checkout,
        Some(&token),
        &["fetch", "-q", &history_url, "main:refs/history"],
    )
    .await;
    assert!(
        history.status.success(),
        "{}",
        String::from_utf8_lossy(&history.stderr)
    );

    // The 60 local commits share nothing with acme/web, so git offers them all as `have` lines in
    // growing rounds, and bodies over 1 KiB are sent gzip-encoded.
    let web_url = fixture.standin.clone_url("acme/web");
    let fetch = run_git(&checkout, Some(&token), &["fetch", "-q", &web_url, "main"]).await;
    assert!(
        fetch.status.success(),
        "{}",
        String::from_utf8_lossy(&fetch.stderr)
    );
    let fetched = run_git(&checkout, None, &["rev-parse", "FETCH_HEAD"]).await;
    assert_eq!(String::from_utf8_lossy(&fetched.stdout).trim(), web);
    let requests = fixture.standin.requests();
    assert!(
        requests
            .iter()
            .any(|request| request.header("content-encoding") == Some("gzip")),
        "git sent no gzip-encoded request"
    );
    assert!(
        requests
            .iter()
            .filter(|request| request.path.starts_with("/git/"))
            .all(|request| request.status == 200)
    );
}
