//! What an agent does with a claimed build. The runner reports progress and the outcome to
//! the server itself, and must return promptly once `stop` turns true.

use std::future::Future;
use std::path::PathBuf;

use tokio::sync::watch;
use wharf_client::ApiClient;
use wharf_wire::{BuildJob, BuildState, ReportBuildState};

/// Everything a runner gets besides the job.
pub struct BuildContext {
    /// The agent's client of the server.
    pub client: ApiClient,
    /// Turns true when the build must stop (cancelled, or no longer leased to this agent).
    pub stop: watch::Receiver<bool>,
    /// Where the agent may create the build's working directory.
    pub work_dir: PathBuf,
    /// This agent's name, for messages.
    pub agent_name: String,
}

impl BuildContext {
    /// Reports a state to the server; a refusal is logged, since the server's word is final.
    pub async fn report(&self, build_id: i64, state: BuildState, reason: Option<String>) {
        let request = ReportBuildState {
            id: build_id,
            state,
            reason,
            image: None,
            digest: None,
            failure: None,
            images: Vec::new(),
            compose_file: None,
        };
        if let Err(error) = self.client.send(&request).await {
            tracing::warn!(build = build_id, %state, %error, "the server did not take a build report");
        }
    }
}

/// Runs one claimed build to its end.
pub trait BuildRunner: Send + Sync + 'static {
    fn run(&self, job: BuildJob, context: BuildContext) -> impl Future<Output = ()> + Send;
}

/// The runner of an agent that cannot build: it fails every build at once with a reason that
/// says so, rather than holding it until its lease runs out.
pub struct NoBuilder;

impl BuildRunner for NoBuilder {
    async fn run(&self, job: BuildJob, context: BuildContext) {
        let reason = format!(
            "agent {} cannot build images: no builder is configured on it",
            context.agent_name
        );
        context
            .report(job.build.id, BuildState::Failed, Some(reason))
            .await;
    }
}
