//! What every dashboard page shares: the frame around it (head, navigation, sign-out), its
//! error page, and how states, commits, times and durations are shown.

use axum::response::{IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use std::time::Duration;
use wharf_domain::stuck::{
    OVERDUE_BUILD_REASON, OVERDUE_ROLLOUT_REASON, SILENT_AGENT_REASON, stuck_reason,
};

use wharf_wire::{Agent, Build, BuildState, Release, ReleaseState, Rollout, parse_millis};

use crate::core::sessions::Session;
use crate::core::{CoreError, now_millis};
use crate::http::HttpError;
use crate::ui::assets;

/// A page in the dashboard's frame. `session` is `None` on the sign-in page.
pub(crate) fn frame(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Wharf" }
                link rel="stylesheet" href=(assets::STYLE);
                script src=(assets::HTMX) defer {}
                script src=(assets::HTMX_SSE) defer {}
                script src=(assets::SCRIPT) defer {}
            }
            // htmx requests (the buttons) carry the session's CSRF token.
            body hx-headers=[session.map(|session| format!(r#"{{"X-CSRF-Token": "{}"}}"#, session.csrf_token))] {
                header {
                    a.brand href="/" { "Wharf" }
                    @if let Some(session) = session {
                        span.who { (session.user.as_deref().unwrap_or("admin token")) " · " (session.role.as_str()) }
                        nav {
                            a href="/" { "Overview" }
                            a href="/agents" { "Agents" }
                            a href="/github" { "GitHub" }
                        }
                        form.sign-out method="post" action="/logout" {
                            input type="hidden" name="csrf_token" value=(session.csrf_token);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                div #flash role="alert" {}
                main { (body) }
            }
        }
    }
}

/// A failure shown as a page of the dashboard, with the status the REST API would answer.
pub(crate) struct PageError(HttpError);

impl From<CoreError> for PageError {
    fn from(error: CoreError) -> PageError {
        PageError(error.into())
    }
}

impl From<HttpError> for PageError {
    fn from(error: HttpError) -> PageError {
        PageError(error)
    }
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let message = self.0.to_string();
        let api_answer = self.0.into_response();
        let status = api_answer.status();
        let title = status.canonical_reason().unwrap_or("Error");
        let page = frame(
            title,
            None,
            html! {
                h1 { (title) }
                p.error { (message) }
                p { a href="/" { "Back to the overview" } }
            },
        );
        let mut response = (status, page).into_response();
        if let Some(wait) = api_answer.headers().get(axum::http::header::RETRY_AFTER) {
            response
                .headers_mut()
                .insert(axum::http::header::RETRY_AFTER, wait.clone());
        }
        response
    }
}

/// A page whose path names something by a number: 404 for anything but a positive integer.
pub(crate) fn path_id(raw: &str, what: &str) -> Result<i64, PageError> {
    raw.parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| PageError(HttpError::NotFound(format!("no {what} {raw:?}"))))
}

/// Whether an agent was heard from within a lease.
pub(crate) fn online(agent: &Agent, lease: Duration) -> bool {
    let lease = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    agent.revoked_at.is_none()
        && agent
            .last_seen_at
            .as_deref()
            .and_then(parse_millis)
            .is_some_and(|seen| now_millis().saturating_sub(seen) <= lease)
}

/// A state as a badge whose class gives its colour: `good`, `bad`, `busy` or `quiet`.
pub(crate) fn badge(state: &str) -> Markup {
    let tone = match state {
        "completed" | "live" => "good",
        "failed" | "rolled_back" | "stuck" | "offline" => "bad",
        "cancelled" | "superseded" | "pending" | "revoked" => "quiet",
        _ => "busy",
    };
    html! { span class={ "badge " (tone) } data-state=(state) { (state.replace('_', " ")) } }
}

/// Why a build in progress is stuck, when it is: its agent has not been heard from for a lease,
/// or it has passed its deadline.
pub(crate) fn build_stuck(build: &Build) -> Option<&'static str> {
    if build.state.is_final() {
        return None;
    }
    stuck_reason(
        build.lease_expires_at.as_deref().and_then(parse_millis),
        build.deadline_at.as_deref().and_then(parse_millis),
        OVERDUE_BUILD_REASON,
        now_millis(),
    )
}

/// Why a rollout is stuck, when it is: it passed its deadline, or its host (`online`: heard from
/// within a lease) has gone quiet while it rolls out.
pub(crate) fn rollout_stuck(rollout: &Rollout, online: bool) -> Option<&'static str> {
    if !rollout.state.is_rolling_out() {
        return None;
    }
    if !online {
        return Some(SILENT_AGENT_REASON);
    }
    stuck_reason(
        None,
        rollout.deadline_at.as_deref().and_then(parse_millis),
        OVERDUE_ROLLOUT_REASON,
        now_millis(),
    )
}

/// A build's state as a badge, or `stuck` with what Wharf will do about it.
pub(crate) fn build_badge(build: &Build) -> Markup {
    match build_stuck(build) {
        Some(reason) => stuck_badge(build.state.as_str(), reason),
        None => badge(build.state.as_str()),
    }
}

/// `stuck` instead of the state work is stuck in, the reason on hover.
pub(crate) fn stuck_badge(state: &str, reason: &str) -> Markup {
    html! { span.badge.bad data-state="stuck" title=(reason) { "stuck " (state.replace('_', " ")) } }
}

/// The buttons of a build: cancel while it runs, retry once it failed or was cancelled, deploy
/// once it completed. Each asks first. None for a session that may not write (a viewer's).
pub(crate) fn build_buttons(build: &Build, can_write: bool) -> Markup {
    html! {
        @if !can_write {
        } @else if !build.state.is_final() {
            button hx-post={ "/v1/builds/" (build.id) "/cancel" } hx-confirm={ "Cancel build #" (build.id) "?" } hx-swap="none" { "Cancel" }
        } @else if matches!(build.state, BuildState::Failed | BuildState::Cancelled) {
            button hx-post={ "/v1/builds/" (build.id) "/retry" } hx-confirm={ "Build commit " (short(&build.commit_sha)) " again?" }
                hx-swap="none" data-follow="/builds/" { "Retry" }
        } @else if build.state == BuildState::Completed {
            button hx-post={ "/v1/services/" (build.service) "/deploy" } hx-ext="wharf-json" data-json={ r#"{"build": "# (build.id) "}" }
                hx-confirm={ "Deploy build #" (build.id) " to " (build.environment) "?" }
                hx-swap="none" data-follow="/releases/" { "Deploy" }
        }
    }
}

/// The button that makes a replaced release live again (the API says when it cannot); none for
/// a session that may not write.
pub(crate) fn rollback_button(release: &Release, can_write: bool) -> Markup {
    html! {
        @if can_write && release.state == ReleaseState::Superseded {
            button hx-post={ "/v1/services/" (release.service) "/rollback" }
                hx-ext="wharf-json" data-json={ r#"{"to": "# (release.id) "}" }
                hx-confirm={ "Roll " (release.service) " back to release #" (release.id) " in " (release.environment) "?" }
                hx-swap="none" data-follow="/releases/" { "Roll back to this" }
        }
    }
}

/// A commit's first 12 characters.
pub(crate) fn short(sha: &str) -> &str {
    sha.get(..12).unwrap_or(sha)
}

/// A commit's first 12 characters, linked to GitHub when the repository is GitHub's.
pub(crate) fn commit(repo: &str, sha: &str) -> Markup {
    let short = short(sha);
    let on_github = !repo.starts_with('/') && !repo.contains("://") && repo.contains('/');
    html! {
        @if on_github {
            a.commit href={ "https://github.com/" (repo) "/commit/" (sha) } title=(sha) { code { (short) } }
        } @else {
            code.commit title=(sha) { (short) }
        }
    }
}

/// A time as the API gives it, shown as how long ago it was, with the time itself on hover.
pub(crate) fn ago(time: &str) -> Markup {
    let text = match parse_millis(time) {
        Some(at) => format!("{} ago", duration_text(now_millis().saturating_sub(at))),
        None => time.to_owned(),
    };
    html! { time datetime=(time) title=(time) { (text) } }
}

/// How long from one API time to another (or to now).
pub(crate) fn took(from: &str, to: Option<&str>) -> Option<String> {
    let from = parse_millis(from)?;
    let to = match to {
        Some(to) => parse_millis(to)?,
        None => now_millis(),
    };
    Some(duration_text(to.saturating_sub(from)))
}

/// `42 s`, `3 min 5 s`, `2 h 10 min`, `3 d 4 h`.
pub(crate) fn duration_text(millis: i64) -> String {
    let seconds = millis.max(0) / 1000;
    match seconds {
        0..60 => format!("{seconds} s"),
        60..3600 => format!("{} min {} s", seconds / 60, seconds % 60),
        3600..86_400 => format!("{} h {} min", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{} d {} h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

/// Markup from a string that is HTML already (rendered log lines).
pub(crate) fn trusted(html: String) -> Markup {
    PreEscaped(html)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(duration_text(42_300), "42 s");
        assert_eq!(duration_text(185_000), "3 min 5 s");
        assert_eq!(duration_text(7_800_000), "2 h 10 min");
        assert_eq!(duration_text(273_600_000), "3 d 4 h");
        assert_eq!(duration_text(-5), "0 s");
    }

    #[test]
    fn commits_link_to_github_only_for_its_repositories() {
        let sha = "0123456789abcdef0123456789abcdef01234567";
        let linked = commit("acme/web", sha).into_string();
        assert!(linked.contains("https://github.com/acme/web/commit/0123456789abcdef"));
        assert!(linked.contains(">0123456789ab<"));
        assert!(!commit("/srv/repo", sha).into_string().contains("href"));
        assert!(
            !commit("https://git.example/x.git", sha)
                .into_string()
                .contains("href")
        );
    }
}
