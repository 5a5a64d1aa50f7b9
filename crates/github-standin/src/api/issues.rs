//! Comments and labels of issues and pull requests, which GitHub numbers in one series and serves
//! at the same `/issues/{issue_number}` paths: comments made, edited (each body kept, so a test
//! sees a comment made once and then edited) and listed oldest first with pages, and labels taken
//! off (404 "Label does not exist" for a label the issue does not have, 200 with the labels left
//! otherwise). The stand-in keeps no issues of its own: any number is taken as an issue that
//! exists. Comments need `issues` or `pull_requests` (write to make or edit them, read to list
//! them), labels `issues: write`; without them 403 "Resource not accessible by integration".

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::request::{ApiRequest, Handled, percent_encode};
use super::response::{ApiResponse, paginate};
use crate::state::{
    IssueComment, Label, Repository, State, app_object, bot_user, github_time, node_id, user_object,
};

/// Either permission lets an installation make or edit a comment.
const COMMENT_WRITE: [(&str, &str); 2] = [("issues", "write"), ("pull_requests", "write")];
/// Either permission lets an installation list comments.
const COMMENT_READ: [(&str, &str); 2] = [("issues", "read"), ("pull_requests", "read")];

/// Who wrote a comment: the App (through an installation token) or a GitHub user.
pub(crate) enum Author<'a> {
    App,
    User(&'a str),
}

/// Makes a comment with `body` on issue `issue_number` of `repository`, keeps it, and answers it
/// as GitHub's `issue-comment` object.
pub(crate) fn add_comment(
    state: &mut State,
    api_url: &str,
    app_id: u64,
    repository: &Repository,
    issue_number: u64,
    body: &str,
    author: Author<'_>,
) -> Value {
    let id = state.next_issue_comment_id;
    state.next_issue_comment_id += 1;
    let now = github_time(OffsetDateTime::now_utc());
    let full_name = repository.full_name();
    let url = format!("{api_url}/repos/{full_name}/issues/comments/{id}");
    let page = if state.pull_request(repository.id, issue_number).is_some() {
        "pull"
    } else {
        "issues"
    };
    let (user, app) = match author {
        Author::App => (
            bot_user(api_url),
            app_object(api_url, app_id, state.installations.len()),
        ),
        Author::User(login) => {
            let account_id = state.account_id(login);
            (user_object(api_url, login, account_id, "User"), Value::Null)
        }
    };
    let object = json!({
        "id": id,
        "node_id": node_id("IssueComment", id),
        "url": url,
        "html_url": format!("{api_url}/{full_name}/{page}/{issue_number}#issuecomment-{id}"),
        "body": body,
        "user": user,
        "created_at": now,
        "updated_at": now,
        "issue_url": format!("{api_url}/repos/{full_name}/issues/{issue_number}"),
        "author_association": "NONE",
        "performed_via_github_app": app,
        "reactions": {
            "url": format!("{url}/reactions"),
            "total_count": 0,
            "+1": 0,
            "-1": 0,
            "laugh": 0,
            "confused": 0,
            "heart": 0,
            "hooray": 0,
            "eyes": 0,
            "rocket": 0
        }
    });
    state.issue_comments.push(IssueComment {
        id,
        repository_id: repository.id,
        issue_number,
        object: object.clone(),
        bodies: vec![body.to_owned()],
    });
    object
}

/// A repository's label as GitHub's `label` object. Labels the stand-in makes have no
/// description (an empty one, which both the `label` schema and a pull request's labels take).
pub(crate) fn label_object(api_url: &str, repository: &Repository, label: &Label) -> Value {
    json!({
        "id": label.id,
        "node_id": node_id("Label", label.id),
        "url": format!(
            "{api_url}/repos/{}/labels/{}",
            repository.full_name(),
            percent_encode(&label.name)
        ),
        "name": label.name,
        "description": "",
        "color": "ededed",
        "default": false
    })
}

/// An issue number from the path; anything else is a path GitHub does not serve (404).
fn issue_number(number: &str) -> Result<u64, ApiResponse> {
    number.parse().map_err(|_| ApiResponse::not_found())
}

pub(super) fn create_comment(
    request: &ApiRequest<'_>,
    owner: &str,
    name: &str,
    number: &str,
) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository_with_any(token, owner, name, &COMMENT_WRITE)?;
    let number = issue_number(number)?;
    request.reject_invalid_body()?;
    let body = request.body_text("body").unwrap_or_default();
    let mut state = request.shared.lock();
    let object = add_comment(
        &mut state,
        request.api_url(),
        request.shared.app_id,
        &repository,
        number,
        &body,
        Author::App,
    );
    let location = object["url"].as_str().unwrap_or_default().to_owned();
    Ok(ApiResponse::json(201, object).with_header("location", location))
}

pub(super) fn update_comment(
    request: &ApiRequest<'_>,
    owner: &str,
    name: &str,
    id: &str,
) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository_with_any(token, owner, name, &COMMENT_WRITE)?;
    let id: u64 = id.parse().map_err(|_| ApiResponse::not_found())?;
    request.reject_invalid_body()?;
    let body = request.body_text("body").unwrap_or_default();
    let mut state = request.shared.lock();
    let comment = state
        .issue_comments
        .iter_mut()
        .find(|comment| comment.id == id && comment.repository_id == repository.id)
        .ok_or_else(ApiResponse::not_found)?;
    if let Some(members) = comment.object.as_object_mut() {
        members.insert("body".into(), json!(body));
        members.insert(
            "updated_at".into(),
            json!(github_time(OffsetDateTime::now_utc())),
        );
    }
    comment.bodies.push(body);
    Ok(ApiResponse::json(200, comment.object.clone()))
}

pub(super) fn list_comments(
    request: &ApiRequest<'_>,
    owner: &str,
    name: &str,
    number: &str,
) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository_with_any(token, owner, name, &COMMENT_READ)?;
    let number = issue_number(number)?;
    // `since`: only comments updated at or after that time.
    let since = request.query_value("since").and_then(|since| {
        OffsetDateTime::parse(since, &time::format_description::well_known::Rfc3339).ok()
    });
    let objects: Vec<Value> = request
        .shared
        .lock()
        .issue_comments
        .iter()
        .filter(|comment| comment.repository_id == repository.id)
        .filter(|comment| comment.issue_number == number)
        .map(|comment| comment.object.clone())
        .filter(|object| {
            since.is_none_or(|since| {
                object["updated_at"]
                    .as_str()
                    .and_then(|updated| {
                        OffsetDateTime::parse(
                            updated,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .ok()
                    })
                    .is_some_and(|updated| updated >= since)
            })
        })
        .collect();
    let path = format!("/repos/{}/issues/{number}/comments", repository.full_name());
    Ok(paginate(request, &path, objects, Value::Array))
}

pub(super) fn remove_label(
    request: &ApiRequest<'_>,
    owner: &str,
    name: &str,
    number: &str,
    label: &str,
) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository(token, owner, name, Some(("issues", "write")))?;
    let number = issue_number(number)?;
    let mut state = request.shared.lock();
    let label_id = state
        .labels_of(repository.id, number)
        .into_iter()
        .find(|on| on.name.to_lowercase() == label.to_lowercase())
        .map(|on| on.id)
        .ok_or_else(|| ApiResponse::error(404, "Label does not exist"))?;
    state.issue_labels.retain(|on| {
        !(on.repository_id == repository.id && on.issue_number == number && on.label_id == label_id)
    });
    let left: Vec<Value> = state
        .labels_of(repository.id, number)
        .into_iter()
        .map(|label| label_object(request.api_url(), &repository, label))
        .collect();
    Ok(ApiResponse::json(200, Value::Array(left)))
}
