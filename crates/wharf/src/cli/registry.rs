//! `wharf registry-login`: the registry login that one GitHub App installation's builds push
//! with.

use wharf_client::ApiClient;
use wharf_wire::{SecretText, SetRegistryLogin};

use super::render::{self, emit};

/// Sets the login of `installation`; the password comes from standard input, so it never
/// shows in the process list.
pub(super) async fn login(
    client: &ApiClient,
    installation: i64,
    username: String,
) -> anyhow::Result<()> {
    let password = super::input::line("the password")?;
    let set = client
        .send(&SetRegistryLogin {
            installation_id: installation,
            username,
            password: SecretText::new(password),
        })
        .await?;
    emit(&render::registry_login_set(&set))
}
