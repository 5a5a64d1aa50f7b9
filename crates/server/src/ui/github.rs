//! `/github`: where the GitHub App comes from, the webhook URL GitHub sends to, the
//! installations and the repositories each grants; and, while no App is configured, the
//! "Create the GitHub App" button, which posts Wharf's manifest to GitHub (GitHub's App
//! manifest flow). GitHub sends the browser back to `/github/manifest/callback` with a code,
//! exchanged there for the App, which is kept sealed and used at once.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::html;
use serde::Deserialize;

use crate::core::Core;
use crate::core::github_app::AppOrigin;
use crate::core::sessions::random_token;
use crate::http::HttpError;
use crate::ui::page::{PageError, badge, frame};
use crate::ui::session::{SignedIn, cookie, same_secret, see_other_setting, set_cookie};

pub(crate) fn router() -> Router<Core> {
    Router::new()
        .route("/github", get(page))
        .route("/github/manifest/callback", get(callback))
}

/// The cookie that holds the one `state` the manifest flow may come back with: random, made
/// with each GitHub page, spent by the callback; never the session's CSRF token, which would
/// then be in GitHub's URLs.
const STATE_COOKIE: &str = "wharf_github_state";

async fn page(
    SignedIn(session): SignedIn,
    State(core): State<Core>,
) -> Result<Response, PageError> {
    let origin = core.app_origin().await?;
    // A state only where the form is shown: the page of an App in use offers none.
    let offers_app = origin == AppOrigin::Missing && session.can_write();
    let state = offers_app.then(random_token);
    let installations = core.installations().await?;
    let public_url = core.config.public_url.trim_end_matches('/');
    let manifest = core.app_manifest().to_string();
    let web_url = core.config.github_web_url.trim_end_matches('/');
    let page = frame(
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
                        @if let Some(state) = &state {
                            form.manifest method="post" action={ (web_url) "/settings/apps/new?state=" (state) }
                                data-web-url=(web_url) data-state=(state) {
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
    );
    let mut response = page.into_response();
    if let Some(state) = &state {
        response.headers_mut().append(
            axum::http::header::SET_COOKIE,
            set_cookie(&core, STATE_COOKIE, state),
        );
    }
    Ok(response)
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

/// Where GitHub sends the browser back with the code of the App it made, and the `state` the
/// form sent, which must be the one this browser's cookie holds.
async fn callback(
    SignedIn(session): SignedIn,
    State(core): State<Core>,
    headers: HeaderMap,
    Query(query): Query<Callback>,
) -> Result<Response, PageError> {
    let expected = cookie(&headers, STATE_COOKIE).unwrap_or_default();
    if expected.is_empty()
        || !query
            .state
            .as_deref()
            .is_some_and(|state| same_secret(expected, state))
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
    Ok(see_other_setting(
        "/github",
        &[set_cookie(&core, STATE_COOKIE, "")],
    ))
}
