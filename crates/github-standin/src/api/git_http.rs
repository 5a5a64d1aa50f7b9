//! Git over HTTP: `/git/{owner}/{repo}.git/...` served by the real `git http-backend` behind the
//! Basic credentials github.com asks for.

use std::sync::Arc;

use axum::http::HeaderMap;

use super::percent_decode;
use super::response::{ApiResponse, ResponseBody, injected_failure};
use crate::auth::{Authentication, GIT_USER};
use crate::git;
use crate::state::{APP_SLUG, Shared};

/// Serves `/git/{owner}/{repo}.git/...` with `git http-backend` after checking HTTP Basic credentials
/// like github.com does for a private repository.
pub(super) async fn serve_git(
    shared: &Arc<Shared>,
    method: &str,
    path: &str,
    query: &str,
    headers: &HeaderMap,
    body: Vec<u8>,
    authentication: &Authentication,
) -> ApiResponse {
    if let Some(status) = shared.lock().take_failure(path) {
        return injected_failure(status, authentication, false);
    }
    let unauthorized = || {
        ApiResponse::text(401, "Invalid username or token. Password authentication is not supported for Git operations.\n")
            .with_header("www-authenticate", "Basic realm=\"GitHub\"")
    };
    let token = match authentication {
        Authentication::Installation {
            token,
            suspended: false,
            basic: true,
        } => token,
        Authentication::Installation {
            suspended: true,
            basic: true,
            ..
        } => return ApiResponse::text(403, "This installation has been suspended.\n"),
        _ => return unauthorized(),
    };

    let mut parts = path.trim_start_matches("/git/").splitn(3, '/');
    let owner = percent_decode(parts.next().unwrap_or_default());
    let repository_part = percent_decode(parts.next().unwrap_or_default());
    let rest = parts.next().unwrap_or_default().to_string();
    let not_found = || ApiResponse::text(404, "Repository not found.\n");
    let Some(name) = repository_part.strip_suffix(".git") else {
        return not_found();
    };
    if rest
        .split('/')
        .any(|segment| segment == ".." || segment == ".")
    {
        return not_found();
    }
    let Some(repository) = shared
        .lock()
        .repository(&owner, name)
        .filter(|repository| token.grants(repository))
        .cloned()
    else {
        return not_found();
    };

    let pushing = rest == "git-receive-pack" || query.contains("service=git-receive-pack");
    let level = if pushing { "write" } else { "read" };
    if !token.allows("contents", level) {
        return ApiResponse::text(
            403,
            format!(
                "Permission to {}.git denied to {APP_SLUG}[bot].\n",
                repository.full_name()
            ),
        );
    }

    let header_text = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .map(str::to_string)
    };
    let request = git::CgiRequest {
        method: method.to_string(),
        path_info: format!("/{}/{}.git/{rest}", repository.owner, repository.name),
        query: query.to_string(),
        content_type: header_text("content-type"),
        content_encoding: header_text("content-encoding"),
        git_protocol: header_text("git-protocol"),
        remote_user: GIT_USER.to_string(),
        body,
    };
    match git::http_backend(&shared.repository_root, request).await {
        Ok(output) => ApiResponse {
            status: output.status,
            headers: output.headers,
            body: ResponseBody::Bytes(output.body),
        },
        Err(error) => {
            tracing::warn!(%error, "git http-backend failed");
            ApiResponse::text(500, "git http-backend failed\n")
        }
    }
}
