//! Preview environments of pull requests: the environment a pull request's preview is, the
//! host name it answers at, and which pull requests build without an approval.

use wharf_wire::{BuildState, PreviewState, ReleaseState};

use crate::names::{DnsLabel, NameError, check_domain};

/// The environment of pull request `pr`'s preview of `service`: `<service>-pr-<n>`, a DNS label
/// like every environment (a service name too long to leave room for the suffix has none).
pub fn preview_environment(service: &str, pr: u64) -> Result<String, NameError> {
    let name = format!("{service}-pr-{pr}");
    DnsLabel::parse("preview environment", &name)?;
    Ok(name)
}

/// The pull request number of a preview environment of `service`, or `None` for any other
/// environment.
pub fn preview_number(service: &str, environment: &str) -> Option<u64> {
    let digits = environment
        .strip_prefix(service)?
        .strip_prefix("-pr-")
        .filter(|digits| !digits.is_empty() && !digits.starts_with('0'))?;
    digits.parse().ok()
}

/// The template a service's previews are named by unless its settings name one.
pub const DEFAULT_PREVIEW_DOMAIN: &str = "pr-{pr}.{domain}";

/// The host name of pull request `pr`'s preview of `service`, from the settings' `template`
/// (or [`DEFAULT_PREVIEW_DOMAIN`]) with `{pr}`, `{service}` and `{domain}` (the service's own
/// domain) filled in. `None` when the template needs a domain the service lacks.
pub fn preview_host(
    template: Option<&str>,
    service: &str,
    domain: Option<&str>,
    pr: u64,
) -> Result<Option<String>, NameError> {
    let template = match template {
        Some(template) => template,
        None if domain.is_none() => return Ok(None),
        None => DEFAULT_PREVIEW_DOMAIN,
    };
    if template.contains("{domain}") && domain.is_none() {
        return Ok(None);
    }
    let host = template
        .replace("{pr}", &pr.to_string())
        .replace("{service}", service)
        .replace("{domain}", domain.unwrap_or_default());
    check_domain(&host)?;
    Ok(Some(host))
}

/// Checks a preview host name template: it names each pull request apart (`{pr}`), knows no
/// other placeholders, and gives a valid host name.
pub fn check_preview_template(
    template: &str,
    service: &str,
    domain: Option<&str>,
) -> Result<(), NameError> {
    if !template.contains("{pr}") {
        return Err(NameError::invalid(
            "preview domain",
            template,
            "it must contain {pr}, so that each pull request gets a host name of its own",
        ));
    }
    let rest = template
        .replace("{pr}", "")
        .replace("{service}", "")
        .replace("{domain}", "");
    if rest.contains(['{', '}']) {
        return Err(NameError::invalid(
            "preview domain",
            template,
            "the placeholders are {pr}, {service} and {domain}",
        ));
    }
    if template.contains("{domain}") && domain.is_none() {
        return Err(NameError::invalid(
            "preview domain",
            template,
            "it uses {domain}, but the service has no domain",
        ));
    }
    preview_host(Some(template), service, domain, 1)?;
    Ok(())
}

/// Whether a pull request's author may push to the repository, by the `author_association`
/// GitHub gives: only then, and only for a head in the same repository, does it build without
/// an approval.
pub fn author_may_push(author_association: &str) -> bool {
    matches!(author_association, "OWNER" | "MEMBER" | "COLLABORATOR")
}

/// What a `pull_request` event does to a service's preview of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviewStep {
    /// Build the head commit (unless it is built already) and deploy it.
    Build,
    /// The head waits for an approval; nothing is built.
    AwaitApproval,
    /// A draft waits for "ready for review".
    AwaitReady,
    /// The pull request closed: remove the preview from every host.
    Close,
    /// Nothing changes (an action previews do not act on).
    Nothing,
}

/// What a pull request's event means for its preview, given the event's `action`, whether the
/// pull request is a `draft` and drafts get previews (`drafts`), whether its head builds
/// without an approval (`trusted`: the head is in the repository itself and its author may
/// push there) or its head commit was approved (`approved`, which a `labeled` action with the
/// service's approval label just did when `label_approves`).
pub fn preview_step(
    action: &str,
    draft: bool,
    drafts: bool,
    trusted: bool,
    approved: bool,
    label_approves: bool,
) -> PreviewStep {
    let acts = match action {
        "closed" => return PreviewStep::Close,
        "opened" | "reopened" | "synchronize" | "ready_for_review" | "converted_to_draft" => true,
        "labeled" => label_approves,
        _ => false,
    };
    if !acts {
        PreviewStep::Nothing
    } else if draft && !drafts {
        PreviewStep::AwaitReady
    } else if trusted || approved || label_approves {
        PreviewStep::Build
    } else {
        PreviewStep::AwaitApproval
    }
}

/// Whether a pull request's head builds without an approval: its head is in the repository
/// itself (not a fork) and its author may push there.
pub fn builds_unapproved(from_fork: bool, author_association: &str) -> bool {
    !from_fork && author_may_push(author_association)
}

/// What Wharf does with a preview, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PreviewStatus {
    Open,
    WaitingApproval,
    Draft,
    Stopped,
    Closed,
}

impl PreviewStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PreviewStatus::Open => "open",
            PreviewStatus::WaitingApproval => "waiting_approval",
            PreviewStatus::Draft => "draft",
            PreviewStatus::Stopped => "stopped",
            PreviewStatus::Closed => "closed",
        }
    }

    /// A name a newer Wharf wrote reads as open, which shows its builds and releases as they
    /// are.
    pub fn parse(name: &str) -> PreviewStatus {
        [
            PreviewStatus::WaitingApproval,
            PreviewStatus::Draft,
            PreviewStatus::Stopped,
            PreviewStatus::Closed,
        ]
        .into_iter()
        .find(|status| status.as_str() == name)
        .unwrap_or(PreviewStatus::Open)
    }
}

/// The newest build of a preview: its state and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviewBuild<'a> {
    pub id: i64,
    pub state: BuildState,
    pub reason: Option<&'a str>,
}

/// The newest release of a preview (not a teardown): its state, reason and build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PreviewRelease<'a> {
    pub state: ReleaseState,
    pub reason: Option<&'a str>,
    pub build_id: Option<i64>,
}

/// How a preview is shown: its stored status, and for an open one how far its newest build and
/// that build's release got; with the reason to show, if any.
pub fn shown_state(
    status: PreviewStatus,
    reason: Option<&str>,
    build: Option<PreviewBuild<'_>>,
    release: Option<PreviewRelease<'_>>,
) -> (PreviewState, Option<String>) {
    let owned = |reason: Option<&str>| reason.map(str::to_owned);
    match status {
        PreviewStatus::WaitingApproval => return (PreviewState::WaitingApproval, owned(reason)),
        PreviewStatus::Draft => return (PreviewState::Draft, owned(reason)),
        PreviewStatus::Stopped => return (PreviewState::Stopped, owned(reason)),
        PreviewStatus::Closed => return (PreviewState::Removed, owned(reason)),
        PreviewStatus::Open => {}
    }
    let released = |release: PreviewRelease<'_>| match release.state {
        ReleaseState::Live => (PreviewState::Live, None),
        ReleaseState::Failed | ReleaseState::RolledBack => (
            PreviewState::Failed,
            Some(format!(
                "release {}: {}",
                release.state,
                release.reason.unwrap_or("no reason given")
            )),
        ),
        _ => (PreviewState::Deploying, None),
    };
    match build {
        None => match release {
            Some(release) => released(release),
            None => (PreviewState::Building, None),
        },
        Some(build) => match build.state {
            BuildState::Completed => match release {
                Some(release) if release.build_id == Some(build.id) => released(release),
                _ => (PreviewState::Deploying, None),
            },
            BuildState::Failed => (
                PreviewState::Failed,
                Some(format!(
                    "build #{} failed: {}",
                    build.id,
                    build.reason.unwrap_or("no reason given")
                )),
            ),
            BuildState::Cancelled => (
                PreviewState::Failed,
                Some(format!(
                    "build #{} was cancelled: {}",
                    build.id,
                    build.reason.unwrap_or("no reason given")
                )),
            ),
            _ => (PreviewState::Building, None),
        },
    }
}

/// The images a teardown removes: each image reference the environment's releases ran (a
/// release's `image` is one reference, or a compose release's `member=reference` pairs), unless
/// its digest appears in anything the service's other environments hold (`others`: their
/// releases' images, their builds' digests and images), so that no cleanup takes an image
/// another environment runs, could roll back to, or may still deploy.
pub fn images_to_remove(ran: &[String], others: &[String]) -> Vec<String> {
    let mut remove: Vec<String> = Vec::new();
    for reference in ran.iter().flat_map(|image| image.split_whitespace()) {
        let reference = match reference.split_once('=') {
            Some((_, reference)) => reference,
            None => reference,
        };
        let Some((_, digest)) = reference.split_once('@') else {
            // Not pinned: nothing tells whether another environment runs the same image.
            continue;
        };
        if !others.iter().any(|other| other.contains(digest))
            && !remove.iter().any(|kept| kept == reference)
        {
            remove.push(reference.to_owned());
        }
    }
    remove
}

/// What a preview's pull request comment says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentFacts<'a> {
    pub service: &'a str,
    pub pr: u64,
    pub state: PreviewState,
    pub reason: Option<&'a str>,
    pub url: Option<&'a str>,
    pub commit_sha: &'a str,
    /// The newest build, with its page.
    pub build: Option<(i64, String)>,
    /// The service's approval label, for a preview that waits for one.
    pub label: Option<&'a str>,
}

/// The hidden line that marks Wharf's comment for a service on a pull request, so it is found
/// again rather than made twice.
pub fn comment_marker(service: &str) -> String {
    format!("<!-- wharf-preview:{service} -->")
}

/// The text of the one comment Wharf keeps on a pull request for each service that previews
/// it, edited in place as the preview moves: where it stands, its address, its commit and its
/// build, and for a preview that waits or stopped, how to move it on.
pub fn preview_comment(facts: &CommentFacts<'_>) -> String {
    let short: String = facts.commit_sha.chars().take(12).collect();
    let headline = match facts.state {
        PreviewState::WaitingApproval => "waits for approval",
        PreviewState::Draft => "waits until the pull request is ready for review",
        PreviewState::Building => "is building",
        PreviewState::Deploying => "is deploying",
        PreviewState::Live => "is live",
        PreviewState::Failed => "failed",
        PreviewState::Stopped => "is stopped",
        PreviewState::Removed => "was removed",
    };
    let mut text = format!(
        "{}\n**Wharf preview of `{}`** {headline}",
        comment_marker(facts.service),
        facts.service
    );
    match (facts.state, facts.url) {
        (PreviewState::Live, Some(url)) => text.push_str(&format!(": {url}\n")),
        _ => text.push('\n'),
    }
    text.push_str("\n| | |\n|---|---|\n");
    if let Some(url) = facts.url
        && facts.state != PreviewState::Removed
    {
        text.push_str(&format!("| Address | {url} |\n"));
    }
    text.push_str(&format!("| Commit | `{short}` |\n"));
    if let Some((id, page)) = &facts.build {
        text.push_str(&format!("| Build | [#{id}]({page}) |\n"));
    }
    if let Some(reason) = facts.reason {
        text.push_str(&format!("\n{}\n", reason.replace('\n', " ")));
    }
    match facts.state {
        PreviewState::WaitingApproval => {
            text.push_str(&format!(
                "\nThis commit builds once someone who may deploy approves it: \
                 `wharf preview approve {} {}`",
                facts.service, facts.pr
            ));
            if let Some(label) = facts.label {
                text.push_str(&format!(", or the label `{label}`"));
            }
            text.push_str(". Each new commit needs a new approval.\n");
        }
        PreviewState::Stopped => text.push_str(&format!(
            "\nA push to this pull request or `wharf preview start {} {}` brings it back.\n",
            facts.service, facts.pr
        )),
        _ => {}
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preview_environment_is_the_service_and_the_number() {
        assert_eq!(preview_environment("web", 7).unwrap(), "web-pr-7");
        assert_eq!(preview_number("web", "web-pr-7"), Some(7));
        assert_eq!(preview_number("web", "production"), None);
        assert_eq!(preview_number("web", "web-pr-"), None);
        assert_eq!(preview_number("web", "web-pr-07"), None);
        assert_eq!(preview_number("api", "web-pr-7"), None);
        assert!(preview_environment(&"a".repeat(60), 7).is_err());
    }

    #[test]
    fn a_preview_host_fills_in_the_template() {
        assert_eq!(
            preview_host(None, "web", Some("web.example.com"), 7).unwrap(),
            Some("pr-7.web.example.com".to_owned())
        );
        assert_eq!(preview_host(None, "web", None, 7).unwrap(), None);
        assert_eq!(
            preview_host(Some("{service}-{pr}.preview.test"), "web", None, 12).unwrap(),
            Some("web-12.preview.test".to_owned())
        );
        assert_eq!(
            preview_host(Some("pr-{pr}.{domain}"), "web", None, 12).unwrap(),
            None
        );
    }

    #[test]
    fn a_template_must_name_each_pull_request_apart() {
        assert!(check_preview_template("pr-{pr}.{domain}", "web", Some("web.test")).is_ok());
        assert!(check_preview_template("preview.{domain}", "web", Some("web.test")).is_err());
        assert!(check_preview_template("pr-{pr}.{domain}", "web", None).is_err());
        assert!(check_preview_template("pr-{pr}.{host}", "web", Some("web.test")).is_err());
        assert!(check_preview_template("PR_{pr}.test", "web", None).is_err());
    }

    #[test]
    fn what_each_pull_request_event_does() {
        use PreviewStep::*;
        for action in ["opened", "reopened", "synchronize", "ready_for_review"] {
            assert_eq!(
                preview_step(action, false, false, true, false, false),
                Build
            );
            assert_eq!(
                preview_step(action, false, false, false, false, false),
                AwaitApproval
            );
            assert_eq!(
                preview_step(action, false, false, false, true, false),
                Build
            );
            assert_eq!(
                preview_step(action, true, false, true, false, false),
                AwaitReady
            );
            assert_eq!(preview_step(action, true, true, true, false, false), Build);
        }
        assert_eq!(
            preview_step("closed", false, false, true, true, false),
            Close
        );
        assert_eq!(
            preview_step("labeled", false, false, false, false, true),
            Build
        );
        assert_eq!(
            preview_step("labeled", false, false, false, false, false),
            Nothing
        );
        assert_eq!(
            preview_step("edited", false, false, true, false, false),
            Nothing
        );
        assert_eq!(
            preview_step("assigned", false, false, true, false, false),
            Nothing
        );
        assert!(builds_unapproved(false, "MEMBER"));
        assert!(!builds_unapproved(true, "OWNER"));
        assert!(!builds_unapproved(false, "CONTRIBUTOR"));
    }

    #[test]
    fn an_open_preview_shows_how_far_its_newest_build_got() {
        let build = |id, state| {
            Some(PreviewBuild {
                id,
                state,
                reason: Some("boom"),
            })
        };
        let release = |state, build_id| {
            Some(PreviewRelease {
                state,
                reason: Some("unhealthy"),
                build_id: Some(build_id),
            })
        };
        let open = PreviewStatus::Open;
        assert_eq!(
            shown_state(open, None, None, None).0,
            PreviewState::Building
        );
        assert_eq!(
            shown_state(
                open,
                None,
                build(2, BuildState::Building),
                release(ReleaseState::Live, 1)
            )
            .0,
            PreviewState::Building
        );
        assert_eq!(
            shown_state(
                open,
                None,
                build(2, BuildState::Completed),
                release(ReleaseState::Live, 1)
            )
            .0,
            PreviewState::Deploying
        );
        assert_eq!(
            shown_state(
                open,
                None,
                build(2, BuildState::Completed),
                release(ReleaseState::Live, 2)
            )
            .0,
            PreviewState::Live
        );
        let (state, reason) = shown_state(
            open,
            None,
            build(2, BuildState::Completed),
            release(ReleaseState::RolledBack, 2),
        );
        assert_eq!(state, PreviewState::Failed);
        assert!(reason.unwrap().contains("unhealthy"));
        let (state, reason) = shown_state(open, None, build(3, BuildState::Failed), None);
        assert_eq!(state, PreviewState::Failed);
        assert_eq!(reason.unwrap(), "build #3 failed: boom");
        assert_eq!(
            shown_state(
                PreviewStatus::Closed,
                Some("closed"),
                build(3, BuildState::Completed),
                None
            ),
            (PreviewState::Removed, Some("closed".to_owned()))
        );
        assert_eq!(
            PreviewStatus::parse("waiting_approval"),
            PreviewStatus::WaitingApproval
        );
        assert_eq!(PreviewStatus::parse("something-new"), PreviewStatus::Open);
    }

    #[test]
    fn the_comment_says_where_the_preview_stands_and_how_to_move_it_on() {
        let facts = CommentFacts {
            service: "web",
            pr: 7,
            state: PreviewState::Live,
            reason: None,
            url: Some("https://pr-7.web.example.com"),
            commit_sha: &"a".repeat(40),
            build: Some((12, "https://wharf.test/builds/12".to_owned())),
            label: Some("safe to preview"),
        };
        let live = preview_comment(&facts);
        assert!(live.starts_with("<!-- wharf-preview:web -->\n"), "{live}");
        assert!(
            live.contains("is live: https://pr-7.web.example.com"),
            "{live}"
        );
        assert!(
            live.contains("| Build | [#12](https://wharf.test/builds/12) |"),
            "{live}"
        );
        assert!(live.contains(&format!("`{}`", "a".repeat(12))), "{live}");
        let waiting = preview_comment(&CommentFacts {
            state: PreviewState::WaitingApproval,
            build: None,
            ..facts.clone()
        });
        assert!(waiting.contains("`wharf preview approve web 7`, or the label `safe to preview`"));
        let stopped = preview_comment(&CommentFacts {
            state: PreviewState::Stopped,
            ..facts.clone()
        });
        assert!(stopped.contains("`wharf preview start web 7`"), "{stopped}");
        let removed = preview_comment(&CommentFacts {
            state: PreviewState::Removed,
            reason: Some("the pull request was closed"),
            ..facts
        });
        assert!(removed.contains("was removed"), "{removed}");
        assert!(!removed.contains("| Address |"), "{removed}");
        assert!(removed.contains("the pull request was closed"), "{removed}");
    }

    #[test]
    fn a_teardown_removes_only_images_no_other_environment_names() {
        let ran = vec![
            "r/p/web@sha256:aaa".to_owned(),
            "r/p/web@sha256:bbb".to_owned(),
            "web=r/p/web-web@sha256:ccc db=r/p/web-db@sha256:ddd".to_owned(),
            "r/p/web:latest".to_owned(),
        ];
        let others = vec![
            "r/p/web@sha256:bbb".to_owned(),
            r#"[{"component":"db","image":"r/p/web-db:x","digest":"sha256:ddd"}]"#.to_owned(),
        ];
        assert_eq!(
            images_to_remove(&ran, &others),
            vec![
                "r/p/web@sha256:aaa".to_owned(),
                "r/p/web-web@sha256:ccc".to_owned()
            ]
        );
    }

    #[test]
    fn only_authors_who_may_push_build_without_approval() {
        for association in ["OWNER", "MEMBER", "COLLABORATOR"] {
            assert!(author_may_push(association));
        }
        for association in [
            "CONTRIBUTOR",
            "FIRST_TIME_CONTRIBUTOR",
            "FIRST_TIMER",
            "MANNEQUIN",
            "NONE",
            "",
        ] {
            assert!(!author_may_push(association));
        }
    }
}
