//! `wharf deploy`, `wharf rollback`, `wharf releases` and `wharf logs --release`: make a release
//! without a build, go back to an earlier one, list them, print or follow a release's deploy
//! log; deploy and rollback follow the release to its outcome.

use wharf_client::ApiClient;
use wharf_wire::{
    DeployService, GetReleaseLogs, ListReleases, Release, ReleaseState, RollbackService,
    ShowRelease,
};

use super::args::WaitFlags;
use super::logs;
use super::render::{self, emit};

/// `wharf deploy`: releases a service's latest completed build, a given build, or an image.
pub(super) async fn deploy(
    client: &ApiClient,
    service: String,
    build: Option<i64>,
    image: Option<String>,
    wait: WaitFlags,
) -> anyhow::Result<()> {
    let release = client
        .send(&DeployService {
            service,
            build,
            image,
        })
        .await?;
    follow_release(client, release, wait).await
}

/// `wharf rollback`: releases an earlier release's image again.
pub(super) async fn rollback(
    client: &ApiClient,
    service: String,
    to: Option<i64>,
    wait: WaitFlags,
) -> anyhow::Result<()> {
    let release = client.send(&RollbackService { service, to }).await?;
    follow_release(client, release, wait).await
}

/// `wharf releases`: a service's releases, newest first.
pub(super) async fn list(client: &ApiClient, service: String, json: bool) -> anyhow::Result<()> {
    let releases = client.send(&ListReleases { service }).await?;
    emit(&render::list(&releases, json, render::RELEASES)?)
}

/// Prints each state a release passes through until it settles; a release that did not go
/// live is an error (exit code 1) carrying its reason.
async fn follow_release(
    client: &ApiClient,
    mut release: Release,
    wait: WaitFlags,
) -> anyhow::Result<()> {
    if !wait.json {
        emit(&render::release_created(&release))?;
    }
    let mut shown = release.state;
    while !wait.no_wait && !release.state.is_settled() {
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        release = client.send(&ShowRelease { id: release.id }).await?;
        if release.state != shown && !wait.json {
            emit(&render::release_moved(release.state))?;
        }
        shown = release.state;
    }
    if wait.json {
        emit(&render::pretty_json(&release)?)?;
    }
    match release.state {
        ReleaseState::Failed | ReleaseState::RolledBack | ReleaseState::Superseded => {
            anyhow::bail!(
                "release #{} {}: {}",
                release.id,
                release.state,
                release.reason.as_deref().unwrap_or("no reason given")
            )
        }
        _ => Ok(()),
    }
}

/// Prints a release's deploy log page by page, each line after its host; following waits on the
/// server for new lines until the release has settled on every host.
pub(super) async fn print_logs(client: &ApiClient, id: i64, follow: bool) -> anyhow::Result<()> {
    logs::print(follow, async |after, wait_ms| {
        let page = client
            .send_with_timeout(&GetReleaseLogs { id, after, wait_ms }, logs::PAGE_TIMEOUT)
            .await?;
        Ok(logs::Page {
            failure: matches!(page.state, ReleaseState::Failed | ReleaseState::RolledBack)
                .then(|| format!("release #{id} ended {}", page.state)),
            lines: page.lines,
            complete: page.complete,
        })
    })
    .await
}
