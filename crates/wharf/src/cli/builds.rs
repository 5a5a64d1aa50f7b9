//! `wharf builds`, `wharf build` and `wharf logs`: list, show, cancel, retry and trigger
//! builds, and print or follow a build's log.

use wharf_client::ApiClient;
use wharf_wire::{
    BuildState, CancelBuild, GetLogs, ListBuilds, RetryBuild, ShowBuild, TriggerBuild,
};

use super::args::BuildCommand;
use super::logs;
use super::render::{self, emit};

/// `wharf builds`: the builds, newest first, of one service or of all.
pub(super) async fn list(
    client: &ApiClient,
    service: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let builds = client.send(&ListBuilds { service }).await?;
    emit(&render::list(&builds, json, render::BUILDS)?)
}

/// Runs one `wharf build` verb; each prints the build it shows or made.
pub(super) async fn run(client: &ApiClient, command: BuildCommand) -> anyhow::Result<()> {
    let (build, json) = match command {
        BuildCommand::Show { id, json } => (client.send(&ShowBuild { id }).await?, json),
        BuildCommand::Cancel { id, json } => (client.send(&CancelBuild { id }).await?, json),
        BuildCommand::Retry { id, json } => (client.send(&RetryBuild { id }).await?, json),
        BuildCommand::Trigger {
            service,
            git_ref,
            json,
        } => (client.send(&TriggerBuild { service, git_ref }).await?, json),
    };
    emit(&render::one(&build, json, render::build_details)?)
}

/// Prints a build's log page by page; following waits on the server for new lines.
pub(super) async fn print_logs(client: &ApiClient, id: i64, follow: bool) -> anyhow::Result<()> {
    logs::print(follow, async |after, wait_ms| {
        let page = client
            .send_with_timeout(&GetLogs { id, after, wait_ms }, logs::PAGE_TIMEOUT)
            .await?;
        Ok(logs::Page {
            failure: (page.state != BuildState::Completed)
                .then(|| format!("build #{id} ended {}", page.state)),
            lines: page.lines,
            complete: page.complete,
        })
    })
    .await
}
