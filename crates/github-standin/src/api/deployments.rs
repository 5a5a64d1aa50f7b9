//! Deployments and their statuses: creating and listing them, and GitHub's rules for statuses
//! (their states, the 140-character description, `auto_inactive`).

use serde_json::{Value, json};
use time::OffsetDateTime;

use super::repositories::resolve_ref;
use super::request::{ApiRequest, Handled};
use super::response::{ApiResponse, paginate};
use crate::state::{self, Deployment, Repository, app_object, bot_user, github_time, node_id};

/// GitHub's limit on a deployment status description.
const MAX_STATUS_DESCRIPTION_CHARACTERS: usize = 140;
/// The states a deployment status may have.
const DEPLOYMENT_STATES: [&str; 7] = [
    "error",
    "failure",
    "inactive",
    "in_progress",
    "queued",
    "pending",
    "success",
];

pub(super) async fn create_deployment(
    request: &ApiRequest<'_>,
    owner: &str,
    name: &str,
) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository(token, owner, name, Some(("deployments", "write")))?;
    request.reject_invalid_body()?;
    let body = request.body_object();
    let Some(reference) = body.get("ref").and_then(Value::as_str) else {
        return Err(ApiResponse::invalid_request("\"ref\" wasn't supplied."));
    };
    let sha = resolve_ref(request, &repository, reference)
        .await?
        .ok_or_else(|| ApiResponse::error(422, &format!("No ref found for: {reference}")))?;
    if let Some(contexts) = body.get("required_contexts").and_then(Value::as_array)
        && !contexts.is_empty()
    {
        // No commit statuses are ever reported to the stand-in, so required contexts never pass.
        return Err(ApiResponse::json(
            409,
            json!({
                "message": format!("Conflict: Commit status checks failed for {reference}."),
                "errors": [{
                    "contexts": contexts,
                    "resource": "Deployment",
                    "field": "required_contexts"
                }],
                "documentation_url": state::DOCUMENTATION_URL,
                "status": "409"
            }),
        ));
    }

    let environment = request
        .body_text("environment")
        .unwrap_or_else(|| "production".to_string());
    let task = request
        .body_text("task")
        .unwrap_or_else(|| "deploy".to_string());
    let payload = match body.get("payload") {
        None | Some(Value::Null) => json!({}),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(parsed @ Value::Object(_)) => parsed,
            _ => Value::String(text.clone()),
        },
        Some(other) => other.clone(),
    };
    let description = match body.get("description") {
        None => json!(""),
        Some(value) => value.clone(),
    };
    let transient = request.body_flag("transient_environment").unwrap_or(false);
    let production = request
        .body_flag("production_environment")
        .unwrap_or(environment == "production");

    let api_url = request.api_url();
    let mut state = request.shared.lock();
    let id = state.next_deployment_id;
    state.next_deployment_id += 1;
    let now = github_time(OffsetDateTime::now_utc());
    let repository_url = format!("{api_url}/repos/{}", repository.full_name());
    let url = format!("{repository_url}/deployments/{id}");
    let object = json!({
        "url": url,
        "id": id,
        "node_id": node_id("Deployment", id),
        "sha": sha,
        "ref": reference,
        "task": task,
        "payload": payload,
        "original_environment": environment,
        "environment": environment,
        "description": description,
        "creator": bot_user(api_url),
        "created_at": now,
        "updated_at": now,
        "statuses_url": format!("{url}/statuses"),
        "repository_url": repository_url,
        "transient_environment": transient,
        "production_environment": production,
        "performed_via_github_app": app_object(api_url, request.shared.app_id, state.installations.len())
    });
    state.deployments.push(Deployment {
        id,
        repository_id: repository.id,
        object: object.clone(),
        statuses: Vec::new(),
    });
    Ok(ApiResponse::json(201, object).with_header("location", url))
}

pub(super) fn list_deployments(request: &ApiRequest<'_>, owner: &str, name: &str) -> Handled {
    let token = request.require_installation(true)?;
    let repository = request.repository(token, owner, name, Some(("deployments", "read")))?;
    let filters: Vec<(&str, &str)> = ["sha", "ref", "task", "environment"]
        .into_iter()
        .filter_map(|field| {
            request
                .query_value(field)
                .filter(|value| *value != "none")
                .map(|value| (field, value))
        })
        .collect();
    let objects: Vec<Value> = request
        .shared
        .lock()
        .deployments
        .iter()
        .rev()
        .filter(|deployment| deployment.repository_id == repository.id)
        .filter(|deployment| {
            filters.iter().all(|(field, value)| {
                deployment.object.get(*field).and_then(Value::as_str) == Some(*value)
            })
        })
        .map(|deployment| deployment.object.clone())
        .collect();
    let path = format!("/repos/{}/deployments", repository.full_name());
    Ok(paginate(request, &path, objects, Value::Array))
}

/// The deployment `id` of repository `owner/name` and the repository, for an installation token
/// with the deployments permission at `level`; 404 like GitHub when the repository or the
/// deployment does not exist or the token may not see it.
fn find_deployment(
    request: &ApiRequest<'_>,
    owner: &str,
    name: &str,
    id: &str,
    level: &str,
) -> Result<(Repository, Deployment), ApiResponse> {
    let token = request.require_installation(true)?;
    let repository = request.repository(token, owner, name, Some(("deployments", level)))?;
    let id: u64 = id.parse().map_err(|_| ApiResponse::not_found())?;
    let deployment = request
        .shared
        .lock()
        .deployments
        .iter()
        .find(|deployment| deployment.id == id && deployment.repository_id == repository.id)
        .cloned()
        .ok_or_else(ApiResponse::not_found)?;
    Ok((repository, deployment))
}

pub(super) fn get_deployment(
    request: &ApiRequest<'_>,
    owner: &str,
    name: &str,
    id: &str,
) -> Handled {
    let (_, deployment) = find_deployment(request, owner, name, id, "read")?;
    Ok(ApiResponse::json(200, deployment.object))
}

pub(super) fn list_deployment_statuses(
    request: &ApiRequest<'_>,
    owner: &str,
    name: &str,
    id: &str,
) -> Handled {
    let (repository, deployment) = find_deployment(request, owner, name, id, "read")?;
    // GitHub lists the newest status first.
    let objects: Vec<Value> = deployment.statuses.into_iter().rev().collect();
    let path = format!(
        "/repos/{}/deployments/{}/statuses",
        repository.full_name(),
        deployment.id
    );
    Ok(paginate(request, &path, objects, Value::Array))
}

pub(super) fn create_deployment_status(
    request: &ApiRequest<'_>,
    owner: &str,
    name: &str,
    id: &str,
) -> Handled {
    let (repository, deployment) = find_deployment(request, owner, name, id, "write")?;
    let deployment_id = deployment.id;
    request.reject_invalid_body()?;
    let body = request.body_object();
    let state_name = match body.get("state").and_then(Value::as_str) {
        Some(state_name) if DEPLOYMENT_STATES.contains(&state_name) => state_name.to_string(),
        Some(state_name) => {
            return Err(ApiResponse::invalid_request(&format!(
                "For 'properties/state', \"{state_name}\" is not a possible value."
            )));
        }
        None => return Err(ApiResponse::invalid_request("\"state\" wasn't supplied.")),
    };
    let description = request.body_text("description").unwrap_or_default();
    if description.chars().count() > MAX_STATUS_DESCRIPTION_CHARACTERS {
        return Err(ApiResponse::json(
            422,
            json!({
                "message": "Validation Failed",
                "errors": [{
                    "resource": "DeploymentStatus",
                    "code": "custom",
                    "field": "description",
                    "message": "description is too long (maximum is 140 characters)"
                }],
                "documentation_url": state::DOCUMENTATION_URL,
                "status": "422"
            }),
        ));
    }
    // Setting log_url also sets target_url; an old client's target_url alone fills both.
    let log_url = request
        .body_text("log_url")
        .or_else(|| request.body_text("target_url"))
        .unwrap_or_default();
    let environment_url = request.body_text("environment_url").unwrap_or_default();
    let auto_inactive = request.body_flag("auto_inactive").unwrap_or(true);

    let api_url = request.api_url();
    let mut state = request.shared.lock();
    let Some(index) = state
        .deployments
        .iter()
        .position(|deployment| deployment.id == deployment_id)
    else {
        return Err(ApiResponse::not_found());
    };
    let deployment = &state.deployments[index];
    let environment = request
        .body_text("environment")
        .or_else(|| {
            deployment
                .statuses
                .last()
                .and_then(|status| status.get("environment"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .or_else(|| {
            deployment
                .object
                .get("environment")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_else(|| "production".to_string());
    let now = OffsetDateTime::now_utc();
    let app = app_object(api_url, request.shared.app_id, state.installations.len());
    let status = status_object(
        &mut state,
        api_url,
        &repository,
        deployment_id,
        StatusFields {
            app: &app,
            state: &state_name,
            description: &description,
            environment: &environment,
            log_url: &log_url,
            environment_url: &environment_url,
        },
        now,
    );
    let deployment = &mut state.deployments[index];
    deployment.statuses.push(status.clone());
    if let Some(members) = deployment.object.as_object_mut() {
        members.insert("updated_at".into(), json!(github_time(now)));
    }

    if auto_inactive && state_name == "success" {
        mark_earlier_deployments_inactive(
            &mut state,
            api_url,
            &app,
            &repository,
            deployment_id,
            &environment,
            now,
        );
    }
    let location = status
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    Ok(ApiResponse::json(201, status).with_header("location", location))
}

struct StatusFields<'a> {
    app: &'a Value,
    state: &'a str,
    description: &'a str,
    environment: &'a str,
    log_url: &'a str,
    environment_url: &'a str,
}

fn status_object(
    state: &mut state::State,
    api_url: &str,
    repository: &Repository,
    deployment_id: u64,
    fields: StatusFields<'_>,
    now: OffsetDateTime,
) -> Value {
    let id = state.next_status_id;
    state.next_status_id += 1;
    let repository_url = format!("{api_url}/repos/{}", repository.full_name());
    let deployment_url = format!("{repository_url}/deployments/{deployment_id}");
    let now = github_time(now);
    json!({
        "url": format!("{deployment_url}/statuses/{id}"),
        "id": id,
        "node_id": node_id("DeploymentStatus", id),
        "state": fields.state,
        "creator": bot_user(api_url),
        "description": fields.description,
        "environment": fields.environment,
        "target_url": fields.log_url,
        "log_url": fields.log_url,
        "environment_url": fields.environment_url,
        "created_at": now,
        "updated_at": now,
        "deployment_url": deployment_url,
        "repository_url": repository_url,
        "performed_via_github_app": fields.app
    })
}

/// GitHub's `auto_inactive`: a successful status marks earlier deployments of the same repository and
/// environment inactive when they are neither transient nor production and their latest status was
/// success.
fn mark_earlier_deployments_inactive(
    state: &mut state::State,
    api_url: &str,
    app: &Value,
    repository: &Repository,
    deployment_id: u64,
    environment: &str,
    now: OffsetDateTime,
) {
    let candidates: Vec<usize> = state
        .deployments
        .iter()
        .enumerate()
        .filter(|(_, deployment)| {
            deployment.repository_id == repository.id
                && deployment.id < deployment_id
                && deployment.object.get("environment").and_then(Value::as_str) == Some(environment)
                && deployment.object.get("transient_environment") != Some(&json!(true))
                && deployment.object.get("production_environment") != Some(&json!(true))
                && deployment
                    .statuses
                    .last()
                    .and_then(|status| status.get("state"))
                    .and_then(Value::as_str)
                    == Some("success")
        })
        .map(|(index, _)| index)
        .collect();
    for index in candidates {
        let earlier_id = state.deployments[index].id;
        let status = status_object(
            state,
            api_url,
            repository,
            earlier_id,
            StatusFields {
                app,
                state: "inactive",
                description: "",
                environment,
                log_url: "",
                environment_url: "",
            },
            now,
        );
        state.deployments[index].statuses.push(status);
    }
}
