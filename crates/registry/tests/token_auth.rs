//! Docker's token authentication, against a small registry and token service of the test's own
//! on 127.0.0.1: the registry answers 401 with a `Bearer` challenge until a request brings the
//! token its realm hands out, and both record every request they get.

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use secrecy::SecretString;
use wharf_registry::{Deleted, RegistryClient, RegistryError};

const USER: &str = "pusher";
const PASSWORD: &str = "password-3141-secret";
const TOKEN: &str = "token-2718-secret";
const DIGEST: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";

/// What the test's registry does with a request that brings the token.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// It serves it.
    Serve,
    /// It refuses it as it refuses every other, quoting the token and the login it got.
    RefuseTokens,
    /// It serves it, but its pages of tags lead to another host.
    ForeignPages,
}

/// A request one of the test's servers got.
#[derive(Debug, Clone, PartialEq)]
struct Seen {
    method: String,
    path: String,
    query: Option<String>,
    authorization: Option<String>,
}

#[derive(Clone)]
struct Fake {
    address: String,
    mode: Mode,
    seen: Arc<Mutex<Vec<Seen>>>,
}

struct Server {
    address: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    async fn start(mode: Mode) -> Server {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let fake = Fake {
            address: address.clone(),
            mode,
            seen: seen.clone(),
        };
        let router = axum::Router::new().fallback(answer).with_state(fake);
        let task = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Server {
            address,
            seen,
            task,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn client(&self, password: Option<&str>) -> RegistryClient {
        RegistryClient::new(
            &self.address,
            true,
            password.map(|password| (USER.to_owned(), SecretString::from(password))),
        )
        .unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn basic(password: &str) -> String {
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
    format!("Basic {encoded}")
}

fn bearer() -> String {
    format!("Bearer {TOKEN}")
}

fn seen(method: &str, path: &str, query: Option<&str>, authorization: Option<String>) -> Seen {
    Seen {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.map(str::to_owned),
        authorization,
    }
}

fn json(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

async fn answer(
    State(fake): State<Fake>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let authorization = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    fake.seen.lock().unwrap().push(Seen {
        method: method.to_string(),
        path: uri.path().to_owned(),
        query: uri.query().map(str::to_owned),
        authorization: authorization.clone(),
    });
    let path = uri.path();
    if path == "/token" {
        // Anonymous tokens for no login; a login must be the right one.
        return match authorization {
            Some(given) if given != basic(PASSWORD) => json(
                StatusCode::UNAUTHORIZED,
                serde_json::json!({"details": format!("incorrect username or password: {given}")}),
            ),
            _ => json(
                StatusCode::OK,
                serde_json::json!({"token": TOKEN, "expires_in": 300}),
            ),
        };
    }
    let Some(rest) = path.strip_prefix("/v2/") else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (repository, action) = match rest.rsplit_once("/manifests/") {
        Some((repository, _)) => (repository, method.as_str()),
        None => (rest.trim_end_matches("/tags/list"), "GET"),
    };
    let scope_action = if action == "DELETE" { "delete" } else { "pull" };
    if authorization.as_deref() != Some(bearer().as_str()) || fake.mode == Mode::RefuseTokens {
        let mut response = json(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"errors": [{
                "code": "UNAUTHORIZED",
                "message": format!("authentication required; got {}", authorization.unwrap_or_default()),
            }]}),
        );
        let challenge = format!(
            r#"Bearer realm="http://{}/token",service="fake-registry",scope="repository:{repository}:{scope_action}""#,
            fake.address
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_str(&challenge).unwrap(),
        );
        return response;
    }
    match (method.as_str(), rest) {
        ("HEAD", "default/web/manifests/v1") => {
            let mut response = StatusCode::OK.into_response();
            response
                .headers_mut()
                .insert("docker-content-digest", HeaderValue::from_static(DIGEST));
            response
        }
        ("DELETE", manifest) if manifest == format!("default/web/manifests/{DIGEST}") => {
            StatusCode::ACCEPTED.into_response()
        }
        ("GET", "default/web/tags/list") => {
            let (tags, next) = match uri.query() {
                None => (vec!["a", "b"], Some("/v2/default/web/tags/list?last=b&n=2")),
                Some("last=b&n=2") => (vec!["c"], None),
                Some(_) => return StatusCode::BAD_REQUEST.into_response(),
            };
            let mut response = json(
                StatusCode::OK,
                serde_json::json!({"name": "default/web", "tags": tags}),
            );
            if let Some(next) = next {
                let target = if fake.mode == Mode::ForeignPages {
                    format!("http://localhost:1{next}")
                } else {
                    next.to_owned()
                };
                response.headers_mut().insert(
                    header::LINK,
                    HeaderValue::from_str(&format!(r#"<{target}>; rel="next""#)).unwrap(),
                );
            }
            response
        }
        _ => json(
            StatusCode::NOT_FOUND,
            serde_json::json!({"errors": [{"code": "NAME_UNKNOWN", "message": "repository name not known to registry"}]}),
        ),
    }
}

/// No password, token or encoded login in an error, as shown or as debugged.
fn assert_no_secret(error: &RegistryError) {
    let shown = format!("{error} {error:?}");
    for secret in [
        PASSWORD.to_owned(),
        TOKEN.to_owned(),
        basic(PASSWORD).trim_start_matches("Basic ").to_owned(),
        basic("wrong-password-1618")
            .trim_start_matches("Basic ")
            .to_owned(),
        "wrong-password-1618".to_owned(),
    ] {
        assert!(!shown.contains(&secret), "{shown}");
    }
}

#[tokio::test]
async fn a_bearer_challenge_is_answered_with_a_token_for_its_scope_and_one_retry() {
    let server = Server::start(Mode::Serve).await;
    let client = server.client(Some(PASSWORD));

    assert_eq!(
        client.manifest_digest("default/web", "v1").await.unwrap(),
        Some(DIGEST.to_owned())
    );
    let manifest = "/v2/default/web/manifests/v1";
    assert_eq!(
        server.seen(),
        [
            seen("HEAD", manifest, None, Some(basic(PASSWORD))),
            seen(
                "GET",
                "/token",
                Some("service=fake-registry&scope=repository%3Adefault%2Fweb%3Apull"),
                Some(basic(PASSWORD))
            ),
            seen("HEAD", manifest, None, Some(bearer())),
        ]
    );

    server.seen.lock().unwrap().clear();
    assert_eq!(
        client.delete_manifest("default/web", DIGEST).await.unwrap(),
        Deleted::Deleted
    );
    let manifest = format!("/v2/default/web/manifests/{DIGEST}");
    assert_eq!(
        server.seen(),
        [
            seen("DELETE", &manifest, None, Some(basic(PASSWORD))),
            seen(
                "GET",
                "/token",
                Some("service=fake-registry&scope=repository%3Adefault%2Fweb%3Adelete"),
                Some(basic(PASSWORD))
            ),
            seen("DELETE", &manifest, None, Some(bearer())),
        ]
    );
}

#[tokio::test]
async fn pages_of_tags_are_followed_each_with_its_token() {
    let server = Server::start(Mode::Serve).await;
    let client = server.client(None);
    assert_eq!(client.tags("default/web").await.unwrap(), ["a", "b", "c"]);
    let tags = "/v2/default/web/tags/list";
    let token_query = Some("service=fake-registry&scope=repository%3Adefault%2Fweb%3Apull");
    // Without a login the token is asked for anonymously.
    assert_eq!(
        server.seen(),
        [
            seen("GET", tags, None, None),
            seen("GET", "/token", token_query, None),
            seen("GET", tags, None, Some(bearer())),
            seen("GET", tags, Some("last=b&n=2"), None),
            seen("GET", "/token", token_query, None),
            seen("GET", tags, Some("last=b&n=2"), Some(bearer())),
        ]
    );
    assert!(client.tags("default/other").await.unwrap().is_empty());
}

#[tokio::test]
async fn a_registry_that_refuses_its_token_is_asked_once_more_only_and_its_words_hold_no_secret() {
    let server = Server::start(Mode::RefuseTokens).await;
    let client = server.client(Some(PASSWORD));

    let error = client
        .manifest_digest("default/web", "v1")
        .await
        .unwrap_err();
    assert_eq!(server.seen().len(), 3, "{:?}", server.seen());
    assert_eq!(error.status(), Some(401), "{error}");
    assert_eq!(error.code(), None, "a HEAD answer has no body: {error}");
    assert_no_secret(&error);

    // A GET's answer quotes the token it got; the error does not.
    server.seen.lock().unwrap().clear();
    let error = client.tags("default/web").await.unwrap_err();
    assert_eq!(server.seen().len(), 3, "{:?}", server.seen());
    assert_eq!(error.status(), Some(401));
    assert_eq!(error.code(), Some("UNAUTHORIZED"));
    let shown = error.to_string();
    assert!(
        shown.starts_with(&format!(
            "listing the tags of default/web: {} answered 401 (UNAUTHORIZED: authentication required; got Bearer [redacted])",
            server.address
        )),
        "{shown}"
    );
    assert_no_secret(&error);
}

#[tokio::test]
async fn a_wrong_password_at_the_token_service_fails_without_being_shown() {
    let server = Server::start(Mode::Serve).await;
    let client = server.client(Some("wrong-password-1618"));

    let error = client.tags("default/web").await.unwrap_err();
    // The registry, then its token service; no retry without a token.
    assert_eq!(server.seen().len(), 2, "{:?}", server.seen());
    assert_eq!(error.status(), Some(401), "{error}");
    let shown = error.to_string();
    assert!(
        shown.contains("asking for a token for repository:default/web:pull"),
        "{shown}"
    );
    assert!(
        shown.contains("incorrect username or password: Basic [redacted]"),
        "{shown}"
    );
    assert_no_secret(&error);
}

#[tokio::test]
async fn a_next_page_on_another_host_is_not_followed() {
    let server = Server::start(Mode::ForeignPages).await;
    let client = server.client(Some(PASSWORD));
    let error = client.tags("default/web").await.unwrap_err();
    assert!(matches!(error, RegistryError::Unreadable { .. }), "{error}");
    assert!(error.to_string().contains("http://localhost:1"), "{error}");
    assert_eq!(server.seen().len(), 3, "{:?}", server.seen());
    assert_no_secret(&error);
}
