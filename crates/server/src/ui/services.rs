//! `/services/{name}`: a service's settings, its variables (names, and values unless secret),
//! the "build now" button, and a timeline of its builds and releases, newest first, with each
//! release's hosts and the buttons that act on them. The timeline updates live.

use axum::Router;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use axum::routing::get;
use maud::{Markup, html};
use wharf_wire::{Build, Release, Service};

use crate::core::{Core, CoreError};
use crate::ui::live::{live_fragment, live_part};
use crate::ui::page::{
    PageError, ago, badge, build_badge, build_buttons, commit, frame, rollback_button,
};
use crate::ui::session::SignedIn;

/// How many of the newest builds and of the newest releases the timeline shows.
const TIMELINE: i64 = 25;

pub(crate) fn router() -> Router<Core> {
    Router::new()
        .route("/services/{name}", get(page))
        .route("/services/{name}/events", get(events))
}

async fn page(
    SignedIn(session): SignedIn,
    State(core): State<Core>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, PageError> {
    let service = core.service(&name).await?;
    let variables = core.variables(&name).await?;
    let can_write = session.can_write();
    let timeline = timeline(core.clone(), name.clone(), can_write).await?;
    Ok(frame(
        &service.name,
        Some(&session),
        html! {
            h1 { (service.name) }
            @if can_write { div.actions {
                button hx-post={ "/v1/services/" (service.name) "/builds" } hx-ext="wharf-json" data-json="{}"
                    hx-confirm={ "Build the head of " (service.branch) " now?" } hx-swap="none" data-follow="/builds/" { "Build now" }
            } }
            (settings(&service, &core.config.app_url_scheme))
            h2 { "Variables" }
            @if variables.is_empty() {
                p.quiet { "None. " code { "wharf env set " (service.name) " NAME=VALUE" } " sets one." }
            } @else {
                table.variables {
                    @for variable in &variables {
                        tr data-variable=(variable.name) {
                            th { code { (variable.name) } }
                            td {
                                @match (&variable.value, variable.secret) {
                                    (_, true) => span.quiet { "secret" },
                                    (Some(value), false) => code { (value) },
                                    (None, false) => "",
                                }
                            }
                            td.quiet { @if variable.build { "also for builds" } }
                        }
                    }
                }
            }
            (live_part(&format!("/services/{}/events", service.name), timeline))
        },
    ))
}

async fn events(
    SignedIn(session): SignedIn,
    State(core): State<Core>,
    Path(name): Path<String>,
) -> Result<impl IntoResponse, PageError> {
    core.service(&name).await?;
    let can_write = session.can_write();
    Ok(live_fragment(core, session.id, move |core| {
        timeline(core, name.clone(), can_write)
    }))
}

/// The service's settings; `scheme` is how its domain is reached (`WHARF_APP_URL_SCHEME`).
fn settings(service: &Service, scheme: &str) -> Markup {
    let deploy = &service.deploy;
    html! {
        dl.facts {
            dt { "Repository" } dd { code { (service.repo) } " · " code { (service.branch) } }
            dt { "Project" } dd { (service.project) }
            dt { "Builds from" } dd {
                @if let Some(compose) = &service.compose { "compose file " code { (compose) } }
                @else { code { (service.dockerfile.as_deref().unwrap_or("Dockerfile")) } " in " code { (service.context.as_deref().unwrap_or(".")) } }
            }
            dt { "Environment" } dd { (deploy.environment) @if !deploy.auto_deploy { " (deploys by hand)" } }
            @if let Some(domain) = &service.domain { dt { "Domain" } dd { a href={ (scheme) "://" (domain) } { (domain) } } }
            @if let Some(port) = service.port {
                dt { "Port" } dd { (port) " · health " code { (service.health_path.as_deref().unwrap_or("/")) } }
            }
            dt { "Hosts" } dd { @if deploy.hosts.is_empty() { "local" } @else { (deploy.hosts.join(", ")) } }
        }
    }
}

/// One entry of the timeline.
enum Entry<'a> {
    Build(&'a Build),
    Release(&'a Release),
}

impl Entry<'_> {
    fn created_at(&self) -> &str {
        match self {
            Entry::Build(build) => &build.created_at,
            Entry::Release(release) => &release.created_at,
        }
    }
}

/// The builds and releases, newest first (API times sort as text), with their buttons for a
/// session that may write.
async fn timeline(core: Core, name: String, can_write: bool) -> Result<Markup, CoreError> {
    let service = core.service(&name).await?;
    let builds = core.builds(Some(name.clone()), Some(TIMELINE)).await?;
    let releases = core.releases(&name, Some(TIMELINE)).await?;
    let mut entries: Vec<Entry> = builds
        .iter()
        .map(Entry::Build)
        .chain(releases.iter().map(Entry::Release))
        .collect();
    entries.sort_by(|a, b| b.created_at().cmp(a.created_at()));
    Ok(html! {
        h2 { "Timeline" }
        @if entries.is_empty() {
            p.quiet { "Nothing yet: a push to " code { (service.branch) } " or " em { "Build now" } " starts a build." }
        }
        table.timeline {
            @for entry in &entries {
                @match entry {
                    Entry::Build(build) => tr data-build=(build.id) {
                        td { a href={ "/builds/" (build.id) } { "build #" (build.id) } }
                        td { (build_badge(build)) }
                        td { (commit(&service.repo, &build.commit_sha)) " " span.quiet { (build.trigger.as_str()) } }
                        td { (ago(&build.created_at)) }
                        td.actions { (build_buttons(build, can_write)) }
                    },
                    Entry::Release(release) => tr data-release=(release.id) {
                        td { a href={ "/releases/" (release.id) } { "release #" (release.id) } }
                        td { (badge(release.state.as_str())) }
                        td {
                            (release.environment)
                            @if let Some(build) = release.build_id { " · build #" (build) }
                            @for rollout in &release.rollouts {
                                " · " (rollout.agent) " " (badge(rollout.state.as_str()))
                            }
                        }
                        td { (ago(&release.created_at)) }
                        td.actions { (rollback_button(release, can_write)) }
                    },
                }
            }
        }
    })
}
