//! `/`, the overview: every service with its live release per environment, the build and the
//! rollout in progress, the newest builds, and the agents online and offline. It updates live.

use std::time::Duration;

use axum::Router;
use maud::{Markup, html};
use wharf_wire::{Agent, Build, Release, ReleaseState};

use crate::core::{Core, CoreError};
use crate::ui::live::live_page;
use crate::ui::page::{ago, badge, build_badge, commit, online, short};

/// How many of the newest builds the overview lists.
const NEWEST_BUILDS: i64 = 15;
/// How many of the newest unfinished builds are read for the services' work in progress.
const UNFINISHED_BUILDS: i64 = 500;

pub(crate) fn router() -> Router<Core> {
    live_page("/", "/events/overview", "Overview", overview)
}

/// A service as the overview shows it.
struct ServiceRow {
    name: String,
    repo: String,
    branch: String,
    domain: Option<String>,
    /// The live release of each environment.
    live: Vec<Release>,
    /// A release rolling out or waiting for hosts.
    rolling_out: Option<Release>,
    /// Its newest build that is still at work.
    building: Option<Build>,
}

/// Everything below the page's title, in a few reads however many services there are.
async fn overview(core: Core) -> Result<Markup, CoreError> {
    let builds = core.builds(None, Some(NEWEST_BUILDS)).await?;
    let (releases, unfinished) = core.work_in_progress(UNFINISHED_BUILDS).await?;
    let rows: Vec<ServiceRow> = core
        .services()
        .await?
        .into_iter()
        .map(|service| {
            let mine = |release: &&Release| release.service_id == service.id;
            let mut live: Vec<Release> = Vec::new();
            for release in releases
                .iter()
                .filter(mine)
                .filter(|release| release.state == ReleaseState::Live)
            {
                if !live
                    .iter()
                    .any(|seen| seen.environment == release.environment)
                {
                    live.push(release.clone());
                }
            }
            ServiceRow {
                rolling_out: releases
                    .iter()
                    .filter(mine)
                    .find(|release| !release.state.is_settled())
                    .cloned(),
                building: unfinished
                    .iter()
                    .find(|build| build.service_id == service.id)
                    .cloned(),
                live,
                name: service.name,
                repo: service.repo,
                branch: service.branch,
                domain: service.domain,
            }
        })
        .collect();
    let agents = core.agents().await?;
    let scheme = core.config.app_url_scheme.clone();
    let lease = core.config.lease;
    Ok(html! {
        h1 { "Services" }
        @if rows.is_empty() {
            p.quiet { "No service yet. Link a repository with " code { "wharf service create" } "." }
        } @else {
            table.services {
                thead { tr { th { "Service" } th { "Live" } th { "In progress" } } }
                tbody { @for row in &rows { (service_row(row, &scheme)) } }
            }
        }
        h2 { "Newest builds" }
        @if builds.is_empty() {
            p.quiet { "No build yet: a push to a tracked branch starts one." }
        } @else {
            table.builds {
                @for build in &builds {
                    tr data-build=(build.id) {
                        td { a href={ "/builds/" (build.id) } { "#" (build.id) } }
                        td { a href={ "/services/" (build.service) } { (build.service) } }
                        td { (build_badge(build)) }
                        td { code { (short(&build.commit_sha)) } }
                        td { (build.trigger.as_str()) }
                        td { (ago(&build.created_at)) }
                    }
                }
            }
        }
        h2 { "Agents" }
        (agent_list(&agents, lease))
    })
}

/// A service's row; `scheme` is how its domain is reached (`WHARF_APP_URL_SCHEME`).
fn service_row(row: &ServiceRow, scheme: &str) -> Markup {
    html! {
        tr data-service=(row.name) {
            th {
                a href={ "/services/" (row.name) } { (row.name) }
                div.quiet { (row.repo) " · " (row.branch) }
                @if let Some(domain) = &row.domain { div { a href={ (scheme) "://" (domain) } { (domain) } } }
            }
            td {
                @if row.live.is_empty() { span.quiet { "nothing live" } }
                @for release in &row.live {
                    div.live-release {
                        (release.environment) ": "
                        a href={ "/releases/" (release.id) } { "release #" (release.id) }
                        @if let Some(build) = release.build_id { " of " a href={ "/builds/" (build) } { "build #" (build) } }
                        " · " (release.trigger.as_str()) " · "
                        (ago(release.finished_at.as_deref().unwrap_or(&release.updated_at)))
                    }
                }
            }
            td {
                @if let Some(build) = &row.building {
                    div { a href={ "/builds/" (build.id) } { "build #" (build.id) } " " (build_badge(build)) " "
                        (commit(&row.repo, &build.commit_sha)) }
                }
                @if let Some(release) = &row.rolling_out {
                    div { a href={ "/releases/" (release.id) } { "release #" (release.id) } " " (badge(release.state.as_str())) }
                }
            }
        }
    }
}

fn agent_list(agents: &[Agent], lease: Duration) -> Markup {
    let active: Vec<&Agent> = agents
        .iter()
        .filter(|agent| agent.revoked_at.is_none())
        .collect();
    html! {
        @if active.is_empty() {
            p.quiet { "No agent yet: " code { "wharf agent create NAME" } " issues one's token." }
        }
        ul.agents {
            @for agent in active {
                li data-agent=(agent.name) {
                    a href="/agents" { (agent.name) } " "
                    @if online(agent, lease) { (badge("online")) } @else { (badge("offline")) }
                }
            }
        }
    }
}
