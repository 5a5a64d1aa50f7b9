//! The one comment Wharf keeps on a pull request for each service previewing it, edited in
//! place as the preview moves (waiting for approval, building, live, failed, stopped,
//! removed), and the approval label taken off a pull request whose head moved on.
//!
//! Like the GitHub reporter, it compares what should be with what GitHub last accepted: each
//! pass renders every preview's comment and writes only those that differ, so a failed write
//! is simply made again by a later pass. A replica writes a comment under a short lease in the
//! store, so two replicas never create two comments; a comment made but not recorded (the
//! server died in between) is found again by its hidden marker before another is made.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio::sync::watch;
use wharf_domain::deployment::build_log_url;
use wharf_domain::names::RepoSource;
use wharf_domain::preview::{CommentFacts, comment_marker, preview_comment};
use wharf_github::{GithubApp, GithubError};
use wharf_store::StoredPreview;
use wharf_wire::{PreviewState, Service};

use crate::core::jobs::stopped;
use crate::core::{Core, CoreError, now_millis};

/// How long a replica holds the writing of one comment.
const COMMENT_LEASE: Duration = Duration::from_secs(60);

/// Keeps the comments in step while a GitHub App is configured, until shutdown: woken by every
/// change of a build or release, and at least every `github_report_interval`.
pub(crate) async fn run(core: Core, mut shutdown: watch::Receiver<bool>) {
    let Some(app) = core.wait_for_github_app(&mut shutdown).await else {
        return;
    };
    let mut wake_ups = core.signals.states.subscribe();
    let mut refused = BTreeSet::new();
    loop {
        wake_ups.borrow_and_update();
        if let Err(error) = core.comment_previews(&app, &mut refused).await {
            tracing::warn!(%error, "writing preview comments failed; the next pass tries again");
        }
        tokio::select! {
            _ = wake_ups.changed() => {}
            _ = tokio::time::sleep(core.config.github_report_interval) => {}
            _ = stopped(&mut shutdown) => return,
        }
    }
}

/// Where a preview's pull request is on GitHub.
struct PullRequest {
    installation_id: u64,
    owner: String,
    name: String,
    number: u64,
}

impl PullRequest {
    fn of(preview: &StoredPreview) -> Option<PullRequest> {
        let Ok(RepoSource::GitHub(repo)) = RepoSource::parse(&preview.repo) else {
            return None;
        };
        Some(PullRequest {
            installation_id: u64::try_from(preview.installation_id?).ok()?,
            owner: repo.owner().to_owned(),
            name: repo.name().to_owned(),
            number: u64::try_from(preview.number).ok()?,
        })
    }
}

impl Core {
    /// One pass: every preview whose comment differs from what GitHub last accepted gets it
    /// written. Installations that refused (no Issues permission) are named once in the log
    /// (`refused` remembers them) and skipped until the server restarts.
    pub(crate) async fn comment_previews(
        &self,
        app: &GithubApp,
        refused: &mut BTreeSet<u64>,
    ) -> Result<(), CoreError> {
        let previews = self.store.previews_to_comment().await?;
        if previews.is_empty() {
            return Ok(());
        }
        let services = self.store.list_services().await?;
        for preview in previews {
            let Some(service) = services.iter().find(|s| s.id == preview.service_id) else {
                continue;
            };
            let Some(pull) = PullRequest::of(&preview) else {
                continue;
            };
            if refused.contains(&pull.installation_id) {
                continue;
            }
            let shown = self.shown_preview(service, &preview);
            let body = preview_comment(&CommentFacts {
                service: &service.name,
                pr: shown.pr,
                state: shown.state,
                reason: shown.reason.as_deref(),
                url: shown.url.as_deref(),
                commit_sha: &shown.commit_sha,
                build: shown
                    .build_id
                    .map(|id| (id, build_log_url(&self.config.public_url, id))),
                label: service.deploy.previews.label.as_deref(),
            });
            let clear_label = self.label_to_clear(service, &preview, shown.state);
            if preview.comment_body.as_deref() == Some(body.as_str()) && clear_label.is_none() {
                // GitHub shows it already; a removed preview's comment is final.
                if let (PreviewState::Removed, Some(id)) = (shown.state, preview.comment_id) {
                    self.store
                        .record_preview_comment(
                            preview.service_id,
                            preview.number,
                            Some((id, &body, true)),
                            None,
                        )
                        .await?;
                }
                continue;
            }
            let now = now_millis();
            let lease_until = now + COMMENT_LEASE.as_millis() as i64;
            if !self
                .store
                .take_preview_comment(preview.service_id, preview.number, lease_until, now)
                .await?
            {
                continue;
            }
            let outcome = self
                .write_comment(app, &pull, service, &preview, &body, clear_label)
                .await;
            let done = shown.state == PreviewState::Removed;
            match outcome {
                Ok((comment_id, cleared)) => {
                    let comment = Some((comment_id as i64, body.as_str(), done));
                    self.store
                        .record_preview_comment(
                            preview.service_id,
                            preview.number,
                            comment,
                            cleared.as_deref(),
                        )
                        .await?;
                    tracing::info!(service = %service.name, pr = preview.number, state = %shown.state, "preview comment written");
                }
                Err(error) => {
                    self.store
                        .record_preview_comment(preview.service_id, preview.number, None, None)
                        .await?;
                    if error.is_missing_permission() {
                        refused.insert(pull.installation_id);
                        tracing::warn!(
                            installation = pull.installation_id,
                            %error,
                            "the GitHub App may not comment on pull requests of this \
                             installation (it needs Issues: write and Pull requests: read); \
                             previews go on without comments"
                        );
                    } else {
                        tracing::warn!(service = %service.name, pr = preview.number, %error, "writing a preview comment failed; the next pass tries again");
                    }
                }
            }
        }
        Ok(())
    }

    /// The approval label to take off the pull request: its head moved past what was approved
    /// while the service approves by label, once per head.
    fn label_to_clear(
        &self,
        service: &Service,
        preview: &StoredPreview,
        state: PreviewState,
    ) -> Option<String> {
        let label = service.deploy.previews.label.clone()?;
        (state == PreviewState::WaitingApproval
            && preview.approved_sha.is_some()
            && preview.label_cleared_sha.as_deref() != Some(preview.head_sha.as_str()))
        .then_some(label)
    }

    /// Writes the comment (edits the one Wharf made, finds it by its marker when its id was
    /// never recorded, or makes it) and takes the approval label off; answers the comment's id
    /// and the head whose label was cleared.
    async fn write_comment(
        &self,
        app: &GithubApp,
        pull: &PullRequest,
        service: &Service,
        preview: &StoredPreview,
        body: &str,
        clear_label: Option<String>,
    ) -> Result<(u64, Option<String>), GithubError> {
        let mut cleared = None;
        if let Some(label) = clear_label {
            app.remove_label(
                pull.installation_id,
                &pull.owner,
                &pull.name,
                pull.number,
                &label,
            )
            .await?;
            cleared = Some(preview.head_sha.clone());
        }
        let known = match preview.comment_id.and_then(|id| u64::try_from(id).ok()) {
            Some(id) => Some(id),
            None => {
                let marker = comment_marker(&service.name);
                app.issue_comments(pull.installation_id, &pull.owner, &pull.name, pull.number)
                    .await?
                    .into_iter()
                    .find(|comment| comment.body.starts_with(&marker))
                    .map(|comment| comment.id)
            }
        };
        let edited = match known {
            Some(id) => match app
                .update_issue_comment(pull.installation_id, &pull.owner, &pull.name, id, body)
                .await
            {
                Ok(()) => Some(id),
                // Someone deleted it: a new one takes its place.
                Err(error) if error.status() == Some(404) => None,
                Err(error) => return Err(error),
            },
            None => None,
        };
        let id = match edited {
            Some(id) => id,
            None => {
                app.create_issue_comment(
                    pull.installation_id,
                    &pull.owner,
                    &pull.name,
                    pull.number,
                    body,
                )
                .await?
            }
        };
        Ok((id, cleared))
    }
}
