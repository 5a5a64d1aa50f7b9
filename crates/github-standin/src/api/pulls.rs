//! Pull requests: a repository's list (`GET /repos/{owner}/{repo}/pulls`), by `state` (`open`,
//! the default, `closed` or `all`), `base` and `head`, sorted by creation (newest first unless
//! `direction=asc`), in pages, with `pull_requests: read` (without it 403 "Resource not
//! accessible by integration"). Tests say which pull requests exist and whether they are open
//! (`GithubStandin::open_pull_request`, `close_pull_request`); the stand-in keeps no branch for
//! a pull request: its head is `pr-{number}` and both ends name the commit the repository's
//! default branch had when it was opened.

use serde_json::{Value, json};

use super::issues::label_object;
use super::request::{ApiRequest, Handled};
use super::response::paginate;
use crate::state::{PullRequest, Repository, State, github_time, node_id, user_object};

/// Who the stand-in says opened every pull request.
const PULL_REQUEST_AUTHOR: &str = "wharf-contributor";

/// The branch a pull request's head names.
fn head_ref(number: u64) -> String {
    format!("pr-{number}")
}

/// A pull request as GitHub's `pull-request-simple` object (what the list answers).
fn pull_request_object(
    state: &mut State,
    api_url: &str,
    repository: &Repository,
    pull: &PullRequest,
) -> Value {
    let full_name = repository.full_name();
    let number = pull.number;
    let repository_url = format!("{api_url}/repos/{full_name}");
    let url = format!("{repository_url}/pulls/{number}");
    let html_url = format!("{api_url}/{full_name}/pull/{number}");
    let issue_url = format!("{repository_url}/issues/{number}");
    let comments_url = format!("{issue_url}/comments");
    let review_comments_url = format!("{url}/comments");
    let review_comment_url = format!("{repository_url}/pulls/comments{{/number}}");
    let commits_url = format!("{url}/commits");
    let statuses_url = format!("{repository_url}/statuses/{}", pull.sha);
    let author_id = state.account_id(PULL_REQUEST_AUTHOR);
    let author = user_object(api_url, PULL_REQUEST_AUTHOR, author_id, "User");
    let (account_id, account_type) = state.owner_account(repository.installation_id);
    let owner = user_object(api_url, &repository.owner, account_id, &account_type);
    let repository_object =
        crate::state::repository_object(api_url, repository, account_id, &account_type, false);
    let labels: Vec<Value> = state
        .labels_of(repository.id, number)
        .into_iter()
        .map(|label| label_object(api_url, repository, label))
        .collect();
    let end = |reference: &str| {
        json!({
            "label": format!("{}:{reference}", repository.owner),
            "ref": reference,
            "repo": repository_object,
            "sha": pull.sha,
            "user": owner
        })
    };
    let link = |href: &str| json!({"href": href});
    json!({
        "url": url,
        "id": pull.id,
        "node_id": node_id("PullRequest", pull.id),
        "html_url": html_url,
        "diff_url": format!("{html_url}.diff"),
        "patch_url": format!("{html_url}.patch"),
        "issue_url": issue_url,
        "commits_url": commits_url,
        "review_comments_url": review_comments_url,
        "review_comment_url": review_comment_url,
        "comments_url": comments_url,
        "statuses_url": statuses_url,
        "number": number,
        "state": if pull.open { "open" } else { "closed" },
        "locked": false,
        "title": format!("Pull request #{number}"),
        "user": author,
        "body": null,
        "labels": labels,
        "milestone": null,
        "active_lock_reason": null,
        "created_at": github_time(pull.created_at),
        "updated_at": github_time(pull.updated_at),
        "closed_at": pull.closed_at.map(github_time),
        "merged_at": null,
        "merge_commit_sha": null,
        "assignee": null,
        "assignees": [],
        "requested_reviewers": [],
        "requested_teams": [],
        "head": end(&head_ref(number)),
        "base": end(&repository.default_branch),
        "_links": {
            "self": link(&url),
            "html": link(&html_url),
            "issue": link(&issue_url),
            "comments": link(&comments_url),
            "review_comments": link(&review_comments_url),
            "review_comment": link(&review_comment_url),
            "commits": link(&commits_url),
            "statuses": link(&statuses_url)
        },
        "author_association": "CONTRIBUTOR",
        "auto_merge": null,
        "draft": false
    })
}

pub(super) fn list_pull_requests(request: &ApiRequest<'_>, owner: &str, name: &str) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository(token, owner, name, Some(("pull_requests", "read")))?;
    let wanted = request.query_value("state").unwrap_or("open");
    let base = request.query_value("base");
    let head = request.query_value("head");
    let mut state = request.shared.lock();
    let mut pulls: Vec<PullRequest> = state
        .pull_requests
        .iter()
        .filter(|pull| pull.repository_id == repository.id)
        .filter(|pull| match wanted {
            "all" => true,
            "closed" => !pull.open,
            _ => pull.open,
        })
        .filter(|_| base.is_none_or(|base| base == repository.default_branch))
        .filter(|pull| {
            head.is_none_or(|head| {
                head == format!("{}:{}", repository.owner, head_ref(pull.number))
            })
        })
        .cloned()
        .collect();
    // By creation, which the ids follow: newest first unless asked otherwise.
    pulls.sort_by_key(|pull| pull.id);
    if request.query_value("direction") != Some("asc") {
        pulls.reverse();
    }
    let objects: Vec<Value> = pulls
        .iter()
        .map(|pull| pull_request_object(&mut state, request.api_url(), &repository, pull))
        .collect();
    drop(state);
    let path = format!("/repos/{}/pulls", repository.full_name());
    Ok(paginate(request, &path, objects, Value::Array))
}
