//! `GET /api/github/setup?installation_id=…&setup_action=…`: where GitHub sends a user's
//! browser after they install the App. Anyone can call this URL, so nothing in the query is
//! trusted: the installation is looked up with the App's own JWT and recorded only as GitHub
//! describes it, then the browser goes to the dashboard.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::Redirect;
use axum::routing::get;
use serde::Deserialize;
use wharf_store::InstallationChange;

use crate::core::{Core, now_millis};
use crate::http::HttpError;

pub(crate) fn router() -> Router<Core> {
    Router::new().route("/api/github/setup", get(setup))
}

#[derive(Deserialize)]
struct SetupQuery {
    installation_id: Option<String>,
    setup_action: Option<String>,
}

async fn setup(
    State(state): State<Core>,
    Query(query): Query<SetupQuery>,
) -> Result<Redirect, HttpError> {
    let app = state.github_app().ok_or_else(|| {
        HttpError::Unavailable(
            "the GitHub App is not configured: set WHARF_GITHUB_APP_ID and WHARF_GITHUB_APP_PRIVATE_KEY".to_owned(),
        )
    })?;
    let action = query.setup_action.as_deref().unwrap_or("install");
    if action == "request" {
        // An organisation owner still has to approve the installation; its webhook will follow.
        return Ok(Redirect::to("/"));
    }
    if action != "install" && action != "update" {
        return Err(HttpError::BadRequest(format!(
            "unknown setup_action {:?}: expected install, update or request",
            action.chars().take(40).collect::<String>()
        )));
    }
    let installation_id: u64 = query
        .installation_id
        .as_deref()
        .and_then(|id| id.parse().ok())
        .filter(|id| *id > 0 && *id <= i64::MAX as u64)
        .ok_or_else(|| {
            HttpError::BadRequest("installation_id must be a positive integer".to_owned())
        })?;
    let installation =
        app.installation(installation_id)
            .await
            .map_err(|error| match error.status() {
                Some(404) => HttpError::NotFound(format!(
                    "GitHub knows no installation {installation_id} of this App"
                )),
                _ => HttpError::BadGateway(error.to_string()),
            })?;
    let repositories = if installation.suspended {
        Vec::new()
    } else {
        app.installation_repositories(installation_id)
            .await
            .map_err(|error| HttpError::BadGateway(error.to_string()))?
    };
    let change = InstallationChange {
        installation_id: installation_id as i64,
        account_login: installation.account_login.clone(),
        account_type: installation.account_type.clone(),
        suspended: Some(installation.suspended),
        deleted: false,
        add_repositories: repositories
            .iter()
            .map(|repository| {
                (
                    i64::try_from(repository.id).unwrap_or(i64::MAX),
                    repository.full_name.clone(),
                    repository.private,
                )
            })
            .collect(),
        remove_repositories: Vec::new(),
        outcome: "recorded by the setup callback".to_owned(),
    };
    state
        .store
        .apply_installation(&change, now_millis())
        .await?;
    tracing::info!(
        installation = installation_id,
        account = %installation.account_login,
        repositories = repositories.len(),
        "GitHub App installation recorded"
    );
    Ok(Redirect::to("/"))
}
