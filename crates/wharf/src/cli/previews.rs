//! `wharf previews` and `wharf preview approve|start|destroy`: pull requests' preview environments.

use wharf_client::ApiClient;
use wharf_wire::{ApprovePreview, DestroyPreview, ListAllPreviews, ListPreviews, StartPreview};

use super::args::PreviewCommand;
use super::render::{self, emit};

/// `wharf previews [SERVICE]`.
pub(super) async fn list(
    client: &ApiClient,
    service: Option<String>,
    json: bool,
) -> anyhow::Result<()> {
    let previews = match service {
        Some(service) => client.send(&ListPreviews { service }).await?,
        None => client.send(&ListAllPreviews {}).await?,
    };
    emit(&render::list(&previews, json, render::PREVIEWS)?)
}

/// Runs one `wharf preview` verb.
pub(super) async fn run(client: &ApiClient, command: PreviewCommand) -> anyhow::Result<()> {
    match command {
        PreviewCommand::Approve {
            service,
            pr,
            commit,
            json,
        } => {
            let preview = client
                .send(&ApprovePreview {
                    service,
                    pr,
                    commit_sha: commit,
                })
                .await?;
            emit(&render::one(&preview, json, render::preview)?)
        }
        PreviewCommand::Start { service, pr, json } => {
            let preview = client.send(&StartPreview { service, pr }).await?;
            emit(&render::one(&preview, json, render::preview)?)
        }
        PreviewCommand::Destroy { service, pr, json } => {
            let preview = client.send(&DestroyPreview { service, pr }).await?;
            emit(&render::one(&preview, json, render::preview)?)
        }
    }
}
