//! The App and its installations: the App itself, finding and listing installations, issuing and
//! revoking installation tokens, and the repositories a token reaches.

use rand::Rng as _;
use serde_json::{Value, json};
use time::OffsetDateTime;

use super::request::{ApiRequest, Handled};
use super::response::{ApiResponse, paginate};
use crate::state::{
    IssuedToken, Repository, app_object, github_time, installation_object, repository_object,
};

pub(super) fn get_app(request: &ApiRequest<'_>) -> Handled {
    request.require_app()?;
    let count = request.shared.lock().installations.len();
    Ok(ApiResponse::json(
        200,
        app_object(request.api_url(), request.shared.app_id, count),
    ))
}

/// `POST /app-manifests/{code}/conversions`: the App made from a manifest, once per code a test
/// offered; no credential is needed (GitHub asks none).
pub(super) fn convert_manifest(request: &ApiRequest<'_>, code: &str) -> Handled {
    let offered = request.shared.lock().manifest_codes.remove(code);
    let (pem, webhook_secret) = offered.ok_or_else(ApiResponse::not_found)?;
    let count = request.shared.lock().installations.len();
    let mut app = app_object(request.api_url(), request.shared.app_id, count);
    app["client_secret"] = json!(format!("{:040x}", rand::rng().random::<u128>()));
    app["webhook_secret"] = json!(webhook_secret);
    app["pem"] = json!(pem);
    Ok(ApiResponse::json(201, app))
}

pub(super) fn list_installations(request: &ApiRequest<'_>) -> Handled {
    request.require_app()?;
    let objects: Vec<Value> = request
        .shared
        .lock()
        .installations
        .values()
        .map(|installation| {
            installation_object(request.api_url(), request.shared.app_id, installation)
        })
        .collect();
    Ok(paginate(request, "/app/installations", objects, |page| {
        Value::Array(page)
    }))
}

pub(super) fn get_installation(request: &ApiRequest<'_>, id: &str) -> Handled {
    request.require_app()?;
    let id: u64 = id.parse().map_err(|_| ApiResponse::not_found())?;
    let state = request.shared.lock();
    let installation = state
        .installations
        .get(&id)
        .ok_or_else(ApiResponse::not_found)?;
    Ok(ApiResponse::json(
        200,
        installation_object(request.api_url(), request.shared.app_id, installation),
    ))
}

pub(super) fn find_installation(
    request: &ApiRequest<'_>,
    repository: Option<(&str, &str)>,
    account: Option<&str>,
) -> Handled {
    request.require_app()?;
    let state = request.shared.lock();
    let installation_id = match (repository, account) {
        (Some((owner, name)), _) => state
            .repository(owner, name)
            .map(|repository| repository.installation_id),
        (None, Some(login)) => state
            .installations
            .values()
            .find(|installation| installation.account_login.eq_ignore_ascii_case(login))
            .map(|installation| installation.id),
        (None, None) => None,
    };
    let installation = installation_id
        .and_then(|id| state.installations.get(&id))
        .ok_or_else(ApiResponse::not_found)?;
    Ok(ApiResponse::json(
        200,
        installation_object(request.api_url(), request.shared.app_id, installation),
    ))
}

pub(super) fn create_token(request: &ApiRequest<'_>, id: &str) -> Handled {
    request.require_app()?;
    let installation_id: u64 = id.parse().map_err(|_| ApiResponse::not_found())?;
    let mut state = request.shared.lock();
    let installation = state
        .installations
        .get(&installation_id)
        .cloned()
        .ok_or_else(ApiResponse::not_found)?;
    if installation.suspended_at.is_some() {
        return Err(ApiResponse::error(
            403,
            "This installation has been suspended",
        ));
    }
    request.reject_invalid_body()?;
    let body = request.body_object();

    // Limit the token to some repositories when asked, like GitHub.
    let mut repository_ids: Option<Vec<u64>> = None;
    const INACCESSIBLE: &str = "There is at least one repository that does not exist or is not accessible to the parent installation.";
    if let Some(names) = body.get("repositories").and_then(Value::as_array) {
        let mut ids = Vec::new();
        for name in names {
            let name = name.as_str().unwrap_or_default();
            let repository = state
                .repositories
                .iter()
                .find(|repository| {
                    repository.installation_id == installation_id
                        && (repository.name.eq_ignore_ascii_case(name)
                            || repository.full_name().eq_ignore_ascii_case(name))
                })
                .ok_or_else(|| ApiResponse::error(422, INACCESSIBLE))?;
            ids.push(repository.id);
        }
        repository_ids = Some(ids);
    }
    if let Some(requested) = body.get("repository_ids").and_then(Value::as_array) {
        let mut ids = repository_ids.take().unwrap_or_default();
        for id in requested {
            let id = id.as_u64().unwrap_or_default();
            let accessible = state.repositories.iter().any(|repository| {
                repository.id == id && repository.installation_id == installation_id
            });
            if !accessible {
                return Err(ApiResponse::error(422, INACCESSIBLE));
            }
            ids.push(id);
        }
        repository_ids = Some(ids);
    }

    // Narrow the permissions when asked; asking for more than the installation has is refused.
    let permissions = match body.get("permissions").and_then(Value::as_object) {
        Some(requested) => {
            let granted = IssuedToken {
                installation_id,
                expires_at: OffsetDateTime::now_utc(),
                permissions: installation.permissions.clone(),
                repository_ids: None,
                revoked: false,
            };
            for (permission, level) in requested {
                if !granted.allows(permission, level.as_str().unwrap_or("write")) {
                    return Err(ApiResponse::error(
                        422,
                        "The permissions requested are not granted to this installation.",
                    ));
                }
            }
            requested.clone()
        }
        None => installation.permissions.clone(),
    };

    let ttl =
        time::Duration::try_from(request.shared.token_ttl).unwrap_or(time::Duration::hours(1));
    let expires_at = OffsetDateTime::now_utc()
        .checked_add(ttl)
        .unwrap_or(OffsetDateTime::now_utc());
    let secret = new_installation_token();
    state.tokens.insert(
        secret.clone(),
        IssuedToken {
            installation_id,
            expires_at,
            permissions: permissions.clone(),
            repository_ids: repository_ids.clone(),
            revoked: false,
        },
    );
    state.issued_tokens.push(secret.clone());

    let mut object = json!({
        "token": secret,
        "expires_at": github_time(expires_at),
        "permissions": Value::Object(permissions),
        "repository_selection": if repository_ids.is_some() { "selected" } else { "all" }
    });
    if let (Some(ids), Some(members)) = (&repository_ids, object.as_object_mut()) {
        let repositories: Vec<Value> = ids
            .iter()
            .filter_map(|id| state.repository_by_id(*id))
            .map(|repository| {
                repository_object(
                    request.api_url(),
                    repository,
                    installation.account_id,
                    &installation.account_type,
                    false,
                )
            })
            .collect();
        members.insert("repositories".into(), Value::Array(repositories));
    }
    Ok(ApiResponse::json(201, object))
}

/// A fresh installation token in GitHub's format: `ghs_` and 36 alphanumeric characters.
fn new_installation_token() -> String {
    let random: String = rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(36)
        .map(char::from)
        .collect();
    format!("ghs_{random}")
}

pub(super) fn revoke_token(request: &ApiRequest<'_>) -> Handled {
    request.require_installation(false)?;
    let secret = request
        .headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.split_whitespace().nth(1))
        .unwrap_or_default()
        .to_string();
    if let Some(token) = request.shared.lock().tokens.get_mut(&secret) {
        token.revoked = true;
    }
    Ok(ApiResponse::empty(204))
}

pub(super) fn list_installation_repositories(request: &ApiRequest<'_>) -> Handled {
    let token = request.require_installation(false)?;
    let state = request.shared.lock();
    let (account_id, account_type) = state.owner_account(token.installation_id);
    let mut repositories: Vec<&Repository> = state
        .repositories
        .iter()
        .filter(|repository| token.grants(repository))
        .collect();
    repositories.sort_by_key(|repository| repository.id);
    let objects: Vec<Value> = repositories
        .iter()
        .map(|repository| {
            repository_object(
                request.api_url(),
                repository,
                account_id,
                &account_type,
                false,
            )
        })
        .collect();
    let total = objects.len();
    let selection = if token.repository_ids.is_some() {
        "selected"
    } else {
        "all"
    };
    Ok(paginate(
        request,
        "/installation/repositories",
        objects,
        |page| {
            json!({
                "total_count": total,
                "repository_selection": selection,
                "repositories": page
            })
        },
    ))
}
