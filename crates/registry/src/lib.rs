//! Wharf's client for container registries: the OCI distribution API (Docker Registry HTTP
//! API v2), as Distribution (Debian's `docker-registry`), zot and Harbor speak it. It reads the
//! digest a tag points at, lists a repository's tags and deletes manifests by digest, which is
//! what keeping a registry's images in bounds and checking the images agents report need.
//!
//! It logs in with HTTP basic authentication when given credentials, and answers Docker's
//! token authentication: a `401` with a `Bearer` challenge sends it to the challenge's realm for
//! a token of the challenge's scope (with the credentials, when given), and the request is sent
//! once more with that token. Each call asks anew; nothing is cached.
//!
//! Architecture invariant: the password and the tokens stay [`SecretString`]s; no error,
//! `Debug` output or log line holds one, and what a registry answers is cleaned of them before
//! an error quotes it.
//!
//! A registry deletes a manifest by digest only, and deleting one removes every tag that points
//! at it. Deleting frees no disk: Distribution frees the blobs of deleted manifests only when
//! `docker-registry garbage-collect` runs, with the registry stopped or read-only.

mod error;
mod headers;
mod reference;

use std::time::Duration;

use base64::Engine;
use reqwest::header::{ACCEPT, HeaderName};
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use wharf_domain::build::is_sha256_digest;
use wharf_wire::text::{ECHOED_CHARS, clip};

pub use error::RegistryError;
pub use reference::{ImageReference, split_reference};

use error::{codes_and_messages, quotable};
use headers::{BearerChallenge, bearer_challenge, next_link};
use reference::{check_reference, check_repository, is_digest};

/// What a manifest request accepts: OCI image indexes and manifests, and Docker's manifest
/// lists and schema 2 manifests. Distribution answers 404 to a request for an OCI manifest (what
/// Podman pushes) that does not list the OCI types.
pub const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.docker.distribution.manifest.v2+json";

/// The header a registry names a manifest's digest in.
const DOCKER_CONTENT_DIGEST: HeaderName = HeaderName::from_static("docker-content-digest");

/// The most pages of tags one listing reads.
const MAX_TAG_PAGES: usize = 1000;
/// The largest page of tags read (a tag is at most 128 bytes).
const TAG_PAGE_BYTES: usize = 8 * 1024 * 1024;
/// The largest answer of a token service read.
const TOKEN_ANSWER_BYTES: usize = 1024 * 1024;
/// How much of an error answer is read for its codes and messages.
const ERROR_BODY_BYTES: usize = 64 * 1024;

/// What became of a request to delete a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    /// The registry deleted it, and with it every tag that pointed at it.
    Deleted,
    /// The registry holds no such manifest (404): deleted before, or never pushed.
    Missing,
    /// The registry does not delete manifests (405 `UNSUPPORTED`: Distribution with deletes
    /// disabled), or the login may not (403). Says which, with the registry's own words.
    Refused(String),
}

/// A client of one registry, addressed by host and port. Cheap to clone: clones share their
/// connections.
#[derive(Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    /// `http://host:port/` or `https://host:port/`.
    base: Url,
    /// `host:port`, as errors name the registry.
    host: String,
    credentials: Option<Credentials>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("RegistryClient")
            .field("base", &self.base.as_str())
            .field(
                "username",
                &self.credentials.as_ref().map(|login| &login.username),
            )
            .finish_non_exhaustive()
    }
}

/// A login for basic authentication, at the registry or its token service.
#[derive(Clone)]
struct Credentials {
    username: String,
    password: SecretString,
    /// `base64(username:password)`, as the `Authorization` header carries it: taken out of
    /// whatever a registry answers, like the password.
    encoded: SecretString,
}

/// A registry's answer, with the token it was sent with when the registry asked for one.
struct Answer {
    response: reqwest::Response,
    token: Option<SecretString>,
}

impl RegistryClient {
    /// A client of the registry at `base` (`host:port`, or a host alone), over HTTPS, or over
    /// plain HTTP when `plain_http` says so, logging in with `credentials` (username and
    /// password) when given.
    pub fn new(
        base: &str,
        plain_http: bool,
        credentials: Option<(String, SecretString)>,
    ) -> Result<RegistryClient, RegistryError> {
        let invalid = |why: &str| {
            RegistryError::Invalid(format!(
                "{:?} is no registry address: {why}",
                clip(base, ECHOED_CHARS)
            ))
        };
        if base.is_empty()
            || base.contains("://")
            || base.contains(['/', '@', '?', '#'])
            || !base.bytes().all(|byte| byte.is_ascii_graphic())
        {
            return Err(invalid(
                "expected host:port, such as registry.example.com:5000",
            ));
        }
        let scheme = if plain_http { "http" } else { "https" };
        let url = Url::parse(&format!("{scheme}://{base}/"))
            .map_err(|error| invalid(&error.to_string()))?;
        let Some(host) = url.host_str() else {
            return Err(invalid("it names no host"));
        };
        let host = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        let credentials = match credentials {
            Some((username, password)) => {
                if username.is_empty()
                    || username.contains(':')
                    || username.chars().any(char::is_control)
                {
                    return Err(RegistryError::Invalid(
                        "a registry username must be non-empty, without ':' or control characters"
                            .to_owned(),
                    ));
                }
                let encoded = base64::engine::general_purpose::STANDARD
                    .encode(format!("{username}:{}", password.expose_secret()));
                Some(Credentials {
                    username,
                    password,
                    encoded: SecretString::from(encoded),
                })
            }
            None => None,
        };
        let http = reqwest::Client::builder()
            .user_agent(concat!("wharf/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|error| RegistryError::Invalid(format!("HTTP client: {error}")))?;
        Ok(RegistryClient {
            http,
            base: url,
            host,
            credentials,
        })
    }

    /// The registry's `host:port`, as its errors name it.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The digest of the manifest `reference` (a tag, or a digest) names in `repository`, as the
    /// registry's `Docker-Content-Digest` header gives it; None when the registry holds no such
    /// manifest, or no such repository (404).
    pub async fn manifest_digest(
        &self,
        repository: &str,
        reference: &str,
    ) -> Result<Option<String>, RegistryError> {
        check_repository(repository)?;
        check_reference(reference)?;
        let separator = if reference.contains(':') { '@' } else { ':' };
        let what = format!("reading the digest of {repository}{separator}{reference}");
        let url = self.url(&what, &format!("v2/{repository}/manifests/{reference}"))?;
        let answer = self.send(&what, Method::HEAD, url, MANIFEST_TYPES).await?;
        let status = answer.response.status();
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            return Err(self.status_error(&what, &self.host, answer).await);
        }
        let digest = answer
            .response
            .headers()
            .get(DOCKER_CONTENT_DIGEST)
            .and_then(|value| value.to_str().ok())
            .map(str::trim)
            .filter(|digest| is_digest(digest))
            .ok_or_else(|| RegistryError::Unreadable {
                what: what.clone(),
                host: self.host.clone(),
                detail: "no digest in its Docker-Content-Digest header".to_owned(),
            })?;
        Ok(Some(digest.to_owned()))
    }

    /// Every tag of `repository`, in the registry's order (Distribution's is no order to rely
    /// on), following the pages a `Link` header names. A repository the registry does not know
    /// (404, `NAME_UNKNOWN`) has none; so has one whose manifests were all deleted.
    pub async fn tags(&self, repository: &str) -> Result<Vec<String>, RegistryError> {
        check_repository(repository)?;
        let what = format!("listing the tags of {repository}");
        let mut url = self.url(&what, &format!("v2/{repository}/tags/list"))?;
        let mut tags = Vec::new();
        for page in 0..MAX_TAG_PAGES {
            let answer = self
                .send(&what, Method::GET, url.clone(), "application/json")
                .await?;
            let status = answer.response.status();
            if status == StatusCode::NOT_FOUND && page == 0 {
                return Ok(tags);
            }
            if !status.is_success() {
                return Err(self.status_error(&what, &self.host, answer).await);
            }
            let next = next_link(answer.response.headers());
            let body = self
                .read_body(&what, &self.host, answer.response, TAG_PAGE_BYTES)
                .await?;
            let list: TagList =
                serde_json::from_slice(&body).map_err(|error| RegistryError::Unreadable {
                    what: what.clone(),
                    host: self.host.clone(),
                    detail: format!("not a tag list: {}", quotable(&error.to_string(), &[])),
                })?;
            tags.extend(list.tags.unwrap_or_default());
            match next {
                None => return Ok(tags),
                Some(target) => url = self.next_page(&what, &url, &target)?,
            }
        }
        Err(RegistryError::Unreadable {
            what,
            host: self.host.clone(),
            detail: format!("it has more than {MAX_TAG_PAGES} pages of tags"),
        })
    }

    /// Deletes the manifest `digest` (`sha256:` and 64 lowercase hex digits) of `repository`,
    /// and with it every tag that points at it. Anything but a digest is refused before a
    /// request is sent: a registry deletes by digest only.
    pub async fn delete_manifest(
        &self,
        repository: &str,
        digest: &str,
    ) -> Result<Deleted, RegistryError> {
        check_repository(repository)?;
        if !is_sha256_digest(digest) {
            return Err(RegistryError::Invalid(format!(
                "{:?} is no digest (sha256: and 64 lowercase hex digits): a registry deletes a manifest by its digest only",
                clip(digest, ECHOED_CHARS)
            )));
        }
        let what = format!("deleting {repository}@{digest}");
        let url = self.url(&what, &format!("v2/{repository}/manifests/{digest}"))?;
        let answer = self
            .send(&what, Method::DELETE, url, MANIFEST_TYPES)
            .await?;
        match answer.response.status() {
            status if status.is_success() => Ok(Deleted::Deleted),
            StatusCode::NOT_FOUND => Ok(Deleted::Missing),
            StatusCode::METHOD_NOT_ALLOWED => {
                let error = self.status_error(&what, &self.host, answer).await;
                Ok(Deleted::Refused(format!(
                    "{error}: the registry does not delete manifests (Distribution does with storage: delete: enabled: true)"
                )))
            }
            StatusCode::FORBIDDEN => {
                let error = self.status_error(&what, &self.host, answer).await;
                Ok(Deleted::Refused(format!(
                    "{error}: the login may not delete from {repository}"
                )))
            }
            _ => Err(self.status_error(&what, &self.host, answer).await),
        }
    }

    /// `{base}{path}`, for a path of checked names.
    fn url(&self, what: &str, path: &str) -> Result<Url, RegistryError> {
        self.base
            .join(path)
            .map_err(|error| RegistryError::Invalid(format!("{what}: {error}")))
    }

    /// Sends a request with the client's login, and once more with a token when the registry
    /// answers 401 with a `Bearer` challenge. Whatever the last answer is, it is the caller's
    /// to read.
    async fn send(
        &self,
        what: &str,
        method: Method,
        url: Url,
        accept: &str,
    ) -> Result<Answer, RegistryError> {
        let first = self
            .request(method.clone(), url.clone(), accept, None)
            .send()
            .await
            .map_err(|error| unreachable(what, &self.host, error))?;
        if first.status() != StatusCode::UNAUTHORIZED {
            return Ok(Answer {
                response: first,
                token: None,
            });
        }
        let Some(challenge) = bearer_challenge(first.headers()) else {
            return Ok(Answer {
                response: first,
                token: None,
            });
        };
        drop(first);
        let token = self.token(what, &challenge).await?;
        let second = self
            .request(method, url, accept, Some(&token))
            .send()
            .await
            .map_err(|error| unreachable(what, &self.host, error))?;
        Ok(Answer {
            response: second,
            token: Some(token),
        })
    }

    /// A request with the token when given, else with the login when the client has one.
    fn request(
        &self,
        method: Method,
        url: Url,
        accept: &str,
        token: Option<&SecretString>,
    ) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url).header(ACCEPT, accept);
        match (token, &self.credentials) {
            (Some(token), _) => request.bearer_auth(token.expose_secret()),
            (None, Some(login)) => {
                request.basic_auth(&login.username, Some(login.password.expose_secret()))
            }
            (None, None) => request,
        }
    }

    /// A token for what `challenge` asks: `GET {realm}?service=…&scope=…`, with the login when
    /// the client has one.
    async fn token(
        &self,
        what: &str,
        challenge: &BearerChallenge,
    ) -> Result<SecretString, RegistryError> {
        let what = match challenge.scopes.as_slice() {
            [] => format!("{what}: asking for a token"),
            scopes => format!("{what}: asking for a token for {}", scopes.join(" ")),
        };
        let unusable = |detail: String| RegistryError::Unreadable {
            what: what.clone(),
            host: self.host.clone(),
            detail,
        };
        let mut realm = Url::parse(&challenge.realm).map_err(|_| {
            unusable(format!(
                "its Bearer challenge names the realm {:?}, which is no URL",
                quotable(&challenge.realm, &[])
            ))
        })?;
        let realm_host = match (realm.scheme(), realm.host_str(), realm.port()) {
            ("http" | "https", Some(host), Some(port)) => format!("{host}:{port}"),
            ("http" | "https", Some(host), None) => host.to_owned(),
            _ => {
                return Err(unusable(format!(
                    "its Bearer challenge names the realm {:?}, which is no http or https URL",
                    quotable(&challenge.realm, &[])
                )));
            }
        };
        {
            let mut query = realm.query_pairs_mut();
            if let Some(service) = &challenge.service {
                query.append_pair("service", service);
            }
            for scope in &challenge.scopes {
                query.append_pair("scope", scope);
            }
        }
        let mut request = self.http.get(realm).header(ACCEPT, "application/json");
        if let Some(login) = &self.credentials {
            request = request.basic_auth(&login.username, Some(login.password.expose_secret()));
        }
        let response = request
            .send()
            .await
            .map_err(|error| unreachable(&what, &realm_host, error))?;
        if !response.status().is_success() {
            let answer = Answer {
                response,
                token: None,
            };
            return Err(self.status_error(&what, &realm_host, answer).await);
        }
        let body = self
            .read_body(&what, &realm_host, response, TOKEN_ANSWER_BYTES)
            .await?;
        // The answer holds the token: no part of it may reach an error.
        let answer: TokenAnswer =
            serde_json::from_slice(&body).map_err(|_| RegistryError::Unreadable {
                what: what.clone(),
                host: realm_host.clone(),
                detail: "the token service's answer is no JSON object with a token".to_owned(),
            })?;
        answer
            .token
            .or(answer.access_token)
            .filter(|token| !token.is_empty())
            .map(SecretString::from)
            .ok_or_else(|| RegistryError::Unreadable {
                what: what.clone(),
                host: realm_host,
                detail: "the token service's answer holds no token".to_owned(),
            })
    }

    /// The URL of the next page a `Link` names, which must be on the registry itself: the
    /// client sends its login nowhere else.
    fn next_page(&self, what: &str, current: &Url, target: &str) -> Result<Url, RegistryError> {
        let next = current
            .join(target)
            .map_err(|_| RegistryError::Unreadable {
                what: what.to_owned(),
                host: self.host.clone(),
                detail: format!(
                    "its Link header names the next page {:?}, which is no URL",
                    quotable(target, &[])
                ),
            })?;
        if next.origin() != self.base.origin() {
            return Err(RegistryError::Unreadable {
                what: what.to_owned(),
                host: self.host.clone(),
                detail: format!(
                    "its Link header names a next page elsewhere ({:?}); the client follows none off the registry",
                    quotable(&next.origin().ascii_serialization(), &[])
                ),
            });
        }
        Ok(next)
    }

    /// An error for an answer with an unexpected status, with the codes and messages of its
    /// body, cleaned of the login and the token.
    async fn status_error(&self, what: &str, host: &str, answer: Answer) -> RegistryError {
        let status = answer.response.status().as_u16();
        let body = read_limited(answer.response, ERROR_BODY_BYTES)
            .await
            .unwrap_or_default();
        let mut secrets: Vec<&str> = Vec::new();
        if let Some(login) = &self.credentials {
            secrets.push(login.password.expose_secret());
            secrets.push(login.encoded.expose_secret());
        }
        if let Some(token) = &answer.token {
            secrets.push(token.expose_secret());
        }
        let (code, message) = codes_and_messages(&body, &secrets);
        RegistryError::Status {
            what: what.to_owned(),
            host: host.to_owned(),
            status,
            code,
            message,
        }
    }

    /// An answer's body, up to `limit` bytes: a longer one is unreadable.
    async fn read_body(
        &self,
        what: &str,
        host: &str,
        response: reqwest::Response,
        limit: usize,
    ) -> Result<Vec<u8>, RegistryError> {
        match read_limited(response, limit).await {
            Ok(body) if body.len() <= limit => Ok(body),
            Ok(_) => Err(RegistryError::Unreadable {
                what: what.to_owned(),
                host: host.to_owned(),
                detail: format!("the answer is longer than {limit} bytes"),
            }),
            Err(error) => Err(unreachable(what, host, error)),
        }
    }
}

/// `GET /v2/{repository}/tags/list`: Distribution answers `"tags": null` for a repository whose
/// manifests were all deleted.
#[derive(Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

/// A token service's answer: `token`, or OAuth's `access_token`.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// A body's first `limit` bytes and one more, so that the caller sees when it was longer.
async fn read_limited(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk);
        if body.len() > limit {
            body.truncate(limit + 1);
            break;
        }
    }
    Ok(body)
}

/// An error for a request that got no whole answer, with its causes and without its URL.
fn unreachable(what: &str, host: &str, error: reqwest::Error) -> RegistryError {
    let error = error.without_url();
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !detail.contains(&text) {
            detail.push_str(": ");
            detail.push_str(&text);
        }
        source = cause.source();
    }
    RegistryError::Unreachable {
        what: what.to_owned(),
        host: host.to_owned(),
        detail: quotable(&detail, &[]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest() -> String {
        format!("sha256:{}", "0".repeat(64))
    }

    #[test]
    fn an_address_is_a_host_and_port_only() {
        let client = RegistryClient::new("127.0.0.1:5000", true, None).unwrap();
        assert_eq!(client.host(), "127.0.0.1:5000");
        assert_eq!(client.base.as_str(), "http://127.0.0.1:5000/");
        let client = RegistryClient::new("registry.example.com", false, None).unwrap();
        assert_eq!(client.base.as_str(), "https://registry.example.com/");
        for bad in [
            "",
            "http://127.0.0.1:5000",
            "127.0.0.1:5000/team",
            "user@host",
            "host:port",
            "a b",
        ] {
            assert!(
                matches!(
                    RegistryClient::new(bad, true, None),
                    Err(RegistryError::Invalid(_))
                ),
                "{bad:?}"
            );
        }
        assert!(
            RegistryClient::new(
                "host",
                true,
                Some(("a:b".to_owned(), SecretString::from("p")))
            )
            .is_err()
        );
    }

    #[test]
    fn the_debug_output_names_the_user_but_not_the_password() {
        let client = RegistryClient::new(
            "127.0.0.1:5000",
            true,
            Some(("pusher".to_owned(), SecretString::from("hunter2-secret"))),
        )
        .unwrap();
        let shown = format!("{client:?}");
        assert!(shown.contains("pusher"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }

    #[tokio::test]
    async fn only_a_digest_is_deleted_and_nothing_is_sent_for_anything_else() {
        // Nothing listens on port 9 of loopback: a request sent would be Unreachable.
        let client = RegistryClient::new("127.0.0.1:9", true, None).unwrap();
        for reference in ["latest", "sha256:abc", "SHA256:00", "sha512:00"] {
            let error = client
                .delete_manifest("default/web", reference)
                .await
                .unwrap_err();
            assert!(matches!(error, RegistryError::Invalid(_)), "{error}");
            assert!(error.to_string().contains("by its digest only"), "{error}");
        }
        let error = client
            .delete_manifest("Default/Web", &digest())
            .await
            .unwrap_err();
        assert!(matches!(error, RegistryError::Invalid(_)), "{error}");
        let error = client.manifest_digest("web", "a/b").await.unwrap_err();
        assert!(matches!(error, RegistryError::Invalid(_)), "{error}");
        let error = client.tags("../x").await.unwrap_err();
        assert!(matches!(error, RegistryError::Invalid(_)), "{error}");
    }

    #[tokio::test]
    async fn an_unreachable_registry_is_said_to_be_so() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = RegistryClient::new(&format!("127.0.0.1:{port}"), true, None).unwrap();
        let error = client.tags("default/web").await.unwrap_err();
        assert!(
            matches!(error, RegistryError::Unreachable { .. }),
            "{error}"
        );
        let text = error.to_string();
        assert!(
            text.starts_with(&format!(
                "listing the tags of default/web: 127.0.0.1:{port} could not be reached"
            )),
            "{text}"
        );
    }
}
