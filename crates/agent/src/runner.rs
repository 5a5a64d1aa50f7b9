//! What an agent does with a claimed build. The runner reports progress and the outcome to
//! the server itself, and must return promptly once `stop` turns true.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;
use wharf_client::ApiClient;
use wharf_wire::BuildJob;

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
    /// The registry the server named when the agent registered; `None` when it named none.
    pub registry: Option<String>,
    /// Talk plain HTTP to that registry.
    pub registry_insecure: bool,
}

/// Runs one claimed build to its end.
pub trait BuildRunner: Send + Sync + 'static {
    fn run(&self, job: BuildJob, context: BuildContext) -> impl Future<Output = ()> + Send;

    /// How long a build may run before the runner stops it, which the agent tells the server
    /// when it claims; `None`: no limit of the runner's own.
    fn timeout(&self) -> Option<Duration> {
        None
    }
}
