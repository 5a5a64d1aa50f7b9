//! `/releases/{id}`: a release and each host's rollout of it (pulling, starting, health
//! checking, live or rolled back, with its probes and the reason), the roll-back button, and
//! the deploy log every host writes, live until each rollout has settled.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use maud::{Markup, html};
use wharf_wire::Release;

use crate::core::{Core, CoreError};
use crate::http::logs::{LogsQuery, resume_after};
use crate::ui::log_view;
use crate::ui::page::{
    PageError, ago, badge, frame, online, path_id, rollback_button, rollout_stuck, stuck_badge,
    took,
};
use crate::ui::session::SignedIn;

pub(crate) fn router() -> Router<Core> {
    Router::new()
        .route("/releases/{id}", get(page))
        .route("/releases/{id}/events", get(events))
}

async fn page(
    SignedIn(session): SignedIn,
    State(core): State<Core>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, PageError> {
    let id = path_id(&id, "release")?;
    let release = core.release(id).await?;
    let (lines, complete) =
        log_view::lines_so_far(|after| core.release_log_page(id, after)).await?;
    Ok(frame(
        &format!("Release #{id}"),
        Some(&session),
        html! {
            h1 { "Release #" (id) " of " a href={ "/services/" (release.service) } { (release.service) } }
            (log_view::section(summary(&release, &online_hosts(&core).await?, session.can_write()), &lines, complete, &format!("/releases/{id}/events")))
        },
    ))
}

async fn events(
    SignedIn(session): SignedIn,
    State(core): State<Core>,
    Path(id): Path<String>,
    headers: HeaderMap,
    Query(query): Query<LogsQuery>,
) -> Result<impl IntoResponse, PageError> {
    let id = path_id(&id, "release")?;
    core.release(id).await?;
    let can_write = session.can_write();
    Ok(log_view::stream(
        core,
        session.id,
        resume_after(&headers, &query),
        (),
        move |core: Core, after, ()| async move {
            // One read of the release and its new lines per look.
            let (release, page) = core.release_and_log_page(id, after).await?;
            let shown = summary(&release, &online_hosts(&core).await?, can_write);
            Ok((page, shown, ()))
        },
    ))
}

/// The agents heard from within a lease.
async fn online_hosts(core: &Core) -> Result<Vec<String>, CoreError> {
    let lease = core.config.lease;
    Ok(core
        .agents()
        .await?
        .into_iter()
        .filter(|agent| online(agent, lease))
        .map(|agent| agent.name)
        .collect())
}

/// The release's facts, its rollouts (`online`: the hosts heard from within a lease) and its
/// buttons.
fn summary(release: &Release, online: &[String], can_write: bool) -> Markup {
    html! {
        dl.facts {
            dt { "State" } dd { (badge(release.state.as_str())) @if let Some(reason) = &release.reason { " " span.reason { (reason) } } }
            dt { "Service" } dd { (release.service) " · " (release.environment) }
            dt { "Image" } dd { code { (release.image) } }
            dt { "Trigger" } dd {
                (release.trigger.as_str())
                @if let Some(build) = release.build_id { " of " a href={ "/builds/" (build) } { "build #" (build) } }
                @if let Some(of) = release.rollback_of { " to " a href={ "/releases/" (of) } { "release #" (of) } }
            }
            dt { "Created" } dd { (ago(&release.created_at)) }
            @if let Some(took) = took(&release.created_at, release.finished_at.as_deref()) {
                dt { "Took" } dd { (took) @if release.finished_at.is_none() { " so far" } }
            }
        }
        h2 { "Hosts" }
        @if release.rollouts.is_empty() {
            p.quiet { "No host has taken this release yet." }
        }
        table.rollouts {
            @for rollout in &release.rollouts {
                tr data-host=(rollout.agent) {
                    th { (rollout.agent) }
                    td {
                        @match rollout_stuck(rollout, online.contains(&rollout.agent)) {
                            Some(reason) => { (stuck_badge(rollout.state.as_str(), reason)) div.stuck { (reason) } }
                            None => (badge(rollout.state.as_str())),
                        }
                    }
                    td {
                        @if let Some(reason) = &rollout.reason { span.reason { (reason) } }
                        @if let Some(probe) = rollout.probes.last() {
                            " " span.probe { (rollout.probes.len()) " probes, last "
                                (if probe.healthy { "healthy" } else { "unhealthy" }) ": " (probe.detail) }
                        }
                    }
                    td { (ago(&rollout.updated_at)) }
                }
                @if !rollout.log_tail.is_empty() {
                    tr { td colspan="4" { pre.tail { @for line in &rollout.log_tail { (line) "\n" } } } }
                }
            }
        }
        div.actions { (rollback_button(release, can_write)) }
    }
}
