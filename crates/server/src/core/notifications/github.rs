//! GitHub as a notification sink: the `github` sink, listed beside the sinks users add while a
//! GitHub App is configured.
//!
//! What it carries is not an event stream but a state kept in step: each reported build's
//! deployment, its statuses and the check on its commit, sent by the reporter
//! (`core::github_deployments`) with the same guarantees as the other sinks (written with the
//! change that causes it, sent under a lease, retried with backoff and as GitHub asks, given up
//! on for good only when GitHub refuses). Here its messages are the builds, its dead letters the
//! builds GitHub refused, and a retry reports them again.

use wharf_wire::{NotificationEvent, NotificationSink, SinkKind, SinkRetried, format_millis};

use crate::core::{Core, CoreError, now_millis};

/// The built-in sink's name.
pub(super) const SINK: &str = "github";

/// Why the sink cannot be added or removed.
pub(super) const BUILT_IN: &str = "github is Wharf's built-in sink for GitHub deployments and \
     checks: it comes with the GitHub App; remove the App's installation from a repository to \
     stop reporting to it";

/// Why it has no test message.
pub(super) const NO_TEST: &str = "the github sink sends no test message: its messages are \
     builds' deployments; see them with `wharf notify deliveries github`";

impl Core {
    /// Whether `name` is the built-in sink of a configured GitHub App.
    pub(super) fn is_github_sink(&self, name: &str) -> bool {
        name == SINK && self.github_app().is_some()
    }

    /// The built-in sink as listed, while a GitHub App is configured.
    pub(super) async fn github_sink(&self) -> Result<Option<NotificationSink>, CoreError> {
        let Some(app) = self.github_app() else {
            return Ok(None);
        };
        let (pending, dead, since) = self.store.github_report_counts().await?;
        Ok(Some(NotificationSink {
            name: SINK.to_owned(),
            kind: SinkKind::Github,
            url: app.api_url().to_owned(),
            email: None,
            events: vec![NotificationEvent::Deployment],
            services: Vec::new(),
            pending,
            dead,
            created_at: format_millis(since.unwrap_or_else(now_millis)),
        }))
    }

    /// Reports again every build GitHub refused, and wakes the reporter.
    pub(super) async fn retry_github_sink(&self) -> Result<SinkRetried, CoreError> {
        let retried = self.store.retry_github_reports(now_millis()).await?;
        self.signals.states.notify();
        Ok(SinkRetried {
            sink: SINK.to_owned(),
            retried,
        })
    }
}
