//! The push payload and the pool of signed requests, all built before any timing starts.
//!
//! The body is a realistic ~7 KB GitHub `push` event (repository, pusher, sender, a few commits
//! with messages and file lists, `installation`). Every request in the pool differs in its
//! `after` commit, its head commit and its `X-GitHub-Delivery`, so Wharf can deduplicate none of
//! them and must store each one; each is signed `sha256=<hex HMAC-SHA256>` over its exact bytes.

use anyhow::{Context, ensure};
use hmac::{Hmac, KeyInit, Mac};
use reqwest::header::HeaderValue;
use serde_json::{Value, json};
use sha2::Sha256;

use crate::procs::{Wharf, WharfLaunch};

/// The repository every push names; the benchmark's service tracks it.
pub const REPO: &str = "acme/web";
/// The branch every push updates; the benchmark's service tracks it.
pub const BRANCH: &str = "main";

/// Starts `launch` (its log `wharf-{label}.log`, with `extra_env` beside its own settings) and
/// creates the service `web` that tracks [`REPO`] and [`BRANCH`], so that every push of the
/// pool queues a build.
pub async fn start_tracking_server(
    launch: &WharfLaunch,
    http: &reqwest::Client,
    label: &str,
    extra_env: &[(&str, &str)],
) -> anyhow::Result<Wharf> {
    eprintln!("==> starting wharf server (SQLite in a temporary directory)");
    let wharf = launch.start(http, label, extra_env).await?;
    wharf
        .admin_post(
            http,
            "/v1/services",
            &json!({"name": "web", "repo": REPO, "branch": BRANCH, "port": 8080}),
            reqwest::StatusCode::CREATED,
        )
        .await?;
    Ok(wharf)
}

/// Forty characters that stand for the pushed commit in the template; replaced per request.
const AFTER_MARK: &str = "@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@";

/// One signed delivery, ready to send.
pub struct SignedRequest {
    pub body: Vec<u8>,
    pub delivery: HeaderValue,
    pub signature: HeaderValue,
    /// `X-GitHub-Delivery` as text, to find the delivery in the store afterwards.
    pub delivery_id: String,
}

/// Builds signed requests for one run: a template body and the run's secret and nonce.
pub struct Generator {
    /// The body split around each occurrence of [`AFTER_MARK`].
    pieces: Vec<String>,
    secret: Vec<u8>,
    /// Distinguishes this run's delivery ids from any other run's.
    nonce: String,
}

impl Generator {
    /// `nonce` must be 8 hex digits.
    pub fn new(secret: &str, nonce: &str) -> anyhow::Result<Generator> {
        ensure!(
            nonce.len() == 8 && nonce.bytes().all(|b| b.is_ascii_hexdigit()),
            "the nonce must be 8 hex digits"
        );
        let template = template().to_string();
        let pieces: Vec<String> = template.split(AFTER_MARK).map(str::to_owned).collect();
        ensure!(
            pieces.len() >= 2,
            "the template does not mention the pushed commit"
        );
        check_signature_scheme(secret.as_bytes())?;
        Ok(Generator {
            pieces,
            secret: secret.as_bytes().to_vec(),
            nonce: nonce.to_owned(),
        })
    }

    /// The size of every body, in bytes (all commits are 40 hex digits, so all bodies are equal).
    pub fn body_len(&self) -> usize {
        self.pieces.iter().map(String::len).sum::<usize>() + 40 * (self.pieces.len() - 1)
    }

    /// The pushed commit of request `index`; never all zeros, which would mean a deleted branch.
    pub fn after(index: usize) -> String {
        format!("{:040x}", index + 1)
    }

    /// Request `index`: the body for commit [`Generator::after`]`(index)`, signed.
    pub fn request(&self, index: usize) -> anyhow::Result<SignedRequest> {
        let after = Generator::after(index);
        let mut body = Vec::with_capacity(self.body_len());
        for (position, piece) in self.pieces.iter().enumerate() {
            if position > 0 {
                body.extend_from_slice(after.as_bytes());
            }
            body.extend_from_slice(piece.as_bytes());
        }
        let signature = wharf_domain::signature::sign(&self.secret, &body);
        // UUID-shaped: the run's nonce, then the index.
        let counter = format!("{index:024x}");
        let delivery_id = format!(
            "{}-{}-{}-{}-{}",
            self.nonce,
            &counter[0..4],
            &counter[4..8],
            &counter[8..12],
            &counter[12..24]
        );
        Ok(SignedRequest {
            body,
            delivery: HeaderValue::from_str(&delivery_id).context("delivery header")?,
            signature: HeaderValue::from_str(&signature).context("signature header")?,
            delivery_id,
        })
    }

    /// Requests `0..count`, built up front and kept for the life of the process, so sending one
    /// copies nothing.
    pub fn pool(&self, count: usize) -> anyhow::Result<&'static [SignedRequest]> {
        let mut pool = Vec::with_capacity(count);
        for index in 0..count {
            pool.push(self.request(index)?);
        }
        Ok(Vec::leak(pool))
    }
}

/// Signs `body` with HMAC-SHA256 computed here, independently of `wharf_domain`.
fn independent_signature(secret: &[u8], body: &[u8]) -> anyhow::Result<String> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).context("HMAC key")?;
    mac.update(body);
    Ok(format!(
        "sha256={}",
        hex::encode(mac.finalize().into_bytes())
    ))
}

/// Checks once that Wharf's signing helper gives what GitHub (and adnanh/webhook) expect.
fn check_signature_scheme(secret: &[u8]) -> anyhow::Result<()> {
    let body = br#"{"zen":"Keep it logically awesome."}"#;
    ensure!(
        wharf_domain::signature::sign(secret, body) == independent_signature(secret, body)?,
        "wharf_domain::signature::sign does not compute sha256=<hex HMAC-SHA256>"
    );
    Ok(())
}

/// A GitHub `push` payload with [`AFTER_MARK`] where the pushed commit goes.
fn template() -> Value {
    let (owner, name) = REPO.split_once('/').unwrap_or((REPO, REPO));
    let before = "6113728f27ae82c7b1a177c8d03f9e96e0adf246";
    let user = |login: &str, id: u64| {
        json!({
            "login": login,
            "id": id,
            "node_id": "MDQ6VXNlcjE=",
            "avatar_url": format!("https://avatars.githubusercontent.com/u/{id}?v=4"),
            "gravatar_id": "",
            "url": format!("https://api.github.com/users/{login}"),
            "html_url": format!("https://github.com/{login}"),
            "type": "User",
            "site_admin": false
        })
    };
    let person = |name: &str, email: &str, username: &str| json!({"name": name, "email": email, "username": username});
    let commit = |id: &str, message: &str, added: Value, modified: Value| {
        json!({
            "id": id,
            "tree_id": "f9d2a07e9488b91af2641b26b9407fe22a451433",
            "distinct": true,
            "message": message,
            "timestamp": "2025-05-14T09:21:47+02:00",
            "url": format!("https://github.com/{REPO}/commit/{id}"),
            "author": person("Mona Lisa Octocat", "mona@example.com", "octocat"),
            "committer": person("GitHub", "noreply@github.com", "web-flow"),
            "added": added,
            "removed": [],
            "modified": modified
        })
    };
    let commits = json!([
        commit(
            "1d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e",
            "Add request tracing to the checkout handler\n\nEvery request now carries a trace id from the edge to the database, \
             so slow checkouts can be followed across services. The id is logged with each query.",
            json!(["src/tracing.rs", "src/middleware/trace_id.rs"]),
            json!([
                "src/main.rs",
                "src/checkout/handler.rs",
                "Cargo.toml",
                "Cargo.lock"
            ])
        ),
        commit(
            "2e4f6a8b0c2d4e6f8a0b2c4d6e8f0a2b4c6d8e0f",
            "Retry payment provider calls on 503 with jittered backoff\n\nThe provider answers 503 during its \
             deploys; we now retry up to three times with full jitter instead of failing the order.",
            json!([]),
            json!([
                "src/payments/client.rs",
                "src/payments/retry.rs",
                "tests/payments.rs"
            ])
        ),
        commit(
            "3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c",
            "Fix the flaky checkout integration test\n\nThe test raced the background stock reservation; \
             it now waits for the reservation event instead of sleeping.",
            json!(["tests/support/events.rs"]),
            json!(["tests/checkout.rs", "tests/support/mod.rs"])
        ),
        commit(
            AFTER_MARK,
            "Bump the base image to debian:bookworm-slim and pin the toolchain\n\nReduces the image by 40 MB and \
             makes builds reproducible across agents.",
            json!([]),
            json!([
                "Dockerfile",
                "rust-toolchain.toml",
                ".github/workflows/ci.yml"
            ])
        )
    ]);
    let head_commit = commits[3].clone();
    let api = format!("https://api.github.com/repos/{REPO}");
    let repository = json!({
        "id": 1296269,
        "node_id": "MDEwOlJlcG9zaXRvcnkxMjk2MjY5",
        "name": name,
        "full_name": REPO,
        "private": true,
        "owner": {
            "name": owner,
            "email": null,
            "login": owner,
            "id": 9919,
            "node_id": "MDEyOk9yZ2FuaXphdGlvbjk5MTk=",
            "avatar_url": "https://avatars.githubusercontent.com/u/9919?v=4",
            "url": format!("https://api.github.com/users/{owner}"),
            "html_url": format!("https://github.com/{owner}"),
            "type": "Organization",
            "site_admin": false
        },
        "html_url": format!("https://github.com/{REPO}"),
        "description": "The storefront: web frontend and checkout API",
        "fork": false,
        "url": format!("https://github.com/{REPO}"),
        "forks_url": format!("{api}/forks"),
        "keys_url": format!("{api}/keys{{/key_id}}"),
        "collaborators_url": format!("{api}/collaborators{{/collaborator}}"),
        "teams_url": format!("{api}/teams"),
        "hooks_url": format!("{api}/hooks"),
        "issue_events_url": format!("{api}/issues/events{{/number}}"),
        "events_url": format!("{api}/events"),
        "branches_url": format!("{api}/branches{{/branch}}"),
        "tags_url": format!("{api}/tags"),
        "statuses_url": format!("{api}/statuses/{{sha}}"),
        "languages_url": format!("{api}/languages"),
        "commits_url": format!("{api}/commits{{/sha}}"),
        "compare_url": format!("{api}/compare/{{base}}...{{head}}"),
        "merges_url": format!("{api}/merges"),
        "pulls_url": format!("{api}/pulls{{/number}}"),
        "deployments_url": format!("{api}/deployments"),
        "contributors_url": format!("{api}/contributors"),
        "subscribers_url": format!("{api}/subscribers"),
        "git_refs_url": format!("{api}/git/refs{{/sha}}"),
        "trees_url": format!("{api}/git/trees{{/sha}}"),
        "contents_url": format!("{api}/contents/{{+path}}"),
        "issues_url": format!("{api}/issues{{/number}}"),
        "labels_url": format!("{api}/labels{{/name}}"),
        "created_at": 1_616_000_000,
        "updated_at": "2025-05-14T07:10:02Z",
        "pushed_at": 1_747_207_307,
        "git_url": format!("git://github.com/{REPO}.git"),
        "ssh_url": format!("git@github.com:{REPO}.git"),
        "clone_url": format!("https://github.com/{REPO}.git"),
        "homepage": null,
        "size": 4821,
        "stargazers_count": 12,
        "watchers_count": 12,
        "language": "Rust",
        "has_issues": true,
        "has_projects": false,
        "has_downloads": true,
        "has_wiki": false,
        "has_pages": false,
        "forks_count": 1,
        "archived": false,
        "disabled": false,
        "open_issues_count": 7,
        "license": null,
        "allow_forking": false,
        "is_template": false,
        "topics": ["storefront", "rust"],
        "visibility": "private",
        "forks": 1,
        "open_issues": 7,
        "watchers": 12,
        "default_branch": BRANCH,
        "stargazers": 12,
        "master_branch": BRANCH,
        "organization": owner
    });
    json!({
        "ref": format!("refs/heads/{BRANCH}"),
        "before": before,
        "after": AFTER_MARK,
        "repository": repository,
        "pusher": {"name": "octocat", "email": "mona@example.com"},
        "organization": {
            "login": owner,
            "id": 9919,
            "node_id": "MDEyOk9yZ2FuaXphdGlvbjk5MTk=",
            "url": format!("https://api.github.com/orgs/{owner}"),
            "repos_url": format!("https://api.github.com/orgs/{owner}/repos"),
            "description": "Acme Corporation"
        },
        "sender": user("octocat", 583231),
        "installation": {"id": 42, "node_id": "MDIzOkludGVncmF0aW9uSW5zdGFsbGF0aW9uNDI="},
        "created": false,
        "deleted": false,
        "forced": false,
        "base_ref": null,
        "compare": format!("https://github.com/{REPO}/compare/{}...{}", &before[..12], AFTER_MARK),
        "commits": commits,
        "head_commit": head_commit
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_distinct_signed_and_about_7_kb() {
        let generator = Generator::new("a-secret", "0123abcd").unwrap();
        let first = generator.request(0).unwrap();
        let second = generator.request(1).unwrap();
        assert_eq!(first.body.len(), generator.body_len());
        assert!(
            (6_900..=7_500).contains(&first.body.len()),
            "{}",
            first.body.len()
        );
        assert_ne!(first.body, second.body);
        assert_ne!(first.delivery_id, second.delivery_id);
        let parsed: Value = serde_json::from_slice(&second.body).unwrap();
        assert_eq!(parsed["after"], Generator::after(1));
        assert_eq!(parsed["head_commit"]["id"], Generator::after(1));
        assert_eq!(parsed["installation"]["id"], 42);
        assert_eq!(
            first.signature.to_str().unwrap(),
            independent_signature(b"a-secret", &first.body).unwrap()
        );
    }
}
