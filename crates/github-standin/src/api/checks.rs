//! Checks on commits: check runs (created, updated, listed by commit) and commit statuses, with
//! GitHub's rules for them (a completed run needs a conclusion, a conclusion completes the run,
//! the commit must exist, a status description keeps to 140 characters) and its permissions
//! (`checks` for runs, `statuses` for statuses: without them 403 "Resource not accessible by
//! integration").

use serde_json::{Map, Value, json};
use time::OffsetDateTime;

use super::repositories::resolve_ref;
use super::request::{ApiRequest, Handled};
use super::response::{ApiResponse, paginate};
use crate::state::{
    self, CheckRun, CommitStatus, Repository, app_object, bot_user, github_time, node_id,
};

/// GitHub's limit on a commit status description.
const MAX_STATUS_DESCRIPTION_CHARACTERS: usize = 140;

/// The check run's fields a request may set, checked like GitHub: `completed` needs a
/// conclusion, and a conclusion makes the run `completed`.
fn apply_fields(
    object: &mut Map<String, Value>,
    body: &Map<String, Value>,
    now: &str,
) -> Result<(), ApiResponse> {
    let conclusion = body.get("conclusion").and_then(Value::as_str);
    let status = match (body.get("status").and_then(Value::as_str), conclusion) {
        (_, Some(_)) => Some("completed"),
        (Some("completed"), None) => {
            return Err(ApiResponse::invalid_request(
                "Missing parameter: conclusion is required when status is completed",
            ));
        }
        (status, None) => status,
    };
    if let Some(status) = status {
        object.insert("status".into(), json!(status));
        if status == "completed" {
            object.insert("completed_at".into(), json!(now));
            object.insert("conclusion".into(), json!(conclusion));
        } else {
            object.insert("completed_at".into(), Value::Null);
            object.insert("conclusion".into(), Value::Null);
        }
    }
    for field in ["details_url", "external_id", "name"] {
        if let Some(value) = body.get(field).and_then(Value::as_str) {
            object.insert(field.into(), json!(value));
        }
    }
    if let Some(output) = body.get("output").and_then(Value::as_object) {
        let stored = object
            .entry("output")
            .or_insert_with(|| json!({}))
            .as_object_mut()
            .expect("the output is an object");
        for field in ["title", "summary", "text"] {
            if let Some(value) = output.get(field) {
                stored.insert(field.into(), value.clone());
            }
        }
    }
    Ok(())
}

pub(super) async fn create_check_run(request: &ApiRequest<'_>, owner: &str, name: &str) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository(token, owner, name, Some(("checks", "write")))?;
    request.reject_invalid_body()?;
    let body = request.body_object();
    let head_sha = request.body_text("head_sha").unwrap_or_default();
    let sha = resolve_ref(request, &repository, &head_sha)
        .await?
        .filter(|sha| *sha == head_sha)
        .ok_or_else(|| ApiResponse::error(422, &format!("No commit found for SHA: {head_sha}")))?;

    let api_url = request.api_url();
    let mut state = request.shared.lock();
    let id = state.next_check_run_id;
    state.next_check_run_id += 1;
    let now = github_time(OffsetDateTime::now_utc());
    let url = format!("{api_url}/repos/{}/check-runs/{id}", repository.full_name());
    let mut object = json!({
        "id": id,
        "node_id": node_id("CheckRun", id),
        "head_sha": sha,
        "name": "",
        "url": url,
        "html_url": format!("{api_url}/{}/runs/{id}", repository.full_name()),
        "details_url": null,
        "status": "queued",
        "conclusion": null,
        "started_at": now,
        "completed_at": null,
        "external_id": "",
        "check_suite": {"id": id},
        "output": {
            "title": null,
            "summary": null,
            "text": null,
            "annotations_count": 0,
            "annotations_url": format!("{url}/annotations")
        },
        "app": app_object(api_url, request.shared.app_id, state.installations.len()),
        "pull_requests": []
    });
    apply_fields(
        object.as_object_mut().expect("a check run is an object"),
        &body,
        &now,
    )?;
    state.check_runs.push(CheckRun {
        id,
        repository_id: repository.id,
        object: object.clone(),
        history: vec![object.clone()],
    });
    Ok(ApiResponse::json(201, object))
}

pub(super) fn update_check_run(
    request: &ApiRequest<'_>,
    owner: &str,
    name: &str,
    id: &str,
) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository(token, owner, name, Some(("checks", "write")))?;
    request.reject_invalid_body()?;
    let id: u64 = id.parse().map_err(|_| ApiResponse::not_found())?;
    let body = request.body_object();
    let now = github_time(OffsetDateTime::now_utc());
    let mut state = request.shared.lock();
    let run = state
        .check_runs
        .iter_mut()
        .find(|run| run.id == id && run.repository_id == repository.id)
        .ok_or_else(ApiResponse::not_found)?;
    let mut object = run.object.clone();
    apply_fields(
        object.as_object_mut().expect("a check run is an object"),
        &body,
        &now,
    )?;
    run.object = object.clone();
    run.history.push(object.clone());
    Ok(ApiResponse::json(200, object))
}

pub(super) async fn list_check_runs_for_ref(
    request: &ApiRequest<'_>,
    owner: &str,
    name: &str,
    reference: &str,
) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository(token, owner, name, Some(("checks", "read")))?;
    let sha = resolve_ref(request, &repository, reference)
        .await?
        .ok_or_else(|| ApiResponse::error(422, &format!("No commit found for SHA: {reference}")))?;
    let check_name = request.query_value("check_name").map(str::to_owned);
    let status = request.query_value("status").map(str::to_owned);
    // `latest` (the default) keeps the newest run of each name.
    let latest = request.query_value("filter") != Some("all");
    let mut runs: Vec<Value> = request
        .shared
        .lock()
        .check_runs
        .iter()
        .rev()
        .filter(|run| run.repository_id == repository.id)
        .map(|run| run.object.clone())
        .filter(|run| run["head_sha"] == sha.as_str())
        .filter(|run| {
            check_name
                .as_ref()
                .is_none_or(|name| run["name"] == name.as_str())
        })
        .filter(|run| {
            status
                .as_ref()
                .is_none_or(|status| run["status"] == status.as_str())
        })
        .collect();
    if latest {
        let mut seen = std::collections::HashSet::new();
        runs.retain(|run| seen.insert(run["name"].as_str().unwrap_or_default().to_owned()));
    }
    let total = runs.len();
    let path = format!(
        "/repos/{}/commits/{reference}/check-runs",
        repository.full_name()
    );
    Ok(paginate(
        request,
        &path,
        runs,
        |page| json!({"total_count": total, "check_runs": page}),
    ))
}

pub(super) async fn create_commit_status(
    request: &ApiRequest<'_>,
    owner: &str,
    name: &str,
    sha: &str,
) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository(token, owner, name, Some(("statuses", "write")))?;
    request.reject_invalid_body()?;
    let resolved = resolve_ref(request, &repository, sha)
        .await?
        .filter(|resolved| resolved == sha)
        .ok_or_else(|| ApiResponse::error(422, &format!("No commit found for SHA: {sha}")))?;
    let description = request.body_text("description");
    if description
        .as_deref()
        .is_some_and(|text| text.chars().count() > MAX_STATUS_DESCRIPTION_CHARACTERS)
    {
        return Err(ApiResponse::json(
            422,
            json!({
                "message": "Validation Failed",
                "errors": [{
                    "resource": "Status",
                    "code": "custom",
                    "field": "description",
                    "message": "description is too long (maximum is 140 characters)"
                }],
                "documentation_url": state::DOCUMENTATION_URL,
                "status": "422"
            }),
        ));
    }
    let context = request
        .body_text("context")
        .unwrap_or_else(|| "default".to_owned());
    let api_url = request.api_url();
    let mut state = request.shared.lock();
    let object = status_object(
        &mut state,
        api_url,
        &repository,
        &resolved,
        StatusFields {
            state: &request.body_text("state").unwrap_or_default(),
            description,
            target_url: request.body_text("target_url"),
            context: &context,
        },
    );
    state.commit_statuses.push(CommitStatus {
        repository_id: repository.id,
        sha: resolved,
        object: object.clone(),
    });
    let location = object["url"].as_str().unwrap_or_default().to_owned();
    Ok(ApiResponse::json(201, object).with_header("location", location))
}

struct StatusFields<'a> {
    state: &'a str,
    description: Option<String>,
    target_url: Option<String>,
    context: &'a str,
}

fn status_object(
    state: &mut state::State,
    api_url: &str,
    repository: &Repository,
    sha: &str,
    fields: StatusFields<'_>,
) -> Value {
    let id = state.next_commit_status_id;
    state.next_commit_status_id += 1;
    let now = github_time(OffsetDateTime::now_utc());
    let creator = bot_user(api_url);
    json!({
        "url": format!("{api_url}/repos/{}/statuses/{sha}", repository.full_name()),
        "avatar_url": creator["avatar_url"],
        "id": id,
        "node_id": node_id("StatusContext", id),
        "state": fields.state,
        "description": fields.description,
        "target_url": fields.target_url,
        "context": fields.context,
        "created_at": now,
        "updated_at": now,
        "creator": creator
    })
}
