//! Repositories and their commits: a repository's object, and commits resolved by ref through git.

use std::path::Path;

use serde_json::{Value, json};

use super::request::{ApiRequest, Handled};
use super::response::ApiResponse;
use crate::git;
use crate::state::{Repository, node_id, repository_object};

pub(super) fn get_repository(request: &ApiRequest<'_>, owner: &str, name: &str) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository(token, owner, name, None)?;
    let state = request.shared.lock();
    let (account_id, account_type) = state.owner_account(repository.installation_id);
    Ok(ApiResponse::json(
        200,
        repository_object(
            request.api_url(),
            &repository,
            account_id,
            &account_type,
            true,
        ),
    ))
}

/// Runs `read` on the repository's bare git directory on a blocking thread (it runs git); a
/// failure is logged as `what` failing and answered like GitHub's 500.
async fn read_git<T: Send + 'static>(
    request: &ApiRequest<'_>,
    repository: &Repository,
    what: &'static str,
    read: impl FnOnce(&Path) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, ApiResponse> {
    let git_dir = request.shared.git_dir(repository);
    tokio::task::spawn_blocking(move || read(&git_dir))
        .await
        .map_err(|_| ApiResponse::error(500, "Server Error"))?
        .map_err(|error| {
            tracing::warn!(%error, "{what} failed");
            ApiResponse::error(500, "Server Error")
        })
}

/// Resolves a ref to a commit SHA; `None` when the repository has no such ref or commit.
pub(super) async fn resolve_ref(
    request: &ApiRequest<'_>,
    repository: &Repository,
    reference: &str,
) -> Result<Option<String>, ApiResponse> {
    let reference = reference.to_string();
    read_git(request, repository, "resolving a ref", move |git_dir| {
        git::resolve_commit(git_dir, &reference)
    })
    .await
}

pub(super) async fn get_commit(
    request: &ApiRequest<'_>,
    owner: &str,
    name: &str,
    reference: &str,
) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository(token, owner, name, Some(("contents", "read")))?;
    if !repository.has_commits {
        return Err(ApiResponse::error(409, "Git Repository is empty."));
    }
    let sha = resolve_ref(request, &repository, reference)
        .await?
        .ok_or_else(|| ApiResponse::error(422, &format!("No commit found for SHA: {reference}")))?;
    let wants_sha = request
        .headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("application/vnd.github.sha"));
    if wants_sha {
        return Ok(ApiResponse::text(200, sha));
    }
    Ok(ApiResponse::json(
        200,
        commit_object(request, &repository, sha).await?,
    ))
}

/// The commit `sha` of `repository` as GitHub's API describes a commit.
async fn commit_object(
    request: &ApiRequest<'_>,
    repository: &Repository,
    sha: String,
) -> Result<Value, ApiResponse> {
    let details = read_git(request, repository, "reading a commit", move |git_dir| {
        git::commit_details(git_dir, &sha)
    })
    .await?;
    let api_url = request.api_url();
    let full_name = repository.full_name();
    let commit_url = format!("{api_url}/repos/{full_name}/commits/{}", details.sha);
    let parents: Vec<Value> = details
        .parents
        .iter()
        .map(|parent| {
            json!({
                "sha": parent,
                "url": format!("{api_url}/repos/{full_name}/commits/{parent}"),
                "html_url": format!("{api_url}/{full_name}/commit/{parent}")
            })
        })
        .collect();
    Ok(json!({
        "sha": details.sha,
        "node_id": node_id("Commit", format!("{}:{}", repository.id, details.sha)),
        "commit": {
            "author": {
                "name": details.author_name,
                "email": details.author_email,
                "date": details.author_date
            },
            "committer": {
                "name": details.committer_name,
                "email": details.committer_email,
                "date": details.committer_date
            },
            "message": details.message,
            "tree": {
                "sha": details.tree,
                "url": format!("{api_url}/repos/{full_name}/git/trees/{}", details.tree)
            },
            "url": format!("{api_url}/repos/{full_name}/git/commits/{}", details.sha),
            "comment_count": 0,
            "verification": {
                "verified": false,
                "reason": "unsigned",
                "signature": null,
                "payload": null,
                "verified_at": null
            }
        },
        "url": commit_url,
        "html_url": format!("{api_url}/{full_name}/commit/{}", details.sha),
        "comments_url": format!("{commit_url}/comments"),
        "author": null,
        "committer": null,
        "parents": parents
    }))
}

pub(super) async fn get_branch(
    request: &ApiRequest<'_>,
    owner: &str,
    name: &str,
    branch: &str,
) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository(token, owner, name, Some(("contents", "read")))?;
    let sha = resolve_ref(request, &repository, &format!("refs/heads/{branch}"))
        .await?
        .ok_or_else(|| ApiResponse::error(404, "Branch not found"))?;
    let commit = commit_object(request, &repository, sha).await?;
    let api_url = request.api_url();
    let full_name = repository.full_name();
    let branch_url = format!("{api_url}/repos/{full_name}/branches/{branch}");
    Ok(ApiResponse::json(
        200,
        json!({
            "name": branch,
            "commit": commit,
            "_links": {
                "self": branch_url,
                "html": format!("{api_url}/{full_name}/tree/{branch}")
            },
            "protected": false,
            "protection": {
                "enabled": false,
                "required_status_checks": {
                    "enforcement_level": "off",
                    "contexts": [],
                    "checks": []
                }
            },
            "protection_url": format!("{branch_url}/protection")
        }),
    ))
}
