//! `/builds/{id}`, the page GitHub's `log_url` points at: what the build is (service,
//! environment, branch, commit, trigger, agent), where it stands and how long each part took,
//! the failed step when one failed, the cancel and retry buttons, and the log, live from its
//! first line until the build ends.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::get;
use maud::{Markup, html};
use wharf_wire::{Build, LogLine, LogStream};

use crate::core::Core;
use crate::http::logs::{LogsQuery, resume_after};
use crate::ui::log_view;
use crate::ui::page::{
    PageError, ago, build_badge, build_buttons, build_stuck, commit, frame, path_id, took,
};
use crate::ui::session::SignedIn;

pub(crate) fn router() -> Router<Core> {
    Router::new()
        .route("/builds/{id}", get(page))
        .route("/builds/{id}/events", get(events))
}

async fn page(
    SignedIn(session): SignedIn,
    State(core): State<Core>,
    Path(id): Path<String>,
) -> Result<impl IntoResponse, PageError> {
    let id = path_id(&id, "build")?;
    let build = core.build(id).await?;
    let (lines, complete) = log_view::lines_so_far(|after| core.log_page(id, after)).await?;
    let repo = repo_of(&core, &build).await;
    let steps = core.build_steps(id).await?;
    let summary = summary(&build, &steps, &repo, session.can_write());
    Ok(frame(
        &format!("Build #{id}"),
        Some(&session),
        html! {
            h1 { "Build #" (id) " of " a href={ "/services/" (build.service) } { (build.service) } }
            (log_view::section(summary, &lines, complete, &format!("/builds/{id}/events")))
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
    let id = path_id(&id, "build")?;
    let build = core.build(id).await?;
    let repo = repo_of(&core, &build).await;
    let can_write = session.can_write();
    let resume = resume_after(&headers, &query);
    // The steps before the stream's first line; later ones come in its lines.
    let steps: Vec<LogLine> = core
        .build_steps(id)
        .await?
        .into_iter()
        .filter(|step| step.seq <= resume)
        .collect();
    Ok(log_view::stream(
        core,
        session.id,
        resume,
        steps,
        move |core: Core, after, mut steps: Vec<LogLine>| {
            let repo = repo.clone();
            async move {
                // One read of the build and its new lines per look, whoever else watches.
                let (build, page) = core.build_and_log_page(id, after).await?;
                steps.extend(
                    page.lines
                        .iter()
                        .filter(|line| line.stream == LogStream::Wharf)
                        .cloned(),
                );
                let shown = summary(&build, &steps, &repo, can_write);
                Ok((page, shown, steps))
            }
        },
    ))
}

/// The service's repository, for linking the commit; empty when the service is gone.
async fn repo_of(core: &Core, build: &Build) -> String {
    core.service(&build.service)
        .await
        .map(|service| service.repo)
        .unwrap_or_default()
}

/// The build's facts, state, its steps with how long each took, its failure and its buttons
/// (for a session that may write).
fn summary(build: &Build, steps: &[LogLine], repo: &str, can_write: bool) -> Markup {
    html! {
        dl.facts {
            dt { "State" } dd { (build_badge(build)) @if let Some(reason) = &build.reason { " " span.reason { (reason) } } }
            @if let Some(stuck) = build_stuck(build) { dt { "Stuck" } dd.stuck { (stuck) } }
            dt { "Service" } dd { (build.service) " · " (build.environment) }
            dt { "Commit" } dd { (commit(repo, &build.commit_sha)) @if let Some(branch) = &build.branch { " on " code { (branch) } } }
            dt { "Trigger" } dd { (build.trigger.as_str()) @if let Some(of) = build.retry_of { " of " a href={ "/builds/" (of) } { "#" (of) } } }
            dt { "Queued" } dd { (ago(&build.created_at)) }
            @if let Some(claimed) = &build.claimed_at {
                dt { "Waited" } dd { (took(&build.created_at, Some(claimed)).unwrap_or_default()) }
                dt { "Ran" } dd.ran { (took(claimed, build.finished_at.as_deref()).unwrap_or_default()) }
            }
            @if let Some(agent) = &build.agent { dt { "Agent" } dd { (agent) " (attempt " (build.attempt) " of " (build.max_attempts) ")" } }
            @if let Some(image) = &build.image { dt { "Image" } dd { code { (image) } } }
        }
        @if !steps.is_empty() {
            ol.steps {
                @for (index, step) in steps.iter().enumerate() {
                    @let end = steps.get(index + 1).map(|next| next.at.as_str()).or(build.finished_at.as_deref());
                    li {
                        (step.text)
                        @if let Some(took) = took(&step.at, end) {
                            " " span.quiet { (took) @if end.is_none() { " so far" } }
                        }
                    }
                }
            }
        }
        @if let Some(failure) = &build.failure {
            section.failure {
                h2 { "The " (failure.step) " step failed" }
                @if let Some(command) = &failure.command { p { "Command: " code { (command) } } }
                @if let Some(code) = failure.exit_code { p { "Exit code " (code) } }
                @if !failure.output_tail.is_empty() {
                    pre.tail { @for line in &failure.output_tail { (line) "\n" } }
                }
            }
        }
        div.actions { (build_buttons(build, can_write)) }
    }
}
