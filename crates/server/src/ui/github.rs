//! `/github`: where the GitHub App comes from, the webhook URL GitHub sends to, the
//! installations and the repositories each grants; and, while no App is configured, the
//! "Create the GitHub App" button, which posts Wharf's manifest to GitHub (GitHub's App
//! manifest flow). GitHub sends the browser back to `/github/manifest/callback` with a code,
//! exchanged there for the App, which is kept sealed and used at once.

use axum::Router;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::html;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::core::Core;
use crate::core::github_app::AppOrigin;
use crate::core::sessions::Session;
use crate::http::HttpError;
use crate::ui::page::{PageError, badge, frame};
use crate::ui::session::{SignedIn, same_secret, see_other};

pub(crate) fn router() -> Router<Core> {
    Router::new()
        .route("/github", get(page))
        .route("/github/manifest/callback", get(callback))
}

async fn page(
    SignedIn(session): SignedIn,
    State(core): State<Core>,
) -> Result<impl IntoResponse, PageError> {
    let origin = core.app_origin().await?;
    let installations = core.installations().await?;
    let public_url = core.config.public_url.trim_end_matches('/');
    let manifest = core.app_manifest().to_string();
    let web_url = core.config.github_web_url.trim_end_matches('/');
    Ok(frame(
        "GitHub",
        Some(&session),
        html! {
            h1 { "GitHub" }
            section.app data-origin=(origin_name(&origin)) {
                @match &origin {
                    AppOrigin::Environment { app_id: Some(app_id) } => p {
                        "The GitHub App " code { (app_id) } " is configured by " code { "WHARF_GITHUB_*" }
                        " settings, which win over an App made here."
                    },
                    AppOrigin::Environment { app_id: None } => p {
                        "Only a webhook secret is configured (" code { "WHARF_GITHUB_WEBHOOK_SECRET" }
                        "): webhooks are taken, but private repositories cannot be cloned and nothing is reported to GitHub. "
                        "Set " code { "WHARF_GITHUB_APP_ID" } " and " code { "WHARF_GITHUB_APP_PRIVATE_KEY" } " too."
                    },
                    AppOrigin::Dashboard { app_id, slug, html_url } => p {
                        "The GitHub App " a href=(html_url) { (slug) } " (" code { (app_id) } ") was made here; "
                        a href={ (html_url) "/installations/new" } { "install it on repositories" } "."
                    },
                    AppOrigin::Missing => {
                        p { "No GitHub App yet. GitHub can make one from Wharf's manifest: its webhook, "
                            "the permissions it needs (contents read, deployments, statuses, checks, pull requests) and "
                            "the events it sends (push, pull request). You confirm it on GitHub, which sends you back here." }
                        @if session.can_write() {
                            form.manifest method="post" action={ (web_url) "/settings/apps/new?state=" (manifest_state(&session)) }
                                data-web-url=(web_url) data-state=(manifest_state(&session)) {
                                input type="hidden" name="manifest" value=(manifest);
                                label { "Organization (empty: your own account) "
                                    input type="text" name="organization" autocomplete="off";
                                }
                                button type="submit" { "Create the GitHub App" }
                            }
                        }
                    },
                }
            }
            dl.facts {
                dt { "Webhook URL" } dd { code { (public_url) "/api/webhooks/github" } }
                dt { "Setup URL" } dd { code { (public_url) "/api/github/setup" } }
            }
            h2 { "Installations" }
            @if installations.is_empty() {
                p.quiet { "None recorded yet: install the App on an account's repositories." }
            }
            table.installations {
                @for installation in &installations {
                    tr data-installation=(installation.id) {
                        th { (installation.account) }
                        td {
                            @if installation.deleted { (badge("removed")) }
                            @else if installation.suspended { (badge("suspended")) }
                            @else { (badge("active")) }
                        }
                        td { @for repository in &installation.repositories { code { (repository) } " " } }
                    }
                }
            }
        },
    ))
}

fn origin_name(origin: &AppOrigin) -> &'static str {
    match origin {
        AppOrigin::Environment { .. } => "environment",
        AppOrigin::Dashboard { .. } => "dashboard",
        AppOrigin::Missing => "missing",
    }
}

#[derive(Deserialize)]
struct Callback {
    code: Option<String>,
    state: Option<String>,
}

/// The `state` of the manifest flow: derived from the session's CSRF token (never the token
/// itself, which would then be in GitHub's URLs), so only the browser that asked for the App
/// can finish making it.
fn manifest_state(session: &Session) -> String {
    hex::encode(Sha256::digest(format!(
        "github-manifest/{}",
        session.csrf_token
    )))
}

/// Where GitHub sends the browser back with the code of the App it made, and the `state` the
/// form sent ([`manifest_state`]).
async fn callback(
    SignedIn(session): SignedIn,
    State(core): State<Core>,
    Query(query): Query<Callback>,
) -> Result<Response, PageError> {
    let expected = manifest_state(&session);
    if !query
        .state
        .as_deref()
        .is_some_and(|state| same_secret(&expected, state))
    {
        return Err(HttpError::Forbidden(
            "this callback was not asked for by this browser's session: create the App from the GitHub page".to_owned(),
        )
        .into());
    }
    if !session.can_write() {
        return Err(HttpError::Forbidden("a viewer changes nothing".to_owned()).into());
    }
    let code = query
        .code
        .filter(|code| !code.is_empty())
        .ok_or_else(|| HttpError::BadRequest("GitHub sent no code".to_owned()))?;
    core.create_app_from_manifest(&code).await?;
    Ok(see_other("/github"))
}
